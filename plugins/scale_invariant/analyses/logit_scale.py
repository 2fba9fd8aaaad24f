"""``logit-scale``: robust accuracy under any attacks as the logits are multiplied by alpha (paper 004 Fig. 1).

Paper 004 (Xu et al., "Scale-Invariant Adversarial Attack for Evaluating and Enhancing Adversarial
Defenses", 2022, arXiv:2201.12527), sec. 4.1, Proof 1 and Fig. 1: the classifier h(x) = alpha * g(x)
makes the same decision as g for every alpha > 0, yet for a large alpha softmax(h(x))_y ~ 1 and
grad_x CE(h(x), y) underflows to 0, so PGD on the cross-entropy weakens; SI-PGD, on CE(s * cos(theta), y)
with cos(theta_k) = W_k . z / (|W_k| |z|), sees no alpha at all.  Fig. 1 sweeps alpha over 1e-3 .. 1e3.

:class:`ScaledLogits` multiplies the model's *output* by alpha and keeps the final ``nn.Linear`` inside,
so :func:`robustreg.embed` still finds z, W and b.  Every (alpha, attack) is one independent
:func:`robustreg.evaluation.evaluate` with the same seed, and the verdict per attack is its spread,
max - min of the robust accuracy over alpha (0 for a scale-invariant attack, up to float rounding).

The core's automatic check of the same name (:mod:`robustreg.checks.model`) compares CE with a
scale-invariant loss at alpha = 1 only; this analysis is the full sweep.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustreg import UsageError
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
    load_model_and_data,
    markdown_table,
    progress,
    record_inputs,
)
from robustreg.options import flag, positive_int, seed_value, with_options

NAME = "logit-scale"
SUMMARY = "robust accuracy vs a scale of the logits (paper 004 Fig. 1)"

__all__ = ["DEFAULT_ALPHAS", "ScaledLogits", "check_alphas", "logit_scale", "parse_alphas", "plot",
           "render_markdown"]

DEFAULT_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)  # Fig. 1's range, 7 log-spaced values


class ScaledLogits(nn.Module):
    """h(x) = alpha * model(x) (paper 004 Proof 1): the same decisions, softmax sharper for alpha > 1.

    ``model`` is a submodule, so its final ``nn.Linear`` is still the last one to run and
    :func:`robustreg.embed` returns the same z, W and b (and alpha times the logits)."""

    def __init__(self, model: nn.Module, alpha: float) -> None:
        super().__init__()
        self.model = model
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.alpha

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


def check_alphas(alphas: Sequence[float]) -> list[float]:
    """``alphas`` sorted without duplicates; ValueError unless each is a finite number > 0."""
    values = []
    for a in alphas:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
            raise ValueError(f"alphas must be finite numbers > 0, got {a!r}")
        values.append(float(a))
    if not values:
        raise ValueError("alphas must hold at least one value")
    return sorted(set(values))


def parse_alphas(text: str, flag: str = "--alphas") -> list[float]:
    """``"1e-3,1,1e3"`` -> the alphas; a one-line UsageError naming ``flag`` otherwise."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"{flag} {text!r}: each alpha must be a finite number > 0 (e.g. 1e-3,1,1e3), got {part!r}")
        values.append(value)
    return check_alphas(values)


def _attack_list(attacks: Sequence[str | tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for item in attacks:
        name, params = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        if any(name == seen for seen, _ in out):
            raise ValueError(f"attacks names {name!r} twice; each attack is one line of the sweep")
        out.append((name, params))
    if not out:
        raise ValueError("attacks must name at least one registered attack")
    return out


def _verdicts(results: list[dict[str, Any]], names: list[str], eps: list[float], n: int) -> list[dict[str, Any]]:
    verdicts = []
    for name in names:
        for e in eps:
            rows = [r for r in results if r["attack"] == name and r["eps"] == e]
            accs = [r["robust_accuracy"] for r in rows]
            lo, hi = min(accs), max(accs)
            spread = hi - lo
            verdicts.append({"attack": name, "eps": e, "min": lo, "max": hi, "spread": spread,
                             "spread_samples": round(spread * n),
                             "alpha_of_min": rows[accs.index(lo)]["alpha"],
                             "alpha_of_max": rows[accs.index(hi)]["alpha"],
                             "invariant": spread * n < 0.5})
    return verdicts


@dataclass(frozen=True)
class LogitScaleConfig:
    """The options of :func:`logit_scale` (its keyword arguments; see it for each one), checked once.

    ``options`` given to :func:`logit_scale` replace these fields: the older keyword calls keep working.
    """

    norm: str = "linf"
    seed: int = 0
    batch_size: int = 256
    registry: Any = None
    device: str | torch.device | None = None
    show_progress: bool = False

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, optional=False)
        positive_int("batch_size", self.batch_size)
        flag("show_progress", self.show_progress)


def logit_scale(model: nn.Module, x: Any, y: torch.Tensor | None = None,
                attacks: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
                eps: float | Sequence[float] | None = None,
                alphas: Sequence[float] = DEFAULT_ALPHAS, config: LogitScaleConfig | None = None,
                **options: Any) -> dict[str, Any]:
    """Paper 004 Fig. 1 on any classifier and any registered attacks: robust accuracy of alpha * model per alpha.

    Args:
        model: takes [0, 1] images and returns logits; wrapped in :class:`ScaledLogits` per alpha.
        x, y: tensors or numpy arrays, or ``x`` any data ``evaluate`` takes (Dataset, DataLoader) and ``y``
            None (:func:`robustreg.analysis.analysis_samples`): every sample;
            the images and int64 labels (all of them are evaluated).
        attacks: registry names or ``(name, params)`` pairs; each runs on all clean-correct points
            (independent mode) with the same ``seed`` at every alpha.
        eps: one budget or a list, in [0, 1] units.
        alphas: the scales (finite, > 0; default :data:`DEFAULT_ALPHAS`).

    Returns report.json's dict: ``results``, one ``{"attack", "alpha", "eps", "robust_accuracy"}`` per
    attack x alpha x eps; ``verdicts``, one ``{"attack", "eps", "min", "max", "spread", "spread_samples",
    "alpha_of_min", "alpha_of_max", "invariant"}`` per attack x eps (spread = max - min over alpha;
    invariant: the same number of samples survive at every alpha); ``clean_accuracy`` (the same at
    every alpha: the decisions do not change) and each attack's resolved ``params``.
    The automatic evaluation checks are off (each cell would run them again).
    """
    cfg = with_options(LogitScaleConfig, config, options, caller="logit_scale()")
    norm, seed, batch_size, registry, device, show_progress = (
        cfg.norm, cfg.seed, cfg.batch_size, cfg.registry, cfg.device, cfg.show_progress)
    from robustreg import Registry
    from robustreg.evaluation import evaluate

    registry = registry if registry is not None else Registry.create()
    every_check = [spec.name for spec in registry.checks()]
    scales = check_alphas(alphas)
    x, y = analysis_samples(x, y, "logit_scale()", attacks=attacks, eps=eps)
    assert attacks is not None and eps is not None  # for mypy: analysis_samples checked
    plans = _attack_list(attacks)
    cells = [(alpha, plan) for alpha in scales for plan in plans]
    results: list[dict[str, Any]] = []
    clean: dict[float, float] = {}
    params: dict[str, Any] = {}
    for alpha, (name, attack_params_) in progress(cells, total=len(cells), desc="logit-scale", enabled=show_progress):
        report = evaluate(ScaledLogits(model, alpha), (x, y), [(name, attack_params_)], eps, norm=norm, seed=seed,
                          batch_size=batch_size, device=device, mode="independent", registry=registry,
                          progress=False, no_check=every_check)
        clean[alpha] = report["clean_accuracy"]
        for entry in report["results"]:
            results.append({"attack": name, "alpha": alpha, "eps": entry["eps"],
                            "robust_accuracy": entry["robust_accuracy"]})
            params[name] = json_params(entry["params"])
    eps_values = sorted({r["eps"] for r in results})
    names = list(dict.fromkeys(name for name, _ in plans))
    return {"analysis": "logit-scale", "paper": "004 Fig. 1", "n": len(x), "norm": norm, "eps": eps_values,
            "alphas": scales, "seed": seed, "attacks": names, "params": params,
            "clean_accuracy": clean[scales[0]],
            "clean_accuracy_by_alpha": [{"alpha": a, "clean_accuracy": c} for a, c in clean.items()],
            "results": results, "verdicts": _verdicts(results, names, eps_values, len(x))}


# --- rendering -------------------------------------------------------------------------------------
def _ylim(report: dict[str, Any]) -> tuple[float, float]:
    """Percent limits around the data (the curves of a robust model sit within a few points)."""
    values = [100 * r["robust_accuracy"] for r in report["results"]] + [100 * report["clean_accuracy"]]
    lo, hi = min(values), max(values)
    pad = max(2.0, 0.08 * (hi - lo))
    return max(-1.0, lo - pad), min(101.0, hi + pad)


def plot(report: dict[str, Any], title: str = "") -> bytes:
    """Fig. 1: robust accuracy (%) vs alpha (log scale), one line per attack (its spread in the legend),
    one panel per eps."""
    eps = report["eps"]
    fig = figure(max(7.5, 5.2 * len(eps) + 0.8), 4.4)
    axes = fig.subplots(1, len(eps), squeeze=False)[0]
    spread = {(v["attack"], v["eps"]): v["spread"] for v in report["verdicts"]}
    markers, styles = "osD^vP*X", ("-", "--", "-.", ":")
    for ax, e in zip(axes, eps):
        for k, name in enumerate(report["attacks"]):
            rows = [r for r in report["results"] if r["attack"] == name and r["eps"] == e]
            ax.plot([r["alpha"] for r in rows], [100 * r["robust_accuracy"] for r in rows],
                    marker=markers[k % len(markers)], linestyle=styles[k % len(styles)], markersize=5,
                    markerfacecolor="none" if k % 2 else None,
                    label=f"{name} (spread {100 * spread[(name, e)]:.1f} pts)")
        ax.axhline(100 * report["clean_accuracy"], color="grey", linestyle="--", linewidth=0.8, label="clean")
        ax.set_xscale("log")
        ax.set_xlabel("alpha (logits multiplied by)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(*_ylim(report))
        ax.set_title(f"{report['norm']} eps = {e:.4g} ({e * 255:.3g}/255)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title or f"robust accuracy vs logit scale (paper 004 Fig. 1), n={report['n']}", fontsize=11)
    return figure_png(fig)


def _eps_text(eps: float) -> str:
    return f"{eps:.4g} ({eps * 255:.3g}/255)"


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the verdict per attack (spread over alpha), then accuracy per attack x alpha per eps."""
    model = report.get("model", {}).get("spec", "the model")
    verdict_rows = [[v["attack"], _eps_text(v["eps"]), f"{100 * v['min']:.1f}", f"{100 * v['max']:.1f}",
                     f"{100 * v['spread']:.1f} ({v['spread_samples']} samples)",
                     "invariant" if v["invariant"] else f"moves (lowest at alpha={v['alpha_of_min']:g})"]
                    for v in report["verdicts"]]
    several = len(report["eps"]) > 1
    spreads = ", ".join(f"{v['attack']} {100 * v['spread']:.1f}" + (f" @ {v['eps'] * 255:.3g}/255" if several else "")
                        for v in report["verdicts"])
    lines = [f"# logit-scale: {model}",
             "",
             f"Paper 004 Fig. 1: robust accuracy of alpha * logits under each attack, alpha in "
             f"{', '.join(f'{a:g}' for a in report['alphas'])}; n={report['n']}, clean accuracy "
             f"{100 * report['clean_accuracy']:.1f}%, {report['norm']}, seed {report['seed']} at every alpha.",
             "",
             f"Spread over alpha (max - min, points of %): {spreads}.",
             "",
             "## Verdict per attack",
             "",
             markdown_table(["attack", "eps", "min %", "max %", "spread (points)", "verdict"], verdict_rows),
             ""]
    for e in report["eps"]:
        rows = [[name, *(f"{100 * r['robust_accuracy']:.1f}" for r in report["results"]
                         if r["attack"] == name and r["eps"] == e)] for name in report["attacks"]]
        lines += [f"## Robust accuracy (%) at eps = {_eps_text(e)}", "",
                  markdown_table(["attack", *(f"alpha={a:g}" for a in report["alphas"])], rows), ""]
    lines += ["![robust accuracy vs alpha](logit_scale.png)", ""]
    return "\n".join(lines)


# --- command ---------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    add_analysis_args(p, attacks="--attacks", eps="8/255", n=200)
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS), metavar="A[,A...]",
                   help="logit scales, each > 0 (default 1e-3 .. 1e3, 7 log-spaced values)")


def run(args: argparse.Namespace) -> AnalysisOutput:
    alphas = parse_alphas(args.alphas)
    names = attack_names(args)
    for name in names:
        norms = args.registry.attack(name).info.norms
        if args.norm not in norms:
            raise UsageError(f"--attacks {name!r} supports --norm {', '.join(norms)}, got --norm {args.norm}")
    params = attack_params(args, names)
    eps = analysis_eps(args)
    model, x, y = load_model_and_data(args)
    report = logit_scale(model, x, y, [(name, params[name]) for name in names], eps, alphas, norm=args.norm,
                         seed=args.seed, batch_size=args.batch_size, registry=args.registry, device=args.device,
                         show_progress=not args.quiet)
    title = f"{record_inputs(args, report)}\nrobust accuracy vs logit scale alpha (paper 004 Fig. 1), n={report['n']}"
    return AnalysisOutput(report, render_markdown(report), {"logit_scale.png": plot(report, title)})

