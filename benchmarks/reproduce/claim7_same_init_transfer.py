"""Claim 7, paper 000 Appendix B Tables 8-9: black-box attacks between networks with the SAME initialisation
transfer better (leave the target less accurate) than between networks with different initialisations.

Paper 000 (Na, Ko & Mukhopadhyay, arXiv:1708.02582), Appendix B: "black box attack between trained networks with
the same initialization tends to be more successful than that between networks with different initialization"
(Table 8: sources B1 K1 P1 -> targets B1 K1 P1; Table 9: sources B1 K1 P1 -> targets B2 K2 P2; CIFAR-10, eps 16).

No new training: claim 4's transfer matrices (:mod:`claim4_transfer_cascade`: CIFAR-10, ResNet-8, B/K/P at
initialisations 0 and 1, step_FGSM / iter_ll / iter_FGSM at eps 16 of 255, every image's result kept) already hold
both kinds of pair.  For every black-box pair (source strategy X, target strategy Y, X != Y) and target
initialisation t, the cell compares the target's per-image results on examples from X at ITS OWN initialisation
(Table 8) with those from X at the other one (Table 9), by McNemar's exact test.  ``--smoke`` builds a tiny
transfer report with claim 4's own smoke recipe.

    OMP_NUM_THREADS=1 python benchmarks/reproduce/claim7_same_init_transfer.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from _paper import PAPER as PAPER_TABLES
from _paper import paper_section
from _report import RESULTS, Clock, base_parser, draw_bars, markdown_table, out_dir, write_report
from _verdict import best_case_p, lower_cell, verdict_lines
from _verdict import verdict as one_rule
from claim4_transfer_cascade import TESTABLE_BELOW, untestable_table4

CLAIM = "claim7_same_init_transfer"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--claim4", type=Path, default=RESULTS / "claim4_transfer_cascade" / "report.json",
                   help="claim 4's report.json (its 'transfer' entry is read)")
    p.add_argument("--runs", type=Path, default=None, help="smoke only: where claim 4's smoke trainings go")
    return p.parse_args(argv)


def smoke_transfer(args: argparse.Namespace) -> dict[str, Any]:
    """A transfer report from claim 4's smoke recipe (2 iterations, 8 images): the numbers mean nothing."""
    import tempfile

    from claim4_transfer_cascade import parse_args as claim4_args
    from claim4_transfer_cascade import test_images, transfer_part

    runs = args.runs or Path(tempfile.mkdtemp())
    a4 = claim4_args(["--smoke", "--runs", str(runs)])
    x, y = test_images(a4)
    return transfer_part(a4, x, y)


def cells(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per attack x eps x target x other-strategy source: accuracy on the same-initialisation source's examples
    and on the other initialisation's (points), the gap other - same, and McNemar's exact test on the target's
    per-image results (claimed: fewer right on the same-initialisation source's examples). A report without
    per-sample results (claim 4's run before issue 24) gives inconclusive cells and the best case's p (the count
    difference as if every discordant image went one way)."""
    n = report["n"]
    samples = report.get("samples") or {}
    out = []
    for block in report["matrices"]:
        key = f"{block['label']}@{round(block['eps'] * 255)}"
        src = {s: i for i, s in enumerate(block["sources"])}
        for j, target in enumerate(block["targets"]):
            letter, init = target[0], target[1:]
            for source in block["sources"]:
                if source[0] == letter or source[1:] != init:
                    continue  # white-box, or not the same-initialisation source
                other = [s for s in block["sources"] if s[0] == source[0] and s[1:] != init]
                if not other:
                    continue
                same_acc = 100 * block["accuracy"][src[source]][j]
                other_acc = 100 * statistics.fmean(block["accuracy"][src[s]][j] for s in other)
                diff = round((other_acc - same_acc) * n / 100)
                cell = {"attack": block["attack"], "eps": round(block["eps"] * 255), "target": target,
                        "source": source[0], "same_init": same_acc, "other_init": other_acc,
                        "gap": other_acc - same_acc, "best_case_p": best_case_p(diff)}
                bits_of = samples.get(key, {}) if len(other) == 1 else {}
                cell.update(lower_cell(bits_of.get(source, {}).get(target), bits_of.get(other[0], {}).get(target)))
                out.append(cell)
    return out


def untestable(report: dict[str, Any]) -> str | None:
    """The precondition claim 4 applies to Table 4 (:func:`claim4_transfer_cascade.untestable_table4`: white-box
    iter_FGSM must bring the undefended nets near 0%), which holds for its appendix just the same."""
    return untestable_table4(report)


def paper_gaps(attack: str) -> list[float]:
    """The paper's gaps: Table 9's accuracy minus Table 8's, per black-box (target, source) strategy pair."""
    rows = PAPER_TABLES["000-table8-9"].rows
    out = []
    for letter in "BKP":
        for k, source in enumerate("BKP"):
            if source != letter:
                out.append(rows[f"T9 {letter}2 {attack}"][k] - rows[f"T8 {letter}1 {attack}"][k])
    return out


def describe(c4: dict[str, Any]) -> dict[str, str]:
    """Claim 4's setting as its report.json records it (a digits28 run before issue 24 recorded none)."""
    a = c4.get("args", {})
    if a.get("data", "digits28") == "cifar10":
        return {"where": f"CIFAR-10, {c4.get('model', a.get('model'))}",
                "protocol": f"{c4.get('model')} ({a.get('model')}) trained from scratch on {c4.get('data')}, "
                            f"{a.get('iterations')} iterations of batch {a.get('batch_size')}, standard / kurakin / "
                            f"pivot with step_ll at max_e {a.get('max_e')}/255",
                "differs": f"- data and model: {c4.get('data')}; {c4.get('model')}, not ResNet-20 on the 50000 "
                           f"training images; {a.get('iterations')} iterations of batch {a.get('batch_size')} from "
                           "scratch, not 94k from a pre-trained network (max_e 16 as the paper)"}
    return {"where": "digits28, LeNet-5",
            "protocol": "lenet5-mnist trained on digits28, 250 iterations, standard / kurakin / pivot with step_ll "
                        "at max_e 32/255",
            "differs": "- data and model: 28x28 digits and LeNet-5, not CIFAR-10 and ResNet-20; 250 iterations, "
                       "max_e 32/255 (the paper: max_e 16, CIFAR-10)"}


def render(report: dict[str, Any], rows: list[dict[str, Any]], result: str, why: str | None,
           args: argparse.Namespace, setting: dict[str, str]) -> list[str]:
    outs = [r["outcome"] for r in rows]
    positive = sum(r["gap"] > 0 for r in rows)
    it = [r for r in rows if r["attack"] == "iter-fgsm"]
    paper = PAPER_TABLES["000-table8-9"].rows
    prow = [[*label.split(" "), *vals] for label, vals in paper.items()]
    per_sample = bool(report.get("samples"))
    body = [[r["attack"], r["eps"], r["target"], r["source"], f"{r['same_init']:.1f}", f"{r['other_init']:.1f}",
             f"{r['gap']:+.1f}", "-" if r["p"] is None else f"{r['only_same']} vs {r['only_other']}",
             f"{r['best_case_p']:.3g}" if r["p"] is None else f"{r['p']:.3g}", r["outcome"]] for r in rows]
    eps = sorted({r["eps"] for r in rows})
    test = ("McNemar exact on the same images (target, source strategy, attack, eps: same-initialisation source vs "
            "the other initialisation's), from claim 4's per-image results" if per_sample else
            "McNemar exact on the same images; the transfer report has no per-sample results, so each cell is "
            "inconclusive and only its best case is given")
    return [
        verdict_lines(result, outs, test, why)
        + f"\n\nOn the means, the same-initialisation source leaves the target less accurate in {positive} of "
        f"{len(rows)} cells ({sum(r['gap'] > 0 for r in it)} of {len(it)} under iter_FGSM); the largest gap is "
        f"{max((r['gap'] for r in rows), default=0):+.1f} points. In the paper (Table 9 minus Table 8, the same "
        "source and target strategies) the gap under iter_FGSM at eps 16 is "
        + ", ".join(f"{g:+.1f}" for g in paper_gaps("iter-fgsm")) + " points.",
        paper_section("000-table8-9", prow, ["table", "target", "attack", "source B1", "source K1", "source P1"]),
        f"## Ours (claim 4's matrices, {setting['where']}, n = {report['n']}, %)\n\n'same init': the target's "
        "accuracy on the examples crafted on the source strategy at the target's own initialisation (Table 8's "
        "off-diagonal); 'other init': at the other initialisation (Table 9); gap = other - same (> 0: the same "
        "initialisation transfers better, the claim). discordant: images the target gets right on the same-"
        "initialisation source's example only vs on the other's only; p: McNemar's exact p"
        + ("" if per_sample else " (here the best case: every discordant image the claimed way)") + ".\n\n"
        + markdown_table(["attack", "eps", "target", "source", "same init", "other init", "gap", "discordant", "p",
                          "outcome"], body),
        "## Protocol\n\nNo training and no attack here: the numbers are claim 4's transfer matrices "
        f"(`{args.claim4.name if not args.smoke else 'smoke'}`; its protocol: {setting['protocol']}, "
        "initialisations = training seeds 0 and 1; examples crafted by `robustreg_plugins.cascade.analyses.transfer`'s "
        f"engine on every source at eps {', '.join(map(str, eps))} of 255, attack seed 0"
        + ("; every image's result kept). McNemar's exact test pairs the target's results on the two sources' "
           "examples of the same images." if per_sample else "). That run recorded each matrix entry as an accuracy "
           "over the n images, not per image, so McNemar's test cannot be run; the best-case p is the smallest p "
           "the count difference allows.")
        + f" Precondition (claim 4's): white-box iter_FGSM must leave the undefended nets below {TESTABLE_BELOW:g}%."
        "\n\nThe deviations of claim 4 apply (iter_ll target, eps draw).",
        f"## What differs from the paper\n\n{setting['differs']};\n- an 'initialisation' is a training seed, which "
        "also changes the data order (the paper pre-trains starting points on clean images).",
        "Seeds: claim 4's initialisations 0 and 1; attack seed 0.",
    ]


def plot(rows: list[dict[str, Any]], where: str) -> bytes:
    from robustreg.analysis import figure, figure_png

    fig = figure(9.0, 3.6)
    ax = fig.subplots()
    sel = [r for r in rows if r["eps"] == 16]
    draw_bars(ax, {"same initialisation (Table 8)": [r["same_init"] for r in sel],
                   "other initialisation (Table 9)": [r["other_init"] for r in sel]},
              [f"{r['attack'][:6]} {r['source']}->{r['target']}" for r in sel],
              f"paper 000 Tables 8-9 ({where}), eps 16/255 (black-box accuracy of the target)",
              "accuracy (%)", tick_size=6, rotation=70)
    ax.set_ylim(0, 110)
    return figure_png(fig)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    clock = Clock()
    out = out_dir(args, CLAIM)
    if args.smoke:
        report, source = smoke_transfer(args), "claim 4's smoke recipe"
        c4: dict[str, Any] = {"args": {"data": "cifar10", "model": "resnet8", "iterations": 2, "batch_size": 128,
                                       "max_e": 16}, "model": "ResNet-8", "data": "CIFAR-10 (smoke)"}
    else:
        if not args.claim4.exists():
            raise SystemExit(f"--claim4 {args.claim4} does not exist; run claim4_transfer_cascade.py first")
        c4 = json.loads(args.claim4.read_text())
        report, source = c4["transfer"], str(args.claim4)
    setting = describe(c4)
    rows = cells(report)
    why = untestable(report)
    result = one_rule([r["outcome"] for r in rows] or ["inconclusive"], why)
    numbers = {"claim": "paper 000 Appendix B Tables 8-9 (same-initialisation transfer)", "verdict": result,
               "untestable": why, "test": "McNemar exact on claim 4's per-image transfer results (a run without "
                                          "them: best case only)",
               "paper": PAPER_TABLES["000-table8-9"].rows,
               "paper_source": PAPER_TABLES["000-table8-9"].source, "source_report": source,
               "samples": None, "samples_note": "none of its own: this script runs no evaluation; the per-image "
                                                "results it tests are claim 4's (its report.json, transfer.samples)",
               "seeds": {"initialisations": "0,1", "attack": 0}, "n": report["n"], "cells": rows,
               "args": vars(args)}
    return write_report(out, f"Claim 7 -- paper 000 Tables 8-9: same-initialisation transfer ({setting['where']})",
                        render(report, rows, result, why, args, setting), numbers, clock, plot(rows, setting["where"]),
                        "same_init_transfer.png")


if __name__ == "__main__":
    print(main())
