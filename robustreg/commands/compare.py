"""``robustreg compare``: one attack from several toolkits on the same samples (:mod:`robustreg.compare`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..cli_kit import (
    UsageError,
    adaptive_budget,
    adaptive_options,
    add_adaptive_args,
    add_any_input_size,
    add_image_size_args,
    add_model_output_args,
    check_device,
    check_model_fits_data,
    check_name,
    eps_list,
    in_process_group,
    load_dataset,
    load_model,
    norm_arg,
    param_values,
    start_over_hint,
)
from ..compare.check import check_comparison_report
from ..compare.run import compare, default_toolkits, registered_toolkits, render_markdown, render_table
from ..data.first import first_images
from ..evaluation.distributed import Group
from ..evaluation.state import adaptive_text, data_fingerprint, model_fingerprint
from ..files import write_set_atomic
from ..lock import ReportGuard
from ..output_folders import existing_report, output_folders
from ..registry import Registry
from ..threat import NORMS, ThreatModel

__all__ = ["add_parser", "configure", "run"]

HELP = "run one attack from several toolkits on the same samples"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="SPEC", help="registered model name, file.py:factory or pkg.mod:f")
    p.add_argument("--weights", metavar="PATH", help="checkpoint to load into the model")
    p.add_argument("--normalize", metavar="MEAN/STD", help="wrap the model with Normalize (e.g. cifar10)")
    add_model_output_args(p)
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset spec, e.g. mnist:DIR, cifar10:DIR, digits")
    add_image_size_args(p)
    p.add_argument("--attack", required=True, help="attack name in robustreg's vocabulary, e.g. pgd, fgsm, apgd-ce")
    p.add_argument("--eps", required=True, help="budget, e.g. 8/255 or 0.3")
    p.add_argument("--norm", default="linf", type=norm_arg, choices=NORMS)
    p.add_argument("--toolkits", metavar="T[,T...]",
                   help="comma-separated (default: every toolkit with a registered attack, native first)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter of the attack compared, in robustreg's vocabulary (the native attack's "
                        "declaration; repeatable), e.g. steps=10")
    p.add_argument("--n", type=int, default=None, help="use the first N samples (default all)")
    add_any_input_size(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or auto (CUDA when present); default: where the model is "
                        "(the CPU for a model loaded from a spec)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="write report.json and report.md here")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished report in --out (default: a report of another configuration is "
                        "refused, one of the same configuration is not recomputed)")
    p.add_argument("--no-noise", dest="noise", action="store_false",
                   help="skip the second native run (seed + 1) that measures random-start noise")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--no-check", action="append", default=[], metavar="NAME", type=check_name,
                   help="turn off one automatic check (repeatable; reported as skipped; see docs/checks.md)")
    add_adaptive_args(p)
    p.set_defaults(on_interrupt=start_over_hint)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to an argparse ``subparsers`` object (``set_defaults(func=run)``), outside ``robustreg``."""
    p = subparsers.add_parser("compare", help=HELP)
    configure(p)
    p.set_defaults(func=run)
    return p


def _params(registry: Registry, attack: str, texts: list[str]) -> dict[str, Any]:
    """``--param`` texts typed by the native attack's declaration (best-guess values without a native attack)."""
    native = registry.entries("attacks").get(attack)
    declared = native.params if native is not None else None
    return param_values(texts, {attack: declared}, where="--attack", aliases=registry.param_aliases()).get(attack, {})


def _check_toolkits(registry: Registry, toolkits: list[str]) -> None:
    """A toolkit no registered attack belongs to is a usage error naming it, and the plugins that failed to
    load (the likely reason), before any model is loaded.  A toolkit without this attack is a row instead."""
    known = registered_toolkits(registry)
    missing = [t for t in dict.fromkeys(toolkits) if t not in known]
    if not missing:
        return
    failed = sorted({name for name, _ in registry.load_errors})
    why = (f"; plugin(s) that failed to load: {', '.join(failed)} (`robustreg list plugins` shows why)"
           if failed else "")
    raise UsageError(f"--toolkits: {', '.join(repr(t) for t in missing)} not available: no registered attack "
                     f"belongs to it (registered toolkits: {', '.join(known)}){why}")


def _identity(attack: str, eps: float, args: argparse.Namespace, params: Mapping[str, Any],
              toolkits: list[str], data: tuple[int, str], model: nn.Module) -> dict[str, str]:
    """What a comparison report in ``--out`` must match to be this run's (see :func:`_saved_identity`);
    ``data``: the samples' count and fingerprint (:func:`_data`)."""
    return {"attack": attack, "eps": repr(float(ThreatModel(args.norm, eps).eps)), "norm": args.norm,
            "toolkits": _text(list(dict.fromkeys(toolkits))), "params": _text(params), "seed": _text(args.seed),
            "n": str(data[0]), "model fingerprint": model_fingerprint(model),
            "data fingerprint": data[1], "adaptive": adaptive_text(adaptive_budget(args))}


def _saved_identity(report: Mapping[str, Any]) -> dict[str, str]:
    check_comparison_report(report)  # a damaged report is refused, never trusted (robustreg.readback.Damage)
    return {"attack": str(report.get("attack")), "eps": repr(float(report.get("eps", "nan"))),
            "norm": str(report.get("norm")), "toolkits": _text([r.get("toolkit") for r in report.get("results", [])]),
            "params": _text(report.get("params", {})), "seed": _text(report.get("seed")), "n": str(report.get("n")),
            "model fingerprint": str(report.get("model", {}).get("fingerprint")),
            "data fingerprint": str(report.get("data", {}).get("fingerprint")),
            "adaptive": adaptive_text((report.get("adaptive") or {}).get("budget"))}


def _text(value: Any) -> str:
    return json.dumps(json.loads(json.dumps(value, default=repr)), sort_keys=True)


def _data(data: Any, n: int | None, batch_size: int) -> tuple[int, str]:
    """The count and fingerprint of the first ``n`` samples: a streamed dataset read ``batch_size`` images at a
    time (the same fingerprint as its images in one tensor, so a report of the tensors is recognised)."""
    x, y, _ = first_images(data, n)
    return len(x), data_fingerprint(x, y, batch_size)


def _write(report: dict[str, Any], out: Path, model: nn.Module, fingerprint: str,
           args: argparse.Namespace, guard: ReportGuard) -> None:
    """report.json (with the model's and data's fingerprints, so a rerun is recognised) and report.md,
    as one set with report.json last; first ``guard``'s last look at the report.json there."""
    report["model"] = {"spec": args.model, "weights": args.weights, "fingerprint": model_fingerprint(model)}
    report["data"] = {"spec": args.data, "fingerprint": fingerprint}
    guard.check(report)
    write_set_atomic(out, {"report.md": render_markdown(report),
                           "report.json": json.dumps(report, indent=2) + "\n"}, last="report.json")


def run(args: argparse.Namespace) -> int:
    """Execute ``robustreg compare``: print the table; return the exit status.

    ``--out`` follows the rules of :mod:`robustreg.output_folders`: probed before the model loads,
    stale temporaries removed, no empty folder left by a failure, a finished report of another
    configuration refused unless ``--overwrite``, one of the same configuration not recomputed.

    Under torchrun (``WORLD_SIZE`` and ``RANK`` set) each row's batches are shared by the ranks, as in
    ``evaluate`` (:func:`robustreg.compare.compare` with ``distributed=True``); rank 0 probes ``--out``,
    writes the report and prints.
    """
    registry = getattr(args, "registry", None)
    if registry is None:
        registry = Registry.create()
    attack = args.attack.strip()
    params = _params(registry, attack, args.param)
    eps = eps_list(args.eps)
    if len(eps) != 1:
        raise UsageError(f"--eps takes one value for compare, got {args.eps!r}")
    toolkits = ([t.strip() for t in args.toolkits.split(",") if t.strip()] if args.toolkits is not None
                else default_toolkits(registry, attack, args.norm))
    _check_toolkits(registry, toolkits)
    check_device(args.device)
    args.registry = registry
    run = (args, attack, eps[0], params, toolkits)
    return in_process_group(args.device, lambda group: _run(*run, group))


def _run(args: argparse.Namespace, attack: str, eps: float, params: dict[str, Any], toolkits: list[str],
         group: Group) -> int:
    """The command on this rank of ``group`` (every rank loads the model and data and attacks its share)."""
    out = Path(args.out) if args.out else None
    # rank 0 alone probes the folder (and clears stale temporaries, which another rank may be writing)
    folders = output_folders([("--out", out, out)] if out is not None and group.is_main else [])
    with folders:
        model = load_model(args, args.model)
        data = load_dataset(args, args.data, "test")
        model = check_model_fits_data(model, data, args.model, args.data, registry=args.registry,
                                      any_input_size=args.any_input_size, output=args.output)
        seen: list[tuple[int, str]] = []  # only when a report is already there (a streamed dataset is read once more)

        def data_id() -> tuple[int, str]:
            if not seen:
                seen.append(_data(data, args.n, args.batch_size))
            return seen[0]

        done = None if out is None else group.main_run(lambda: existing_report(
            out, lambda: _identity(attack, eps, args, params, toolkits, data_id(), model), _saved_identity,
            overwrite=getattr(args, "overwrite", False)))
        if done is not None and out is not None:
            if group.is_main:
                print(render_table(done))
                print(f"report already there: {out / 'report.json'} (same configuration, not recomputed; "
                      f"--overwrite recomputes it)")
            return 0
        guard = ReportGuard.take(out, _saved_identity) if out is not None and group.is_main else None
        report = compare(
            model, data, attack, eps, n=args.n, toolkits=toolkits, norm=args.norm, params=params,
            batch_size=args.batch_size, device=args.device, seed=args.seed, registry=args.registry,
            noise=getattr(args, "noise", True), progress=not args.quiet, no_check=getattr(args, "no_check", ()),
            distributed=group.world_size > 1, **adaptive_options(args),
        )
        if out is not None and guard is not None:
            _write(report, out, model, report["data"]["fingerprint"], args, guard)  # hashed in compare's clean pass
    if group.is_main:
        print(render_table(report))
        if out is not None:
            print(f"report: {out / 'report.json'}")
    return 0
