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

from _digits import RUNS, digits_test
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

CLAIM = "claim3_table1_mnist"
DEFENSES = ("standard", "kurakin", "bidirectional", "pivot")
LABEL = {"standard": "Baseline", "kurakin": "Kurakin's", "bidirectional": "Bidirection", "pivot": "Pivot"}
ATTACKS = ("step-ll", "step-fgsm", "iter-ll", "iter-fgsm")
EPS = (16, 32)  # of 255
# Table 1 (%): clean, then (attack, eps) in ATTACKS x EPS order.
PAPER = {"standard": (99.6, 95.7, 30.2, 92.6, 29.7, 98.1, 66.2, 86.6, 7.5),
         "kurakin": (99.6, 99.2, 96.7, 98.5, 94.1, 99.5, 97.9, 98.2, 87.9),
         "bidirectional": (99.5, 99.3, 98.8, 99.1, 98.4, 99.4, 99.1, 98.9, 96.5),
         "pivot": (99.6, 99.4, 98.8, 99.1, 98.1, 99.5, 99.3, 98.8, 96.4)}
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


def evaluate_one(path: Path, x: Any, y: Any, device: str, checks: bool = True) -> dict[str, float]:
    from robustreg import build_model, evaluate
    from robustreg.checks import CHECKS

    model = build_model("lenet5-mnist", weights=str(path)).eval()
    report = evaluate(model, (x, y), list(ATTACKS), [e / 255 for e in EPS], seed=0, mode="independent",
                      device=device, progress=False, no_check=() if checks else CHECKS)
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


def verdict(summary: dict[str, dict[str, tuple[float, float]]]) -> tuple[str, list[str]]:
    """The paper's claim at eps 32: bidirectional and pivot > kurakin (and kurakin > baseline), every attack."""
    checks, notes = [], []
    pairs = [("bidirectional", "kurakin"), ("pivot", "kurakin"), ("kurakin", "standard")]
    for a in ATTACKS:
        c = f"{a}@32"
        for hi, lo in pairs:
            (m1, s1), (m0, s0) = summary[hi][c], summary[lo][c]
            ok = m1 - m0 > (s0 ** 2 + s1 ** 2) ** 0.5
            checks.append(ok)
            if not ok:
                notes.append(f"{LABEL[hi]} {m1:.1f} vs {LABEL[lo]} {m0:.1f} under {c}")
    result = "held" if all(checks) else ("did not hold" if not any(checks) else "partly")
    return result, notes


def render(rows: list[dict[str, Any]], args: argparse.Namespace, result: str, notes: list[str]) -> list[str]:
    summary = summarise(rows)
    head = ["method", *COLUMNS]
    paper = [[LABEL[d], *PAPER[d]] for d in DEFENSES]
    ours = [[LABEL[d], *(f"{summary[d][c][0]:.1f} +- {summary[d][c][1]:.1f}" for c in COLUMNS)] for d in summary]
    per_seed = [[LABEL[r["defense"]], r["seed"], *(f"{100 * r[c]:.1f}" for c in COLUMNS),
                 r["train_seconds"] if "diverged" not in r else "DIVERGED (counted as 0)",
                 "yes" if r["reused"] else "no"] for r in rows]
    return [
        f"**Verdict: {result}** (claim: at eps 32 Bidirection and Pivot beat Kurakin's, and Kurakin's beats the "
        "baseline, under all four attacks, each by more than the seeds' spread)."
        + ("" if not notes else " Not beyond the spread: " + "; ".join(notes) + "."),
        "## Paper (Table 1, MNIST, ResNet-20, %)\n\n" + markdown_table(head, paper),
        f"## Ours (digits28, LeNet-5, %, mean +- std over training seeds {args.seeds})\n\n"
        + markdown_table(head, ours),
        "## Per seed\n\n" + markdown_table(["method", "seed", *COLUMNS, "train s", "reused"], per_seed),
        f"## Protocol\n\nTraining: `robustreg.train`, lenet5-mnist from scratch on digits28 (1437 train images), "
        f"{args.iterations} iterations, batch {args.batch_size} (the adversarial defenses: k = half of it step_ll "
        "examples, "
        f"eps ~ |N(0, max_e/2)| truncated to [0, 32/255]), SGD lr {args.lr:g} / 10 at {args.iterations // 2} and "
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
        "white-box on the trained model.",
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
            acc = evaluate_one(path, x, y, args.device, not args.smoke)
            rows.append({"defense": d, "seed": seed, "train_seconds": round(seconds, 1), "reused": reused, **acc})
            print(d, seed, {k: round(v, 3) for k, v in acc.items()}, flush=True)
    result, notes = verdict(summarise(rows))
    numbers = {"claim": "paper 000 Table 1 (MNIST)", "verdict": result, "notes": notes, "paper": PAPER,
               "columns": COLUMNS, "rows": rows, "summary": summarise(rows), "args": vars(args)}
    sections = render(rows, args, result, notes) + rerender_note(args)
    return write_report(out, "Claim 3 -- paper 000 Table 1 at digits28 scale", sections,
                        numbers, clock, plot(rows), "table1.png")


if __name__ == "__main__":
    print(main())
