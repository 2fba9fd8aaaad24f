"""Claim 3, paper 000 Table 1: step_ll training with a bidirectional or pivot loss beats Kurakin's, which beats
the baseline, under step_ll, step_FGSM, iter_ll and iter_FGSM at eps 16 and 32 (of 255).

Paper 000 (Na, Ko & Mukhopadhyay, "Cascade Adversarial Machine Learning Regularized with a Unified
Embedding", ICLR 2018, arXiv:1708.02582), Table 1 (MNIST, ResNet-20, 8000 iterations): "our method
achieves 2 - 8 % better accuracy than Kurakin's method" at eps 32.  Here at digits scale: LeNet-5
(``lenet5-mnist``) on the 28x28 upsampled scikit-learn digits (``digits28``), the four trainings of the
table (``standard``, ``kurakin``, ``bidirectional``, ``pivot``, all with method step_ll and max_e 32),
``--seeds`` training seeds each, evaluated on the 360 digits28 test images.

    OMP_NUM_THREADS=1 python benchmarks/reproduce/claim3_table1_mnist.py --seeds 0,1
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from _deviations import CURRENT, deviation_lines, fidelity
from _digits import RUNS, digits_test, evaluate_samples
from _paper import PAPER as PAPER_TABLES
from _paper import paper_section
from _report import (
    Clock,
    add_rerender,
    base_parser,
    earlier_run,
    grouped_bars,
    markdown_table,
    out_dir,
    rerender_note,
    write_report,
)
from _verdict import seeds_outcome, t_interval, verdict_lines
from _verdict import verdict as one_rule

CLAIM = "claim3_table1_mnist"
DEFENSES = ("standard", "kurakin", "bidirectional", "pivot")
LABEL = {"standard": "Baseline", "kurakin": "Kurakin's", "bidirectional": "Bidirection", "pivot": "Pivot"}
ATTACKS = ("step-ll", "step-fgsm", "iter-ll", "iter-fgsm")
EPS = (16, 32)  # of 255
PAPER = PAPER_TABLES["000-table1"].rows  # clean, then (attack, eps) in ATTACKS x EPS order, %
COLUMNS = ["clean", *(f"{a}@{e}" for a in ATTACKS for e in EPS)]


def add_recipe(p: argparse.ArgumentParser) -> None:
    """The digits28 training recipe's options, read by :func:`train_one` (claim 4 trains with it and reuses
    these models, so it takes the same options)."""
    p.add_argument("--iterations", type=int, default=250, help="training steps (paper: 8000)")
    p.add_argument("--batch-size", type=int, default=64, help="paper: 128 (k = half of it adversarial)")
    p.add_argument("--lr", type=float, default=0.02, help="paper: 0.1 (ResNet-20 with batch norm)")
    p.add_argument("--n-test", type=int, default=360)
    p.add_argument("--runs", type=Path, default=RUNS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1", help="training seeds (also the defenses' own seeds)")
    add_recipe(p)
    add_rerender(p)
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.iterations, args.n_test = "0", 2, 8
    return args


def train_one(defense: str, seed: int, args: argparse.Namespace) -> tuple[Path, float, bool]:
    from robustreg import TrainConfig, train

    it = args.iterations
    out = args.runs / f"p000-{defense}-lenet5-digits28-it{it}-b{args.batch_size}-lr{args.lr:g}-s{seed}"
    reused = (out / "final.pt").exists()
    params: dict[str, Any] = {} if defense == "standard" else {"method": "step_ll", "max_eps": 32 / 255,
                                                                 "seed": seed}
    start = time.perf_counter()
    path = train(TrainConfig(model="lenet5-mnist", data="digits28", defense=defense, defense_params=params,
                             iterations=it, milestones=[max(1, it // 2), max(1, 3 * it // 4)],
                             milestone_unit="iterations", schedule="step", gamma=0.1, lr=args.lr, momentum=0.9,
                             weight_decay=1e-4, batch_size=args.batch_size, augment=False, seed=seed, out=str(out),
                             quiet=True, device="cpu", checkpoint_every=0,
                             n_train=256 if args.smoke else None))
    return path, time.perf_counter() - start, reused


def evaluate_one(path: Path, x: Any, y: Any, device: str, checks: bool = True,
                 samples: dict[str, str] | None = None) -> dict[str, float]:
    """Accuracy per column; ``samples``: filled with the per-sample results (keys ``<attack>@<eps>``)."""
    from robustreg import build_model

    model = build_model("lenet5-mnist", weights=str(path)).eval()
    report, per_sample = evaluate_samples(model, x, y, list(ATTACKS), [e / 255 for e in EPS], 0, device, checks)
    if samples is not None:
        samples.update(per_sample)
    acc = {"clean": report["clean_accuracy"]}
    for entry in report["results"]:
        acc[f"{entry['attack']}@{round(entry['eps'] * 255)}"] = entry["robust_accuracy"]
    return acc


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for d in dict.fromkeys(r["defense"] for r in rows):
        vals = [r for r in rows if r["defense"] == d]
        out[d] = {}
        for c in COLUMNS:
            xs = [100 * r[c] for r in vals]
            out[d][c] = (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)
    return out


PAIRS = (("bidirectional", "kurakin"), ("pivot", "kurakin"), ("kurakin", "standard"))


def cells(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's claim at eps 32, one cell per attack and pair of :data:`PAIRS` (the first beats the second):
    the per-seed difference (seed i with seed i) and its 95% t-interval, judged by the one rule."""
    value = {(r["defense"], r["seed"]): r for r in rows}
    out = []
    for a in ATTACKS:
        c = f"{a}@32"
        for hi, lo in PAIRS:
            seeds = sorted(s for d, s in value if d == hi and (lo, s) in value)
            diffs = [100 * (value[(hi, s)][c] - value[(lo, s)][c]) for s in seeds]
            iv = t_interval(diffs)
            out.append({"column": c, "pair": f"{LABEL[hi]} > {LABEL[lo]}", "diff": iv.mean,
                        "interval": [iv.low, iv.high], "seeds": len(diffs), "outcome": seeds_outcome(diffs)})
    return out


def verdict(rows: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The one rule (:mod:`_verdict`) over :func:`cells`; the notes name the cells that do not support it."""
    judged = cells(rows)
    notes = [f"{c['pair']} under {c['column']} ({c['diff']:+.1f} points, {c['outcome']})" for c in judged
             if c["outcome"] != "supports"]
    return one_rule([c["outcome"] for c in judged]), notes


def render(rows: list[dict[str, Any]], args: argparse.Namespace, result: str, notes: list[str],
           used: dict[str, str]) -> list[str]:
    summary = summarise(rows)
    judged = cells(rows)
    cell_rows = [[c["column"], c["pair"], f"{c['diff']:+.1f}",
                  "-" if c["seeds"] < 2 else f"[{c['interval'][0]:+.1f}, {c['interval'][1]:+.1f}]", c["seeds"],
                  c["outcome"]] for c in judged]
    n_seeds = len({r["seed"] for r in rows})
    head = ["method", *COLUMNS]
    paper = [[LABEL[d], *PAPER[d]] for d in DEFENSES]
    ours = [[LABEL[d], *(f"{summary[d][c][0]:.1f} +- {summary[d][c][1]:.1f}" for c in COLUMNS)] for d in summary]
    per_seed = [[LABEL[r["defense"]], r["seed"], *(f"{100 * r[c]:.1f}" for c in COLUMNS),
                 r["train_seconds"] if "diverged" not in r else "DIVERGED (counted as 0)",
                 "yes" if r["reused"] else "no"] for r in rows]
    return [
        verdict_lines(result, [c["outcome"] for c in judged], "95% t-interval over the training seeds of the "
                      "per-seed difference; claim: at eps 32 Bidirection and Pivot beat Kurakin's, and Kurakin's "
                      "beats the baseline, under all four attacks (12 cells)")
        + ("" if not notes else "\n\nNot supported: " + "; ".join(notes) + ".")
        + (f" With {n_seeds} seeds the interval's t is {'12.7' if n_seeds == 2 else 'large'}: issue 24 asks for "
           "5." if n_seeds < 5 else "")
        + ("" if all("samples" in r for r in rows) else " Per-sample results: not recorded by this run (it predates "
           "issue 24)."),
        "## Cells (points of %)\n\n" + markdown_table(["column", "claim", "mean difference", "95% interval",
                                                        "seeds", "outcome"], cell_rows),
        paper_section("000-table1", paper, head),
        f"## Ours (digits28, LeNet-5, %, mean +- std over training seeds {args.seeds})\n\n"
        + markdown_table(head, ours),
        "## Per seed\n\n" + markdown_table(["method", "seed", *COLUMNS, "train s", "reused"], per_seed),
        f"## Protocol\n\nTraining: `robustreg.train`, lenet5-mnist from scratch on digits28 (1437 train images), "
        f"{args.iterations} iterations, batch {args.batch_size} (the adversarial defenses: k = half of it step_ll "
        "examples, "
        f"eps ~ |N(0, max_e/2)| kept in [0, 32/255]), SGD lr {args.lr:g} / 10 at {args.iterations // 2} and "
        f"{3 * args.iterations // 4}, momentum 0.9, weight decay 1e-4, no augmentation; bidirectional / pivot "
        "at the registry's defaults (N = 2: L_dist = 1/2 sum of squares, the authors' tf.nn.l2_loss; logits "
        "embedding). Pivot is the authors' released code's loss, which passes gradient to the clean embedding "
        "too and so equals bidirectional's: with the same seed the two trainings are the same run and their rows "
        "coincide. The paper's text detaches the clean embedding instead; our former pivot did (with L_dist = the "
        "sum of squares) and went to NaN in all 3 runs of this recipe (lr 0.05 seed 0, lr 0.02 seeds 0 and 1): the "
        "detached pivot runs away from the adversarial logits and both grow geometrically (see "
        "`robustreg_plugins.cascade.defenses`; `detach_pivot=True` keeps that version: with the 1/2 it still "
        "diverges at lr 0.05, and at lr 0.02 ends with logits ~3x bidirectional's). Evaluation: the first "
        f"{args.n_test} of the 360 digits28 test images; step_ll, step_FGSM (one step of eps), iter_ll, iter_FGSM "
        "(min(eps + 4, 1.25 eps) steps of 1/255) at eps 16/255 and 32/255, each alone (independent mode), "
        "white-box on the trained model.\n\n" + deviation_lines(["iter-ll-target", "eps-draw"], used),
        "## What differs from the paper\n\n- data: 28x28 upsampled 8x8 scikit-learn digits (1437 / 360), not "
        "MNIST (60000 / 10000);\n- model: LeNet-5 instead of ResNet-20;\n- training: "
        f"{args.iterations} instead of 8000 iterations, batch {args.batch_size} instead of 128, lr {args.lr:g} instead "
        "of 0.1, and no 2-epoch "
        "pre-trained starting point;\n- seeds: the paper reports one run.",
        f"Seeds: training and defense {args.seeds}; attacks are deterministic. Training folders: `{args.runs}`.",
    ]


def plot(rows: list[dict[str, Any]]) -> bytes:
    summary = summarise(rows)
    cols = [f"{a}@32" for a in ATTACKS]
    return grouped_bars({LABEL[d]: [summary[d][c][0] for c in cols] for d in summary}, cols,
                        "paper 000 Table 1 at digits28 scale, eps 32/255 (mean +- std over seeds)", "accuracy (%)",
                        size=(8.0, 3.8), errors={LABEL[d]: [summary[d][c][1] for c in cols] for d in summary})


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    clock = Clock()
    out = out_dir(args, CLAIM)
    x, y = digits_test(args.n_test, "digits28")
    earlier = earlier_run(args, clock)
    rows = [] if earlier is None else earlier["rows"]
    for d in DEFENSES if earlier is None else ():
        for seed in (int(s) for s in args.seeds.split(",")):
            try:
                path, seconds, reused = train_one(d, seed, args)
            except FloatingPointError as exc:  # a diverged run is a result: reported, and it fails the claim
                print(d, seed, "diverged:", exc, flush=True)
                rows.append({"defense": d, "seed": seed, "train_seconds": None, "reused": False,
                             "diverged": str(exc), **{c: 0.0 for c in COLUMNS}})
                continue
            samples: dict[str, str] = {}
            acc = evaluate_one(path, x, y, args.device, not args.smoke, samples)
            rows.append({"defense": d, "seed": seed, "train_seconds": round(seconds, 1), "reused": reused, **acc,
                         "samples": samples})
            print(d, seed, {k: round(v, 3) for k, v in acc.items()}, flush=True)
    result, notes = verdict(rows)
    used = fidelity(earlier) if earlier is not None else dict(CURRENT)
    numbers = {"claim": "paper 000 Table 1 (MNIST)", "verdict": result, "notes": notes, "paper": PAPER,
               "paper_source": PAPER_TABLES["000-table1"].source, "test": "95% t-interval over training seeds",
               "cells": cells(rows), "fidelity": used, "seeds": {"training": args.seeds, "attack": "deterministic"},
               "columns": COLUMNS, "rows": rows, "summary": summarise(rows), "args": vars(args)}
    sections = render(rows, args, result, notes, used) + rerender_note(args)
    return write_report(out, "Claim 3 -- paper 000 Table 1 at digits28 scale", sections,
                        numbers, clock, plot(rows), "table1.png")


if __name__ == "__main__":
    print(main())
