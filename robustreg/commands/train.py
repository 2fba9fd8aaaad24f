"""``robustreg train``: a TrainConfig from YAML (``--config``), flags, ``--set KEY=VALUE`` and ``--param``.

Precedence: YAML < explicit flags < ``--set`` overrides; ``--param [DEFENSE.]KEY=VALUE`` sets one of the
defense's declared parameters (the core's one grammar, :func:`robustreg.params.parse_assignment`,
coerced by the declaration's :meth:`robustreg.Param.parse`).  The config is validated by
:class:`~robustreg.training.TrainConfig` and trained by :func:`~robustreg.training.train`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..cli_kit import (
    MAX_SEED,
    UsageError,
    add_any_input_size,
    add_image_size_args,
    check_device,
    check_model_fits_data,
    check_out_folder,
    load_dataset,
    load_model,
    param_values,
)
from ..registry import Registry
from ..schedules import SCHEDULES
from ..training.config import TrainConfig
from ..training.loop import train

__all__ = ["HELP", "apply_overrides", "config_from_args", "configure", "configure_parser", "expand_variables",
           "load_config", "parse_set_value", "resume_hint", "run"]

HELP = "train a model with a registered defense (checkpoints, exact resume, DDP)"
DESCRIPTION = "Train MODEL on DATA with DEFENSE; re-run with the same --out to resume from last.pt."

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FRACTION = re.compile(rf"^\s*({_NUMBER})\s*/\s*({_NUMBER})\s*$")
_FLOAT = re.compile(rf"^\s*{_NUMBER}\s*$")


def _numbers(value: Any) -> Any:
    """Strings that are numbers YAML 1.1 leaves as text (``5e-4``) or fractions (``8/255``) -> float."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if not isinstance(value, str):
        return value
    match = _FRACTION.match(value)
    if match:
        num, den = float(match.group(1)), float(match.group(2))
        if den == 0:
            raise ValueError(f"division by zero in value {value!r}")
        return num / den
    return float(value) if _FLOAT.match(value) else value


def parse_set_value(text: str) -> Any:
    """A ``--set`` config value: YAML (``0.3``, ``true``, ``[75, 90]``, ``null``); ``8/255``, ``5e-4`` -> float.

    Config keys may hold lists and mappings, so this reads YAML; ``--param`` values are typed by the
    defense's declaration instead (:meth:`robustreg.Param.parse`).
    """
    try:
        return _numbers(yaml.safe_load(text))
    except yaml.YAMLError:
        return _numbers(text)


_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_variables(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in the strings of a config, from the environment.

    The papers' configs name their data as ``cifar10:${ROBUSTREG_DATA:-data}/cifar10``; an unset
    variable without a default is a UsageError naming it.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: expand_variables(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_variables(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise UsageError(f"the config uses ${{{name}}}, which is not set (export it, or write "
                             f"${{{name}:-DEFAULT}})")
        return default
    return _VARIABLE.sub(one, value)


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML training config into a dict (keys are :class:`TrainConfig` fields); ``${VAR}`` and
    ``${VAR:-default}`` in its strings come from the environment (:func:`expand_variables`)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        with p.open() as fh:
            values = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {str(p)!r} is not valid YAML: {_yaml_problem(exc)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping of keys to values, got {type(values).__name__}")
    return _numbers(expand_variables(values))


def _yaml_problem(exc: Exception) -> str:
    """``expected ',' or ']' at line 3, column 1`` from a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; dotted keys reach into mappings (``defense_params.beta=0.3``)."""
    out: dict[str, Any] = json.loads(json.dumps(dict(values), default=str)) if values else {}
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
        target[parts[-1]] = parse_set_value(raw)
    return out


def _defense_params(items: Sequence[str], defense: str, registry: Any) -> dict[str, Any]:
    """``--param [DEFENSE.]KEY=VALUE`` items, typed by the defense's declared parameters."""
    if not items:
        return {}
    if registry is None:
        registry = Registry.create()
    return param_values(items, {defense: registry.defense(defense).params}, where="--defense").get(defense, {})


_FLAGS: dict[str, str] = {  # argparse dest -> TrainConfig key
    "model": "model", "data": "data", "defense": "defense", "weights": "weights", "normalize": "normalize",
    "n_train": "n_train", "resize": "resize", "center_crop": "center_crop",
    "epochs": "epochs", "iterations": "iterations", "batch_size": "batch_size", "lr": "lr",
    "momentum": "momentum", "weight_decay": "weight_decay", "schedule": "schedule", "gamma": "gamma",
    "milestone_unit": "milestone_unit", "seed": "seed", "device": "device", "checkpoint_every": "checkpoint_every",
    "log_every": "log_every", "out": "out", "grad_clip": "grad_clip", "amp_dtype": "amp_dtype",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` arguments to ``parser``."""
    add = parser.add_argument
    add("--config", metavar="FILE.yaml", help="YAML file of TrainConfig keys (flags override it)")
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, dotted for nested (defense_params.beta=0.3); repeatable")
    add("--model", metavar="SPEC", help="registered model, file.py:factory or pkg.mod:factory")
    add("--weights", metavar="PATH", help="initial weights for the model")
    add("--normalize", metavar="MEAN,...:STD,...", help="wrap the model in Normalize(mean, std) ('cifar10' also works)")
    add("--data", metavar="SPEC", help="dataset spec (train split), e.g. digits, cifar10:DIR")
    add("--n-train", type=int, metavar="N", help="use the first N training samples")
    add_image_size_args(parser)
    add_any_input_size(parser)
    add("--defense", metavar="NAME", help="registered defense (plain training: standard)")
    add("--param", dest="params", action="append", default=[], metavar="[DEFENSE.]KEY=VALUE",
        help="a defense parameter, e.g. at.steps=10 or eps=8/255; repeatable")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, metavar="E")
    length.add_argument("--iterations", type=int, metavar="I")
    add("--batch-size", type=int, metavar="B", help="global batch size")
    add("--lr", type=float)
    add("--momentum", type=float)
    add("--weight-decay", type=float)
    add("--grad-clip", type=float, metavar="NORM")
    add("--schedule", choices=SCHEDULES)
    add("--milestones", metavar="M1,M2,...", help="lr milestones for --schedule step")
    add("--milestone-unit", choices=("epochs", "iterations"))
    add("--gamma", type=float, help="lr factor at each milestone")
    add("--no-augment", action="store_true", help="no random crop / flip")
    add("--seed", type=int)
    add("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    add("--amp", action="store_true", help="mixed precision (float16: CUDA only; bfloat16: CUDA or CPU)")
    add("--amp-dtype", choices=("float16", "bfloat16"), help="the autocast dtype of --amp (default float16)")
    add("--channels-last", action="store_true", help="channels_last memory format (CUDA only)")
    add("--checkpoint-every", type=int, metavar="STEPS")
    add("--log-every", type=int, metavar="STEPS")
    add("--tensorboard", action="store_true", help="also log to DIR/tensorboard")
    add("--quiet", action="store_true", help="no progress bar")
    add("--out", metavar="DIR", help="output folder (re-run with the same DIR to resume)")
    parser.set_defaults(on_interrupt=resume_hint)


def resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted ``train`` says: where the same command resumes from (``OUT/last.pt``, written every
    ``checkpoint_every`` steps), or that no checkpoint was written yet."""
    try:
        out = Path(config_from_args(args).out)
    except Exception:  # the interrupt came before the config could be read: nothing was written
        return "run the same command again to start"
    last = out / "last.pt"
    if last.is_file():
        return f"run the same command again to resume from {last}"
    return (f"no checkpoint in {out} yet (one every checkpoint_every steps); run the same command again to "
            f"start over")


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """:func:`configure`, returning ``parser``."""
    configure(parser)
    return parser


def _flag_values(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (from YAML) updated by the flags given on the command line."""
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
    return values


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML (``--config``) < explicit flags < ``--set`` overrides < ``--param``; then validated."""
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {seed}")
    try:
        loaded = load_config(args.config) if getattr(args, "config", None) else {}
    except ValueError as exc:
        raise UsageError(f"--config: {exc}") from exc
    values = _flag_values(args, loaded)
    values = apply_overrides(values, getattr(args, "overrides", []) or [])
    defense = values.get("defense", TrainConfig.defense)
    params = _defense_params(getattr(args, "params", []) or [], defense, getattr(args, "registry", None))
    if params:
        values.setdefault("defense_params", {})
        if not isinstance(values["defense_params"], dict):
            raise ValueError(f"defense_params must be a mapping, got {values['defense_params']!r}")
        values["defense_params"].update(params)
    if "out" not in values:
        raise ValueError("--out DIR is required (re-running with the same DIR resumes)")
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    """The ``robustreg train`` command: trains, prints the final checkpoint path, returns 0.

    Errors propagate (ValueError for bad input, the registry's UnknownNameError for unknown names):
    ``robustreg``'s main (:func:`robustreg.cli.main`) prints them as one line (tracebacks with ``--debug``).
    ``args.registry`` (set by the ``robustreg`` CLI) is used when present.
    """
    config = config_from_args(args)
    registry = getattr(args, "registry", None)
    if registry is None:
        registry = Registry.create()
    _check_before_training(config, registry, getattr(args, "any_input_size", False))
    try:
        final = train(config, registry=registry)
    except FloatingPointError as exc:  # the loss became NaN / inf: the run's hyperparameters, not a bug
        raise UsageError(f"training diverged: {exc}; lower the learning rate (--lr {config.lr:g}) or set "
                         f"--grad-clip") from exc
    print(final)
    return 0


def _check_before_training(config: TrainConfig, registry: Any, any_input_size: bool = False) -> None:
    """``--device``, ``--out`` and the model against the data (one forward, trainable parameters) before any
    work, each a one-line UsageError naming the flag."""
    check_device(config.device if config.device != "auto" else None)
    check_out_folder("--out", config.out)
    given = argparse.Namespace(weights=config.weights, normalize=config.normalize, registry=registry,
                               resize=config.resize, center_crop=config.center_crop)
    model = load_model(given, config.model, **config.model_params)
    data = load_dataset(given, config.data, "train")
    check_model_fits_data(model, data, config.model, config.data, trainable=True, registry=registry,
                          any_input_size=any_input_size)
