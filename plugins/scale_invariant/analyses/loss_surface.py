"""Input-space loss surfaces around the attack's direction (paper 004 Fig. 3).

Paper 004 (sec. 5.4.3, Fig. 3) plots the cross-entropy of the model on perturbed images

    x'(d1, d2) = x + d1 * v + d2 * r,

with v the perturbation of a 10-step PGD attack at eps = 8/255 (L_inf) and r a random direction: a smooth
surface, whose peak along v is where the attack ended, says the robustness is not gradient obfuscation.

Here v = x_adv - x is the perturbation of the user's attack (``--attacks``) at ``--eps`` itself, not
renormalised -- the paper takes "the PGD perturbation as the normal direction v" -- so d1 = 1 is exactly the
attack's point and d1 = 0 the clean image.  r is a random sign vector (seeded) scaled to the eps sphere,
r = eps * s / ||s||_p (for L_inf: eps * s), so |d2| = 1 is the ball's edge along r.  d1 and d2 span
[-S, S] (``--span``, default 2: twice the budget) on a K x K grid; x' is not clipped to the pixel box
(the surface is a plain plane section of the loss).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustreg import Attack, ThreatModel, UsageError
from robustreg.analysis import (
    AnalysisOutput,
    accuracy,
    add_analysis_args,
    analysis_samples,
    craft_batched,
    figure,
    figure_png,
    finite,
    json_params,
    labelled_models,
    load_models,
    markdown_table,
    one_attack,
    progress,
    sample_losses,
)
from robustreg.options import flag, positive_int, seed_value, with_options

NAME = "loss-surface"

__all__ = ["loss_surface", "random_sign_direction"]

PAPER = "paper 004 Fig. 3"
SUMMARY = f"cross-entropy on x + d1 v + d2 r around the attack's direction ({PAPER})"


def random_sign_direction(x: torch.Tensor, threat: ThreatModel, seed: int) -> torch.Tensor:
    """A random sign vector per sample scaled to the eps sphere of ``threat``: r = eps * s / ||s||_p with
    s uniform in {-1, +1}^D (drawn on the CPU from a generator seeded with ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    s = (torch.randint(0, 2, x.shape, generator=gen) * 2 - 1).to(dtype=x.dtype, device=x.device)
    norm = threat.distance(s, torch.zeros_like(s)).view(-1, *([1] * (x.dim() - 1)))
    return s * (threat.eps / norm)


def _grid_values(surface: torch.Tensor) -> list[list[float | None]]:
    return [[finite(v) for v in row] for row in surface.tolist()]


def _surface(model: nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, r: torch.Tensor,
             coords: torch.Tensor, batch_size: int, show: bool, label: str) -> torch.Tensor:
    """CE of ``model`` at x + coords[i] v + coords[j] r for every image: shape N x K x K."""
    k = len(coords)
    out = torch.empty(len(x), k, k)
    points = [(i, j) for i in range(k) for j in range(k)]
    for i, j in progress(points, total=len(points), desc=f"loss-surface {label}", enabled=show):
        xp = x + float(coords[i]) * v + float(coords[j]) * r
        out[:, i, j] = sample_losses(model, xp, y, batch_size).cpu()
    return out


@dataclass(frozen=True)
class LossSurfaceConfig:
    """The options of :func:`loss_surface` (its keyword arguments; see it for each one), checked once.

    ``options`` given to :func:`loss_surface` replace these fields: the older keyword calls keep working.
    """

    grid: int = 21
    span: float = 2.0
    images: int = 4
    seed: int = 0
    batch_size: int = 256
    show_progress: bool = False
    attack_name: str | None = None

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, optional=False)
        positive_int("batch_size", self.batch_size)
        flag("show_progress", self.show_progress)


def loss_surface(models: Mapping[str, nn.Module] | Sequence[tuple[str, nn.Module]] | nn.Module, x: Any,
                 y: torch.Tensor | None = None, attack: Attack | None = None, config: LossSurfaceConfig | None = None,
                 **options: Any) -> dict[str, Any]:
    """Paper 004 Fig. 3: CE(x + d1 v + d2 r) on a ``grid`` x ``grid`` lattice of d1, d2 in [-span, span].

    ``models``: one model, a ``{label: model}`` mapping or (label, model) pairs, each surfaced around its own
    attack direction v = attack(model, x, y) - x; r = :func:`random_sign_direction` (``seed``) is shared.
    Returns report.json's dict: ``delta1`` / ``delta2`` (the coordinates), and per model the mean surface
    over the N images and the surfaces of the first ``images`` images (``surface[i][j]`` at
    ``delta1[i]``, ``delta2[j]``), the clean and attack-point CE and accuracies, and the highest mean CE on
    the grid (``ce_max``) and along v inside the ball (``ce_max_along_v``: d1 in [-1, 1], d2 = 0; above
    ``ce_attack`` the attack missed a higher loss on its own line).
    """
    cfg = with_options(LossSurfaceConfig, config, options, caller="loss_surface()")
    x, y = analysis_samples(x, y, "loss_surface()", attack=attack)
    assert attack is not None  # for mypy: analysis_samples checked
    grid, span, images, seed, batch_size, show_progress, attack_name = (
        cfg.grid, cfg.span, cfg.images, cfg.seed, cfg.batch_size, cfg.show_progress, cfg.attack_name)
    if grid < 3 or grid % 2 == 0:
        raise ValueError(f"grid must be an odd number >= 3 (the grid holds 0, the clean image), got {grid}")
    if not span > 0:
        raise ValueError(f"span must be > 0, got {span}")
    if not 0 <= images <= len(x):
        raise ValueError(f"images must be between 0 and the number of samples ({len(x)}), got {images}")
    # exact 0, +-span (and +-1 where the grid holds it), unlike linspace's rounding
    coords = torch.tensor([span * (2 * k - (grid - 1)) / (grid - 1) for k in range(grid)], dtype=torch.float64)
    r = random_sign_direction(x, attack.threat, seed)
    rows = []
    for label, model in labelled_models(models):
        x_adv = craft_batched(attack, model, x, y, batch_size)
        surf = _surface(model, x, y, x_adv - x, r, coords, batch_size, show_progress, label)
        ce_clean, ce_attack = sample_losses(model, x, y, batch_size), sample_losses(model, x_adv, y, batch_size)
        along_v = surf.mean(0)[coords.abs() <= 1, len(coords) // 2]  # d1 in [-1, 1], d2 = 0: inside the ball
        rows.append({
            "label": label,
            "clean_accuracy": accuracy(model, x, y, batch_size),
            "attack_accuracy": accuracy(model, x_adv, y, batch_size),
            "ce_clean": finite(float(ce_clean.mean())),
            "ce_attack": finite(float(ce_attack.mean())),
            "ce_max": finite(float(surf.mean(0).max())),
            "ce_max_along_v": finite(float(along_v.max())),
            "mean_surface": _grid_values(surf.mean(0)),
            "images": [{"index": n, "label": int(y[n]), "ce_clean": finite(float(ce_clean[n])),
                        "ce_attack": finite(float(ce_attack[n])), "surface": _grid_values(surf[n])}
                       for n in range(images)],
        })
    return {
        "analysis": "loss-surface",
        "paper": PAPER,
        "formula": "CE(x + d1 * v + d2 * r), v = x_adv - x, r = eps * s / ||s||_p with s a random sign vector",
        "attack": attack_name or attack.label(),
        "params": json_params(attack.config),
        "norm": attack.threat.norm,
        "eps": attack.threat.eps,
        "n": len(x),
        "seed": seed,
        "grid": grid,
        "span": span,
        "delta1": coords.tolist(),
        "delta2": coords.tolist(),
        "layout": "surface[i][j] is the mean CE at delta1[i] (along v) and delta2[j] (along r)",
        "models": rows,
    }


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "model"


def _draw(fig: Any, rows: int, row: int, coords: list[float], surface: list[list[float | None]], title: str) -> None:
    """One row: the 3-D surface (left) and its contour (right), the clean point o and the attack point x."""
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3d projection)
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    d1, d2 = np.meshgrid(np.array(coords), np.array(coords), indexing="ij")
    z = np.array([[np.nan if v is None else v for v in line] for line in surface], dtype=float)
    ax = fig.add_subplot(rows, 2, 2 * row + 1, projection="3d")
    ax.plot_surface(d1, d2, z, cmap="viridis", linewidth=0.2, edgecolor="k", alpha=0.95, antialiased=True)
    ax.view_init(elev=28, azim=-125)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("δ1 (along v)")
    ax.set_ylabel("δ2 (along r)")
    ax.set_zlabel("cross-entropy")
    ax.set_box_aspect(None, zoom=0.85)
    ax.set_title(title, fontsize=10)
    ax2 = fig.add_subplot(rows, 2, 2 * row + 2)
    filled = ax2.contourf(d1, d2, z, levels=20, cmap="viridis")
    ax2.contour(d1, d2, z, levels=filled.levels, colors="k", linewidths=0.3)
    fig.colorbar(filled, ax=ax2, label="cross-entropy")
    ax2.plot([0], [0], "o", color="white", markeredgecolor="black", label="clean x")
    ax2.plot([1], [0], "x", color="red", markersize=9, mew=2, label="attack x_adv")
    ax2.set_xlabel("δ1 (× v = x_adv − x)")
    ax2.set_ylabel("δ2 (× r, ‖r‖ = ε)")
    ax2.set_aspect("equal")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.set_title(title.replace("\n", ", contour\n", 1), fontsize=10)


def _pngs(report: dict[str, Any]) -> dict[str, bytes]:
    coords, models = report["delta1"], report["models"]
    where = f"CE(x + δ1·v + δ2·r), v: {report['attack']} at ε = {report['eps']:.4g} ({report['norm']})"
    fig = figure(12, 5.8 * len(models))
    for m, row in enumerate(models):
        _draw(fig, len(models), m, coords, row["mean_surface"],
              f"{row['label']}, mean of {report['n']} images\n{where}")
    pngs = {"loss_surface.png": figure_png(fig)}
    for row in models:
        if not row["images"]:
            continue
        fig = figure(12, 5.8 * len(row["images"]))
        for k, img in enumerate(row["images"]):
            _draw(fig, len(row["images"]), k, coords, img["surface"],
                  f"{row['label']}: image {img['index']} (label {img['label']})\n{where}")
        pngs[f"loss_surface_images_{_slug(row['label'])}.png"] = figure_png(fig)
    return pngs


def _markdown(report: dict[str, Any], pngs: dict[str, bytes]) -> str:
    head = (f"# loss-surface: {report['attack']} at eps {report['eps']:.4g} ({report['norm']}), "
            f"{report['n']} images\n\n"
            f"Cross-entropy on x + d1 v + d2 r ({PAPER}): v = x_adv - x of {report['attack']} (d1 = 1 is the "
            f"attack's point), r a random sign direction with ||r|| = eps (seed {report['seed']}); d1, d2 in "
            f"[-{report['span']:g}, {report['span']:g}], {report['grid']} x {report['grid']} points, no clipping.\n\n")
    table = markdown_table(
        ["model", "clean acc", "attack acc", "CE clean (0,0)", "CE at x_adv (1,0)",
         "max mean CE, d1 in [-1, 1], d2 = 0", "max mean CE, grid"],
        [[m["label"], m["clean_accuracy"], m["attack_accuracy"], m["ce_clean"], m["ce_attack"],
          m["ce_max_along_v"], m["ce_max"]] for m in report["models"]])
    figs = "\n".join(f"![{name}]({name})" for name in pngs)
    return head + table + "\n\n## Figures\n\n" + figs + "\n"


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    add_analysis_args(p, model="many", eps="8/255", n=100)
    g = p.add_argument_group("loss-surface")
    g.add_argument("--grid", type=int, default=21, metavar="K", help="points per axis (default 21)")
    g.add_argument("--span", type=float, default=2.0, metavar="S",
                   help="d1, d2 in [-S, S], in units of the attack's perturbation and of eps (default 2)")
    g.add_argument("--images", type=int, default=4, metavar="M", help="plot the first M images (default 4)")


def _check(args: argparse.Namespace) -> None:
    if args.grid < 3 or args.grid % 2 == 0:
        raise UsageError(f"--grid {args.grid}: must be an odd number >= 3 (so that the grid holds 0, the clean "
                         "image)")
    if not args.span > 0:
        raise UsageError(f"--span {args.span}: must be > 0")
    if args.images < 0 or (args.n is not None and args.images > args.n):
        raise UsageError(f"--images {args.images}: must be between 0 and --n ({args.n})")


def run(args: argparse.Namespace) -> AnalysisOutput:
    _check(args)
    name, attack = one_attack(args, "loss-surface")
    if not attack.threat.eps > 0:
        raise UsageError(f"--eps {args.eps!r}: loss-surface needs a budget > 0 (the directions scale with it)")
    models, x, y = load_models(args)
    report = loss_surface(models, x, y, attack, grid=args.grid, span=args.span, images=args.images,
                          seed=args.seed, batch_size=args.batch_size, show_progress=not args.quiet,
                          attack_name=name)
    pngs = _pngs(report)
    return AnalysisOutput(report, _markdown(report, pngs), pngs)

