"""The command-line side every analysis shares: model, data, attack, eps and ``--param`` arguments that
work exactly as in ``robustreg evaluate``, and loading them.

An analysis's ``configure`` calls :func:`add_analysis_args` (with what it needs), its ``run`` calls
:func:`load_model_and_data` / :func:`attack_params` / :func:`analysis_eps`; every mistake is a one-line
:class:`~robustreg.commands.UsageError` naming the flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cli_kit import (
    UsageError,
    add_image_size_args,
    add_model_data_args,
    check_device,
    check_model_fits_data,
    eps_list,
    load_dataset,
    load_model,
    norm_arg,
    param_values,
)
from ..evaluation.distributed import torchrun_env
from ..runtime import resolve_device
from ..threat import NORMS, ThreatModel

__all__ = ["ModelArg", "add_analysis_args", "analysis_eps", "attack_names", "attack_params", "load_model_and_data",
           "load_model_arg", "load_models", "model_list", "one_attack", "parse_model_arg", "record_inputs", "samples",
           "unique_names"]


def add_analysis_args(p: argparse.ArgumentParser, *, model: bool | str = True, attacks: str | None = "--attacks",
                      eps: str | None = None, n: int = 200) -> None:
    """The shared arguments: ``--model --weights --normalize`` (``model``; ``"many"``: ``--model
    SPEC[@WEIGHTS]`` repeatable, read by :func:`model_list`), ``--data --split --n`` (default ``n``
    samples), ``attacks`` (the flag; required: the core names no attack), ``--eps`` (default ``eps``),
    ``--param``, ``--norm --batch-size --device --seed --out --quiet``."""
    if model is True:
        add_model_data_args(p)
        p.set_defaults(n=n)
    elif model == "many":  # one model per --model, as --source / --target of transfer
        g = p.add_argument_group("models")
        g.add_argument("--model", action="append", metavar="SPEC[@WEIGHTS]",
                       help="model, repeatable: SPEC (its checkpoint from --weights) or SPEC@WEIGHTS")
        g.add_argument("--weights", metavar="PATH", help="checkpoint of a single --model SPEC")
        g.add_argument("--normalize", metavar="MEAN,...:STD,...", help="wrap each model in Normalize(mean, std)")
    if model is not True:
        g = p.add_argument_group("data")
        g.add_argument("--data", metavar="SPEC", help="digits, mnist:DIR, cifar10:DIR, npz:PATH, imagefolder:DIR or "
                                                     "a registered name")
        add_image_size_args(g)
        g.add_argument("--split", default="test", choices=("test", "train"), help="data split (default test)")
        g.add_argument("--n", type=int, default=n, metavar="N", help=f"the first N samples (default {n})")
    g = p.add_argument_group("attack")
    if attacks is not None:
        g.add_argument(attacks, required=True, metavar="NAME[,NAME...]",
                       help="registered attack names (`robustreg list attacks`)")
        g.add_argument("--param", action="append", default=[], metavar="[NAME.]KEY=VALUE",
                       help="attack parameter, as in `robustreg evaluate` (repeatable)")
    if eps is not None:
        g.add_argument("--eps", default=eps, metavar="E[,E...]", help=f"budgets in [0, 1] units (default {eps})")
        g.add_argument("--eps-scale", type=float, metavar="S", help="divide plain --eps numbers by S")
    g = p.add_argument_group("run")
    g.add_argument("--norm", default="linf", type=norm_arg, choices=NORMS, help="threat-model norm (default linf)")
    g.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per batch (default 256)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (CUDA when present); default: where "
                   "the model is (the CPU for a model loaded from a spec)")
    g.add_argument("--seed", type=int, default=0, help="seed of the attacks and random directions (default 0)")
    g.add_argument("--out", metavar="DIR", help="report folder (default ./robustreg-out/analyze-NAME)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def record_inputs(args: argparse.Namespace, report: dict[str, Any]) -> str:
    """Put ``--model --weights --normalize`` and ``--data --split`` into ``report`` (report.json says what
    it was computed on); return the model's label for titles: ``SPEC (checkpoint file name)``."""
    report["model"] = {"spec": args.model, "weights": args.weights, "normalize": args.normalize}
    report["data"] = {"spec": args.data, "split": args.split}
    return f"{args.model} ({Path(args.weights).name})" if args.weights else str(args.model)


def check_common(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    check_device(args.device)


def _device(args: argparse.Namespace) -> torch.device:
    """``--device``; under torchrun plain ``cuda`` (or ``auto`` with CUDA) is this rank's ``cuda:LOCAL_RANK``."""
    local = os.environ.get("LOCAL_RANK") if torchrun_env() else None
    try:
        # no --device: where a loaded model is, the CPU (resolve_device(None) alone would mean "auto")
        return resolve_device(args.device or "cpu", local_rank=int(local) if local else None)
    except ValueError as exc:
        raise UsageError(f"--device {args.device!r}: {exc}") from None


def load_model_and_data(args: argparse.Namespace, spec: str | None = None, weights: str | None = None,
                        *, flag: str = "--model") -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model in eval mode on ``--device``, x, y): the first ``--n`` samples of ``--data``.

    ``spec``/``weights`` default to ``--model``/``--weights`` (``--source``/``--target`` pass their own)."""
    check_common(args)
    spec = spec if spec is not None else args.model
    if spec is None:
        raise UsageError(f"{flag} is required")
    if args.data is None:
        raise UsageError("--data is required")
    view = argparse.Namespace(**{**vars(args), "weights": weights if spec is not args.model else args.weights,
                                 "normalize": getattr(args, "normalize", None)})
    model = load_model(view, spec)
    data = load_dataset(args, args.data)
    if args.n > len(data):
        raise UsageError(f"--n {args.n}: must be between 1 and the size of {args.data!r} ({len(data)} samples)")
    model = check_model_fits_data(model, data, spec, args.data, registry=args.registry,
                                  any_input_size=getattr(args, "any_input_size", False),
                                  output=getattr(args, "output", None))
    device = _device(args)
    x, y = data.tensors(args.n)
    return model.to(device).eval(), x.to(device), y.to(device)


def samples(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``--n`` samples of ``--data`` on ``--device`` (for analyses whose models load separately)."""
    check_common(args)
    if args.data is None:
        raise UsageError("--data is required")
    data = load_dataset(args, args.data)
    if args.n > len(data):
        raise UsageError(f"--n {args.n}: must be between 1 and the size of {args.data!r} ({len(data)} samples)")
    device = _device(args)
    x, y = data.tensors(args.n)
    return x.to(device), y.to(device)


def attack_names(args: argparse.Namespace, flag: str = "--attacks") -> list[str]:
    """The registered attack names of ``flag`` (each checked, close matches on a typo)."""
    text = getattr(args, flag.lstrip("-").replace("-", "_"))
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise UsageError(f"{flag} must name at least one attack, got {text!r}")
    for name in names:
        try:
            args.registry.attack(name)
        except LookupError as exc:
            raise UsageError(f"{flag} {name!r}: {exc}") from None
    return names


def attack_params(args: argparse.Namespace, names: Sequence[str], flag: str = "--attacks") -> dict[str, dict[str, Any]]:
    """``--param`` values per attack of ``names`` (typed by each attack's declaration, as in evaluate)."""
    owners = {name: args.registry.attack(name).params for name in names}
    values = param_values(args.param, owners, where=flag)
    return {name: values.get(name, {}) for name in names}


def analysis_eps(args: argparse.Namespace) -> list[float]:
    """``--eps`` as budgets in [0, 1] units (``--eps-scale`` applied), as in evaluate."""
    return eps_list(args.eps, args.eps_scale)


def model_list(args: argparse.Namespace, flag: str = "--model") -> list[tuple[str, str, str | None]]:
    """``--model`` (repeatable, see :func:`add_analysis_args`; a comma list also works) as one or more models,
    each ``(label, spec, weights)``: ``SPEC`` (its checkpoint from ``--weights``) or ``SPEC@WEIGHTS``
    (analyses that compare models side by side).  The label is the checkpoint's file stem (else the spec),
    made unique."""
    given = getattr(args, flag.lstrip("-").replace("-", "_"))
    if not given:
        raise UsageError(f"{flag} is required")
    text = ",".join(given) if isinstance(given, list) else given
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise UsageError(f"{flag} must name at least one model, got {text!r}")
    if args.weights is not None and (len(parts) > 1 or "@" in text):
        raise UsageError(f"--weights {args.weights!r}: with several models give each its checkpoint in {flag} "
                         f"as SPEC@WEIGHTS, got {flag} {text!r}")
    out: list[tuple[str, str, str | None]] = []
    for part in parts:
        spec, at, weights = part.partition("@")
        if not spec or (at and not weights):
            raise UsageError(f"{flag} {text!r}: each model is SPEC or SPEC@WEIGHTS, got {part!r}")
        path = weights if at else args.weights
        label = Path(path).stem if path else spec
        taken = {o[0] for o in out}
        unique, k = label, 2
        while unique in taken:
            unique, k = f"{label}#{k}", k + 1
        out.append((unique, spec, path))
    return out


def load_models(args: argparse.Namespace, flag: str = "--model"
                ) -> tuple[list[tuple[str, nn.Module]], torch.Tensor, torch.Tensor]:
    """([(label, model in eval mode)] of :func:`model_list`, x, y): every model checked against ``--data``."""
    models: list[tuple[str, nn.Module]] = []
    xy: list[torch.Tensor] = []
    for label, spec, weights in model_list(args, flag):
        view = argparse.Namespace(**{**vars(args), "model": spec, "weights": weights})
        model, *xy = load_model_and_data(view, flag=flag)
        models.append((label, model))
    return models, xy[0], xy[1]


def one_attack(args: argparse.Namespace, analysis: str, flag: str = "--attacks") -> tuple[str, Any]:
    """(name, Attack) for analyses that take exactly one attack at one ``--eps``: built from the registry with
    its defaults, ``--param`` values and ``--seed``, as evaluate builds it."""
    names = attack_names(args, flag)
    if len(names) != 1:
        raise UsageError(f"{flag} {getattr(args, flag.lstrip('-').replace('-', '_'))!r}: {analysis} takes one "
                         f"attack, got {len(names)}")
    eps = analysis_eps(args)
    if len(eps) != 1:
        raise UsageError(f"--eps {args.eps!r}: {analysis} takes one budget, got {len(eps)}")
    name = names[0]
    params = {**dict(args.registry.attack(name).defaults), "seed": args.seed,
              **attack_params(args, names, flag)[name]}
    try:
        return name, args.registry.build_attack(name, ThreatModel(args.norm, eps[0]), **params)
    except ValueError as exc:
        raise UsageError(f"{flag} {name!r} at --eps {args.eps!r}: {exc}") from exc


@dataclass(frozen=True)
class ModelArg:
    """One ``SPEC[@WEIGHTS]`` value: the model spec, its checkpoint (or None) and the text as given."""

    spec: str
    weights: str | None
    text: str

    @property
    def name(self) -> str:
        """The model's short name in tables: the checkpoint's file stem, else the spec."""
        return Path(self.weights).stem if self.weights else self.spec


def parse_model_arg(text: str, flag: str) -> ModelArg:
    """``SPEC[@WEIGHTS]`` (a registered model, file.py:factory or pkg.mod:factory; a checkpoint path)."""
    spec, at, weights = text.strip().partition("@")
    if not spec or (at and not weights):
        raise UsageError(f"{flag} {text!r}: must be SPEC or SPEC@WEIGHTS (a model spec, then a checkpoint path)")
    if weights and not Path(weights).is_file():
        raise UsageError(f"{flag} {text!r}: weights file {weights!r} does not exist")
    return ModelArg(spec, weights or None, text.strip())


def load_model_arg(args: argparse.Namespace, model: ModelArg,
                   flag: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model, x, y) of one ``SPEC[@WEIGHTS]`` (:func:`load_model_and_data`), its errors
    naming ``flag``."""
    try:
        return load_model_and_data(args, model.spec, model.weights, flag=flag)
    except UsageError as exc:
        if str(exc).startswith(("--n ", "--data ", "--batch-size ", "--device ")):
            raise
        raise UsageError(f"{flag} {model.text!r}: {exc}") from None


def unique_names(models: Sequence[ModelArg]) -> list[str]:
    """Short names, made distinct with "#2", "#3" where two differ only in their folder."""
    names: list[str] = []
    for m in models:
        name, k = m.name, 1
        while name in names:
            k += 1
            name = f"{m.name}#{k}"
        names.append(name)
    return names
