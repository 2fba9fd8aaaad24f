"""Claim 9, paper 004 Figs. 3-5: the SI-trained models' loss rises along the attack direction (no gradient
obfuscation), TRADES-SI's weight-loss surface is flatter than TRADES's, and its cos(theta_y) on PGD-10 examples is
larger.

Paper 004 (Xu et al. 2022, arXiv:2201.12527), sec. 5.4.3 and Figs. 3-5 (ResNet-18, CIFAR-10, 8/255):

- Fig. 3: the loss surfaces of AT-SI around x + d1 v + d2 r (v the PGD-10 perturbation, r a random sign
  direction) "are smooth, which reveals ... the robustness improvement ... is not caused by gradient obfuscation";
- Fig. 4: "the weight loss surface of TRADES-SI is flatter ... than original TRADES";
- Fig. 5: "the cos theta of TRADES-SI ... have larger values than TRADES" on PGD-10 examples.

Here on claim 5's digits models (reused from ``--runs``; trained if missing with claim 5's recipe), with the
registered analyses ``loss-surface``, ``weight-surface`` and ``cos-histogram``.  Each cell is a 95% t-interval
over the training seeds of a per-seed statistic:

- Fig. 3 (AT-SI, and AT beside it): the mean CE at d1 = 1 (the attack's point) minus at d2 = 1 (as far along the
  random direction): > 0 when the attack direction is the steep one, as it is without obfuscation;
- Fig. 4: TRADES's rise of the adversarial loss along a filter-normalised weight direction minus TRADES-SI's;
- Fig. 5: TRADES-SI's mean cos(theta_y) on its own PGD-10 examples minus TRADES's.

    OMP_NUM_THREADS=1 python benchmarks/reproduce/claim9_si_surfaces.py --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _digits import RUNS, Recipe, digits_test, train_digits
from _paper import PAPER as PAPER_TABLES
from _paper import paper_section
from _report import Clock, base_parser, draw_bars, markdown_table, out_dir, write_report
from _verdict import bits, seeds_outcome, t_interval, verdict_lines
from _verdict import verdict as one_rule
from claim5_si_improves import EPOCHS as CLAIM5_EPOCHS
from claim5_si_improves import TRAIN_STEPS as CLAIM5_TRAIN_STEPS

CLAIM = "claim9_si_surfaces"
DEFENSES = ("at", "at-si", "trades", "trades-si")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4", help="claim 5's training seeds")
    p.add_argument("--epochs", type=int, default=CLAIM5_EPOCHS, help="claim 5's recipe")
    p.add_argument("--train-steps", type=int, default=CLAIM5_TRAIN_STEPS,
                   help="claim 5's recipe: steps of the inner attack (its models are reused)")
    p.add_argument("--eps", type=float, default=Recipe.eps)
    p.add_argument("--n", type=int, default=128, help="test images (the paper's Fig. 5: the CIFAR-10 test set)")
    p.add_argument("--grid", type=int, default=11, help="loss-surface grid (odd)")
    p.add_argument("--weight-steps", type=int, default=11, help="points along the weight direction")
    p.add_argument("--runs", type=Path, default=RUNS)
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs, args.train_steps, args.n, args.grid, args.weight_steps = "0", 1, 2, 8, 3, 3
    return args


def analyse(models: dict[str, Any], x: Any, y: Any, eps: float, args: argparse.Namespace) -> dict[str, Any]:
    """The three analyses on one seed's models; ``samples``: per model, PGD-10 correctness (1 = correct)."""
    import torch

    from robustreg import Registry, ThreatModel
    from robustreg_plugins.scale_invariant.analyses.cos_histogram import cos_histogram
    from robustreg_plugins.scale_invariant.analyses.loss_surface import loss_surface
    from robustreg_plugins.scale_invariant.analyses.weight_surface import weight_surface

    pgd = Registry.create().build_attack("pgd", ThreatModel("linf", eps), steps=10, seed=0)
    surface = loss_surface({d: models[d] for d in ("at", "at-si")}, x, y, pgd, grid=args.grid, span=1.0, images=0,
                           seed=0, attack_name="pgd-10")
    weights = weight_surface({d: models[d] for d in ("trades", "trades-si")}, x, y, pgd, steps=args.weight_steps,
                             span=1.0, recraft=True, seed=0, attack_name="pgd-10")
    cos = cos_histogram({d: models[d] for d in ("trades", "trades-si")}, x, y, [("pgd", {"steps": 10})], eps, seed=0)
    samples = {}
    for d, model in models.items():
        with torch.no_grad():
            samples[d] = {"clean": bits(model(x).argmax(1) == y)}
        x_adv = pgd(model, x, y)
        with torch.no_grad():
            samples[d]["pgd-10"] = bits(model(x_adv).argmax(1) == y)
    return {"loss_surface": surface, "weight_surface": weights, "cos_histogram": cos, "samples": samples}


def steepness(surface: dict[str, Any], label: str) -> float:
    """Mean CE at (d1, d2) = (1, 0) minus at (0, 1): the attack direction against the random one."""
    row = next(m for m in surface["models"] if m["label"] == label)
    coords = surface["delta1"]
    mid, one = coords.index(0.0), coords.index(1.0)
    return float(row["mean_surface"][one][mid] - row["mean_surface"][mid][one])


def statistics_of(result: dict[str, Any]) -> dict[str, float]:
    rise = {m["label"]: m["rise"] for m in result["weight_surface"]["models"]}
    cos = result["cos_histogram"]["cells"][0]["models"]
    return {"steep at-si": steepness(result["loss_surface"], "at-si"),
            "steep at": steepness(result["loss_surface"], "at"),
            "rise trades": rise["trades"], "rise trades-si": rise["trades-si"],
            "cos trades": cos["trades"]["mean"], "cos trades-si": cos["trades-si"]["mean"]}


CELLS = [("Fig. 3: AT-SI's loss rises more along the PGD-10 direction than along a random sign one",
          "steep at-si", None),
         ("Fig. 4: TRADES-SI's weight-loss surface is flatter than TRADES's (rise TRADES - TRADES-SI)",
          "rise trades", "rise trades-si"),
         ("Fig. 5: TRADES-SI's cos(theta_y) on PGD-10 examples is larger than TRADES's", "cos trades-si",
          "cos trades")]


def judge(stats: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for text, first, second in CELLS:
        diffs = [s[first] - (s[second] if second else 0.0) for s in stats.values()]
        iv = t_interval(diffs)
        out.append({"cell": text, "diffs": diffs, "mean": iv.mean, "interval": [iv.low, iv.high],
                    "outcome": seeds_outcome(diffs)})
    return out


def render(cells: list[dict[str, Any]], stats: dict[int, dict[str, float]], result: str,
           args: argparse.Namespace) -> list[str]:
    body = [[c["cell"], f"{c['mean']:+.4f}", "-" if len(stats) < 2 else
             f"[{c['interval'][0]:+.4f}, {c['interval'][1]:+.4f}]", c["outcome"]] for c in cells]
    keys = list(next(iter(stats.values())))
    per_seed = [[s, *(f"{v[k]:.4f}" for k in keys)] for s, v in stats.items()]
    recipe = Recipe(eps=args.eps, epochs=args.epochs, steps=args.train_steps)
    return [
        verdict_lines(result, [c["outcome"] for c in cells], "95% t-interval over the training seeds of a per-seed "
                      "statistic (claimed > 0), one cell per figure"),
        paper_section("004-figs3-5"),
        "## Cells\n\n" + markdown_table(["statement (claimed > 0)", "mean", "95% interval", "outcome"], body),
        "## Per seed\n\nsteep: mean CE at d1 = 1 (the PGD-10 point) minus at d2 = 1 (random sign, same L_inf size); "
        "rise: max - min of the adversarial CE (PGD-10 recrafted at every point) along w + t d, t in [-1, 1], d a "
        "filter-normalised Gaussian direction; cos: mean cos(theta_y) on the model's own PGD-10 examples.\n\n"
        + markdown_table(["seed", *keys], per_seed),
        f"## Protocol\n\nModels: claim 5's ({recipe.describe()}), seeds {args.seeds}. Images: the first {args.n} "
        f"digits test images. PGD-10 at L_inf eps {args.eps:g} (step eps/4, random start, attack seed 0). "
        f"`loss_surface`: grid {args.grid} x {args.grid} of d1, d2 in [-1, 1] (span 1: the eps ball), r seed 0, AT and "
        f"AT-SI; `weight_surface`: {args.weight_steps} points t in [-1, 1], recraft on, direction seed 0, TRADES and "
        "TRADES-SI; `cos_histogram`: PGD-10 (`pgd`, steps 10), TRADES and TRADES-SI. Per-sample results: clean and "
        "PGD-10 correctness per model (report.json `results[].samples`).\n\nDeviations: PGD returns each sample's "
        "first successful iterate (it can only lower accuracy); claim 5's SI inner-start deviation applies to the "
        "models.",
        "## What differs from the paper\n\n- digits and a 2-conv CNN instead of CIFAR-10 and ResNet-18; 20 epochs; "
        "n = 128 test images;\n- the figures are reduced to one number each (steepness, rise, mean cos), judged over "
        "seeds; the paper shows single models' plots.",
        f"Seeds: training {args.seeds}; attack, random direction and weight direction 0. Training folders: "
        f"`{args.runs}`.",
    ]


def plot(stats: dict[int, dict[str, float]]) -> bytes:
    from robustreg.analysis import figure, figure_png

    fig = figure(10.0, 3.4)
    axes = fig.subplots(1, 3)
    seeds = [str(s) for s in stats]
    for ax, (title, keys) in zip(axes, (("Fig. 3: steepness along v vs r", ("steep at", "steep at-si")),
                                        ("Fig. 4: weight-loss rise", ("rise trades", "rise trades-si")),
                                        ("Fig. 5: mean cos(theta_y), PGD-10", ("cos trades", "cos trades-si")))):
        draw_bars(ax, {k: [stats[int(s)][k] for s in seeds] for k in keys}, [f"seed {s}" for s in seeds], title,
                  "value", tick_size=7)
    fig.suptitle("paper 004 Figs. 3-5 on claim 5's digits models", fontsize=10)
    return figure_png(fig)


def main(argv: list[str] | None = None) -> Path:
    from robustreg import build_model

    args = parse_args(argv)
    clock = Clock()
    out = out_dir(args, CLAIM)
    recipe = Recipe(eps=args.eps, epochs=args.epochs, steps=args.train_steps, n_train=128 if args.smoke else None)
    x, y = digits_test(args.n)
    results, stats = {}, {}
    for seed in (int(s) for s in args.seeds.split(",")):
        models = {d: build_model("digits-cnn", weights=str(train_digits(d, seed, recipe, args.runs)[0])).eval()
                  for d in DEFENSES}
        results[seed] = analyse(models, x, y, args.eps, args)
        stats[seed] = statistics_of(results[seed])
        print(seed, {k: round(v, 4) for k, v in stats[seed].items()}, flush=True)
    cells = judge(stats)
    result = one_rule([c["outcome"] for c in cells])
    table = PAPER_TABLES["004-figs3-5"]
    numbers = {"claim": "paper 004 Figs. 3-5 (loss surface, weight surface, cos theta)", "verdict": result,
               "paper": table.rows, "paper_source": table.source, "test": "95% t-interval over training seeds",
               "seeds": {"training": args.seeds, "attack": 0}, "n": len(x), "cells": cells, "statistics": stats,
               "results": [{"seed": s, **r} for s, r in results.items()], "args": vars(args)}
    return write_report(out, "Claim 9 -- paper 004 Figs. 3-5 on claim 5's models", render(cells, stats, result, args),
                        numbers, clock, plot(stats), "si_surfaces.png")


if __name__ == "__main__":
    print(main())
