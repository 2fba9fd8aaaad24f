"""Transfer (black-box) accuracy: adversarial examples crafted on each source model, scored on each target.

Paper 000 (Na et al. 2018, "Cascade Adversarial Machine Learning Regularized with a Unified Embedding",
arXiv:1708.02582) Tables 4 and 7-10: the accuracy of target networks on adversarial images crafted on
other (source) networks, and section 5's *worst-case* black-box accuracy over the sources.  Here any
classifiers and any registered attack (``--attacks``) at any eps.

The definition (the matrix's entries, fractions of all n samples)::

    accuracy[s][t] = (1/n) #{ i : argmax t(x_i) = y_i  and  argmax t(x_adv_{s,i}) = y_i }

with x_adv_{s,i} the attack run on the source s.  A point the target misclassifies clean counts as
wrong, and a row with a NaN or inf logit is never correct: this is exactly the ``robust_accuracy`` of
:func:`robustreg.evaluation.evaluate` in independent mode (``mode=Mode.INDEPENDENT``), which is what the
white-box diagonal (the source *is* the target) equals, for the same attack, eps and seed.  To make
that hold sample for sample, every source's examples are crafted by the evaluation engine itself
(:func:`robustreg.evaluation.craft`: each attack x eps one cell of its Runner, a ShardedRunner over
torchrun ranks): the attack is built by the evaluation's own plan (:func:`robustreg.evaluation.make_plan`, seed and
registry defaults included) and run on the source's clean-correct points in the same batches
(``batch_size`` of them, in index order; an attack called with a seed draws the same randomness on
the same batch).  The points the source misclassifies clean are attacked too, in a second pass, so
that every target is scored on all n points.

``worst_case`` per target: the lowest accuracy over the sources other than the target itself (the
worst-case black-box accuracy of paper 000 section 5); None when the target is its only source.

``per_sample=True``: every matrix also holds ``samples[source][target]``, the terms of its entry (one ``0`` /
``1`` per point, in order: the target right both clean and on that source's example), so that a paired test
(McNemar's) can compare two sources or two targets on the same points.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
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
    finite,
    json_params,
    load_model_arg,
    markdown_table,
    parse_model_arg,
    unique_names,
)
from robustreg.analysis import progress as _progress
from robustreg.evaluation import EvalConfig, Mode, craft, make_plan
from robustreg.evaluation.checking import clean_correct
from robustreg.evaluation.config import Plan
from robustreg.evaluation.distributed import SINGLE, Group, process_group, torchrun_env
from robustreg.evaluation.samples import bits
from robustreg.options import flag as check_flag
from robustreg.options import positive_int, seed_value, with_options
from robustreg.runtime import predict
from robustreg.verdict import judge

NAME = "transfer"
SUMMARY = "accuracy of target models on adversarial examples crafted on source models (paper 000 Tables 4, 7-10)"

__all__ = ["transfer", "transfer_markdown", "transfer_png"]


# --- the computation ---------------------------------------------------------------------------------
def _plan(attacks: Sequence[Any], eps: float | Sequence[float], norm: str, seed: int | None, batch_size: int,
          registry: Any) -> Plan:
    """The evaluation's plan of ``attacks`` x ``eps`` (independent mode): attacks built and seeded as evaluate does."""
    config = EvalConfig(norm=norm, seed=seed, batch_size=batch_size, mode=Mode.INDEPENDENT, registry=registry,
                        progress=False)
    return make_plan(list(attacks), eps, config)


@dataclass
class _Scores:
    """Per cell, targets x n (bool): each target right on the source's adversarial example of each point, filled
    as the engine hands the crafted batches over."""

    targets: Sequence[nn.Module]
    y: torch.Tensor
    flags: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def add(self, e: int, a: int, k: int, indices: torch.Tensor, x_adv: torch.Tensor) -> None:
        cell = self.flags.setdefault((e, a), torch.zeros(len(self.targets), len(self.y), dtype=torch.bool))
        yb = self.y[indices.to(self.y.device)]
        cell[:, indices] = torch.stack([~judge(target, x_adv, yb)[0].cpu() for target in self.targets])


def _craft_and_score(plan: Plan, source: nn.Module, targets: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor,
                     source_correct: torch.Tensor,
                     group: Group = SINGLE) -> tuple[dict[tuple[int, int], torch.Tensor], float]:
    """Per cell of ``plan``, targets x n (bool): each target right on the source's adversarial example of each
    point; and the seconds this rank waited for the others.

    The attacks are the engine's cells (:func:`robustreg.evaluation.craft`): the source's clean-correct points
    first, each cell in evaluate's batches and with a freshly built attack, then the rest (its clean mistakes)
    the same way.  Over the ranks of ``group`` each rank crafts and scores its batches, and the flags are
    gathered, so every rank ends with the flags one process computes."""
    scores, waited = _Scores(targets, y), 0.0
    for points in (source_correct.cpu(), ~source_correct.cpu()):
        if bool(points.any()):
            waited += craft(source, x, y, plan, x.device, scores, points=points, group=group)[1]
    flags = {cell: scores.flags.get(cell, torch.zeros(len(targets), len(y), dtype=torch.bool))
             for cell in plan.cells()}
    if group.world_size > 1:
        start = time.perf_counter()
        for part in group.gather(flags):  # each rank holds the flags of the batches it ran
            for cell in flags:
                flags[cell] |= part[cell]
        waited += time.perf_counter() - start
    return flags, waited


def _worst_case(names_s: Sequence[str], names_t: Sequence[str], acc: list[list[float]],
                white: list[list[bool]]) -> dict[str, dict[str, Any]]:
    worst: dict[str, dict[str, Any]] = {}
    for j, target in enumerate(names_t):
        others = [(acc[i][j], names_s[i]) for i in range(len(names_s)) if not white[i][j]]
        value, source = min(others) if others else (None, None)
        worst[target] = {"accuracy": value, "source": source}
    return worst


@dataclass(frozen=True)
class TransferConfig:
    """The options of :func:`transfer` (its keyword arguments; see it for each one), checked once.

    ``options`` given to :func:`transfer` replace these fields: the older keyword calls keep working.
    """

    norm: str = "linf"
    seed: int | None = 0
    batch_size: int = 256
    registry: Any = None
    progress: bool = False
    distributed: bool = False
    per_sample: bool = False

    def __post_init__(self) -> None:
        seed_value("seed", self.seed, optional=True)
        positive_int("batch_size", self.batch_size)
        check_flag("progress", self.progress)
        check_flag("distributed", self.distributed)
        check_flag("per_sample", self.per_sample)


def transfer(sources: Mapping[str, nn.Module], targets: Mapping[str, nn.Module], x: Any, y: torch.Tensor | None = None,
             attacks: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
             eps: float | Sequence[float] | None = None,
             config: TransferConfig | None = None, **options: Any) -> dict[str, Any]:
    """The transfer matrices of paper 000 Tables 4, 7-10: accuracy of each target on each source's examples.

    Args:
        sources, targets: name -> classifier (eval mode, on ``x``'s device; [0, 1] inputs, logits out).
            A source that is the very same object as a target is that cell's white-box attack.
        x, y: tensors or numpy arrays, or ``x`` any data ``evaluate`` takes (Dataset, DataLoader) and ``y``
            None (:func:`robustreg.analysis.analysis_samples`): every sample;
            the n samples (float in [0, 1], int64 labels).
        attacks: registry names or ``(name, params)`` pairs, as :func:`robustreg.evaluation.evaluate` takes.
        eps: one budget or a list, [0, 1] units.  norm, seed, batch_size, registry: as evaluate's.
        distributed: share the crafting batches over the torch.distributed ranks (call it on every rank of
            a torchrun launch, the models and ``x`` on the rank's device; the group is initialised from
            ``WORLD_SIZE`` / ``RANK`` if it is not yet).  Every rank returns the report of one process
            with the same seed (but for ``distributed``).
        per_sample: also each matrix entry's terms per point (``samples``, see the module docstring).

    Returns the report dict: ``clean_accuracy`` (per target and source), ``matrices`` (one per attack x
    eps: ``{"attack", "label", "eps", "sources", "targets", "accuracy": rows = sources, columns = targets,
    "white_box": same shape, bool, "worst_case": per target}``, with ``per_sample`` also ``"samples"``), the
    run's settings and ``distributed`` (``world_size``, ``seconds_per_rank`` crafting and scoring,
    ``gather_seconds_per_rank`` of them spent waiting for the other ranks; one rank for a plain call).  Each
    entry is defined in the module docstring; the white-box entries equal evaluate's independent-mode
    ``robust_accuracy``.
    """
    cfg = with_options(TransferConfig, config, options, caller="transfer()")
    x, y = analysis_samples(x, y, "transfer()", attacks=attacks, eps=eps)
    assert attacks is not None and eps is not None  # for mypy: analysis_samples checked
    norm, seed, batch_size, registry, progress, distributed = (
        cfg.norm, cfg.seed, cfg.batch_size, cfg.registry, cfg.progress, cfg.distributed)
    if not sources or not targets:
        raise ValueError(f"transfer needs at least one source and one target, got {len(sources)} and {len(targets)}")
    plan = _plan(attacks, eps, norm, seed, batch_size, registry)
    names_s, names_t = list(sources), list(targets)
    models = {**{f"s:{k}": m for k, m in sources.items()}, **{f"t:{k}": m for k, m in targets.items()}}
    correct = {key: clean_correct(predict(m, x, x.device, batch_size), y) for key, m in models.items()}
    white = [[sources[s] is targets[t] for t in names_t] for s in names_s]
    n = int(x.shape[0])
    rows: dict[tuple[int, int], list[list[float]]] = {}
    terms: dict[tuple[int, int], dict[str, dict[str, str]]] = {}  # per_sample: each entry's terms, as bits
    with process_group(x.device) if distributed else nullcontext(SINGLE) as group:
        started, waited = time.perf_counter(), 0.0
        for s in _progress(names_s, total=len(names_s), desc="transfer", enabled=progress and group.is_main):
            scored, wait = _craft_and_score(plan, sources[s], list(targets.values()), x, y, correct[f"s:{s}"], group)
            waited += wait
            for cell in plan.cells():
                right = [correct[f"t:{t}"].cpu() & scored[cell][j] for j, t in enumerate(names_t)]
                rows.setdefault(cell, []).append([float(r.sum()) / n for r in right])
                if cfg.per_sample:
                    terms.setdefault(cell, {})[s] = {t: bits(r) for t, r in zip(names_t, right)}
        timings = group.gather((round(time.perf_counter() - started, 4), round(waited, 4)))
    matrices = [{"attack": plan.plans[a].name, "label": plan.plans[a].label, "eps": plan.eps[e],
                 "sources": names_s, "targets": names_t, "accuracy": rows[e, a], "white_box": white,
                 "worst_case": _worst_case(names_s, names_t, rows[e, a], white),
                 **({"samples": terms[e, a]} if cfg.per_sample else {})} for e, a in plan.cells()]
    return {
        "analysis": "transfer",
        "definition": "accuracy[s][t] = fraction of the n samples the target t classifies correctly both clean and "
                      "on the adversarial example crafted on the source s (white-box cells: evaluate's "
                      "independent-mode robust_accuracy)",
        "n": n, "norm": norm, "seed": seed, "batch_size": batch_size, "eps": list(plan.eps),
        "attacks": [{"name": p.name, "label": p.label, "params": json_params(plan.params(i))}
                    for i, p in enumerate(plan.plans)],
        "sources": names_s, "targets": names_t,
        "clean_accuracy": {"targets": {t: float(correct[f"t:{t}"].sum()) / n for t in names_t},
                           "sources": {s: float(correct[f"s:{s}"].sum()) / n for s in names_s}},
        "matrices": matrices,
        "distributed": {"world_size": len(timings), "seconds_per_rank": [t[0] for t in timings],
                        "gather_seconds_per_rank": [t[1] for t in timings]},
    }


# --- rendering ---------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def transfer_markdown(report: Mapping[str, Any]) -> str:
    """report.md: one table per attack x eps (rows: sources, columns: targets; white-box cells in bold)."""
    clean = report["clean_accuracy"]["targets"]
    lines = [f"# Transfer accuracy (paper 000 Tables 4, 7-10): n={report['n']}, norm {report['norm']}, "
             f"seed {report['seed']}", "",
             "Accuracy (%) of each target (column) on the adversarial examples crafted on each source (row), "
             "over all n samples (a point the target misclassifies clean counts as wrong). **Bold**: white-box "
             "(the source is the target; equals `robustreg evaluate`'s independent-mode robust accuracy). "
             "Worst case: the lowest accuracy over the other sources (black-box).", ""]
    for block in report["matrices"]:
        header = ["source \\ target", *[f"{t} (clean {_pct(clean[t])})" for t in block["targets"]]]
        rows = [[s, *[f"**{_pct(v)}**" if block["white_box"][i][j] else _pct(v) for j, v in enumerate(row)]]
                for i, (s, row) in enumerate(zip(block["sources"], block["accuracy"]))]
        rows.append(["worst case (black-box)", *[_pct(block["worst_case"][t]["accuracy"]) for t in block["targets"]]])
        lines += [f"## {block['label']} at eps {block['eps']:.4g}", "", markdown_table(header, rows), ""]
    return "\n".join(lines)


def transfer_png(report: Mapping[str, Any]) -> bytes:
    """transfer.png: one heat map per attack x eps (rows: attacks, columns: eps), white-box cells outlined."""
    blocks = report["matrices"]
    labels = list(dict.fromkeys(b["label"] for b in blocks))
    eps = sorted({b["eps"] for b in blocks})
    ns, nt = len(report["sources"]), len(report["targets"])
    cell_w, cell_h = max(2.4, 1.1 * nt + 1.6), max(2.0, 0.7 * ns + 1.4)
    fig = figure(cell_w * len(eps), cell_h * len(labels))
    clean = report["clean_accuracy"]["targets"]
    for block in blocks:
        r, c = labels.index(block["label"]), eps.index(block["eps"])
        ax = fig.add_subplot(len(labels), len(eps), r * len(eps) + c + 1)
        acc = torch.tensor(block["accuracy"], dtype=torch.float64).numpy()
        ax.imshow(acc, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i in range(ns):
            for j in range(nt):
                white = block["white_box"][i][j]
                ax.text(j, i, f"{100 * acc[i, j]:.1f}", ha="center", va="center", fontsize=9,
                        color="black" if acc[i, j] > 0.6 else "white", fontweight="bold" if white else "normal")
                if white:
                    ax.add_patch(_outline(j, i))
        ax.set_xticks(range(nt), [f"{_wrap(t)}\nclean {_pct(clean[t])}" for t in block["targets"]], fontsize=8)
        ax.set_yticks(range(ns), [_wrap(s) for s in block["sources"]], fontsize=8)
        ax.set_title(f"{block['label']}, eps {block['eps']:.4g}", fontsize=10)
        ax.set_xlabel("target", fontsize=8)
        ax.set_ylabel("source", fontsize=8)
    fig.suptitle("transfer accuracy (%), white-box outlined", fontsize=11)
    return figure_png(fig)


def _wrap(name: str, width: int = 14) -> str:
    """A long model name over several lines, broken after "_", "-" or "/" (tick labels side by side)."""
    lines, line = [], ""
    for part in re.split(r"(?<=[_\-/])", name):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line])


def _outline(j: int, i: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False, edgecolor="red", linewidth=2.5)


# --- the command -------------------------------------------------------------------------------------
def configure(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--source", action="append", default=[], metavar="SPEC[@WEIGHTS]",
                   help="model the adversarial examples are crafted on (repeatable)")
    g.add_argument("--target", action="append", default=[], metavar="SPEC[@WEIGHTS]",
                   help="model scored on them (repeatable; default: the sources)")
    add_analysis_args(p, model=False, eps="0.1", n=200)
    p.set_defaults(model=None, weights=None)


def _models(args: argparse.Namespace) -> tuple[dict[str, nn.Module], dict[str, nn.Module], torch.Tensor, torch.Tensor,
                                               dict[str, dict[str, Any]]]:
    if not args.source:
        raise UsageError("--source is required (SPEC[@WEIGHTS], repeatable)")
    parsed = {flag: [parse_model_arg(t, flag) for t in texts]
              for flag, texts in (("--source", args.source), ("--target", args.target or args.source))}
    everyone = list({m.text: m for ms in parsed.values() for m in ms}.values())
    names = dict(zip([m.text for m in everyone], unique_names(everyone)))
    loaded: dict[str, nn.Module] = {}
    x = y = None
    for flag, ms in parsed.items():
        for m in ms:
            if m.text not in loaded:
                loaded[m.text], x, y = load_model_arg(args, m, flag)
    assert x is not None and y is not None
    info = {names[m.text]: {"spec": m.spec, "weights": m.weights} for m in everyone}
    sources = {names[m.text]: loaded[m.text] for m in parsed["--source"]}
    targets = {names[m.text]: loaded[m.text] for m in parsed["--target"]}
    return sources, targets, x, y, info


def run(args: argparse.Namespace) -> AnalysisOutput:
    names = attack_names(args)
    params = attack_params(args, names)
    eps = analysis_eps(args)
    sources, targets, x, y, info = _models(args)
    for name in names:
        norms = args.registry.attack(name).info.norms
        if args.norm not in norms:
            raise UsageError(f"--attacks {name!r} supports --norm {' or '.join(norms)}, got --norm {args.norm!r}")
    report = transfer(sources, targets, x, y, [(name, params[name]) for name in names], eps, norm=args.norm,
                      seed=args.seed, batch_size=args.batch_size, registry=args.registry, progress=not args.quiet,
                      distributed=torchrun_env())
    report["models"] = info
    report["data"] = {"spec": args.data, "split": args.split}
    for block in report["matrices"]:
        block["accuracy"] = [[finite(v) for v in row] for row in block["accuracy"]]
    return AnalysisOutput(report, transfer_markdown(report), {"transfer.png": transfer_png(report)})

