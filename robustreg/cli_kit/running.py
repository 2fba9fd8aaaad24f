"""One evaluation from parsed arguments (``robustreg evaluate`` and a plugin's own evaluating command): the output
folder's rules, a finished report recognised, torchrun's process group."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

from ..data.first import first_images
from ..errors import UsageError
from ..evaluation import evaluate
from ..evaluation.config import Mode, eps_values, mode_option, plan_attacks
from ..evaluation.distributed import SINGLE, process_group, torchrun_env
from ..evaluation.state import report_identity, run_identity
from ..output_folders import existing_report, output_folders, refresh_rendered
from ..report import render_table
from ..runtime import resolve_device
from .args import DEFAULT_OUT, adaptive_budget, adaptive_options, check_run_args, model_args, speed_options
from .loading import check_model_fits_data, load_dataset, load_model

T = TypeVar("T")


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
