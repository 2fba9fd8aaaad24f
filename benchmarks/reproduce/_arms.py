"""Shared by the reproductions that compare trainings on digits (claims 10-14): arms trained over seeds with the
one recipe of :mod:`_digits`, each evaluated on the same digits test images, and cells judged by the one rule.

An :class:`Arm` is a defense with its parameters; :func:`run_arms` trains every arm at every seed (reusing
finished folders, e.g. claim 5's) and evaluates each model, keeping the per-sample results; :func:`seed_cells`
turns "arm A is higher than arm B under column c" statements into cells (95% t-interval over the seeds of A - B,
seed i with seed i); :func:`summary_rows` renders mean +- std per arm.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _digits import RUNS, Recipe, digits_test, robust_accuracy, train_digits, worst_case_accuracy
from _report import Clock, earlier_run
from _verdict import EQUIVALENCE_DELTA, equivalence_outcome, seeds_outcome, t_interval

__all__ = ["AA_STANDIN", "Arm", "Statement", "run_arms", "seed_cells", "summary_rows"]

AA_STANDIN = "autoattack:apgd-ce,autoattack:apgd-dlr"  # claim 5's AA stand-in (the full AA did not fit, see there)


@dataclass(frozen=True)
class Arm:
    """One training: ``label`` in the report, the registered ``defense`` and its extra ``params``."""

    label: str
    defense: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Statement:
    """A cell: ``first`` minus ``second`` under ``column`` is claimed to have the sign ``sign`` (+1 or -1), or,
    with ``flat``, to stay within the one rule's equivalence band (``_verdict.EQUIVALENCE_DELTA`` points)."""

    text: str
    first: str
    second: str
    column: str
    sign: int = 1
    flat: bool = False


def run_arms(arms: list[Arm], seeds: list[int], recipe: Recipe, runs: Path, *, n: int,
             attacks: list[tuple[str, dict[str, Any]]], eps: float | list[float], aa: str = "", attack_seed: int = 0,
             device: str = "cpu", checks: bool = True) -> list[dict[str, Any]]:
    """Train (or reuse) and evaluate every arm x seed: one row each with the accuracies, the training time and
    the per-sample results (``samples``: "1" = correct).  ``eps`` a list: columns ``<attack>@<eps * 255>``."""
    from _digits import evaluate_samples

    from robustreg import build_model

    x, y = digits_test(n)
    rows = []
    for seed in seeds:
        for arm in arms:
            path, seconds, reused = train_digits(arm.defense, seed, recipe, runs, params=arm.params)
            model = build_model("digits-cnn", weights=str(path)).eval()
            start = time.perf_counter()
            samples: dict[str, str] = {}
            acc: dict[str, Any]
            if _constant(model, x):  # a collapsed training: evaluate() refuses such a model (its probe)
                acc, samples = _constant_accuracy(model, x, y, attacks, eps, aa)
            elif isinstance(eps, list):
                report, samples = evaluate_samples(model, x, y, [a for a, _ in attacks], eps, attack_seed, device,
                                                   checks)
                acc = {"clean": report["clean_accuracy"]}
                for entry in report["results"]:
                    acc[f"{entry['attack']}@{round(entry['eps'] * 255)}"] = entry["robust_accuracy"]
            else:
                acc = robust_accuracy(model, x, y, attacks, eps, attack_seed, device, checks, samples)
                if aa:
                    acc["aa"] = worst_case_accuracy(model, x, y, aa.split(","), eps, attack_seed, device, samples)
                    samples["aa"] = samples.pop("worst-case")
            rows.append({"arm": arm.label, "defense": arm.defense, "params": arm.params, "seed": seed,
                         "collapsed": _constant(model, x),
                         "train_seconds": round(seconds, 1), "reused": reused,
                         "eval_seconds": round(time.perf_counter() - start, 1), **acc, "samples": samples})
            print(arm.label, seed, "reused" if reused else f"trained {seconds:.0f} s",
                  {k: round(v, 3) for k, v in acc.items()}, flush=True)
    return rows


def _constant(model: Any, x: Any) -> bool:
    """Whether ``model`` gives every test image the same logits (a training collapsed to a constant output)."""
    import torch

    with torch.no_grad():
        logits = model(x)
    return bool(torch.equal(logits, logits[:1].expand_as(logits)))


def _constant_accuracy(model: Any, x: Any, y: Any, attacks: list[tuple[str, dict[str, Any]]],
                       eps: float | list[float], aa: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A constant model's columns: no perturbation changes its output, so every attack leaves exactly the clean
    accuracy (the same images correct); computed, not attacked (the evaluation refuses a constant model)."""
    import torch
    from _verdict import bits

    with torch.no_grad():
        correct = model(x).argmax(1) == y
    keys = ([f"{a}@{round(e * 255)}" for e in eps for a, _ in attacks] if isinstance(eps, list)
            else [a for a, _ in attacks] + (["aa"] if aa else []))
    clean = float(correct.float().mean())
    return {"clean": clean, **{k: clean for k in keys}}, {k: bits(correct) for k in ["clean", *keys]}


def seed_cells(rows: list[dict[str, Any]], statements: list[Statement]) -> list[dict[str, Any]]:
    """Each statement's per-seed differences (points), mean, 95% t-interval and outcome under the one rule."""
    out = []
    for st in statements:
        value = {(r["arm"], r["seed"]): 100 * r[st.column] for r in rows if st.column in r}
        seeds = sorted({s for a, s in value if a == st.first} & {s for a, s in value if a == st.second})
        diffs = [value[(st.first, s)] - value[(st.second, s)] for s in seeds]
        # a collapsed training (constant output) says nothing about the statement: its cell is inconclusive
        collapsed = sorted({(r["arm"], r["seed"]) for r in rows if r.get("collapsed")
                            and r["arm"] in (st.first, st.second) and r["seed"] in seeds})
        iv = t_interval(diffs) if diffs else None
        judged = (equivalence_outcome(diffs) if st.flat else seeds_outcome(diffs, st.sign)) if diffs else ""
        out.append({"cell": st.text, "first": st.first, "second": st.second, "column": st.column, "sign": st.sign,
                    "flat": st.flat, "diffs": diffs, "mean": iv.mean if iv else None,
                    "interval": [iv.low, iv.high] if iv else None, "seeds": len(diffs),
                    "collapsed": [f"{a} seed {s}" for a, s in collapsed],
                    "outcome": judged if diffs and not collapsed else "inconclusive"})
    return out


def cell_rows(cells: list[dict[str, Any]]) -> list[list[Any]]:
    """The report's cells table rows."""
    return [[c["cell"], f"{c['first']} - {c['second']}", c["column"], _claimed(c),
             "-" if c["mean"] is None else f"{c['mean']:+.1f}",
             "-" if c["seeds"] < 2 else f"[{c['interval'][0]:+.1f}, {c['interval'][1]:+.1f}]", c["seeds"],
             c["outcome"] + (f" ({', '.join(c['collapsed'])} collapsed)" if c.get("collapsed") else "")]
            for c in cells]


def _claimed(cell: dict[str, Any]) -> str:
    if cell.get("flat"):
        return f"within +-{EQUIVALENCE_DELTA:g}"
    return "> 0" if cell["sign"] > 0 else "< 0"


CELL_HEAD = ["statement", "difference", "column", "claimed", "mean (points)", "95% interval", "seeds", "outcome"]


def summary_rows(rows: list[dict[str, Any]], columns: list[str]) -> list[list[Any]]:
    """Per arm: mean +- std (%) over its seeds for each column."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        vals = [r for r in rows if r["arm"] == arm]
        cells = []
        for c in columns:
            xs = [100 * r[c] for r in vals]
            cells.append(f"{statistics.fmean(xs):.1f} +- {statistics.stdev(xs) if len(xs) > 1 else 0.0:.1f}")
        out.append([arm, len(vals), *cells])
    return out


def per_seed_rows(rows: list[dict[str, Any]], columns: list[str]) -> list[list[Any]]:
    return [[r["arm"] + (" (collapsed: constant output)" if r.get("collapsed") else ""), r["seed"],
             *(f"{100 * r[c]:.1f}" for c in columns), r["train_seconds"], "yes" if r["reused"] else "no"]
            for r in rows]


def arms_plot(rows: list[dict[str, Any]], columns: list[str], title: str) -> bytes:
    """Grouped bars: one group per column, one bar per arm (mean over seeds, std as the error bar)."""
    from _report import grouped_bars

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    series: dict[str, list[float]] = {}
    errors: dict[str, list[float]] = {}
    for arm in arms:
        vals = [r for r in rows if r["arm"] == arm]
        series[arm] = [statistics.fmean(100 * r[c] for r in vals) for c in columns]
        errors[arm] = [statistics.stdev([100 * r[c] for r in vals]) if len(vals) > 1 else 0.0 for c in columns]
    width = max(6.0, 0.65 * len(columns) * len(arms))
    return grouped_bars(series, columns, title, "accuracy (%)", size=(width, 3.8), errors=errors, tick_size=8)


def arms_sections(*, verdict_text: str, paper: str, rows: list[dict[str, Any]], columns: list[str],
                  cells: list[dict[str, Any]], protocol: str, differences: str, seeds: str) -> list[str]:
    """The report's sections in the order every claim uses."""
    from _report import markdown_table

    return [verdict_text, paper,
            "## Ours (digits, %, mean +- std over the training seeds)\n\n"
            + markdown_table(["arm", "seeds", *columns], summary_rows(rows, columns)),
            "## Cells (per-seed difference, points; seed i with seed i)\n\n"
            + markdown_table(CELL_HEAD, cell_rows(cells)),
            "## Per seed\n\n" + markdown_table(["arm", "seed", *columns, "train s", "reused"],
                                               per_seed_rows(rows, columns)),
            "## Protocol\n\n" + protocol, "## What differs from the paper\n\n" + differences, seeds]


# --- claims 10-12: SI arms trained on claim 5's recipe and evaluated under PGD, PGD-CW and SI-PGD -------------
SI_ATTACKS = ("pgd", "pgd-cw", "si-pgd")


def add_si_args(p: argparse.ArgumentParser, seeds: str, seeds_help: str, aa: str | None = None) -> None:
    """The arguments claims 10-12 share (claim 5's recipe; ``aa``: the AutoAttack column's default, if any)."""
    p.add_argument("--seeds", default=seeds, help=seeds_help)
    p.add_argument("--epochs", type=int, default=20, help="claim 5's recipe")
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--eps", type=float, default=Recipe.eps)
    p.add_argument("--steps", type=int, default=20, help="steps of PGD, PGD-CW, SI-PGD")
    if aa is not None:
        p.add_argument("--aa", default=aa)
    p.add_argument("--n-digits", type=int, default=360)
    p.add_argument("--runs", type=Path, default=RUNS)


def si_smoke(args: argparse.Namespace) -> argparse.Namespace:
    """``--smoke``: one seed, one epoch, 2 steps, 8 images (what tests/test_reproduce_scripts.py runs)."""
    if args.smoke:
        args.seeds, args.epochs, args.train_steps, args.steps, args.n_digits = "0", 1, 2, 2, 8
        if getattr(args, "aa", None) is not None:
            args.aa = "autoattack:apgd-ce"
    return args


def si_rows(args: argparse.Namespace, arms: list[Arm], clock: Clock) -> tuple[Recipe, list[dict[str, Any]]]:
    """The recipe and every arm x seed row (an earlier run's with ``--rerender``)."""
    recipe = Recipe(eps=args.eps, epochs=args.epochs, steps=args.train_steps, n_train=128 if args.smoke else None)
    earlier = earlier_run(args, clock)
    if earlier is not None:
        return recipe, earlier["rows"]
    seeds = [int(s) for s in args.seeds.split(",")]
    attacks = [(a, {"steps": args.steps}) for a in SI_ATTACKS]
    return recipe, run_arms(arms, seeds, recipe, args.runs, n=args.n_digits, attacks=attacks, eps=args.eps,
                            aa=getattr(args, "aa", None) or "", device=args.device, checks=not args.smoke)


# --- claims 13-14: paper 000's one-step defenses (Kurakin's, Pivot) on claim 5's digits recipe ---------------
ONE_STEP_MAX_EPS = 32 / 255
ONE_STEP_PARAMS = {"method": "step_ll", "max_eps": ONE_STEP_MAX_EPS}


def one_step_recipe(args: argparse.Namespace) -> Recipe:
    """Claim 5's digits recipe with paper 000's one-step defenses (no inner steps, no eps warm-up: the defenses
    draw their own eps per batch from clip(|N(0, max_e/2)|))."""
    return Recipe(eps=ONE_STEP_MAX_EPS, epochs=args.epochs, steps=1, warmup=0, n_train=128 if args.smoke else None)


def add_one_step_args(p: argparse.ArgumentParser, seeds: str, seeds_help: str) -> None:
    """The arguments claims 13-14 share."""
    p.add_argument("--seeds", default=seeds, help=seeds_help)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--n-digits", type=int, default=360)
    p.add_argument("--runs", type=Path, default=RUNS)


def one_step_smoke(args: argparse.Namespace, seeds: str = "0") -> argparse.Namespace:
    """``--smoke``: ``seeds``, one epoch, 8 images."""
    if args.smoke:
        args.seeds, args.epochs, args.n_digits = seeds, 1, 8
    return args


def one_step_rows(args: argparse.Namespace, arms: list[Arm], attacks: list[str], eps: list[int],
                  clock: Clock) -> list[dict[str, Any]]:
    """Every arm x seed row under ``attacks`` at ``eps`` (of 255), an earlier run's with ``--rerender``."""
    earlier = earlier_run(args, clock)
    if earlier is not None:
        rows: list[dict[str, Any]] = earlier["rows"]
        return rows
    seeds = [int(s) for s in args.seeds.split(",")]
    return run_arms(arms, seeds, one_step_recipe(args), args.runs, n=args.n_digits, attacks=[(a, {}) for a in attacks],
                    eps=[e / 255 for e in eps], device=args.device, checks=not args.smoke)
