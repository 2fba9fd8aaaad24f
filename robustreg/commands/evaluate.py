"""``robustreg evaluate``: robust accuracy of a model under attacks x eps; with no arguments, the demo.

The demo evaluates :data:`DEFAULT_MODEL` on :data:`DEFAULT_DATA` at :data:`DEFAULT_EPS` with every
registered attack marked ``demo=True`` (``registrar.add_attack(..., demo=True)``), iterative ones
at :data:`DEMO_STEPS` steps, so disabling a plugin only drops its attacks from the demo.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..cli_kit import (
    UsageError,
    add_adaptive_args,
    add_model_data_args,
    add_run_args,
    eps_list,
    param_values,
    run_evaluation,
)
from ..evaluation.config import Mode
from ..evaluation.targets import TARGETED_MODES
from ..registry import Registry

__all__ = ["DEFAULT_DATA", "DEFAULT_EPS", "DEFAULT_MODEL", "DEMO_STEPS", "configure", "demo_attacks", "run"]

DEFAULT_MODEL = "digits-cnn-pretrained"
DEFAULT_DATA = "digits"
# digits pixels are 17 grey levels (k/16); on digits-cnn-pretrained 0.05 / 0.1 / 0.15 give roughly
# 90% / 55% / 20% robust accuracy, so every column of the demo table says something
DEFAULT_EPS = (0.05, 0.1, 0.15)
DEMO_STEPS = 10  # the demo's iterative attacks: < 1 min on 2 cores


def configure(p: argparse.ArgumentParser) -> None:
    add_model_data_args(p)
    g = p.add_argument_group("attacks")
    g.add_argument("--attacks", metavar="NAME[,NAME...]",
                   help="registered attack names, run in this order (default: the demo attacks)")
    g.add_argument("--eps", metavar="E[,E...]", help="budgets in [0, 1] units: 0.031, 8/255 (or see --eps-scale)")
    g.add_argument("--param", action="append", default=[], metavar="[NAME.]KEY=VALUE",
                   help="attack parameter, e.g. pgd.steps=40 or pgd.step_size=1/255; NAME may be left out "
                        "with one attack (repeatable; `robustreg list attacks NAME` shows them)")
    g.add_argument("--eot", type=int, default=1, metavar="N",
                   help="attack the mean of N draws of a randomised model with every white-box attack "
                        "(Expectation over Transformation; the eot parameter of each; default 1: off)")
    g.add_argument("--no-early-exit", action="store_true",
                   help="run every attack on all clean-correct points (standalone numbers) instead of a cascade")
    g.add_argument("--targeted", choices=TARGETED_MODES, default=None,
                   help="targeted evaluation: each point's attack aims at a class (random: drawn from --seed and "
                        "the point's index; least-likely: the lowest clean logit; all-classes: every other class, "
                        "broken when any is reached); robust accuracy = target not reached (default: untargeted)")
    add_adaptive_args(p)
    add_run_args(p)


def demo_attacks(registry: Registry) -> dict[str, dict[str, Any]]:
    """The demo's attacks (``demo=True``, by name) with their demo parameters (``steps`` where declared)."""
    return {spec.name: ({"steps": DEMO_STEPS} if "steps" in spec.params else {})
            for spec in registry.list_attacks() if spec.demo}


def _named_attacks(registry: Registry, text: str) -> list[str]:
    attacks = [a.strip() for a in text.split(",") if a.strip()]
    if not attacks:
        raise UsageError(f"--attacks must name at least one attack, got {text!r}")
    for name in attacks:
        try:
            registry.attack(name)
        except LookupError as exc:
            raise UsageError(f"--attacks {name!r}: {exc}") from None
    return attacks


def _check_demo_or_full(args: argparse.Namespace) -> None:
    given = {flag: getattr(args, attr) for flag, attr in
             (("--model", "model"), ("--data", "data"), ("--attacks", "attacks"), ("--eps", "eps"))}
    if any(v is not None for v in given.values()):
        missing = [flag for flag, v in given.items() if v is None and flag in ("--model", "--data")]
        if missing:
            present = ", ".join(f for f, v in given.items() if v is not None)
            raise UsageError(f"{' and '.join(missing)} required when {present} is given "
                             f"(run `robustreg evaluate` with no arguments for the built-in demo)")


def run(args: argparse.Namespace) -> int:
    registry: Registry = args.registry
    _check_demo_or_full(args)
    if args.attacks is not None:
        attacks = _named_attacks(registry, args.attacks)
        params: dict[str, dict[str, Any]] = {name: {} for name in attacks}
    else:
        params = demo_attacks(registry)
        attacks = list(params)
        if not attacks:
            raise UsageError("no registered attack is marked for the demo (demo=True); pass --attacks "
                             "(see `robustreg list`)")
    eps = eps_list(args.eps, args.eps_scale) if args.eps is not None else list(DEFAULT_EPS)
    owners = {name: registry.attack(name).params for name in attacks}
    if args.eot < 1:
        raise UsageError(f"--eot must be an int >= 1 (draws per gradient), got {args.eot}")
    if args.eot > 1:
        for name in attacks:
            if registry.attack(name).info.kind == "white-box":
                params[name]["eot"] = args.eot
    for name, values in param_values(args.param, owners, where="--attacks", aliases=registry.param_aliases()).items():
        params[name].update(values)
    run_evaluation(args, args.model or DEFAULT_MODEL, args.data or DEFAULT_DATA, attacks, eps,
                   {name: values for name, values in params.items() if values},
                   mode=Mode.INDEPENDENT if args.no_early_exit else Mode.CASCADE)
    return 0
