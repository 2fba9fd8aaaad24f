"""The ``robustreg autoattack`` command: one AutoAttack suite through the adapter's ``autoattack:<version>``
entry, with robust accuracy after each of its sub-attacks.

Registered by this plugin (``robustreg_register_commands``), so ``ROBUSTREG_DISABLE_PLUGINS=autoattack``
takes the command away with the attacks.  Uses robustreg's public API only (and its command kit,
:mod:`robustreg.cli_kit`).

Under torchrun (``torchrun --nproc_per_node N -m robustreg -- autoattack ...``) the suite runs through
:func:`robustreg.cli_kit.run_evaluation` like ``evaluate``: the evaluation's batches are shared by the ranks and
every call of the suite is seeded afresh, so the report is the one of a single process; rank 0 writes it
and prints the summary.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import robustreg
from robustreg import cli_kit

__all__ = ["VERSIONS", "configure", "robustreg_register_commands", "run", "summary"]

VERSIONS = ("standard", "plus", "rand")
HELP = "run the AutoAttack suite (needs pyautoattack)"


def configure(p: argparse.ArgumentParser) -> None:
    cli_kit.add_model_data_args(p)
    g = p.add_argument_group("suite")
    g.add_argument("--eps", metavar="E", help="budget in [0, 1] units, e.g. 8/255")
    g.add_argument("--version", default="standard", choices=VERSIONS, help="AutoAttack suite (default standard)")
    g.add_argument("--param", action="append", default=[], metavar="[autoattack:VERSION.]KEY=VALUE",
                   help="suite parameter, e.g. verbose=true (repeatable; `robustreg list attacks "
                        "autoattack:standard` shows them)")
    cli_kit.add_adaptive_args(p)
    cli_kit.add_run_args(p)


def summary(report: dict[str, Any]) -> str:
    """Clean accuracy, robust accuracy after each sub-attack, final, max perturbation, time and AutoAttack's
    own flags (its warnings about the evaluation).

    "Robust after" each sub-attack has one basis, the points attacked (the clean-correct ones), as the
    table's ``robust_after:<sub>`` columns: a header line says so.  The final robust accuracy is of all n.
    """
    result = report["results"][0]
    extras = result.get("extras", {})
    n, attacked = report["n"], result.get("attacked", 0)
    rows = [("clean accuracy", f"{100 * report['clean_accuracy']:.2f}% (of all {n} samples)")]
    after = [(key.split(":", 1)[1], value) for key, value in extras.items()
             if key.startswith("robust_after:") and value is not None]
    if after:
        rows.append(("robust after each sub-attack", f"% of the {attacked} attacked (clean-correct) points, as the "
                                                     f"table's robust_after columns"))
    for sub, value in after:
        seconds = extras.get(f"seconds:{sub}")
        shown = f"  ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
        rows.append((f"robust after {sub}", f"{100 * value:.2f}%{shown}"))
    rows.append(("robust accuracy", f"{100 * result['robust_accuracy']:.2f}% (of all {n} samples)"))
    rows.append(("max perturbation", f"{result['max_perturbation']:.6g} ({report['norm']})"))
    rows.append(("total time", f"{result['seconds']:.1f} s"))
    flags = result.get("flags") or {}
    if flags:  # AutoAttack's own warnings (also the attack-flags check of report.json)
        rows += [("AutoAttack flag", message) for message in flags]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in rows)


def run(args: argparse.Namespace) -> int:
    registry: robustreg.Registry = args.registry
    cli_kit.check_run_args(args)
    missing = [flag for flag, v in (("--model", args.model), ("--data", args.data), ("--eps", args.eps)) if v is None]
    if missing:
        raise robustreg.UsageError(f"autoattack needs {', '.join(missing)}")
    name = f"autoattack:{args.version}"
    if name not in registry.entries("attacks"):
        failed = [msg for plugin, msg in registry.load_errors if "autoattack" in plugin]
        why = f" (plugin failed to load: {failed[0]})" if failed else ""
        raise robustreg.UsageError(f"attack {name!r} is not registered{why}; install AutoAttack with "
                                   "`pip install pyautoattack`")
    eps = cli_kit.eps_list(args.eps, args.eps_scale)
    if len(eps) != 1:
        raise robustreg.UsageError(f"--eps takes one value for autoattack, got {args.eps!r}")
    params = cli_kit.param_values(args.param, {name: registry.attack(name).params}, where="--version")
    report = cli_kit.run_evaluation(args, args.model, args.data, [name], eps, params)
    if _main_rank():  # every rank returns the report; rank 0 printed its table
        print()
        print(summary(report))
    return 0


def _main_rank() -> bool:
    """Is this the process that prints: a plain run, or rank 0 of a torchrun launch?"""
    return "WORLD_SIZE" not in os.environ or os.environ.get("RANK", "0") == "0"


@robustreg.hookimpl
def robustreg_register_commands(registrar: robustreg.Registrar) -> None:
    """Register ``robustreg autoattack``."""
    registrar.add_command("autoattack", configure, run, help=HELP)
