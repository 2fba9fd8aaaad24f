"""What a training checkpoint (``last.pt``) must hold before a run resumes from it.

:meth:`~robustreg.training.state.TrainState.resume` reads a checkpoint of the right format; these check
the rest against the run about to continue, so a hand-edited or cut file is refused with one line
instead of failing inside ``load_state_dict`` (torch's size mismatch, numpy's wrong-size RNG state, a
KeyError).  :func:`check_header`: what the configuration comparison reads (config, world size, steps,
head); :func:`check_checkpoint`: the model's tensors (every name and shape of the model), the optimizer's
groups, the step, the data order, and per rank the RNG states, the defense state and the log meters.
The first field that is wrong raises :class:`~robustreg.readback.Damage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch

from ..readback import Damage, integer, mapping, number, optional, required, rows, text

__all__ = ["RunShape", "check_checkpoint", "check_header"]

MT_WORDS = 624  # the Mersenne Twister's state: numpy's keys; Python's random adds its position (625)


class RunShape(Protocol):
    """What a checkpoint is checked against: the run about to resume (a
    :class:`~robustreg.training.state.TrainState`, which imports this module)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    steps_per_epoch: int
    total_steps: int
    world_size: int


def check_header(state: Mapping[str, Any]) -> None:
    """What the comparison with this run's configuration reads."""
    required(state, "config", "", mapping)
    required(state, "world_size", "", lambda value, at: integer(value, at, low=1))
    required(state, "total_steps", "", integer)
    optional(state, "head", "", mapping)


def _tensor(value: Any, where: str, like: torch.Tensor) -> None:
    """A tensor of ``like``'s shape and dtype."""
    _any_tensor(value, where)
    if value.shape != like.shape or value.dtype != like.dtype:
        raise Damage(f"{where} is a {tuple(value.shape)} {value.dtype} tensor, expected {tuple(like.shape)} "
                     f"{like.dtype}")


def _model(state: Mapping[str, Any], model: torch.nn.Module) -> None:
    saved = required(state, "model", "", mapping)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        what = f"lacks {', '.join(missing[:3])}" if missing else f"holds {', '.join(unexpected[:3])}, not in the model"
        raise Damage(f"model {what}")
    for name, tensor in expected.items():
        _tensor(saved[name], f"model[{name!r}]", tensor)


def _optimizer(state: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> None:
    saved = required(state, "optimizer", "", mapping)
    required(saved, "state", "optimizer", mapping)
    groups = required(saved, "param_groups", "optimizer", rows)
    expected = optimizer.state_dict()["param_groups"]
    if len(groups) != len(expected):
        raise Damage(f"optimizer: param_groups holds {len(groups)} groups, expected {len(expected)}")
    for i, (group, like) in enumerate(zip(groups, expected)):
        params = required(mapping(group, f"optimizer: param_groups[{i}]"), "params", f"optimizer: param_groups[{i}]",
                          rows)
        if len(params) != len(like["params"]):
            raise Damage(f"optimizer: param_groups[{i}] holds {len(params)} parameters, expected {len(like['params'])}")


def _data(state: Mapping[str, Any], train: RunShape, step: int) -> None:
    data = required(state, "data", "", mapping)
    required(data, "generator", "data", lambda value, at: _tensor(value, at, train.generator.get_state()))
    perm = data.get("perm")
    if perm is None and step % train.steps_per_epoch:
        raise Damage(f"data: perm is missing in the middle of an epoch (step {step}, {train.steps_per_epoch} "
                     f"steps per epoch)")
    if perm is not None and (not isinstance(perm, torch.Tensor) or perm.dim() != 1 or perm.is_floating_point()):
        raise Damage(f"data: perm is {type(perm).__name__}, not a 1-D tensor of sample indices")


def _rng(value: Any, where: str) -> None:
    """One rank's global RNG states (:func:`~.state.global_rng_state`), sized as this process's."""
    rng = mapping(value, where)
    required(rng, "torch", where, lambda v, at: _tensor(v, at, torch.get_rng_state()))
    numpy_state = required(rng, "numpy", where, mapping)
    required(numpy_state, "kind", f"{where}: numpy", text)
    keys = torch.zeros(MT_WORDS, dtype=torch.int64)
    required(numpy_state, "keys", f"{where}: numpy", lambda v, at: _tensor(v, at, keys))
    for key in ("pos", "has_gauss"):
        required(numpy_state, key, f"{where}: numpy", integer)
    required(numpy_state, "gauss", f"{where}: numpy", number)
    python = required(rng, "python", where, mapping)
    required(python, "version", f"{where}: python", integer)
    internal = required(python, "state", f"{where}: python", rows)
    if len(internal) != MT_WORDS + 1 or not all(isinstance(v, int) for v in internal):
        raise Damage(f"{where}: python: state holds {len(internal)} values, expected {MT_WORDS + 1} integers")
    optional(python, "gauss", f"{where}: python", number)


def _meter(value: Any, where: str) -> None:
    """A log meter's sums (:meth:`~.logging.Meter.state_dict`)."""
    meter = mapping(value, where)
    required(meter, "steps", where, integer)
    optional(meter, "loss", where, _any_tensor)
    for key, check in (("metrics", number), ("counted", integer), ("correct", _any_tensor)):
        for name, item in required(meter, key, where, mapping).items():
            check(item, f"{where}: {key}[{name!r}]")


def _any_tensor(value: Any, where: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise Damage(f"{where} is {type(value).__name__}, not a tensor")


def _ranks(state: Mapping[str, Any], world_size: int) -> None:
    ranks = required(state, "ranks", "", rows)
    if len(ranks) != world_size:
        raise Damage(f"ranks holds {len(ranks)} entries, expected {world_size} (one per process)")
    for r, entry in enumerate(ranks):
        entry = mapping(entry, f"ranks[{r}]")
        required(entry, "rng", f"ranks[{r}]", _rng)
        required(entry, "defense", f"ranks[{r}]", mapping)
        meters = entry.get("meters")
        if meters is not None:
            for key in ("window", "epoch"):
                required(mapping(meters, f"ranks[{r}]: meters"), key, f"ranks[{r}]: meters", _meter)


def check_checkpoint(state: Mapping[str, Any], train: RunShape) -> None:
    """A checkpoint whose configuration, world size and steps matched ``train``'s."""
    _model(state, train.model)
    _optimizer(state, train.optimizer)
    step = required(state, "step", "", integer)
    if step > train.total_steps:
        raise Damage(f"step is {step}, beyond the run's {train.total_steps} steps")
    required(state, "elapsed", "", number)
    optional(state, "scaler", "", mapping)
    _data(state, train, step)
    _ranks(state, train.world_size)
    optional(state, "scheduler", "", mapping)
