"""The command line's argument groups and their checks: model and data, the run (``--out``, ``--state``, ``--seed``,
``--device`` ...), speed, adaptive evaluation and image size; each mistake a one-line :class:`~robustreg.UsageError`
naming the flag."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..evaluation.config import ADAPTIVE_BUDGET
from ..params import parse_value
from ..runtime import AMP_CHOICES, SpeedOptions
from ..threat import NORMS, canonical_norm

DEFAULT_OUT = "robustreg-out"


def add_model_data_args(p: argparse.ArgumentParser) -> None:
    """``--model --weights --normalize --data --split --n`` (read by :func:`run_evaluation`)."""
    g = p.add_argument_group("model and data")
    g.add_argument("--model", metavar="SPEC", help="registered model name, file.py:factory or pkg.mod:factory")
    g.add_argument("--weights", metavar="PATH", help="checkpoint to load into the model")
    g.add_argument("--normalize", metavar="MEAN,...:STD,...",
                   help="wrap the model in Normalize(mean, std) ('cifar10' also works)")
    g.add_argument("--data", metavar="SPEC", help="digits, digits28, mnist:DIR, cifar10:DIR, cifar100:DIR, "
                                                 "svhn:DIR, npz:PATH, imagefolder:DIR or a registered name")
    add_image_size_args(g)
    g.add_argument("--split", default="test", choices=("test", "train"), help="data split (default test)")
    g.add_argument("--n", type=int, metavar="N", help="evaluate the first N samples (default all)")
    add_any_input_size(g)
    add_model_output_args(g)


def add_any_input_size(p: Any) -> None:
    """``--any-input-size``: run a registered model on data of another shape than it is registered for."""
    p.add_argument("--any-input-size", action="store_true",
                   help="allow data of another shape than the registered model's input (a model that takes any size)")


def add_model_output_args(g: Any) -> None:
    """``--model-arg NAME=VALUE`` (repeatable: the model factory's keyword arguments) and ``--output KEY|INDEX``
    (where the logits are in a model's dict or tuple output), on a parser or an argument group."""
    g.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="keyword argument of the model's factory, read like --param values (repeatable), "
                        "e.g. --model-arg num_classes=10")
    g.add_argument("--output", metavar="KEY|INDEX",
                   help="the logits in a model output that is a dict (KEY) or a tuple (INDEX); a Hugging Face "
                        "output's .logits are used without it")


def model_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--model-arg NAME=VALUE`` texts -> keyword arguments (values read as ``--param`` values are)."""
    out: dict[str, Any] = {}
    for text in getattr(args, "model_arg", None) or []:
        name, sep, value = text.partition("=")
        if not sep or not name.strip().isidentifier():
            raise UsageError(f"--model-arg must be NAME=VALUE with NAME a Python identifier, got {text!r}")
        if name.strip() in out:
            raise UsageError(f"--model-arg {text!r}: {name.strip()} is given twice")
        out[name.strip()] = parse_value(value)
    return out


def _resume_hint(args: argparse.Namespace) -> str:
    state = Path(args.state or Path(args.out or DEFAULT_OUT) / "state.pt")
    shards = state.parent.glob(f"{state.stem}.rank*{state.suffix}")  # a torchrun run's per-rank records
    if state.is_file() or any(shards):
        return f"run the same command again to resume from {state}"
    return f"no state in {state} yet (it is written after each batch); run the same command again to start over"


def start_over_hint(args: argparse.Namespace) -> str:
    """What an interrupted command that keeps no state says (its ``on_interrupt``)."""
    return "this command keeps no state between runs; run the same command again to start over"


def add_run_args(p: argparse.ArgumentParser) -> None:
    """``--norm --eps-scale --batch-size --device --seed --out --state --keep-state --overwrite --quiet --no-check``
    and the speed options (:func:`add_speed_args`).

    An interrupted run of a command with these arguments says how to resume it.
    """
    g = p.add_argument_group("run")
    g.add_argument("--norm", default="linf", type=norm_arg, choices=NORMS, help="threat-model norm (default linf)")
    g.add_argument("--eps-scale", type=float, metavar="S",
                   help="divide plain --eps numbers (not fractions) by S: --eps 8 --eps-scale 255")
    g.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per attack call (default 256)")
    g.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or auto (CUDA when present); default: where the model is "
                        "(the CPU for a model loaded from a spec)")
    g.add_argument("--seed", type=int, default=0, help="seed passed to every attack (default 0)")
    g.add_argument("--out", metavar="DIR", help=f"report folder (default ./{DEFAULT_OUT})")
    g.add_argument("--state", metavar="PATH", help="state file for resuming (default OUT/state.pt)")
    g.add_argument("--keep-state", action="store_true", help="keep the state file after a finished run")
    g.add_argument("--save-adv", metavar="DIR", help="keep every cell's adversarial examples with their sample indices "
                   "in DIR (one .pt per batch, a manifest.json; robustreg.evaluation.load_adversarial reads them)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace a finished report in --out (default: a report of another configuration is "
                        "refused, one of the same configuration is not recomputed)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--no-check", action="append", default=[], metavar="NAME", type=check_name,
                   help="turn off one automatic check (repeatable; reported as skipped; see docs/checks.md)")
    add_speed_args(p)
    p.set_defaults(on_interrupt=_resume_hint)


def add_speed_args(p: argparse.ArgumentParser) -> None:
    """``--amp --channels-last --compile --cudnn-benchmark`` (:class:`robustreg.runtime.SpeedOptions`; each off
    by default; the verdicts stay float32)."""
    g = p.add_argument_group("speed (each off by default; clean and adversarial verdicts are always float32)")
    g.add_argument("--amp", default="off", choices=AMP_CHOICES,
                   help="bf16: the attacks' forward/backward under bf16 autocast (CUDA and CPU; default off)")
    g.add_argument("--channels-last", action="store_true", help="model weights and attack inputs in channels_last")
    g.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the model for the attack loops (BACKEND default inductor)")
    g.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark during the run (no effect off CUDA)")


def speed_options(args: argparse.Namespace) -> SpeedOptions:
    """The :func:`add_speed_args` values as :class:`robustreg.runtime.SpeedOptions` (all off when a command
    has none); a bad value is a one-line UsageError naming the flag."""
    amp = getattr(args, "amp", "off")
    backend = getattr(args, "compile", None)
    try:
        return SpeedOptions(amp, bool(getattr(args, "channels_last", False)),
                            False if backend is None else backend, bool(getattr(args, "cudnn_benchmark", False)))
    except ValueError as exc:
        flag = "--compile" if str(exc).startswith("compile") else "--amp"
        value = backend if flag == "--compile" else amp
        raise UsageError(f"{flag} {value!r}: {exc}") from None


def check_name(text: str) -> str:
    """``--no-check NAME``: a name; it is looked up among the registered checks (a plugin may add some) when
    the run is planned, and an unknown one is a one-line error with close matches."""
    return text.strip()


def check_run_args(args: argparse.Namespace) -> None:
    """The :func:`add_run_args` values argparse cannot check itself."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.eps_scale is not None and not (math.isfinite(args.eps_scale) and args.eps_scale > 0):
        raise UsageError(f"--eps-scale must be a finite number > 0, got {args.eps_scale}")
    check_device(args.device)
    speed_options(args)
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {args.seed}")
    check_out_folder("--out", args.out)
    check_out_folder("--save-adv", getattr(args, "save_adv", None))


MAX_SEED = 2**63 - 1


def norm_arg(text: str) -> str:
    """``--norm``'s type: any spelling of a norm (Linf, inf, L2, ...) as its canonical name; anything else
    unchanged, for argparse's ``choices`` to refuse with the list."""

    try:
        return canonical_norm(text)
    except ValueError:
        return text


def check_device(device: str | None, flag: str = "--device") -> None:
    """``cpu``, ``auto``, ``cuda`` or ``cuda:N`` -- and CUDA (device N) present when asked for."""
    if device is None or device in ("cpu", "auto"):
        return
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise UsageError(f"{flag} must be cpu, cuda, cuda:N or auto, got {device!r}")

    if not torch.cuda.is_available():
        raise UsageError(f"{flag} {device!r}: CUDA is not available on this machine (use --device cpu or auto)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"{flag} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_out_folder(flag: str, out: str | None) -> None:
    """An output folder given on the command line must not be an existing file."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"{flag} {out!r} is a file, not a folder")


def add_adaptive_args(p: argparse.ArgumentParser) -> None:
    """``--adaptive --adaptive-budget``: run the remedies of the checks that warn (:mod:`robustreg.remedies`)."""

    g = p.add_argument_group("adaptive evaluation")
    g.add_argument("--adaptive", action="store_true",
                   help="when a check warns, run its remedies (`robustreg list remedies`) on the points still "
                        "standing, check again, and report before -> after")
    g.add_argument("--adaptive-budget", type=float, default=ADAPTIVE_BUDGET, metavar="P",
                   help=f"forward + backward passes per sample the remedies may spend at each eps "
                        f"(default {ADAPTIVE_BUDGET})")


def adaptive_options(args: argparse.Namespace) -> dict[str, Any]:
    budget = adaptive_budget(args)
    return {} if budget is None else {"adaptive": True, "adaptive_budget": budget}


def adaptive_budget(args: argparse.Namespace) -> float | None:
    """The remedies' budget when ``--adaptive`` is on (checked), else None."""
    if not getattr(args, "adaptive", False):
        return None
    budget = args.adaptive_budget
    if not 0 < budget < float("inf"):
        raise UsageError(f"--adaptive-budget {budget!r}: must be a positive finite number of passes per sample")
    return float(budget)


# --- --resize / --center-crop: the image size of an imagefolder:DIR dataset, applied as each image is read ---
# RobustBench's ImageNet protocol is --resize 256 --center-crop 224 (the shorter side scaled to 256, then the
# central 224 x 224).  Other datasets have one size already; the flags are refused for them.


def add_image_size_args(g: Any) -> None:
    """``--resize`` and ``--center-crop`` on a parser or an argument group."""
    g.add_argument("--resize", type=int, metavar="N",
                   help="imagefolder:DIR only: scale each image's shorter side to N pixels (bilinear, antialiased) "
                        "before --center-crop; RobustBench's ImageNet protocol: --resize 256 --center-crop 224")
    g.add_argument("--center-crop", type=int, metavar="N",
                   help="imagefolder:DIR only: keep the central N x N pixels of each image (after --resize)")
