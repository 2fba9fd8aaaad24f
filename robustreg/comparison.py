"""Run one attack from several toolkits on the same samples and report them side by side.

``compare(model, data, "pgd", 8/255)`` looks up the attack under each toolkit's registry name
(``pgd`` for robustreg's own, ``torchattacks:pgd``, ``art:pgd``, ...), runs every one that exists
on the same clean-correct samples with the same seed, and reports robust accuracy, time (also
relative to the native attack), the largest perturbation, the attack's own summary as a note, and
for each pair of toolkits the fraction of samples on which they agree (both broken or both not).

The core knows no toolkit: it only builds names and looks them up in the registry.  Where a
toolkit spells an attack differently, the toolkit's plugin says so when it registers the entry
(``registrar.add_attack(..., same_as={"fgsm": {}})``), so adding a toolkit never adds a code branch.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attack import ModelState
from .evaluation import first_samples
from .files import write_atomic
from .registry import AttackSpec, Registry
from .threat import NORMS, ThreatModel, parse_eps

__all__ = [
    "DEFAULT_TOOLKITS",
    "add_parser",
    "agreement",
    "compare",
    "render_markdown",
    "render_table",
    "resolve",
    "run",
]

DEFAULT_TOOLKITS = ("native", "torchattacks", "art", "autoattack")


@dataclass(frozen=True)
class Resolved:
    """Where ``attack`` from ``toolkit`` lives: the spec (None if unavailable) and why not."""

    toolkit: str
    name: str
    spec: AttackSpec | None
    params: Mapping[str, Any]
    reason: str = ""


def resolve(registry: Registry, attack: str, toolkit: str, norm: str) -> Resolved:
    """Find ``attack`` of ``toolkit`` for ``norm``: the entry of the default name (``attack`` for
    "native", ``"<toolkit>:<attack>"`` otherwise) if it supports ``norm``, else an entry of that
    toolkit registered with ``same_as`` naming ``attack`` that does (built with its parameters)."""
    default = attack if toolkit == "native" else f"{toolkit}:{attack}"
    entries = registry.entries("attacks")
    spec = entries.get(default)
    if spec is not None and norm in spec.info.norms:
        return Resolved(toolkit, default, spec, {})
    for name, other in entries.items():
        if attack in other.same_as and other.info.toolkit == toolkit and norm in other.info.norms:
            return Resolved(toolkit, name, other, dict(other.same_as[attack]))
    if spec is None:
        return Resolved(toolkit, default, None, {}, f"{default!r} is not registered")
    supported = ", ".join(spec.info.norms)
    return Resolved(toolkit, default, None, {}, f"{default} does not support {norm} (only {supported})")


def _accepted(spec: AttackSpec, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split ``params`` into those the factory accepts and those it does not.

    A factory taking ``**kwargs`` (the adapters) accepts the keys of its spec's ``defaults``,
    which is our vocabulary the adapter maps onto its toolkit."""
    try:
        sig = inspect.signature(spec.factory)
    except (TypeError, ValueError):
        names, var_kw = set(), True
    else:
        names = {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kept, dropped = {}, []
    for key, value in params.items():
        if key in names or (var_kw and key in spec.defaults):
            kept[key] = value
        else:
            dropped.append(key)
    return kept, dropped


def agreement(broken: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """For each pair of toolkits (in the given order), the fraction of samples where both broke the
    sample or both did not; None when there are no samples."""
    out: dict[str, float | None] = {}
    for a, b in itertools.combinations(list(broken), 2):
        ba, bb = broken[a].bool(), broken[b].bool()
        if ba.shape != bb.shape:
            raise ValueError(f"broken flags of {a!r} and {b!r} have different shapes "
                             f"{tuple(ba.shape)} and {tuple(bb.shape)}")
        out[f"{a}|{b}"] = float((ba == bb).float().mean()) if ba.numel() else None
    return out


def _predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(dim=1).cpu()
                          for i in range(0, x.shape[0], batch_size)])


def _run_one(
    res: Resolved,
    params: dict[str, Any],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    device: torch.device,
    batch_size: int,
    seed: int,
) -> tuple[torch.Tensor, float, float, float | None]:
    """(broken flags, seconds, max perturbation, mean queries or None) of one toolkit's attack."""
    attack = res.spec.build(threat, seed=seed, **params)
    if x.shape[0]:
        # Untimed warm-up on one sample: a toolkit's lazy imports and first-call set-up are not the attack.
        attack.run(model, x[:1].to(device), y[:1].to(device))
    broken, dists, queries = [], [], []
    seconds = 0.0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        start = time.perf_counter()
        result = attack.run(model, xb, yb)
        seconds += time.perf_counter() - start
        with torch.no_grad():
            broken.append((model(result.x_adv).argmax(dim=1) != yb).cpu())
        dists.append(threat.distance(result.x_adv, xb).cpu())
        if result.queries is not None:
            queries.append(result.queries.float().cpu())
    if not broken:
        return torch.zeros(0, dtype=torch.bool), 0.0, 0.0, None
    q = float(torch.cat(queries).mean()) if len(queries) == len(broken) else None
    return torch.cat(broken), seconds, float(torch.cat(dists).max()), q


def compare(
    model: nn.Module,
    data: Any,
    attack: str,
    eps: float | str,
    *,
    toolkits: Sequence[str] = DEFAULT_TOOLKITS,
    norm: str = "linf",
    params: Mapping[str, Any] | None = None,
    n: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
    registry: Registry | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``attack`` from each of ``toolkits`` on the same samples and compare them.

    ``data``: a :class:`robustreg.data.LabeledData` or an ``(x, y)`` pair; its first ``n`` samples
    are used (all if None).  Every toolkit attacks the clean-correct ones among them with the same
    ThreatModel(norm, eps), ``seed`` and ``params`` -- given in robustreg's vocabulary (steps,
    step_size, random_start, restarts, n_queries, ...); keys an attack does not take are dropped
    and listed in its row's ``ignored_params``.  A toolkit without the attack (or without it for
    this norm) gets a row with ``available: False`` and the reason as its note.  An attack that
    raises gets ``available: False`` and the error in ``error`` (the other toolkits still run).

    Returns the report (also written to ``out``/report.json and report.md when ``out`` is given)::

        {"attack", "eps", "norm", "n", "clean_accuracy", "params", "seed",
         "results": [{"toolkit", "name", "available", "robust_accuracy", "seconds", "relative_seconds",
                      "max_perturbation", "mean_queries", "note", "params", "ignored_params"[, "error"]}],
         "agreement": {"a|b": fraction of the attacked samples where a and b agree, ...}}

    ``robust_accuracy`` counts misclassified clean samples as broken (fraction of the n samples);
    ``relative_seconds`` is seconds / the native attack's seconds (None without a native row).
    """
    registry = registry if registry is not None else Registry.create()
    if not isinstance(attack, str) or not attack.strip():
        raise ValueError(f"attack must be a non-empty name such as 'pgd', got {attack!r}")
    attack = attack.strip()
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    threat = ThreatModel(norm, parse_eps(eps) if isinstance(eps, str) else eps)
    if isinstance(toolkits, str):
        toolkits = [t.strip() for t in toolkits.split(",")]
    toolkits = list(dict.fromkeys(toolkits))
    if not toolkits or any(not isinstance(t, str) or not t for t in toolkits):
        raise ValueError(f"toolkits must be a non-empty list of names such as {DEFAULT_TOOLKITS}, got {toolkits!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    params = dict(params or {})
    from .models import resolve_device

    dev = resolve_device(device)
    x, y, _ = first_samples(data, n)
    resolved = [resolve(registry, attack, t, norm) for t in toolkits]
    if all(r.spec is None for r in resolved):
        raise ValueError(f"no toolkit among {', '.join(toolkits)} has attack {attack!r} for {norm} "
                         "(`robustreg list attacks` shows every registered name)")

    state = ModelState(model)
    model_device = next((p.device for p in model.parameters()), None)
    try:
        model.to(dev).eval()
        correct = _predict(model, x, dev, batch_size) == y
        xs, ys = x[correct], y[correct]
        rows: list[dict[str, Any]] = []
        broken_by: dict[str, torch.Tensor] = {}
        for res in resolved:
            row: dict[str, Any] = {"toolkit": res.toolkit, "name": res.name, "available": res.spec is not None,
                                   "robust_accuracy": None, "seconds": None, "relative_seconds": None,
                                   "max_perturbation": None, "mean_queries": None, "note": res.reason,
                                   "params": {}, "ignored_params": []}
            rows.append(row)
            if res.spec is None:
                continue
            kept, dropped = _accepted(res.spec, params)
            kept.update(res.params)
            row.update(note=res.spec.summary or res.spec.info.summary, params=kept, ignored_params=dropped)
            if progress:
                sys.stderr.write(f"compare: {res.name} on {int(correct.sum())} samples ...\n")
            try:
                flags, seconds, max_dist, queries = _run_one(res, kept, model, xs, ys, threat, dev, batch_size, seed)
            except Exception as exc:  # one toolkit failing must not hide the others' results; it is reported
                row.update(available=False, error=f"{type(exc).__name__}: {exc}")
                if progress:
                    sys.stderr.write(f"compare: {res.name} failed: {type(exc).__name__}: {exc}\n")
                continue
            broken_by[res.toolkit] = flags
            robust = int(correct.sum()) - int(flags.sum())
            row.update(robust_accuracy=robust / x.shape[0], seconds=seconds, max_perturbation=max_dist,
                       mean_queries=queries)
    finally:
        state.restore()
        if model_device is not None:
            model.to(model_device)

    native = next((r for r in rows if r["toolkit"] == "native" and r["seconds"] is not None), None)
    for row in rows:
        if native is not None and row["seconds"] is not None and native["seconds"] > 0:
            row["relative_seconds"] = row["seconds"] / native["seconds"]
    report = {
        "attack": attack,
        "eps": threat.eps,
        "norm": norm,
        "n": int(x.shape[0]),
        "clean_accuracy": float(correct.float().mean()),
        "params": params,
        "seed": seed,
        "results": rows,
        "agreement": agreement(broken_by),
    }
    if out is not None:
        write_report(report, out)
    return report


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "s":
        return f"{value:.2f}"
    return f"{value:.4g}"


def _table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["toolkit", "name", "robust acc", "seconds", "vs native", "max pert", "queries", "note"]
    rows = []
    for r in report["results"]:
        note = r.get("error") or r.get("note") or ""
        if not r["available"] and "error" not in r:
            note = f"not available: {note}"
        rows.append([r["toolkit"], r["name"], _fmt(r["robust_accuracy"], "pct"), _fmt(r["seconds"], "s"),
                     _fmt(r["relative_seconds"], "x"), _fmt(r["max_perturbation"], "g"),
                     _fmt(r.get("mean_queries"), "g"), note])
    return header, rows


def _title(report: Mapping[str, Any]) -> str:
    return (f"{report['attack']} ({report['norm']}, eps={report['eps']:.6g}) on n={report['n']}, "
            f"clean accuracy {_fmt(report['clean_accuracy'], 'pct')}")


def render_markdown(report: Mapping[str, Any]) -> str:
    """The comparison as a Markdown table plus the pairwise agreement."""
    header, rows = _table(report)
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    lines = [f"# Toolkit comparison: {_title(report)}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in esc]
    if report["agreement"]:
        lines += ["", "Agreement (fraction of attacked samples with the same broken / not broken outcome):", "",
                  "| pair | agreement |", "|---|---|"]
        lines += [f"| {pair.replace('|', ' vs ')} | {_fmt(v, 'pct')} |" for pair, v in report["agreement"].items()]
    return "\n".join(lines) + "\n"


def render_table(report: Mapping[str, Any], note_width: int = 60) -> str:
    """The comparison as a plain-text table for the terminal."""
    header, rows = _table(report)
    rows = [r[:-1] + [r[-1] if len(r[-1]) <= note_width else r[-1][:note_width - 3] + "..."] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [_title(report), fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    if report["agreement"]:
        lines.append("agreement: " + ", ".join(f"{k.replace('|', '/')} {_fmt(v, 'pct')}"
                                               for k, v in report["agreement"].items()))
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """Write ``report.json`` and ``report.md`` into the folder ``out`` (atomically); return the folder."""

    folder = Path(out)
    write_atomic(folder / "report.json", json.dumps(report, indent=2, sort_keys=False) + "\n")
    write_atomic(folder / "report.md", render_markdown(report))
    return folder


# --------------------------------------------------------------------------------------------
# the `robustreg compare` command
# --------------------------------------------------------------------------------------------
def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "/" in text:
        try:
            return parse_eps(text)
        except ValueError:
            pass
    return text


def parse_params(items: Iterable[str]) -> dict[str, Any]:
    """``["steps=10", "random_start=false"]`` -> ``{"steps": 10, "random_start": False}``."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param must be KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value)
    return out


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser("compare", help="run one attack from several toolkits on the same samples")
    p.add_argument("--model", required=True, metavar="SPEC", help="registered model name, file.py:factory or pkg.mod:f")
    p.add_argument("--weights", metavar="PATH", help="checkpoint to load into the model")
    p.add_argument("--normalize", metavar="MEAN/STD", help="wrap the model with Normalize (e.g. cifar10)")
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset spec, e.g. mnist:DIR, cifar10:DIR, digits")
    p.add_argument("--attack", required=True, help="attack name in robustreg's vocabulary, e.g. pgd, fgsm, apgd-ce")
    p.add_argument("--eps", required=True, help="budget, e.g. 8/255 or 0.3")
    p.add_argument("--norm", default="linf", choices=NORMS)
    p.add_argument("--toolkits", default=",".join(DEFAULT_TOOLKITS), help="comma-separated (default: %(default)s)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="attack parameter in robustreg's vocabulary (repeatable), e.g. steps=10")
    p.add_argument("--n", type=int, default=None, help="use the first N samples (default all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="write report.json and report.md here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``robustreg compare``: print the table; return the exit status."""
    from .data import load_data
    from .models import build_model

    registry = getattr(args, "registry", None)
    if registry is None:
        registry = Registry.create()
    model = build_model(args.model, weights=args.weights, normalize=args.normalize, registry=registry)
    data = load_data(args.data, registry=registry)
    report = compare(
        model, data, args.attack, parse_eps(args.eps),
        toolkits=[t.strip() for t in args.toolkits.split(",") if t.strip()],
        norm=args.norm, params=parse_params(args.param), n=args.n, batch_size=args.batch_size,
        device=args.device, seed=args.seed, registry=registry, out=args.out, progress=not args.quiet,
    )
    print(render_table(report))
    if args.out:
        print(f"report: {Path(args.out) / 'report.json'}")
    return 0
