"""The kit a ``robustreg`` command is built with: argument groups, ``--eps`` and ``--param`` parsing,
loading the model and data with one-line errors naming the flag, and running one evaluation.

A public module of its own, beside :mod:`robustreg`'s ``__all__`` rather than in it: a plugin's command
(the AutoAttack adapter's ``autoattack``, the minimal-norm plugin's ``curve``) imports
``robustreg.cli_kit`` exactly as the core's own commands (:mod:`robustreg.commands`) do, and a plugin
that only registers attacks never loads argparse helpers.  Its errors are :class:`robustreg.UsageError`
(``robustreg`` reports them as one line, exit status 2).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import torch

from .data import load_data
from .data.first import first_images
from .errors import CheckpointError, ModelCodeError, UsageError, UserError
from .evaluation import evaluate
from .evaluation.config import ADAPTIVE_BUDGET, Mode, eps_values, mode_option, plan_attacks
from .evaluation.distributed import SINGLE, process_group, torchrun_env
from .evaluation.probe import probe_model
from .evaluation.state import report_identity, run_identity
from .models import build_model
from .models.outputs import logits_model
from .output_folders import existing_report, output_folders, refresh_rendered
from .params import ParamError, ParamSet, canonical_name, parse_assignment, parse_value
from .report import render_table
from .runtime import AMP_CHOICES, SpeedOptions, model_device, resolve_device
from .threat import NORMS, canonical_norm, parse_eps

T = TypeVar("T")

__all__ = [
    "DEFAULT_OUT",
    "MAX_SEED",
    "UsageError",
    "adaptive_budget",
    "adaptive_options",
    "add_adaptive_args",
    "add_any_input_size",
    "add_image_size_args",
    "add_model_data_args",
    "add_model_output_args",
    "add_run_args",
    "add_speed_args",
    "check_device",
    "check_model_fits_data",
    "check_name",
    "check_out_folder",
    "check_run_args",
    "eps_list",
    "in_process_group",
    "load_dataset",
    "load_model",
    "model_args",
    "norm_arg",
    "param_values",
    "run_evaluation",
    "sized",
    "speed_options",
    "start_over_hint",
]

DEFAULT_OUT = "robustreg-out"


# --------------------------------------------------------------------------------------------
# argument groups
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------
def eps_list(text: str, scale: float | None = None, *, flag: str = "--eps") -> list[float]:
    """``"8/255,0.1"`` -> budgets in [0, 1] units; ``scale`` divides plain numbers (not fractions).

    ``scale`` (``--eps-scale``) must be a finite number > 0: ``inf`` would turn every budget into 0.
    """
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise UsageError(f"--eps-scale must be a finite number > 0, got {scale}")
    values = []
    for part in text.split(","):
        if part.strip():
            try:
                values.append(parse_eps(part, scale=None if "/" in part else scale))
            except ValueError as exc:
                raise UsageError(f"{flag} {text!r}: {exc}") from None
    if not values:
        raise UsageError(f"{flag} must list at least one value, got {text!r}")
    return values


def _typed(params: ParamSet | None, owner: str, key: str, text: str) -> Any:
    if params is None:  # nothing to check against (e.g. compare without a native attack): a best guess
        return parse_value(text)
    if key in params:
        return params[key].parse(owner, text)
    raise params.unknown_error(owner, key)


def _declared_name(params: ParamSet | None, owner: str, key: str, aliases: Mapping[str, Any] | None) -> str:
    """``key`` under its declared name: a toolkit's name (``alpha``) is read as ours (``step_size``)."""

    return key if params is None else canonical_name(params, owner, key, aliases)


def param_values(texts: Iterable[str], owners: Mapping[str, ParamSet | None], *, where: str,
                 flag: str = "--param", aliases: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``--param [NAME.]KEY=VALUE`` texts -> ``{owner: {key: typed value}}``.

    The grammar is :func:`robustreg.params.parse_assignment`; each value is coerced by its owner's
    declared :meth:`robustreg.Param.parse` (an unknown key gets the declaration's close matches).
    ``owners``: the declaration of every name a text may give (None: none to check against, values
    read by :func:`robustreg.params.parse_value`); a text without ``NAME.`` belongs to the only owner
    (it must name one when there are several).  ``where``: the flag that chose the
    owners, for the error when a text names another (``--attacks``).  A key may be a toolkit's name of a
    declared parameter (``pgd.alpha`` is ``pgd.step_size``; ``aliases``: :meth:`robustreg.Registry.param_aliases`,
    besides the owner's own ``Param.toolkit`` names); the value is keyed by the declared name.  Every error is a
    UsageError.
    """
    out: dict[str, dict[str, Any]] = {}
    for text in texts:
        try:
            owner, key, value = parse_assignment(text, flag=flag)
            if owner is None and len(owners) == 1:
                owner = next(iter(owners))
            if owner is None:
                raise UsageError(f"{flag} {text!r} must name its owner, NAME.KEY=VALUE, with NAME one of "
                                 f"{', '.join(owners)}")
            if owner not in owners:
                raise UsageError(f"{flag} {text!r}: {owner!r} is not in {where} ({', '.join(owners)})")
            key = _declared_name(owners[owner], owner, key, aliases)
            if key in out.get(owner, {}):
                raise UsageError(f"{flag} {text!r}: {owner}.{key} is already given (under this or another name)")
            out.setdefault(owner, {})[key] = _typed(owners[owner], owner, key, value)
        except ParamError as exc:
            raise UsageError(f"{flag} {text!r}: {exc}") from None
    return out


# --------------------------------------------------------------------------------------------
# running an evaluation
# --------------------------------------------------------------------------------------------
def _check_file(flag: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{flag} {path!r}: no such file")


def load_model(args: argparse.Namespace, model_spec: str, **params: Any) -> Any:
    """``build_model`` with the ``--weights`` / ``--normalize`` values; every failure a one-line UsageError
    naming the flag (the user's own model code raising: its file and line)."""

    _check_file("--weights", args.weights)
    params = {**model_args(args), **params}
    try:
        return build_model(model_spec, weights=args.weights, normalize=args.normalize, registry=args.registry,
                           **params)
    except CheckpointError as exc:
        raise UsageError(f"--weights {args.weights!r}: {exc}") from exc
    except (UserError, LookupError, ImportError, OSError, ValueError, TypeError) as exc:
        # ValueError: a model's constructor or the checkpoint check refusing a value; TypeError: only the
        # factory refusing the parameters the user gave (otherwise a bug, shown as one)
        if isinstance(exc, TypeError) and not isinstance(exc, UserError) and not params:
            raise
        raise UsageError(f"--model {model_spec!r}: {exc}") from exc


def load_dataset(args: argparse.Namespace, data_spec: str, split: str | None = None) -> Any:
    """``load_data(data_spec, split)``; a failure or an empty dataset is a one-line UsageError naming ``--data``."""

    try:
        data = load_data(data_spec, split or args.split, registry=args.registry)
    except (UserError, LookupError, ValueError, OSError) as exc:
        raise UsageError(f"--data {data_spec!r}: {exc}") from exc
    data = sized(data, args, data_spec)
    if len(data) == 0:
        raise UsageError(f"--data {data_spec!r}: the {split or args.split} split holds no samples")
    return data


def check_model_fits_data(model: Any, data: Any, model_spec: str, data_spec: str, *, trainable: bool = False,
                          registry: Any = None, any_input_size: bool = False, output: Any = None) -> Any:
    """:func:`robustreg.evaluation.probe.probe_model` on the first samples of ``data``, before any work; a
    mismatch is a UsageError naming ``--model`` and ``--data`` (and the input shape a registered model expects).

    A registered model's ``input_shape`` must be the data's (a model with adaptive pooling runs on 31x31
    images as well, silently evaluating something else) unless ``any_input_size`` (``--any-input-size``).
    Returns the model as the run uses it: reduced to its logits by ``output`` (``--output``) or, for a
    Hugging Face-style output, its ``.logits`` (:func:`robustreg.models.outputs.logits_model`)."""

    count = min(2, len(data[0]) if isinstance(data, (tuple, list)) else len(data))
    x, y = data.tensors(count) if hasattr(data, "tensors") else (data[0][:count], data[1][:count])
    expects = _expected_input(model_spec, registry)
    if expects and not any_input_size and expects != _shape(x):
        raise UsageError(f"--model {model_spec!r} expects input {expects} (its registered input_shape), got --data "
                         f"{data_spec!r} of shape {_shape(x)}; give data of that shape, or --any-input-size for a "
                         f"model that takes any size")
    try:
        model = logits_model(model, output, x[:1].to(model_device(model)))
        probe_model(model, x, y, num_classes=getattr(data, "num_classes", None), trainable=trainable)
    except (UserError, ValueError, TypeError) as exc:
        if expects and isinstance(exc, ModelCodeError) and expects != _shape(x):
            raise UsageError(f"--model {model_spec!r} expects input {expects}, got --data {data_spec!r} of shape "
                             f"{_shape(x)}: {exc}") from exc
        raise UsageError(f"--model {model_spec!r} does not fit --data {data_spec!r}: {exc}") from exc
    return model


def _shape(x: Any) -> str:
    return "x".join(str(d) for d in x.shape[1:])


def _expected_input(model_spec: str, registry: Any) -> str | None:
    entries = registry.entries("models") if registry is not None else {}
    spec = entries.get(model_spec)
    shape = getattr(spec, "input_shape", None)
    return "x".join(str(d) for d in shape) if shape else None


def _load_model_and_data(args: argparse.Namespace, model_spec: str, data_spec: str) -> tuple[Any, Any]:
    model = load_model(args, model_spec)
    data = load_dataset(args, data_spec)
    if args.n is not None and (args.n < 1 or args.n > len(data)):
        raise UsageError(f"--n {args.n}: must be between 1 and the size of {data_spec!r} ({len(data)} samples)")
    model = check_model_fits_data(model, data, model_spec, data_spec, registry=args.registry,
                                  any_input_size=getattr(args, "any_input_size", False),
                                  output=getattr(args, "output", None))
    return model, data


def _finished_report(args: argparse.Namespace, out: Path, model: Any, data: Any, attacks: list[str],
                     eps: list[float], params: Mapping[str, Mapping[str, Any]], mode: str) -> dict[str, Any] | None:
    """The finished report in ``out`` of this very configuration (its set re-rendered if a kill left it
    mismatched), None when there is none or ``--overwrite``; another configuration's is a UsageError."""

    def now() -> dict[str, str]:
        x, y, _ = first_images(data, args.n)  # a streamed dataset is fingerprinted a batch at a time
        plans = plan_attacks([(name, dict(params.get(name, {}))) for name in attacks], None)
        return run_identity(plans, eps_values(eps, args.norm), args.norm, mode, args.seed, x, y, model,
                            speed_options(args), adaptive_budget(args), getattr(args, "targeted", None))

    report = existing_report(out, now, report_identity, overwrite=getattr(args, "overwrite", False))
    if report is not None:
        refresh_rendered(report, out)
    return report


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


def run_evaluation(args: argparse.Namespace, model_spec: str, data_spec: str, attacks: list[str],
                   eps: list[float], params: Mapping[str, Mapping[str, Any]], *,
                   mode: Mode | str = Mode.CASCADE, early_exit: bool | None = None) -> dict[str, Any]:
    """Evaluate ``attacks`` x ``eps`` with the :func:`add_model_data_args` / :func:`add_run_args` values
    in ``args`` (and ``args.registry``); print the table and where the report is; return the report.
    ``mode``: :class:`~robustreg.evaluation.Mode` or its value (``early_exit``: its deprecated name).

    Before the model loads, ``--out`` (and the state's folder) must be writable (stale temporaries in
    them are removed); a failed run leaves no empty folder it created.  A finished report in ``--out``
    of the same configuration is not recomputed (it is printed and returned), one of another
    configuration is refused unless ``--overwrite`` (see :mod:`robustreg.output_folders`).

    Under torchrun (``WORLD_SIZE`` and ``RANK`` set) the batches are shared by the ranks
    (:mod:`robustreg.evaluation.distributed`); rank 0 checks the folders, writes the report and prints.
    """
    check_run_args(args)
    if set(params) - set(attacks):  # the values travel with their attack (one channel): none may be left over
        raise ValueError(f"params given for attack(s) not in the list: {', '.join(sorted(set(params) - set(attacks)))}")
    if early_exit is not None:  # the deprecated name of mode (a warning says so)
        mode = mode_option({"early_exit": early_exit}, "run_evaluation()", stacklevel=3)["mode"]
    run = (args, model_spec, data_spec, attacks, eps, params, Mode.coerce(mode))
    return in_process_group(args.device, lambda group: _run_evaluation(*run, group))


def in_process_group(device_arg: Any, fn: Callable[[Any], T]) -> T:
    """``fn(group)``: the single-process group in a plain run; under torchrun (``WORLD_SIZE`` and ``RANK``
    set) the torch.distributed group of this rank's device (``--device``, with ``LOCAL_RANK``), opened
    for the call and closed after it."""

    if not torchrun_env():
        return fn(SINGLE)
    local = os.environ.get("LOCAL_RANK")
    try:
        # no --device: where the loaded model is, the CPU (resolve_device(None) alone would mean "auto")
        device = resolve_device("cpu" if device_arg is None else device_arg, local_rank=int(local) if local else None)
    except ValueError as exc:
        raise UsageError(f"--device {device_arg!r}: {exc}") from None
    with process_group(device) as group:
        return fn(group)


def _run_evaluation(args: argparse.Namespace, model_spec: str, data_spec: str, attacks: list[str],
                    eps: list[float], params: Mapping[str, Mapping[str, Any]], mode: Mode,
                    group: Any) -> dict[str, Any]:

    out = Path(args.out or DEFAULT_OUT)
    state = Path(args.state) if args.state else out / "state.pt"
    state_flag = ("--state", state) if args.state else ("--out", out)
    # rank 0 alone probes the folders (and clears stale temporaries, which another rank may be writing)
    adv = [("--save-adv", Path(args.save_adv), Path(args.save_adv))] if getattr(args, "save_adv", None) else []
    # the --save-adv folder is probed and locked like --out: a second run into it is refused at once
    checked = [("--out", out, out), (*state_flag, state.parent), *adv]
    folders = output_folders(checked) if group.is_main else nullcontext()
    with folders:
        model, data = _load_model_and_data(args, model_spec, data_spec)
        done = group.main_run(lambda: _finished_report(args, out, model, data, attacks, eps, params, mode.value))
        if done is not None:
            if group.is_main:
                print(render_table(done))
                print(f"\nreport already there: {out / 'report.json'} (same configuration, not recomputed; "
                      f"--overwrite recomputes it)")
            return done
        report = evaluate(
            model, data, [(name, dict(params.get(name, {}))) for name in attacks], eps, norm=args.norm, n=args.n,
            batch_size=args.batch_size, device=args.device, seed=args.seed, mode=mode, out=out,
            state_path=args.state, keep_state=args.keep_state, registry=args.registry, progress=not args.quiet,
            no_check=args.no_check,  # the --param values travel in the attack list, one channel
            save_adv=getattr(args, "save_adv", None),
            model_info={"spec": model_spec, "weights": args.weights, "normalize": args.normalize,
                        **({"args": model_args(args)} if getattr(args, "model_arg", None) else {})},
            data_info={"spec": data_spec, "split": args.split}, distributed=group.world_size > 1,
            **speed_options(args).to_dict(), **adaptive_options(args), targeted=getattr(args, "targeted", None),
        )
    if group.is_main:
        print(render_table(report))
        print(f"\nreport: {out / 'report.json'} (also report.md, results.csv, robust_accuracy.png)")
    return report


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


def sized(data: Any, args: argparse.Namespace, data_spec: str) -> Any:
    """``data`` read at ``--resize`` / ``--center-crop`` (when given); a UserError naming the flag when the
    value is not a positive size or the dataset is not one that takes a size (an ``imagefolder:DIR``)."""
    resize, crop = getattr(args, "resize", None), getattr(args, "center_crop", None)
    if resize is None and crop is None:
        return data
    for flag, value in (("--resize", resize), ("--center-crop", crop)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: must be a positive number of pixels (e.g. --resize 256 "
                            f"--center-crop 224)")
    if not callable(getattr(data, "with_size", None)):
        flag = "--resize" if resize is not None else "--center-crop"
        raise UserError(f"{flag} applies to --data imagefolder:DIR only, got --data {data_spec!r} (its images have "
                        f"one size already)")
    return data.with_size(resize, crop)
