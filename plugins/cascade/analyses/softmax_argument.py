"""``softmax-argument``: the logits of the true and the false classes along paper 000's directions (Figs. 4, 6).

Paper 000 (Na et al., "Cascade Adversarial Machine Learning Regularized with a Unified Embedding", 2018,
arXiv:1708.02582), sec. 4.1, Fig. 4 (step_ll) and appendix Fig. 6 (step_ll, step_FGSM, random sign): the
argument to the softmax -- the logit z_k(x') of x' = clip(x + eps * d, 0, 1) (:mod:`.directions`) -- of
the true class, z_y(x'), and the mean of the false classes, (1 / (K - 1)) sum_{k != y} z_k(x'), as eps
grows; each averaged over the images with a +-1 standard deviation band over the images.  Standard
training shows z_y dropping fast along step_ll; adversarial training limits the drop at small eps and
widens the margin to the false classes (also along random signs, never trained on).
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
from robustreg.verdict import broken_rows

from .directions import DEFAULT_EPS, DIRECTIONS, SweepConfig, directions, perturb, random_signs, sign_eps

NAME = "softmax-argument"
SUMMARY = "true vs false-class logits along step_ll / step_FGSM / random sign (paper 000 Figs. 4, 6)"

__all__ = ["plot", "render_markdown", "softmax_argument"]


def true_and_false(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, (z_y, the mean of z_k over k != y)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    false = (logits.sum(dim=1) - true) / (logits.shape[1] - 1)
    return true, false


def _batch_arguments(model: nn.Module, x: torch.Tensor, y: torch.Tensor, signs: torch.Tensor,
                     eps: Sequence[float]) -> torch.Tensor:
    """len(DIRECTIONS) x len(eps) x 3 x batch: z_y, the false-class mean and correct (0/1) per image."""
    dirs = directions(model, x, y, signs)
    out = torch.empty(len(DIRECTIONS), len(eps), 3, len(x), dtype=torch.float64)
    with torch.no_grad():
        for d, name in enumerate(DIRECTIONS):
            for e, value in enumerate(eps):
                logits = model(perturb(x, dirs[name], value)).double()
                true, false = true_and_false(logits, y)
                correct = ~broken_rows(logits, y)  # the one verdict: right argmax, finite row
                out[d, e] = torch.stack([true, false, correct.double()]).cpu()
    return out


def _crossing(rows: list[dict[str, Any]]) -> float | None:
    """The smallest eps where the mean true-class logit is no longer above the false classes' mean."""
    return next((r["eps"] for r in rows if r["true_mean"] is not None and r["false_mean"] is not None
                 and r["true_mean"] <= r["false_mean"]), None)


SoftmaxArgumentConfig = SweepConfig  # the options of the sweep (directions.SweepConfig)


def softmax_argument(model: nn.Module, x: Any, y: torch.Tensor | None = None, eps: Sequence[float] | None = None,
                     config: SoftmaxArgumentConfig | None = None, **options: Any) -> dict[str, Any]:
    """Paper 000 Figs. 4 and 6 on any classifier: z_y and the false-class mean logit vs eps per direction.

    Args:
        model: takes [0, 1] images, returns logits N x K (K >= 2); run in eval mode, restored after.
        x, y: tensors or numpy arrays, or ``x`` any data ``evaluate`` takes (Dataset, DataLoader) and ``y``
            None (:func:`robustreg.analysis.analysis_samples`): every sample;
            the images (N x C x H x W in [0, 1]) and their int64 labels (every image counts).
        eps: the budgets in [0, 1] units (sorted, duplicates dropped; 0 is the clean image).
        seed: the random-sign draw (one per image, the same at every eps).

    Returns report.json's dict: ``results`` holds one ``{"direction", "eps", "true_mean", "true_std",
    "false_mean", "false_std", "margin", "accuracy"}`` per direction x eps (std: the sample std over the
    images; ``margin`` = true_mean - false_mean; ``accuracy`` of the perturbed images), and
    ``crossing_eps`` per direction: the smallest eps where true_mean <= false_mean (None: never).
    """
    cfg = with_options(SoftmaxArgumentConfig, config, options, caller="softmax_argument()")
    x, y = analysis_samples(x, y, "softmax_argument()", eps=eps)
    assert eps is not None  # for mypy: analysis_samples checked
    seed, batch_size, show_progress = cfg.seed, cfg.batch_size, cfg.show_progress
    values = sorted({float(e) for e in eps})
    if not values or any(not 0.0 <= e <= 1.0 for e in values):
        raise ValueError(f"eps must be a non-empty list of numbers in [0, 1], got {list(eps)!r}")
    signs = random_signs(x.shape, seed)
    parts = []
    with crafting(model):  # eval mode, frozen parameters, all restored after
        starts = range(0, len(x), batch_size)
        for i in progress(starts, total=len(starts), desc="softmax-argument", enabled=show_progress):
            j = i + batch_size
            parts.append(_batch_arguments(model, x[i:j], y[i:j], signs[i:j], values))
    args = torch.cat(parts, dim=3)  # directions x eps x (true, false, correct) x N
    spread = args.std(dim=3) if len(x) > 1 else torch.zeros(args.shape[:3], dtype=torch.float64)
    means = args.mean(dim=3)
    results = []
    for d, name in enumerate(DIRECTIONS):
        for e, value in enumerate(values):
            m, s = means[d, e].tolist(), spread[d, e].tolist()
            results.append({"direction": name, "eps": value,
                            "true_mean": finite(m[0]), "true_std": finite(s[0]),
                            "false_mean": finite(m[1]), "false_std": finite(s[1]),
                            "margin": finite(m[0] - m[1]), "accuracy": float(m[2])})
    crossing = {name: _crossing([r for r in results if r["direction"] == name]) for name in DIRECTIONS}
    return {"analysis": "softmax-argument", "paper": "000 Figs. 4 and 6", "n": len(x), "eps": values,
            "seed": seed, "directions": list(DIRECTIONS), "results": results, "crossing_eps": crossing}


# --- rendering -------------------------------------------------------------------------------------
def _series(report: dict[str, Any], direction: str, key: str) -> list[float]:
    return [float("nan") if r[key] is None else r[key] for r in report["results"] if r["direction"] == direction]


def plot(report: dict[str, Any], title: str = "") -> bytes:
    """Fig. 6 (its first panel is Fig. 4): per direction, z_y (blue) and the false-class mean (red) vs eps,
    shaded +-1 std over the images."""
    fig = figure(11.0, 3.8)
    eps = [e * 255 for e in report["eps"]]
    axes = fig.subplots(1, len(report["directions"]), sharey=True)
    for ax, direction in zip(axes, report["directions"]):
        for what, colour, label in (("true", "tab:blue", "true class"), ("false", "tab:red", "false classes (mean)")):
            mean = torch.tensor(_series(report, direction, f"{what}_mean"))
            std = torch.tensor(_series(report, direction, f"{what}_std"))
            ax.plot(eps, mean.tolist(), color=colour, marker="o", markersize=3, label=label)
            ax.fill_between(eps, (mean - std).tolist(), (mean + std).tolist(), color=colour, alpha=0.2)
        ax.set_title(f'"{direction}"', fontsize=10)
        ax.set_xlabel("eps x 255 (paper 000's pixel units)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("argument to the softmax (logit)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title or f"argument to the softmax (paper 000 Figs. 4, 6), n={report['n']}, +-1 std", fontsize=11)
    return figure_png(fig)


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: one table per direction (true / false-class mean +- std, margin, accuracy per eps)."""
    def pm(mean: float | None, std: float | None) -> str:
        return "nan" if mean is None or std is None else f"{mean:.3f} ± {std:.3f}"

    model = report.get("model", {}).get("spec", "the model")
    last = report["eps"][-1]
    at_last = {r["direction"]: r for r in report["results"] if r["eps"] == last}
    lines = [f"# softmax-argument: {model}",
             "",
             f"Paper 000 Figs. 4 and 6: the logit of the true class and the mean logit of the false classes of "
             f"clip(x + eps * d, 0, 1), mean ± std over {report['n']} images (random signs seeded with "
             f"{report['seed']}).",
             "",
             f"At eps = {last:.4g} ({last * 255:.3g}/255), true - false margin: "
             + ", ".join(f"{d} {at_last[d]['margin']:.3g}" if at_last[d]['margin'] is not None else f"{d} nan"
                         for d in report["directions"]) + ".",
             ""]
    for direction in report["directions"]:
        rows = [[f"{r['eps']:.4g}", f"{r['eps'] * 255:.3g}", pm(r["true_mean"], r["true_std"]),
                 pm(r["false_mean"], r["false_std"]), "nan" if r["margin"] is None else f"{r['margin']:.3f}",
                 f"{r['accuracy']:.3f}"] for r in report["results"] if r["direction"] == direction]
        cross = report["crossing_eps"][direction]
        header = ["eps", "eps x 255", "true class", "false classes (mean)", "margin", "accuracy"]
        lines += [f"## {direction}", "", markdown_table(header, rows),
                  "", f"True class no longer above the false-class mean from eps = "
                      f"{'never (in this range)' if cross is None else f'{cross:.4g}'}.", ""]
    lines += ["![argument to the softmax](softmax_argument.png)", ""]
    return "\n".join(lines)


# --- command ---------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    add_analysis_args(p, attacks=None, eps=DEFAULT_EPS, n=128)


def run(args: argparse.Namespace) -> AnalysisOutput:
    eps = sign_eps(args, "softmax-argument")
    model, x, y = load_model_and_data(args)
    report = softmax_argument(model, x, y, eps, seed=args.seed, batch_size=args.batch_size,
                              show_progress=not args.quiet)
    title = f"{record_inputs(args, report)}: argument to the softmax, n={report['n']}, +-1 std"
    return AnalysisOutput(report, render_markdown(report), {"softmax_argument.png": plot(report, title)})

