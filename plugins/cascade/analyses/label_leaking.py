"""Label leaking: a model more accurate on step_FGSM images than on the clean ones.

Paper 000 (Na et al. 2018, "Cascade Adversarial Machine Learning Regularized with a Unified Embedding",
arXiv:1708.02582) section 4.2 and Table 2, after Kurakin et al. 2017 ("Adversarial Machine Learning at
Scale", arXiv:1611.01236, section 4.3): a network adversarially trained on one-step images crafted
with the true label learns to read the label from the perturbation, and its accuracy on the step_FGSM
images rises *above* its clean accuracy.  Per eps::

    x_adv = clip_[0, 1](x + eps * sign(grad_x CE(f(x), y_true)))          (step_FGSM, L_inf)
    clean_accuracy = (1/n) #{i : argmax f(x_i) = y_i}
    adversarial_accuracy = (1/n) #{i : argmax f(x_adv_i) = y_i}
    label_leaking = adversarial_accuracy > clean_accuracy

Both accuracies are over all n points (every point is perturbed, also the ones misclassified clean:
a leaking model gets some of them right); a row with a NaN or inf logit is never correct.  step_FGSM
is the formula above (generic math, computed here: one gradient per batch serves every eps); the
registered attacks of ``--attacks`` (optional) are scored the same way, side by side, under
``--norm``, built and seeded as :func:`robustreg.evaluation.evaluate` builds them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import ModelState, ThreatModel, UsageError
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
    record_inputs,
)
from robustreg.analysis import progress as _progress
from robustreg.evaluation import EvalConfig, Mode, craft, make_plan
from robustreg.evaluation.checking import clean_correct
from robustreg.options import flag, positive_int, seed_value, with_options
from robustreg.runtime import predict
from robustreg.verdict import judge

NAME = "label-leaking"
SUMMARY = "step_FGSM accuracy above clean accuracy: label leaking (paper 000 section 4.2)"

__all__ = ["STEP_FGSM", "label_leaking", "label_leaking_markdown", "label_leaking_png", "step_fgsm"]

STEP_FGSM = "step_FGSM"  # the formula's name in the report (paper 000's)


def _input_gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sign(grad_x CE(f(x), y)) with the model's parameters frozen (modes, requires_grad, .grad restored)."""
    state = ModelState(model)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x).float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        state.restore()
    return grad.sign()


def step_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """step_FGSM of paper 000 section 2: ``clip_[0,1](x + eps * sign(grad_x CE(f(x), y_true)))``."""
    ThreatModel("linf", eps)  # eps in [0, 1], as everywhere
    return (x + eps * _input_gradient_sign(model, x, y)).clamp(0, 1).detach()


def _formula_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Sequence[float], batch_size: int,
                     show: bool) -> torch.Tensor:
    """len(eps) x n (bool): right on the step_FGSM image of each eps."""
    out = torch.zeros(len(eps), x.shape[0], dtype=torch.bool)
    starts = range(0, x.shape[0], batch_size)
    for start in _progress(starts, total=len(starts), desc=STEP_FGSM, enabled=show):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        sign = _input_gradient_sign(model, xb, yb)
        for k, e in enumerate(eps):
            out[k, start:start + xb.shape[0]] = ~judge(model, (xb + e * sign).clamp(0, 1), yb)[0].cpu()
    return out


def _attack_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Sequence[Any],
                    eps: Sequence[float], norm: str, seed: int | None, batch_size: int, registry: Any,
                    show: bool) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Per registered attack: its declaration for the report, and len(eps) x n (bool) correctness."""
    config = EvalConfig(norm=norm, seed=seed, batch_size=batch_size, mode=Mode.INDEPENDENT, registry=registry,
                        progress=False)
    plan = make_plan(list(attacks), list(eps), config)
    index = {v: k for k, v in enumerate(plan.eps)}
    # the engine's cells on every point (the clean mistakes too): correct = not broken, evaluate's verdict
    state, _ = craft(model, x, y, plan, x.device, progress=show)
    out = {p.label: torch.zeros(len(eps), x.shape[0], dtype=torch.bool) for p in plan.plans}
    for e, a in plan.cells():
        for k, value in enumerate(eps):
            if index[ThreatModel(norm, value).eps] == e:
                out[plan.plans[a].label][k] = ~state.cell(e, a).broken
    info = [{"name": p.name, "label": p.label, "params": json_params(plan.params(i))} for i, p in enumerate(plan.plans)]
    return info, out


def _rows(eps: Sequence[float], correct: torch.Tensor, clean: float) -> list[dict[str, Any]]:
    n = correct.shape[1]
    rows = []
    for k, e in enumerate(eps):
        adv = float(correct[k].sum()) / n
        rows.append({"eps": float(e), "clean_accuracy": clean, "adversarial_accuracy": adv,
                     "difference": adv - clean, "label_leaking": adv > clean})
    return rows


@dataclass(frozen=True)
class LabelLeakingConfig:
    """The options of :func:`label_leaking` (its keyword arguments; see it for each one), checked once.

    ``options`` given to :func:`label_leaking` replace these fields: the older keyword calls keep working.
    """

    attacks: Sequence[str | tuple[str, Mapping[str, Any]]] = ()
    norm: str = "linf"
    seed: int | None = 0
    batch_size: int = 256
    registry: Any = None
    progress: bool = False

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, optional=True)
        positive_int("batch_size", self.batch_size)
        flag("progress", self.progress)


def label_leaking(model: nn.Module, x: Any, y: torch.Tensor | None = None, eps: float | Sequence[float] | None = None,
                  config: LabelLeakingConfig | None = None, **options: Any) -> dict[str, Any]:
    """Paper 000 section 4.2's label-leaking test: step_FGSM accuracy vs clean accuracy at each eps.

    Args:
        model: a classifier (eval mode, on ``x``'s device; [0, 1] inputs, logits out).
        x, y: tensors or numpy arrays, or ``x`` any data ``evaluate`` takes (Dataset, DataLoader) and ``y``
            None (:func:`robustreg.analysis.analysis_samples`): every sample;
            the n samples.  eps: budgets in [0, 1] units (ascending in the report).
        attacks: optional registered attacks (names or ``(name, params)``), scored the same way under
            ``norm`` with ``seed`` (as :func:`robustreg.evaluation.evaluate` builds them).

    Returns the report dict: ``clean_accuracy``, ``eps``, ``rows`` (step_FGSM per eps: ``eps,
    clean_accuracy, adversarial_accuracy, difference, label_leaking``), ``label_leaking`` (True at any
    eps), ``leaking_eps`` and, per attack of ``attacks``, ``attack_rows`` the same way.
    """
    cfg = with_options(LabelLeakingConfig, config, options, caller="label_leaking()")
    x, y = analysis_samples(x, y, "label_leaking()", eps=eps)
    assert eps is not None  # for mypy: analysis_samples checked
    attacks, norm, seed, batch_size, registry, progress = (
        cfg.attacks, cfg.norm, cfg.seed, cfg.batch_size, cfg.registry, cfg.progress)
    values = sorted({ThreatModel("linf", float(e)).eps for e in ([eps] if isinstance(eps, (int, float)) else eps)})
    if not values:
        raise ValueError("label_leaking needs at least one eps")
    n = int(x.shape[0])
    clean = float(clean_correct(predict(model, x, x.device, batch_size), y).sum()) / n
    rows = _rows(values, _formula_correct(model, x, y, values, batch_size, progress), clean)
    report: dict[str, Any] = {
        "analysis": "label-leaking",
        "definition": "x_adv = clip(x + eps * sign(grad_x CE(f(x), y_true)), 0, 1) (step_FGSM, L_inf); accuracies "
                      "over all n points; label_leaking where the adversarial accuracy exceeds the clean accuracy",
        "n": n, "eps": values, "seed": seed, "clean_accuracy": clean, "rows": rows,
        "label_leaking": any(r["label_leaking"] for r in rows),
        "leaking_eps": [r["eps"] for r in rows if r["label_leaking"]],
    }
    if attacks:
        info, correct = _attack_correct(model, x, y, attacks, values, norm, seed, batch_size, registry, progress)
        report["norm"] = norm
        report["attacks"] = info
        report["attack_rows"] = {label: _rows(values, c, clean) for label, c in correct.items()}
    return report


# --- rendering ---------------------------------------------------------------------------------------
def label_leaking_markdown(report: Mapping[str, Any], title: str = "") -> str:
    """report.md: the per-eps table (step_FGSM and any --attacks), leaking rows marked."""
    series = {STEP_FGSM: report["rows"], **report.get("attack_rows", {})}
    verdict = (f"**label leaking** at eps {', '.join(f'{e:.4g}' for e in report['leaking_eps'])}"
               if report["label_leaking"] else "no label leaking")
    lines = [f"# Label leaking (paper 000 section 4.2){': ' + title if title else ''}", "",
             f"n={report['n']}, clean accuracy {100 * report['clean_accuracy']:.1f}%: step_FGSM {verdict}.", "",
             "step_FGSM: x + eps * sign(grad_x CE(f(x), y_true)), clipped to [0, 1]. Accuracy (%) over all n "
             "points; leaking where the adversarial accuracy is above the clean one.", ""]
    header = ["eps", "clean", *[f"{name}" for name in series], "leaking (step_FGSM)"]
    table = []
    for k, row in enumerate(report["rows"]):
        table.append([f"{row['eps']:.4g}", f"{100 * row['clean_accuracy']:.1f}",
                      *[f"{100 * rows[k]['adversarial_accuracy']:.1f}" + (" (leak)" if rows[k]["label_leaking"] else "")
                        for rows in series.values()],
                      "yes" if row["label_leaking"] else "no"])
    lines += ["## Accuracy per eps", "", markdown_table(header, table), ""]
    return "\n".join(lines)


def label_leaking_png(report: Mapping[str, Any], title: str = "") -> bytes:
    """label_leaking.png: accuracy vs eps (0: clean), the clean accuracy dashed, leaking points in red."""
    fig = figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    clean = 100 * report["clean_accuracy"]
    series = {STEP_FGSM: report["rows"], **report.get("attack_rows", {})}
    for name, rows in series.items():
        eps = [0.0] + [r["eps"] for r in rows]
        acc = [clean] + [100 * r["adversarial_accuracy"] for r in rows]
        formula = name == STEP_FGSM  # the attacks dashed: one that is step_FGSM lies on it
        ax.plot(eps, acc, marker="o" if formula else "s", markersize=6 if formula else 4, label=name,
                linewidth=2.5 if formula else 1.2, linestyle="-" if formula else "--", zorder=2 if formula else 2.5)
        leak = [(r["eps"], 100 * r["adversarial_accuracy"]) for r in rows if r["label_leaking"]]
        if leak:
            ax.scatter(*zip(*leak), s=90, facecolors="none", edgecolors="red", linewidths=2, zorder=3)
    ax.axhline(clean, color="gray", linestyle="--", label=f"clean ({clean:.1f}%)")
    if report["label_leaking"]:
        ax.scatter([], [], s=90, facecolors="none", edgecolors="red", linewidths=2, label="label leaking")
    ax.set_xlabel("eps ([0, 1] pixel units)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(f"label leaking{': ' + title if title else ''} (n={report['n']})", fontsize=10)
    return figure_png(fig)


# --- the command -------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    add_analysis_args(p, attacks=None, eps="2/255,4/255,8/255,16/255", n=200)
    g = p.add_argument_group("attack")
    g.add_argument("--attacks", metavar="NAME[,NAME...]",
                   help="registered attacks scored beside step_FGSM (optional; `robustreg list attacks`)")
    g.add_argument("--param", action="append", default=[], metavar="[NAME.]KEY=VALUE",
                   help="parameter of an --attacks attack, as in `robustreg evaluate` (repeatable)")


def run(args: argparse.Namespace) -> AnalysisOutput:
    eps = analysis_eps(args)
    names = attack_names(args) if args.attacks is not None else []
    if args.param and not names:
        raise UsageError(f"--param {args.param[0]!r}: there is no --attacks attack to give it to")
    params = attack_params(args, names) if names else {}
    for name in names:
        norms = args.registry.attack(name).info.norms
        if args.norm not in norms:
            raise UsageError(f"--attacks {name!r} supports --norm {' or '.join(norms)}, got --norm {args.norm!r}")
    model, x, y = load_model_and_data(args)
    report = label_leaking(model, x, y, eps, attacks=[(name, params[name]) for name in names], norm=args.norm,
                           seed=args.seed, batch_size=args.batch_size, registry=args.registry,
                           progress=not args.quiet)
    title = record_inputs(args, report)
    return AnalysisOutput(report, label_leaking_markdown(report, title),
                          {"label_leaking.png": label_leaking_png(report, title)})

