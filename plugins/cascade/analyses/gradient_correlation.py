"""``gradient-correlation``: how similar the error surface stays along paper 000's directions (its Fig. 5).

Paper 000 (Na et al., "Cascade Adversarial Machine Learning Regularized with a Unified Embedding", 2018,
arXiv:1708.02582), sec. 4.2 and Fig. 5: the Pearson correlation between the input gradients
g(x) = grad_x CE(f(x), y) (y the true label) at two images,

    rho(a, b) = sum_i (a_i - mean a)(b_i - mean b) / sqrt(sum_i (a_i - mean a)^2 * sum_i (b_i - mean b)^2),

for the pairs (1) clean vs step_ll, (2) clean vs step_FGSM, (3) clean vs random sign and (4) step_ll vs
step_FGSM images (:mod:`.directions`), as eps grows; mean and standard deviation over the images (the
figure shades +-0.5 std).  The paper reads it as: (1) and (2) fall faster than (3) (the gradient
direction decorrelates sooner than a random one, more so after adversarial training), (4) stays high
(step_ll and step_FGSM images share an error surface), and a negative (2) explains label leaking.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robustreg import crafting
from robustreg.analysis import (
    AnalysisOutput,
    add_analysis_args,
    analysis_samples,
    figure,
    figure_png,
    finite,
    load_model_and_data,
    markdown_table,
    progress,
    record_inputs,
)
from robustreg.options import with_options

from .directions import DEFAULT_EPS, SweepConfig, directions, input_gradient, perturb, random_signs, sign_eps

NAME = "gradient-correlation"
SUMMARY = "correlation of input gradients along step_ll / step_FGSM / random sign (paper 000 Fig. 5)"

__all__ = ["PAIRS", "gradient_correlation", "pearson", "plot", "render_markdown"]

# the four curves of Fig. 5: (first image, second image)
PAIRS = (("clean", "step_ll"), ("clean", "step_FGSM"), ("clean", "random sign"), ("step_ll", "step_FGSM"))


def pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]} vs {pair[1]}"


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, Pearson's correlation of the flattened ``a`` and ``b`` (in float64); NaN where one is constant."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()
    r = (a * b).sum(dim=1) / denom
    return torch.where(denom > 0, r, torch.full_like(r, float("nan")))


def _batch_correlations(model: nn.Module, x: torch.Tensor, y: torch.Tensor, signs: torch.Tensor,
                        eps: Sequence[float]) -> torch.Tensor:
    """len(PAIRS) x len(eps) x batch: rho of each pair at each eps for one batch."""
    grads: dict[str, torch.Tensor] = {"clean": input_gradient(model, x, y)[0]}
    dirs = directions(model, x, y, signs)
    out = torch.empty(len(PAIRS), len(eps), len(x), dtype=torch.float64)
    for e, value in enumerate(eps):
        for name, d in dirs.items():
            grads[name] = input_gradient(model, perturb(x, d, value), y)[0]
        for p, (first, second) in enumerate(PAIRS):
            out[p, e] = pearson(grads[first], grads[second]).cpu()
    return out


def _eps_half(means: Sequence[float | None], eps: Sequence[float]) -> float | None:
    """The smallest eps whose mean correlation is below 0.5 (None: never)."""
    return next((e for e, m in zip(eps, means) if m is not None and m < 0.5), None)


GradientCorrelationConfig = SweepConfig  # the options of the sweep (directions.SweepConfig)


def gradient_correlation(model: nn.Module, x: Any, y: torch.Tensor | None = None, eps: Sequence[float] | None = None,
                         config: GradientCorrelationConfig | None = None, **options: Any) -> dict[str, Any]:
    """Paper 000 Fig. 5 on any classifier: Pearson's rho between input gradients (module docstring), per eps.

    Args:
        model: takes [0, 1] images, returns logits; run in eval mode, its modes and parameters restored.
        x, y: tensors or numpy arrays, or ``x`` any data ``evaluate`` takes (Dataset, DataLoader) and ``y``
            None (:func:`robustreg.analysis.analysis_samples`): every sample;
            the images (N x C x H x W in [0, 1]) and their int64 labels (every image counts).
        eps: the budgets in [0, 1] units (sorted, duplicates dropped); 0 gives rho = 1 by definition.
        seed: the random-sign draw (one per image, the same at every eps, independent of ``batch_size``).

    Returns report.json's dict: ``results`` holds one ``{"pair", "eps", "mean", "std", "defined"}`` per
    pair of :data:`PAIRS` x eps (``defined``: images whose two gradients are not constant, which the
    mean and the sample std run over; ``mean``/``std`` None when none is), and ``eps_below_half``, per
    pair, the smallest eps whose mean is below 0.5.
    """
    cfg = with_options(GradientCorrelationConfig, config, options, caller="gradient_correlation()")
    x, y = analysis_samples(x, y, "gradient_correlation()", eps=eps)
    assert eps is not None  # for mypy: analysis_samples checked
    seed, batch_size, show_progress = cfg.seed, cfg.batch_size, cfg.show_progress
    values = sorted({float(e) for e in eps})
    if not values or any(not 0.0 <= e <= 1.0 for e in values):
        raise ValueError(f"eps must be a non-empty list of numbers in [0, 1], got {list(eps)!r}")
    signs = random_signs(x.shape, seed)
    parts = []
    with crafting(model):  # eval mode, frozen parameters, all restored after
        starts = range(0, len(x), batch_size)
        for i in progress(starts, total=len(starts), desc="gradient-correlation", enabled=show_progress):
            j = i + batch_size
            parts.append(_batch_correlations(model, x[i:j], y[i:j], signs[i:j], values))
    rho = torch.cat(parts, dim=2)  # pairs x eps x N
    results: list[dict[str, Any]] = []
    for p, pair in enumerate(PAIRS):
        for e, value in enumerate(values):
            r = rho[p, e][~rho[p, e].isnan()]
            std = r.std().item() if len(r) > 1 else 0.0
            results.append({"pair": pair_name(pair), "eps": value, "defined": len(r),
                            "mean": finite(r.mean().item()) if len(r) else None,
                            "std": finite(std) if len(r) else None})
    below = {pair_name(pair): _eps_half([r["mean"] for r in results if r["pair"] == pair_name(pair)], values)
             for pair in PAIRS}
    return {"analysis": "gradient-correlation", "paper": "000 Fig. 5", "n": len(x), "eps": values,
            "seed": seed, "loss": "CE(f(x'), y), y the true label",
            "pairs": [pair_name(pair) for pair in PAIRS], "results": results, "eps_below_half": below}


# --- rendering -------------------------------------------------------------------------------------
def _curve(report: dict[str, Any], pair: str, key: str) -> list[float]:
    return [float("nan") if r[key] is None else r[key] for r in report["results"] if r["pair"] == pair]


def plot(report: dict[str, Any], title: str = "") -> bytes:
    """Fig. 5: mean rho per pair vs eps (in 1/255), shaded +-0.5 std as in the paper."""
    fig = figure(7.2, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    eps = [e * 255 for e in report["eps"]]
    for pair, colour in zip(report["pairs"], ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        mean = torch.tensor(_curve(report, pair, "mean"))
        std = torch.tensor(_curve(report, pair, "std"))
        label = f"({report['pairs'].index(pair) + 1}) {pair}"
        ax.plot(eps, mean.tolist(), marker="o", markersize=3, color=colour, label=label)
        ax.fill_between(eps, (mean - 0.5 * std).tolist(), (mean + 0.5 * std).tolist(), color=colour, alpha=0.15)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xlabel("eps x 255 (paper 000's pixel units)")
    ax.set_ylabel("Pearson correlation of input gradients")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title or f"gradient correlation (paper 000 Fig. 5), n={report['n']}, +-0.5 std", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return figure_png(fig)


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: what was measured, the table (mean +- std per eps and pair), when each pair falls below 0.5."""
    def cell(r: dict[str, Any]) -> str:
        return "undefined" if r["mean"] is None else f"{r['mean']:.3f} ± {r['std']:.3f}"

    model = report.get("model", {}).get("spec", "the model")
    last = report["eps"][-1]
    at_last = [r for r in report["results"] if r["eps"] == last]
    lines = [f"# gradient-correlation: {model}",
             "",
             f"Paper 000 Fig. 5: Pearson correlation between input gradients grad_x CE(f(x), y) at two images, "
             f"mean ± std over {report['n']} images (random signs seeded with {report['seed']}).",
             "",
             f"At eps = {last:.4g} ({last * 255:.3g}/255): "
             + ", ".join(f"({k + 1}) {r['pair']} {'undefined' if r['mean'] is None else format(r['mean'], '.3f')}"
                         for k, r in enumerate(at_last)) + ".",
             "",
             "## Correlation vs eps",
             "",
             markdown_table(["eps", "eps x 255", *report["pairs"]],
                            [[f"{e:.4g}", f"{e * 255:.3g}",
                              *(cell(r) for r in report["results"] if r["eps"] == e)] for e in report["eps"]]),
             "",
             "## Where each falls below 0.5",
             "",
             markdown_table(["pair", "smallest eps with mean < 0.5"],
                            [[p, "never" if v is None else f"{v:.4g} ({v * 255:.3g}/255)"]
                             for p, v in report["eps_below_half"].items()]),
             "",
             "![gradient correlation](gradient_correlation.png)",
             ""]
    return "\n".join(lines)


# --- command ---------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    add_analysis_args(p, attacks=None, eps=DEFAULT_EPS, n=128)


def run(args: argparse.Namespace) -> AnalysisOutput:
    eps = sign_eps(args, "gradient-correlation")
    model, x, y = load_model_and_data(args)
    report = gradient_correlation(model, x, y, eps, seed=args.seed, batch_size=args.batch_size,
                                  show_progress=not args.quiet)
    title = f"{record_inputs(args, report)}: gradient correlation, n={report['n']}, +-0.5 std"
    return AnalysisOutput(report, render_markdown(report), {"gradient_correlation.png": plot(report, title)})

