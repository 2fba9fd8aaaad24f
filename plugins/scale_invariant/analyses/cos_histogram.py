"""The distribution of cos(theta_y) on adversarial examples, several models overlaid.

Paper 004 (Xu et al. 2022, "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial
Defenses", arXiv:2201.12527) Fig. 5: the histogram of cos(theta) on PGD-10 examples of TRADES and
TRADES-SI (the SI mechanism pushes cos(theta_y) up).  Here any classifiers ending in ``nn.Linear``
and any registered attack at any eps::

    cos(theta_y) = W_y . z(x_adv) / (|W_y| |z(x_adv)|)                      (paper 004 section 4.2)

with z the input of the final ``nn.Linear`` (the penultimate features), W_y its weight row of the
true class y, and x_adv the attack run white-box on the model itself, on every one of the n points
(also the ones misclassified clean: the figure shows the data set the attack produces), each attack x
eps a cell of the evaluation engine (:func:`robustreg.evaluation.craft`: built, seeded, run and judged
as :func:`robustreg.evaluation.evaluate` does, in batches of ``batch_size`` in index order).  The clean
points' distribution is reported alongside.  Per model and cell the report holds the histogram (common bin
edges across the models of a cell, so the bars compare), the mean, the standard deviation (population),
quantiles and min / max.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustreg import UsageError, embed
from robustreg.analysis import (
    AnalysisOutput,
    add_analysis_args,
    analysis_eps,
    analysis_samples,
    attack_names,
    attack_params,
    figure,
    figure_png,
    json_params,
    load_model_arg,
    markdown_table,
    parse_model_arg,
    unique_names,
)
from robustreg.analysis import progress as _progress
from robustreg.evaluation import EvalConfig, Mode, craft, make_plan
from robustreg.options import flag, positive_int, seed_value, with_options

NAME = "cos-histogram"
SUMMARY = "distribution of cos(theta_y) on adversarial examples, models overlaid (paper 004 Fig. 5)"

__all__ = ["QUANTILES", "cos_histogram", "cos_histogram_markdown", "cos_histogram_png", "cos_theta_y"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@torch.no_grad()
def cos_theta_y(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """cos(theta_y) per sample (float64, CPU): :meth:`robustreg.embedding.Embedding.cosine` at the true class."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        cos = embed(model, x[start:start + batch_size]).cosine()
        out.append(cos.gather(1, y[start:start + batch_size, None]).squeeze(1).double().cpu())
    return torch.cat(out)


def _stats(values: torch.Tensor, edges: torch.Tensor) -> dict[str, Any]:
    finite = values[torch.isfinite(values)]
    counts = torch.histogram(finite, bins=edges).hist if finite.numel() else torch.zeros(len(edges) - 1)
    quantiles = torch.quantile(finite, torch.tensor(QUANTILES, dtype=torch.float64)) if finite.numel() else None
    return {
        "n": int(values.numel()), "nonfinite": int(values.numel() - finite.numel()),
        "mean": float(finite.mean()) if finite.numel() else None,
        "std": float(finite.std(unbiased=False)) if finite.numel() else None,
        "min": float(finite.min()) if finite.numel() else None, "max": float(finite.max()) if finite.numel() else None,
        "quantiles": {f"{q:g}": (float(v) if quantiles is not None else None)
                      for q, v in zip(QUANTILES, quantiles if quantiles is not None else QUANTILES)},
        "bins": [float(v) for v in edges], "counts": [int(c) for c in counts],
    }


def _edges(values: Sequence[torch.Tensor], bins: int) -> torch.Tensor:
    """``bins`` equal bins over the finite values of every model (padded a little; [-1, 1] when empty)."""
    finite = torch.cat([v[torch.isfinite(v)] for v in values])
    low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (-1.0, 1.0)
    pad = max(1e-3, 0.02 * (high - low))
    return torch.linspace(max(-1.0, low - pad), min(1.0, high + pad), bins + 1, dtype=torch.float64)


@dataclass
class _CosSink:
    """cos(theta_y) of ``model`` on each crafted batch, per cell (filled as the engine hands the batches over)."""

    model: nn.Module
    y: torch.Tensor
    values: dict[tuple[int, int], torch.Tensor]

    def add(self, e: int, a: int, k: int, indices: torch.Tensor, x_adv: torch.Tensor) -> None:
        cell = self.values.setdefault((e, a), torch.full((len(self.y),), float("nan"), dtype=torch.float64))
        cell[indices] = cos_theta_y(self.model, x_adv, self.y[indices.to(self.y.device)], len(indices))


@dataclass(frozen=True)
class CosHistogramConfig:
    """The options of :func:`cos_histogram` (its keyword arguments; see it for each one), checked once.

    ``options`` given to :func:`cos_histogram` replace these fields: the older keyword calls keep working.
    """

    norm: str = "linf"
    seed: int | None = 0
    batch_size: int = 256
    bins: int = 40
    registry: Any = None
    progress: bool = False

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, optional=True)
        positive_int("batch_size", self.batch_size)
        flag("progress", self.progress)


def cos_histogram(models: Mapping[str, nn.Module], x: Any, y: torch.Tensor | None = None,
                  attacks: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
                  eps: float | Sequence[float] | None = None,
                  config: CosHistogramConfig | None = None, **options: Any) -> dict[str, Any]:
    """Paper 004 Fig. 5: the distribution of cos(theta_y) on each model's own adversarial examples.

    Args:
        models: name -> classifier whose last layer is ``nn.Linear`` (eval mode, on ``x``'s device).
        x, y: tensors or numpy arrays, or ``x`` any data ``evaluate`` takes (Dataset, DataLoader) and ``y``
            None (:func:`robustreg.analysis.analysis_samples`): every sample;
            the n samples.  attacks, eps, norm, seed, batch_size, registry: as
            :func:`robustreg.evaluation.evaluate` takes them.  bins: histogram bins per cell.

    Returns the report dict: ``clean`` (model -> statistics on the clean points) and ``cells`` (one
    per attack x eps: ``{"attack", "label", "eps", "models": model -> statistics}``); statistics are
    ``n, nonfinite, mean, std, min, max, quantiles, bins`` (the bins + 1 edges) ``and counts``.
    """
    cfg = with_options(CosHistogramConfig, config, options, caller="cos_histogram()")
    x, y = analysis_samples(x, y, "cos_histogram()", attacks=attacks, eps=eps)
    assert attacks is not None and eps is not None  # for mypy: analysis_samples checked
    norm, seed, batch_size, bins, registry, progress = (
        cfg.norm, cfg.seed, cfg.batch_size, cfg.bins, cfg.registry, cfg.progress)
    if not models:
        raise ValueError("cos_histogram needs at least one model")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    evaluation = EvalConfig(norm=norm, seed=seed, batch_size=batch_size, mode=Mode.INDEPENDENT, registry=registry,
                            progress=False)
    plan = make_plan(list(attacks), eps, evaluation)
    clean = {name: cos_theta_y(m, x, y, batch_size) for name, m in models.items()}
    values: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for name in _progress(list(models), total=len(models), desc="cos-histogram", enabled=progress):
        sink = _CosSink(models[name], y, {})
        craft(models[name], x, y, plan, x.device, sink)  # the engine's cells, on every point (records unused)
        for cell, cos in sink.values.items():
            values.setdefault(cell, {})[name] = cos
    clean_edges = _edges(list(clean.values()), bins)
    cells = []
    for e, a in plan.cells():
        edges = _edges(list(values[e, a].values()), bins)
        cells.append({"attack": plan.plans[a].name, "label": plan.plans[a].label, "eps": plan.eps[e],
                      "models": {name: _stats(v, edges) for name, v in values[e, a].items()}})
    return {
        "analysis": "cos-histogram",
        "definition": "cos(theta_y) = W_y . z / (|W_y| |z|), z the input of the final nn.Linear, W_y its row of "
                      "the true class, on the model's own adversarial examples of every one of the n points",
        "n": int(x.shape[0]), "norm": norm, "seed": seed, "eps": list(plan.eps), "models": list(models),
        "attacks": [{"name": p.name, "label": p.label, "params": json_params(plan.params(i))}
                    for i, p in enumerate(plan.plans)],
        "clean": {name: _stats(v, clean_edges) for name, v in clean.items()},
        "cells": cells,
    }


# --- rendering ---------------------------------------------------------------------------------------
def _eps(value: float) -> str:
    """An eps as text, with its /255 form where it is a whole number of 255ths (8/255, not only 0.03137)."""
    k = value * 255
    return f"{value:.4g} (= {round(k)}/255)" if abs(k - round(k)) < 1e-4 and round(k) > 0 else f"{value:.4g}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cos_histogram_markdown(report: Mapping[str, Any]) -> str:
    """report.md: per cell (and clean) one row per model: mean, std, quantiles."""
    header = ["model", "mean", "std", *[f"q{q:g}" for q in QUANTILES], "min", "max"]

    def table(stats: Mapping[str, Mapping[str, Any]]) -> str:
        return markdown_table(header, [[name, _num(s["mean"]), _num(s["std"]),
                                        *[_num(s["quantiles"][f"{q:g}"]) for q in QUANTILES],
                                        _num(s["min"]), _num(s["max"])] for name, s in stats.items()])

    lines = [f"# cos(theta_y) on adversarial examples (paper 004 Fig. 5): n={report['n']}, norm {report['norm']}, "
             f"seed {report['seed']}", "",
             "cos(theta_y) = W_y . z / (|W_y| |z|): z the input of the final nn.Linear, W_y its weight row of the "
             "true class; each model attacked white-box on all n points.", ""]
    for cell in report["cells"]:
        lines += [f"## {cell['label']} at eps {_eps(cell['eps'])}", "", table(cell["models"]), ""]
    lines += ["## clean", "", table(report["clean"]), ""]
    return "\n".join(lines)


def _panel(ax: Any, stats: Mapping[str, Mapping[str, Any]], title: str) -> None:
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for k, (name, s) in enumerate(stats.items()):
        edges, counts = s["bins"], s["counts"]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], counts, width=widths, align="edge", alpha=0.5, color=colors[k % len(colors)],
               edgecolor=colors[k % len(colors)], label=f"{name} (mean {_num(s['mean'])})")
        if s["mean"] is not None:
            ax.axvline(s["mean"], color=colors[k % len(colors)], linestyle="--", linewidth=1.2)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("cos(theta_y)")
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def cos_histogram_png(report: Mapping[str, Any]) -> bytes:
    """cos_histogram.png: one panel per attack x eps (models overlaid, means dashed), then the clean points."""
    panels = [(f"{c['label']}, eps {_eps(c['eps'])}", c["models"]) for c in report["cells"]]
    panels.append(("clean", report["clean"]))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = figure(5.0 * cols, 3.6 * rows)
    for k, (title, stats) in enumerate(panels):
        _panel(fig.add_subplot(rows, cols, k + 1), stats, title)
    fig.suptitle(f"cos(theta_y), true class (n={report['n']})", fontsize=11)
    return figure_png(fig)


# --- the command -------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--model", action="append", default=[], metavar="SPEC[@WEIGHTS]",
                   help="a model to attack and plot, its last layer nn.Linear (repeatable: overlaid)")
    g.add_argument("--bins", type=int, default=40, metavar="B", help="histogram bins (default 40)")
    add_analysis_args(p, model=False, eps="8/255", n=200)
    p.set_defaults(weights=None)


def _load(args: argparse.Namespace) -> tuple[dict[str, nn.Module], torch.Tensor, torch.Tensor, dict[str, Any]]:
    if not args.model:
        raise UsageError("--model is required (SPEC[@WEIGHTS], repeatable)")
    parsed = list({m.text: m for m in (parse_model_arg(t, "--model") for t in args.model)}.values())
    names = unique_names(parsed)
    models: dict[str, nn.Module] = {}
    x = y = None
    for name, m in zip(names, parsed):
        models[name], x, y = load_model_arg(args, m, "--model")
        try:
            embed(models[name], x[:1])
        except ValueError as exc:
            raise UsageError(f"--model {m.text!r}: cos(theta_y) needs a final nn.Linear head: {exc}") from None
    assert x is not None and y is not None
    return models, x, y, {name: {"spec": m.spec, "weights": m.weights} for name, m in zip(names, parsed)}


def run(args: argparse.Namespace) -> AnalysisOutput:
    if args.bins < 2:
        raise UsageError(f"--bins must be >= 2, got {args.bins}")
    names = attack_names(args)
    params = attack_params(args, names)
    eps = analysis_eps(args)
    for name in names:
        norms = args.registry.attack(name).info.norms
        if args.norm not in norms:
            raise UsageError(f"--attacks {name!r} supports --norm {' or '.join(norms)}, got --norm {args.norm!r}")
    models, x, y, info = _load(args)
    report = cos_histogram(models, x, y, [(name, params[name]) for name in names], eps, norm=args.norm,
                           seed=args.seed, batch_size=args.batch_size, bins=args.bins, registry=args.registry,
                           progress=not args.quiet)
    report["model_files"] = info
    report["data"] = {"spec": args.data, "split": args.split}
    return AnalysisOutput(report, cos_histogram_markdown(report), {"cos_histogram.png": cos_histogram_png(report)})

