"""Weight-space loss curves along a random filter-normalised direction (paper 004 Fig. 4).

Paper 004 (sec. 5.4.3, Fig. 4), following Wu et al. 2020 ([33], "Adversarial weight perturbation helps
robust generalization", arXiv:2004.05884), plots the adversarial loss when the weights w move along a
random direction d with magnitude t:

    rho(w + t d),    rho(w) = 1/n sum_i max_{||x'_i - x_i|| <= eps} CE(f_w(x'_i), y_i),

with d drawn from a Gaussian and filter-normalised as in Li et al. 2018 ("Visualizing the loss landscape
of neural nets", arXiv:1712.09913): d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||w_{i,j}|| for every filter j (an
output-channel slice of a conv or linear weight) of every layer i, and d = 0 on biases and BatchNorm
parameters (every parameter of dimension <= 1), as Li et al. do.

Choice: the inner max is taken at each weight point -- the adversarial examples are recrafted by the
user's attack on the model w + t d for every t, as rho's definition (and [33]'s "generated on the fly")
says -- unless ``--fixed-examples`` asks for those of the unperturbed model (cheaper, a lower bound).
The clean loss CE(f_{w + t d}(x), y) is plotted alongside.  The user's model is never touched: the curve
is computed on a deep copy.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustreg import Attack, UsageError
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

NAME = "weight-surface"

__all__ = ["filter_normalized_direction", "weight_surface"]

PAPER = "paper 004 Fig. 4"
SUMMARY = f"adversarial loss along a filter-normalised weight direction ({PAPER})"


def filter_normalized_direction(model: nn.Module, seed: int) -> list[torch.Tensor]:
    """A random direction in ``model``'s parameter space (one tensor per ``model.parameters()``), filter-
    normalised as in Li et al. 2018: Gaussian d, then d_j <- d_j / ||d_j|| * ||w_j|| for each filter j
    (slice along dim 0) of each weight of dimension >= 2; zero on biases and BatchNorm parameters (dim <= 1).
    Drawn on the CPU from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        if w.dim() <= 1:
            d = torch.zeros_like(d)
        else:
            flat, wflat = d.reshape(len(d), -1), w.double().cpu().reshape(len(w), -1)
            scale = wflat.norm(dim=1) / flat.norm(dim=1).clamp_min(1e-12)
            d = (flat * scale[:, None]).reshape(w.shape)
        out.append(d.to(dtype=w.dtype, device=w.device))
    return out


def _curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, ts: list[float], *, seed: int,
           batch_size: int, recraft: bool, show: bool, label: str) -> dict[str, list[float | None]]:
    """Clean and adversarial loss and accuracy of a copy of ``model`` at w + t d for each t."""
    work = copy.deepcopy(model).eval()
    params = list(work.parameters())
    base = [p.detach().clone() for p in params]
    direction = filter_normalized_direction(work, seed)
    fixed = craft_batched(attack, model, x, y, batch_size) if not recraft else None
    curve: dict[str, list[float | None]] = {"adversarial_loss": [], "clean_loss": [], "adversarial_accuracy": [],
                                            "clean_accuracy": []}
    for t in progress(ts, total=len(ts), desc=f"weight-surface {label}", enabled=show):
        with torch.no_grad():
            for p, w, d in zip(params, base, direction):
                p.copy_(w + t * d)
        x_adv = fixed if fixed is not None else craft_batched(attack, work, x, y, batch_size)
        curve["adversarial_loss"].append(finite(float(sample_losses(work, x_adv, y, batch_size).mean())))
        curve["clean_loss"].append(finite(float(sample_losses(work, x, y, batch_size).mean())))
        curve["adversarial_accuracy"].append(accuracy(work, x_adv, y, batch_size))
        curve["clean_accuracy"].append(accuracy(work, x, y, batch_size))
    return curve


@dataclass(frozen=True)
class WeightSurfaceConfig:
    """The options of :func:`weight_surface` (its keyword arguments; see it for each one), checked once.

    ``options`` given to :func:`weight_surface` replace these fields: the older keyword calls keep working.
    """

    steps: int = 21
    span: float = 1.0
    recraft: bool = True
    seed: int = 0
    batch_size: int = 256
    show_progress: bool = False
    attack_name: str | None = None

    def __post_init__(self) -> None:
        flag("recraft", self.recraft)
        seed_value("seed", self.seed, optional=False)
        positive_int("batch_size", self.batch_size)
        flag("show_progress", self.show_progress)


def weight_surface(models: Mapping[str, nn.Module] | Sequence[tuple[str, nn.Module]] | nn.Module, x: Any,
                   y: torch.Tensor | None = None, attack: Attack | None = None,
                   config: WeightSurfaceConfig | None = None,
                   **options: Any) -> dict[str, Any]:
    """Paper 004 Fig. 4: rho(w + t d) for ``steps`` values of t in [-span, span], per model.

    ``models``: one model, a ``{label: model}`` mapping or (label, model) pairs; each gets its own
    :func:`filter_normalized_direction` (``seed``).  ``recraft``: the attack runs on every w + t d (the
    faithful rho); False: the adversarial examples of the unperturbed model are reused.  The models are
    not modified (each curve is computed on a deep copy).  Returns report.json's dict: ``t`` and per model
    the adversarial and clean loss and accuracy at each t.
    """
    cfg = with_options(WeightSurfaceConfig, config, options, caller="weight_surface()")
    x, y = analysis_samples(x, y, "weight_surface()", attack=attack)
    assert attack is not None  # for mypy: analysis_samples checked
    steps, span, recraft, seed, batch_size, show_progress, attack_name = (
        cfg.steps, cfg.span, cfg.recraft, cfg.seed, cfg.batch_size, cfg.show_progress, cfg.attack_name)
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if not span > 0:
        raise ValueError(f"span must be > 0, got {span}")
    ts = [span * (2 * k - (steps - 1)) / (steps - 1) for k in range(steps)]  # 0 and +-span exactly
    rows = []
    for label, model in labelled_models(models):
        curve = _curve(model, x, y, attack, ts, seed=seed, batch_size=batch_size, recraft=recraft,
                       show=show_progress, label=label)
        adv = [v for v in curve["adversarial_loss"] if v is not None]
        rows.append({"label": label, **curve,
                     "rise": finite(max(adv) - min(adv)) if adv else None})
    return {
        "analysis": "weight-surface",
        "paper": PAPER,
        "formula": "rho(w + t d), rho = mean CE on the attack's adversarial examples, d filter-normalised "
                   "(Li et al. 2018), zero on biases and BatchNorm",
        "recraft": recraft,
        "attack": attack_name or attack.label(),
        "params": json_params(attack.config),
        "norm": attack.threat.norm,
        "eps": attack.threat.eps,
        "n": len(x),
        "seed": seed,
        "steps": steps,
        "span": span,
        "t": ts,
        "models": rows,
    }


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _png(report: dict[str, Any]) -> bytes:
    """Left: adversarial (solid) and clean (dashed) loss against t; right: the change from t = 0."""
    fig = figure(12, 4.6)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ts = report["t"]
    mid = min(range(len(ts)), key=lambda i: abs(ts[i]))
    colours = [f"C{i}" for i in range(10)]
    for m, row in enumerate(report["models"]):
        c = colours[m % len(colours)]
        for key, style, what in (("adversarial_loss", "-", "adversarial"), ("clean_loss", "--", "clean")):
            values = [float("nan") if v is None else v for v in row[key]]
            ax.plot(ts, values, style, color=c, marker="o" if style == "-" else None, markersize=3,
                    label=f"{row['label']} ({what})")
            ax2.plot(ts, [v - values[mid] for v in values], style, color=c, label=f"{row['label']} ({what})")
    losses = [v for row in report["models"] for key in ("adversarial_loss", "clean_loss") for v in row[key]
              if v is not None and v > 0]
    if losses and max(losses) / min(losses) > 30:
        ax.set_yscale("log")
    fixed = "" if report["recraft"] else ", examples fixed at t = 0"
    ax.set_title(f"loss along a filter-normalised direction\n{report['attack']} at ε = {report['eps']:.4g} "
                 f"({report['norm']}){fixed}", fontsize=10)
    ax.set_xlabel("t (weights w + t·d)")
    ax.set_ylabel("cross-entropy" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax2.set_title("change from t = 0", fontsize=10)
    ax2.set_xlabel("t (weights w + t·d)")
    ax2.set_ylabel("cross-entropy − its value at t = 0")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    return figure_png(fig)


def _markdown(report: dict[str, Any]) -> str:
    ts = report["t"]
    mid = min(range(len(ts)), key=lambda i: abs(ts[i]))
    crafted = ("recrafted at every t" if report["recraft"] else "crafted once on the unperturbed model")
    head = (f"# weight-surface: {report['attack']} at eps {report['eps']:.4g} ({report['norm']}), "
            f"{report['n']} images\n\n"
            f"Adversarial loss rho(w + t d) along a random filter-normalised direction d ({PAPER}; Li et al. "
            f"2018), t in [-{report['span']:g}, {report['span']:g}] ({report['steps']} points, seed "
            f"{report['seed']}); adversarial examples {crafted}; clean loss alongside.\n\n")
    table = markdown_table(
        ["model", f"adv loss t={ts[mid]:g}", f"adv loss t={ts[0]:g}", f"adv loss t={ts[-1]:g}",
         "adv loss max - min", f"clean loss t={ts[mid]:g}", f"adv acc t={ts[mid]:g}"],
        [[r["label"], r["adversarial_loss"][mid], r["adversarial_loss"][0], r["adversarial_loss"][-1], r["rise"],
          r["clean_loss"][mid], r["adversarial_accuracy"][mid]] for r in report["models"]])
    return head + table + "\n\n## Figures\n\n![weight_surface.png](weight_surface.png)\n"


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    add_analysis_args(p, model="many", eps="8/255", n=200)
    g = p.add_argument_group("weight-surface")
    g.add_argument("--steps", type=int, default=21, metavar="K", help="points t in [-S, S] (default 21)")
    g.add_argument("--span", type=float, default=1.0, metavar="S", help="t in [-S, S] (default 1)")
    g.add_argument("--fixed-examples", action="store_true",
                   help="reuse the unperturbed model's adversarial examples at every t (default: recraft)")


def run(args: argparse.Namespace) -> AnalysisOutput:
    if args.steps < 3 or args.steps % 2 == 0:
        raise UsageError(f"--steps {args.steps}: must be an odd number >= 3 (so that t = 0, the model itself, "
                         "is on the curve)")
    if not args.span > 0:
        raise UsageError(f"--span {args.span}: must be > 0")
    name, attack = one_attack(args, "weight-surface")
    models, x, y = load_models(args)
    report = weight_surface(models, x, y, attack, steps=args.steps, span=args.span,
                            recraft=not args.fixed_examples, seed=args.seed, batch_size=args.batch_size,
                            show_progress=not args.quiet, attack_name=name)
    return AnalysisOutput(report, _markdown(report), {"weight_surface.png": _png(report)})

