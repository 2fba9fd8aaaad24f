"""The trainer: runs a registered Defense over a dataset, with checkpoints, exact resume, DDP and logs.

``train(TrainConfig(model="resnet20", data="cifar10:DIR", defense="at", epochs=120, ...))`` builds the
model (:func:`robustreg.models.build_model`), loads the train split (:func:`robustreg.data.load_data`),
builds the defense from the registry by name and, for every batch, calls
``defense.loss(model, x, y, step=step)`` with the model in train mode, back-propagates, steps SGD and
sets the learning rate of the next step from :mod:`robustreg.schedules`.

Files in ``config.out``:

- ``last.pt``: the full state (model, optimizer, lr schedule, GradScaler, defense.state_dict(), the
  RNG states: the data generator, torch CPU/CUDA, numpy, python ``random``; step, epoch, config).
  Written atomically (temporary file + ``os.replace``) every ``checkpoint_every`` steps and at the end;
  plain tensors/dicts/lists/numbers/strings only, so ``torch.load(..., weights_only=True)`` reads it.
- ``final.pt``: only the model's state dict (what ``robustreg evaluate --weights DIR/final.pt`` loads).
- ``log.jsonl`` / ``log.csv``: one record every ``log_every`` steps (``kind="step"``) and at each
  epoch end (``kind="epoch"``): loss, the defense's metrics, clean/adversarial batch accuracy, lr,
  seconds, images/s.

Resume: running again with the same ``out`` continues from ``last.pt``; a checkpoint of a different
configuration is refused with the differing keys named.  On the same device (and thread count) the
resumed run ends with the same weights, bit for bit, as an uninterrupted one: the data order and
augmentation come from a seeded ``torch.Generator`` saved in the checkpoint (with the epoch's order),
and the global RNGs a defense may use are saved too.  The caller's global RNG states are restored
when training returns.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the trainer initialises the process group (nccl
on CUDA, gloo on CPU), gives each rank ``batch_size / world_size`` samples of every global batch and
averages the gradients over ranks after ``backward()``; only rank 0 writes files.  The model is NOT
wrapped in ``DistributedDataParallel``: DDP's reducer expects exactly one forward per backward, but a
defense runs the model many times per step (attack iterations in eval mode, TRADES' clean and
adversarial passes), which DDP either syncs at the wrong time or rejects ("marked ready twice").
Handing the defense the plain module and all-reducing the gradients (flattened, one collective per
bucket) is the same arithmetic as DDP, works with every defense unchanged, and attacks inside a
defense never trigger a collective.  Parameters and buffers are broadcast from rank 0 at start, and
floating buffers (BatchNorm statistics) before every step, as DDP's ``broadcast_buffers`` does.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import math
import os
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .defense import Defense, DefenseOutput
from .files import save_atomic
from .schedules import SCHEDULES, LRSchedule

__all__ = [
    "CHECKPOINT_FORMAT",
    "RUNTIME_KEYS",
    "TrainConfig",
    "Trainer",
    "add_parser",
    "apply_overrides",
    "config_from_args",
    "configure_parser",
    "load_config",
    "main",
    "parse_value",
    "run",
    "train",
]

CHECKPOINT_FORMAT = "robustreg-train/1"
# Keys that may change between a run and its resumption without changing the result.
RUNTIME_KEYS = frozenset({"out", "quiet", "log_every", "checkpoint_every", "tensorboard", "device"})
_NO_FLIP_DATA = ("digits", "mnist", "svhn", "emnist", "kmnist", "fashion")


@dataclass
class TrainConfig:
    """Everything that defines a training run (YAML keys are the field names).

    model / model_params / weights / normalize: ``build_model(model, weights=, normalize=, **model_params)``
        (normalize: what :func:`robustreg.models.parse_normalize` reads).  data: a ``load_data`` spec (train split);
        n_train: use only the first n training samples.
    defense / defense_params: the registered defense and its keyword parameters.
    epochs | iterations: length of training (exactly one); batch_size: the global batch (drop_last).
    lr, momentum, weight_decay, nesterov: SGD.  grad_clip: max gradient norm (None: off).
    schedule: "step" | "cosine" | "cyclic" | "constant"; milestones (in milestone_unit: "epochs" or
        "iterations"), gamma: for "step"; cyclic_peak: fraction of training at the top of "cyclic".
    augment: random crop (zero padding ``crop_padding``, default round(H/8)) and horizontal flip
        (``flip``; default off for digits/MNIST/SVHN and single-channel data).
    seed: model init, data order, augmentation and the global RNGs a defense uses.
    device: "auto" | "cpu" | "cuda" | "cuda:N".  amp, channels_last: CUDA only (ignored on CPU).
    checkpoint_every: steps between ``last.pt`` writes (0: only at the end).  out: output folder.
    log_every: steps between log records.  quiet: no progress bar.  tensorboard: also log there.

    Paper 004's ResNet-18 schedule as YAML (``robustreg train --config at_si.yaml --set seed=1``)::

        model: resnet18
        data: cifar10:/data/cifar10
        defense: at-si
        defense_params: {eps: 8/255, steps: 10}
        epochs: 120
        batch_size: 128
        lr: 0.01
        weight_decay: 5.0e-4
        schedule: step
        milestones: [75, 90, 100]      # epochs
        out: runs/resnet18-at-si

    Paper 000 on CIFAR-10 instead: ``iterations: 94000, lr: 0.1, weight_decay: 1.0e-4,
    milestones: [48000, 72000], milestone_unit: iterations``.
    """

    model: str = ""
    data: str = "digits"
    defense: str = "standard"
    defense_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    normalize: Any = None
    n_train: int | None = None
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    grad_clip: float | None = None
    schedule: str = "step"
    milestones: list[float] = field(default_factory=list)
    milestone_unit: str = "epochs"
    gamma: float = 0.1
    cyclic_peak: float = 0.4
    augment: bool = True
    crop_padding: int | None = None
    flip: bool | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    checkpoint_every: int = 500
    out: str = "runs/train"
    log_every: int = 50
    quiet: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ValueError(f"{key} must be {allowed}, got {getattr(self, key)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for key in ("model", "data", "defense", "schedule", "milestone_unit", "device", "out"):
            need(isinstance(getattr(self, key), str), key, "a string")
        need(bool(self.data), "data", "a data spec such as 'digits' or 'cifar10:DIR'")
        need(bool(self.defense), "defense", "a registered defense name (plain training: 'standard')")
        need(isinstance(self.defense_params, dict), "defense_params", "a mapping of parameter names to values")
        need(isinstance(self.model_params, dict), "model_params", "a mapping of parameter names to values")
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError(f"give exactly one of epochs and iterations, got epochs={self.epochs!r}, "
                             f"iterations={self.iterations!r}")
        need(self.epochs is None or (is_int(self.epochs) and self.epochs >= 1), "epochs", "an integer >= 1")
        need(self.iterations is None or (is_int(self.iterations) and self.iterations >= 1), "iterations",
             "an integer >= 1")
        need(self.n_train is None or (is_int(self.n_train) and self.n_train >= 1), "n_train", "None or an integer >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(is_num(self.lr) and self.lr > 0, "lr", "a positive number")
        need(is_num(self.momentum) and 0 <= self.momentum < 1, "momentum", "a number in [0, 1)")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(self.grad_clip is None or (is_num(self.grad_clip) and self.grad_clip > 0), "grad_clip",
             "None or a positive number")
        need(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}")
        need(isinstance(self.milestones, (list, tuple)) and all(is_num(m) and m > 0 for m in self.milestones),
             "milestones", "a list of positive numbers")
        self.milestones = list(self.milestones)
        need(self.milestone_unit in ("epochs", "iterations"), "milestone_unit", "'epochs' or 'iterations'")
        need(is_num(self.gamma) and 0 < self.gamma <= 1, "gamma", "a number in (0, 1]")
        need(is_num(self.cyclic_peak) and 0 < self.cyclic_peak < 1, "cyclic_peak", "a number in (0, 1)")
        need(self.crop_padding is None or (is_int(self.crop_padding) and self.crop_padding >= 0), "crop_padding",
             "None (automatic) or an integer >= 0")
        need(self.flip is None or isinstance(self.flip, bool), "flip", "None (automatic), true or false")
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0")
        need(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "device", "auto, cpu, cuda or cuda:N")
        need(is_int(self.checkpoint_every) and self.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0")
        need(bool(self.out), "out", "an output folder")
        need(is_int(self.log_every) and self.log_every >= 1, "log_every", "an integer >= 1")
        for key in ("nesterov", "augment", "amp", "channels_last", "quiet", "tensorboard"):
            need(isinstance(getattr(self, key), bool), key, "true or false")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0, got momentum=0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (YAML); unknown keys raise a ValueError naming close matches."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), names, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown training config key(s) {', '.join(hints)}; known keys: {', '.join(names)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- configuration from YAML, --set and the command line ------------------------------------------

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FRACTION = re.compile(rf"^\s*({_NUMBER})\s*/\s*({_NUMBER})\s*$")
_FLOAT = re.compile(rf"^\s*{_NUMBER}\s*$")


def _numbers(value: Any) -> Any:
    """Strings that are numbers YAML 1.1 leaves as text (``5e-4``) or fractions (``8/255``) -> float."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if match:
            num, den = float(match.group(1)), float(match.group(2))
            if den == 0:
                raise ValueError(f"division by zero in value {value!r}")
            return num / den
        if _FLOAT.match(value):
            return float(value)
    return value


def parse_value(text: str) -> Any:
    """A command-line value: YAML (``0.3``, ``true``, ``[75, 90]``, ``null``); ``8/255``, ``5e-4`` -> float."""
    import yaml

    try:
        return _numbers(yaml.safe_load(text))
    except yaml.YAMLError:
        return _numbers(text)


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML training config into a dict (keys are :class:`TrainConfig` fields)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    with p.open() as fh:
        values = yaml.safe_load(fh)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping of keys to values, got {type(values).__name__}")
    return _numbers(values)


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; dotted keys reach into mappings (``defense_params.beta=0.3``)."""
    out = json.loads(json.dumps(dict(values), default=str)) if values else {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        parts = key.split(".")
        target = out
        for depth, part in enumerate(parts[:-1]):
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"--set {item!r}: {'.'.join(parts[:depth + 1])} is {nxt!r}, not a mapping")
            target = nxt
        target[parts[-1]] = parse_value(raw)
    return out


def _defense_param(item: str, defense: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--param expects [DEFENSE.]KEY=VALUE, got {item!r}")
    key = key.strip()
    if "." in key:
        owner, _, key = key.rpartition(".")
        if owner != defense:
            raise ValueError(f"--param {item!r} names defense {owner!r} but the defense is {defense!r}")
    return key, parse_value(raw)


# --- helpers --------------------------------------------------------------------------------------





def _resolve_device(spec: str, local_rank: int | None) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for but CUDA is not available; use --device cpu")
        if spec == "cuda" and local_rank is not None:
            return torch.device("cuda", local_rank)
    return torch.device(spec)


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: Mapping[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def _python_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": int(version), "state": list(internal), "gauss": gauss}


def _set_python_state(state: Mapping[str, Any]) -> None:
    random.setstate((state["version"], tuple(state["state"]), state["gauss"]))


def _global_rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": _python_state(), "cuda": []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_global_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    _set_numpy_state(state["numpy"])
    _set_python_state(state["python"])


@contextmanager
def _preserve_global_rng() -> Iterator[None]:
    saved = _global_rng_state()
    try:
        yield
    finally:
        _set_global_rng_state(saved)


def _seed_global(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _config_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(saved) | set(now)) - RUNTIME_KEYS)
    return [f"{k}: {saved.get(k, '<absent>')!r} in the checkpoint, {now.get(k, '<absent>')!r} now"
            for k in keys if saved.get(k, "<absent>") != now.get(k, "<absent>")]


def _normalised(values: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so tuples/lists and int/float spellings compare as they were saved."""
    return json.loads(json.dumps(dict(values), sort_keys=True, default=str))


# --- logging --------------------------------------------------------------------------------------


class _Log:
    """``log.jsonl`` + ``log.csv`` (+ TensorBoard); rank 0 only.  On resume drops records past the step."""

    def __init__(self, out: Path, *, enabled: bool, tensorboard: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.jsonl = out / "log.jsonl"
        self.csv = out / "log.csv"
        self.columns: list[str] | None = None
        self.writer = None
        if not enabled:
            return
        records: list[dict[str, Any]] = []
        if resume_step is not None and self.jsonl.exists():
            with self.jsonl.open() as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by the kill that interrupted the run
                        continue
                    if rec.get("step", 0) <= resume_step:
                        records.append(rec)
        with self.jsonl.open("w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        self.columns = None
        if self.csv.exists():
            self.csv.unlink()
        for rec in records:
            self._csv_row(rec)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard=True but the tensorboard package is not installed; logging to "
                              "log.jsonl/log.csv only", stacklevel=3)
            else:
                self.writer = SummaryWriter(str(out / "tensorboard"))

    def _csv_row(self, rec: Mapping[str, Any]) -> None:
        new = self.columns is None
        if new:
            self.columns = list(rec)
        with self.csv.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow(rec)

    def write(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        self._csv_row(rec)
        if self.writer is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _Meter:
    """Sums of loss, metrics and accuracies over a window of steps (device tensors; one sync per read)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.images = 0
        self.loss: torch.Tensor | None = None
        self.metrics: dict[str, float] = {}
        self.correct: dict[str, torch.Tensor] = {}
        self.counted: dict[str, int] = {}
        self.start = time.perf_counter()

    def add(self, out: DefenseOutput, y: torch.Tensor, images: int) -> None:
        loss = out.loss.detach().float()
        self.loss = loss if self.loss is None else self.loss + loss
        for k, v in out.metrics.items():
            self.metrics[k] = self.metrics.get(k, 0.0) + float(v)
        for key, logits in (("acc_clean", out.logits_clean), ("acc_adv", out.logits_adv)):
            if logits is not None:
                hit = (logits.detach().argmax(1) == y[: logits.shape[0]]).sum()
                self.correct[key] = self.correct[key] + hit if key in self.correct else hit
                self.counted[key] = self.counted.get(key, 0) + int(logits.shape[0])
        self.steps += 1
        self.images += images

    def values(self, world_size: int) -> dict[str, float]:
        """Means over the window, averaged over ranks (all ranks must call this at the same step)."""
        names = ["loss", *sorted(self.metrics), *sorted(self.correct)]
        device = self.loss.device if self.loss is not None else torch.device("cpu")
        vec = [self.loss if self.loss is not None else torch.zeros((), device=device)]
        vec += [torch.tensor(self.metrics[k], device=device) for k in sorted(self.metrics)]
        vec += [self.correct[k].float() / max(1, self.counted[k]) * self.steps for k in sorted(self.correct)]
        stacked = torch.stack([v.float().reshape(()) for v in vec]) / max(1, self.steps)
        if world_size > 1:
            torch.distributed.all_reduce(stacked)
            stacked /= world_size
        return dict(zip(names, stacked.tolist()))


# --- the trainer ----------------------------------------------------------------------------------


class Trainer:
    """Runs ``config.defense`` over ``config.data`` on ``config.model``; see the module docstring.

    ``registry``: where the defense (and named models/datasets) come from; default ``Registry.create()``.
    ``model``: an ``nn.Module`` or a zero-argument factory used instead of ``build_model(config.model)``
    (a factory is called under the seeded RNG, so its initial weights are reproducible).
    ``data``: a dataset with ``.tensors()`` or an ``(x, y)`` pair used instead of ``load_data(config.data)``.
    After :meth:`fit`, ``model``, ``defense``, ``optimizer`` and ``summary`` (steps, seconds, images/s
    of this process's loop) are available.

    Example::

        cfg = TrainConfig(model="digits-cnn", data="digits", defense="at", epochs=5, batch_size=64, lr=0.05,
                          schedule="cosine", defense_params={"eps": 0.1, "steps": 5}, out="runs/at")
        final = Trainer(cfg).fit()          # runs/at/final.pt
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        registry: Any = None,
        model: nn.Module | Callable[[], nn.Module] | None = None,
        data: Any = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if model is None and not config.model:
            raise ValueError("model must be a model spec (a registered name, file.py:factory or pkg.mod:factory)")
        self.config = config
        self._registry = registry
        self._model_arg = model
        self._data_arg = data
        self.model: nn.Module | None = None
        self.defense: Defense | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.summary: dict[str, float] = {}

    # .. setup ..
    def _registry_or_default(self) -> Any:
        if self._registry is None:
            from .registry import Registry

            self._registry = Registry.create()
        return self._registry

    def _load_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = self._data_arg
        if data is None:
            from .data import load_data

            data = load_data(self.config.data, split="train", registry=self._registry_or_default())
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
        elif hasattr(data, "tensors"):
            x, y = data.tensors(self.config.n_train)
        else:
            raise TypeError(f"data must be a dataset with .tensors() or an (x, y) pair, got {type(data).__name__}")
        if self.config.n_train is not None:
            x, y = x[: self.config.n_train], y[: self.config.n_train]
        if not (torch.is_tensor(x) and x.is_floating_point() and x.dim() == 4):
            raise ValueError(f"training images must be a float N x C x H x W tensor, got "
                             f"{getattr(x, 'dtype', type(x))} of shape {tuple(getattr(x, 'shape', ()))}")
        if not (torch.is_tensor(y) and y.dtype == torch.int64 and y.shape == x.shape[:1]):
            raise ValueError(f"training labels must be int64 of shape ({x.shape[0]},), got "
                             f"{getattr(y, 'dtype', type(y))} of shape {tuple(getattr(y, 'shape', ()))}")
        return x.contiguous(), y.contiguous()

    def _build_model(self) -> nn.Module:
        arg, cfg = self._model_arg, self.config
        if arg is None:
            from .models import build_model

            model = build_model(cfg.model, weights=cfg.weights, normalize=cfg.normalize,
                                registry=self._registry_or_default(), **cfg.model_params)
        else:
            model = arg if isinstance(arg, nn.Module) else arg()
            if not isinstance(model, nn.Module):
                raise TypeError(f"model factory returned {type(model).__name__}, not an nn.Module")
            if cfg.weights:
                from .models import load_checkpoint

                load_checkpoint(model, cfg.weights)
        return model

    def _augmentation(self, x: torch.Tensor) -> tuple[int, bool]:
        cfg = self.config
        if not cfg.augment:
            return 0, False
        pad = cfg.crop_padding if cfg.crop_padding is not None else int(round(x.shape[-1] / 8))
        if cfg.flip is not None:
            flip = cfg.flip
        else:
            name = cfg.data.split(":", 1)[0].lower()
            flip = x.shape[1] > 1 and not name.startswith(_NO_FLIP_DATA)
        return pad, flip

    # .. the loop ..
    def fit(self) -> Path:
        """Train (or resume) and return the path of ``final.pt``."""
        cfg = self.config
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            world_size = dist.get_world_size()
        else:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            if world_size > 1 and not dist.is_available():
                raise ValueError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
        own_group = False
        if world_size > 1 and not dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
            if use_cuda:
                torch.cuda.set_device(local)
            dist.init_process_group("nccl" if use_cuda else "gloo")
            own_group = True
        try:
            with _preserve_global_rng():
                return self._fit(world_size)
        finally:
            if own_group:
                dist.destroy_process_group()

    def _fit(self, world_size: int) -> Path:
        cfg = self.config
        dist = torch.distributed
        rank = dist.get_rank() if world_size > 1 else 0
        local_rank = int(os.environ["LOCAL_RANK"]) if world_size > 1 and "LOCAL_RANK" in os.environ else None
        device = _resolve_device(cfg.device, local_rank)
        use_amp = cfg.amp and device.type == "cuda"
        channels_last = cfg.channels_last and device.type == "cuda"
        if rank == 0 and device.type != "cuda":
            for key in ("amp", "channels_last"):
                if getattr(cfg, key):
                    warnings.warn(f"{key}=true applies to CUDA only; ignored on {device}", stacklevel=3)
        if cfg.batch_size % world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the world size {world_size}")
        registry = self._registry_or_default()
        registry.defense(cfg.defense)  # an unknown name fails before the data loads
        out = Path(cfg.out)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            for stale in [*out.glob(".last.pt.*.tmp"), *out.glob(".final.pt.*.tmp")]:
                stale.unlink()  # left by a run killed while writing; the file it was replacing is intact

        x_all, y_all = self._load_tensors()
        n = x_all.shape[0]
        steps_per_epoch = n // cfg.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the {n} training samples")
        total = cfg.iterations if cfg.iterations is not None else cfg.epochs * steps_per_epoch
        schedule = LRSchedule.create(cfg.schedule, lr=cfg.lr, total_steps=total, steps_per_epoch=steps_per_epoch,
                                     milestones=cfg.milestones, milestone_unit=cfg.milestone_unit, gamma=cfg.gamma,
                                     peak=cfg.cyclic_peak)
        pad, flip = self._augmentation(x_all)

        _seed_global(cfg.seed)
        model = self._build_model().to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if rank:
            _seed_global(cfg.seed + 7919 * rank)  # per-rank noise for the defenses' own randomness
        defense = registry.build_defense(cfg.defense, **cfg.defense_params)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"model {cfg.model!r} has no trainable parameters")
        optimizer = torch.optim.SGD(params, lr=schedule(0), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov)
        scaler = torch.amp.GradScaler("cuda") if use_amp else None
        generator = torch.Generator().manual_seed(cfg.seed)
        self.model, self.defense, self.optimizer = model, defense, optimizer

        step, perm, elapsed = 0, None, 0.0
        last = out / "last.pt"
        if last.exists():
            step, perm, elapsed = self._resume(last, world_size, rank, total, model, optimizer, scaler, defense,
                                               generator)
        if world_size > 1:
            for t in model.state_dict().values():
                dist.broadcast(t, 0)
        log = _Log(out, enabled=rank == 0, tensorboard=cfg.tensorboard, resume_step=step if step else None)
        per_rank = cfg.batch_size // world_size
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        bar = None
        if rank == 0 and not cfg.quiet:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=step, desc=f"train {cfg.defense}", unit="step", dynamic_ncols=True)
        window, epoch_meter = _Meter(), _Meter()
        loop_start, loop_steps = time.perf_counter(), 0
        try:
            while step < total:
                epoch, pos = divmod(step, steps_per_epoch)
                if pos == 0 or perm is None:
                    if pos != 0:
                        raise RuntimeError("internal error: mid-epoch without the epoch's data order")
                    perm = torch.randperm(n, generator=generator)
                idx = perm[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
                xb, yb = self._batch(x_all, y_all, idx, pad, flip, generator, rank, per_rank)
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                lr = schedule(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if world_size > 1 and buffers:
                    for b in buffers:
                        dist.broadcast(b, 0)
                model.train()
                with torch.autocast(device.type, enabled=use_amp):
                    result = defense.loss(model, xb, yb, step=step)
                if not isinstance(result, DefenseOutput):
                    raise TypeError(f"defense {cfg.defense!r} returned {type(result).__name__}, not a DefenseOutput")
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(result.loss).backward()
                else:
                    result.loss.backward()
                if world_size > 1:
                    _average_gradients(params, world_size)
                if cfg.grad_clip is not None:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                step += 1
                loop_steps += 1
                window.add(result, yb, cfg.batch_size)
                epoch_meter.add(result, yb, cfg.batch_size)
                if bar is not None:
                    bar.update(1)
                epoch_end = step % steps_per_epoch == 0
                if step % cfg.log_every == 0 or step == total:
                    rec = self._record("step", window, step, epoch_end, steps_per_epoch, lr, world_size,
                                       elapsed + time.perf_counter() - loop_start)
                    log.write(rec)
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.3g}")
                    window.reset()
                if epoch_end:
                    rec = self._record("epoch", epoch_meter, step, True, steps_per_epoch, lr, world_size,
                                       elapsed + time.perf_counter() - loop_start)
                    log.write(rec)
                    epoch_meter.reset()
                if step < total and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self._checkpoint(last, step, steps_per_epoch, total, world_size, rank, model, optimizer,
                                     scaler, defense, generator, perm, schedule, elapsed + time.perf_counter()
                                     - loop_start)
            seconds = time.perf_counter() - loop_start
            self._checkpoint(last, step, steps_per_epoch, total, world_size, rank, model, optimizer, scaler,
                             defense, generator, perm, schedule, elapsed + seconds)
            final = out / "final.pt"
            if rank == 0:
                save_atomic(_to_cpu(model.state_dict()), final)
            if world_size > 1:
                dist.barrier()
        finally:
            if bar is not None:
                bar.close()
            log.close()
        self.summary = {"steps": float(loop_steps), "seconds": seconds,
                        "images_per_s": loop_steps * cfg.batch_size / seconds if seconds > 0 else 0.0}
        return final

    @staticmethod
    def _batch(x_all: torch.Tensor, y_all: torch.Tensor, idx: torch.Tensor, pad: int, flip: bool,
               generator: torch.Generator, rank: int, per_rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the global batch ``idx``, augmented with draws made for the whole batch."""
        b = idx.shape[0]
        offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator) if pad else None
        flips = torch.rand(b, generator=generator) < 0.5 if flip else None
        sl = slice(rank * per_rank, (rank + 1) * per_rank)
        x, y = x_all[idx[sl]], y_all[idx[sl]]
        if offsets is not None:
            off = offsets[sl]
            _, c, h, w = x.shape
            padded = F.pad(x, (pad, pad, pad, pad))
            rows = (off[:, 0:1] + torch.arange(h)).view(-1, 1, h, 1)
            cols = (off[:, 1:2] + torch.arange(w)).view(-1, 1, 1, w)
            x = padded[torch.arange(x.shape[0]).view(-1, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]
        if flips is not None:
            x = torch.where(flips[sl].view(-1, 1, 1, 1), x.flip(3), x)
        return x, y

    def _record(self, kind: str, meter: _Meter, step: int, epoch_end: bool, steps_per_epoch: int, lr: float,
                world_size: int, seconds: float) -> dict[str, Any]:
        values = meter.values(world_size)
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"defense {self.config.defense!r} gave a non-finite loss ({values['loss']}) "
                                     f"in the steps up to {step}")
        window = time.perf_counter() - meter.start
        rec: dict[str, Any] = {"kind": kind, "step": step,
                               "epoch": step // steps_per_epoch if epoch_end else step / steps_per_epoch,
                               "lr": lr}
        rec.update(values)
        rec["seconds"] = seconds
        rec["images_per_s"] = meter.images / window if window > 0 else 0.0
        return rec

    def _checkpoint(self, path: Path, step: int, steps_per_epoch: int, total: int, world_size: int, rank: int,
                    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, defense: Defense,
                    generator: torch.Generator, perm: torch.Tensor | None, schedule: LRSchedule,
                    elapsed: float) -> None:
        per_rank = {"rng": _global_rng_state(), "defense": _to_cpu(defense.state_dict())}
        if world_size > 1:
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, per_rank)
            ranks = gathered
        else:
            ranks = [per_rank]
        if rank == 0:
            from . import __version__

            state = {
                "format": CHECKPOINT_FORMAT,
                "version": __version__,
                "config": _normalised(self.config.to_dict()),
                "step": step,
                "epoch": step // steps_per_epoch,
                "steps_per_epoch": steps_per_epoch,
                "total_steps": total,
                "world_size": world_size,
                "model": _to_cpu(model.state_dict()),
                "optimizer": _to_cpu(optimizer.state_dict()),
                "scheduler": {"name": schedule.name, "step": step, "last_lr": schedule(max(step - 1, 0))},
                "scaler": scaler.state_dict() if scaler is not None else {},
                "data": {"generator": generator.get_state(),
                         "perm": perm.clone() if perm is not None and step % steps_per_epoch else None},
                "ranks": ranks,
                "elapsed": elapsed,
            }
            save_atomic(state, path)
        if world_size > 1:
            torch.distributed.barrier()

    def _resume(self, path: Path, world_size: int, rank: int, total: int, model: nn.Module,
                optimizer: torch.optim.Optimizer, scaler: Any, defense: Defense,
                generator: torch.Generator) -> tuple[int, torch.Tensor | None, float]:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a robustreg training checkpoint (format {CHECKPOINT_FORMAT!r})")
        diff = _config_diff(state["config"], _normalised(self.config.to_dict()))
        if diff:
            raise ValueError(f"{path} was written by a different configuration; refusing to resume "
                             f"({'; '.join(diff)}). Use another --out, or delete {path} to start over")
        if state["world_size"] != world_size:
            raise ValueError(f"{path} was written with world size {state['world_size']}, now {world_size}; "
                             f"exact resume needs the same number of processes")
        if state["total_steps"] != total:
            raise ValueError(f"{path} was written for {state['total_steps']} steps, now {total} (different data?)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        mine = state["ranks"][rank]
        defense.load_state_dict(mine["defense"])
        generator.set_state(state["data"]["generator"])
        _set_global_rng_state(mine["rng"])
        return int(state["step"]), state["data"]["perm"], float(state["elapsed"])


def _average_gradients(params: Sequence[nn.Parameter], world_size: int, bucket: int = 2**23) -> None:
    """All-reduce the mean gradient over ranks, flattened into buckets of ``bucket`` elements."""
    for p in params:
        if p.grad is None:  # every rank must contribute the same tensors
            p.grad = torch.zeros_like(p)
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        start = 0
        while start < len(grads):
            chunk, size = [], 0
            while start < len(grads) and (not chunk or size + grads[start].numel() <= bucket):
                chunk.append(grads[start])
                size += grads[start].numel()
                start += 1
            flat = torch.cat([g.reshape(-1) for g in chunk])
            torch.distributed.all_reduce(flat)
            flat /= world_size
            offset = 0
            for g in chunk:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()


def train(config: TrainConfig, *, registry: Any = None, model: Any = None, data: Any = None) -> Path:
    """Train (or resume) ``config``; returns the path of ``final.pt`` (see :class:`Trainer`)."""
    return Trainer(config, registry=registry, model=model, data=data).fit()


# --- command line -----------------------------------------------------------------------------------

_FLAGS: dict[str, str] = {  # argparse dest -> TrainConfig key
    "model": "model", "data": "data", "defense": "defense", "weights": "weights", "normalize": "normalize",
    "n_train": "n_train",
    "epochs": "epochs", "iterations": "iterations", "batch_size": "batch_size", "lr": "lr",
    "momentum": "momentum", "weight_decay": "weight_decay", "schedule": "schedule", "gamma": "gamma",
    "milestone_unit": "milestone_unit", "seed": "seed", "device": "device", "checkpoint_every": "checkpoint_every",
    "log_every": "log_every", "out": "out", "grad_clip": "grad_clip",
}


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` arguments to ``parser``."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of TrainConfig keys (flags override it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, dotted for nested (defense_params.beta=0.3); repeatable")
    parser.add_argument("--model", metavar="SPEC", help="registered model, file.py:factory or pkg.mod:factory")
    parser.add_argument("--weights", metavar="PATH", help="initial weights for the model")
    parser.add_argument("--normalize", metavar="MEAN,...:STD,...",
                        help="wrap the model in Normalize(mean, std) ('cifar10' also works)")
    parser.add_argument("--data", metavar="SPEC", help="dataset spec (train split), e.g. digits, cifar10:DIR")
    parser.add_argument("--n-train", type=int, metavar="N", help="use the first N training samples")
    parser.add_argument("--defense", metavar="NAME", help="registered defense (plain training: standard)")
    parser.add_argument("--param", dest="params", action="append", default=[], metavar="[DEFENSE.]KEY=VALUE",
                        help="a defense parameter, e.g. at.steps=10 or eps=8/255; repeatable")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, metavar="E")
    length.add_argument("--iterations", type=int, metavar="I")
    parser.add_argument("--batch-size", type=int, metavar="B", help="global batch size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--momentum", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--grad-clip", type=float, metavar="NORM")
    parser.add_argument("--schedule", choices=SCHEDULES)
    parser.add_argument("--milestones", metavar="M1,M2,...", help="lr milestones for --schedule step")
    parser.add_argument("--milestone-unit", choices=("epochs", "iterations"))
    parser.add_argument("--gamma", type=float, help="lr factor at each milestone")
    parser.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only)")
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS")
    parser.add_argument("--log-every", type=int, metavar="STEPS")
    parser.add_argument("--tensorboard", action="store_true", help="also log to DIR/tensorboard")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", metavar="DIR", help="output folder (re-run with the same DIR to resume)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML (``--config``) < explicit flags < ``--set`` overrides; then validated."""
    values: dict[str, Any] = load_config(args.config) if getattr(args, "config", None) else {}
    for dest, key in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[key] = value
    if getattr(args, "epochs", None) is not None:
        values.pop("iterations", None)
    if getattr(args, "iterations", None) is not None:
        values.pop("epochs", None)
    if getattr(args, "milestones", None):
        try:
            values["milestones"] = [float(m) for m in args.milestones.split(",") if m.strip()]
        except ValueError:
            raise ValueError(f"--milestones must be comma-separated numbers, got {args.milestones!r}") from None
    if getattr(args, "no_augment", False):
        values["augment"] = False
    for key in ("amp", "channels_last", "tensorboard", "quiet"):
        if getattr(args, key, False):
            values[key] = True
    values = apply_overrides(values, getattr(args, "overrides", []) or [])
    defense = values.get("defense", TrainConfig.defense)
    for item in getattr(args, "params", []) or []:
        key, value = _defense_param(item, defense)
        values.setdefault("defense_params", {})
        if not isinstance(values["defense_params"], dict):
            raise ValueError(f"defense_params must be a mapping, got {values['defense_params']!r}")
        values["defense_params"][key] = value
    if "out" not in values:
        raise ValueError("--out DIR is required (re-running with the same DIR resumes)")
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    """The ``robustreg train`` command: trains, prints the final checkpoint path, returns 0.

    Errors propagate (ValueError for bad input, the registry's UnknownNameError for unknown names):
    ``robustreg``'s main prints them as one line (tracebacks with ``--debug``), as :func:`main` does.
    ``args.registry`` (set by the ``robustreg`` CLI) is used when present.
    """
    final = train(config_from_args(args), registry=getattr(args, "registry", None))
    print(final)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object (``set_defaults(func=run)``)."""
    parser = subparsers.add_parser(
        "train", help="train a model with a registered defense (checkpoints, exact resume, DDP)",
        description="Train MODEL on DATA with DEFENSE; re-run with the same --out to resume from last.pt.")
    configure_parser(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m robustreg.training [train] ...``: the train command without the full CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        argv = argv[1:]
    parser = configure_parser(argparse.ArgumentParser(prog="robustreg train"))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, LookupError, OSError, FloatingPointError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"robustreg train: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

