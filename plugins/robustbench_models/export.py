"""``robustreg export robustbench REPORT.json FILE``: RobustBench's model-info JSON from an evaluation report.

RobustBench (1.1.1, ``robustbench.utils.ModelInfo``) describes a leaderboard entry with ``link``, ``name``,
``authors``, ``additional_data``, ``number_forward_passes``, ``dataset``, ``venue``, ``architecture``, ``eps``
(text, ``"8/255"``), ``clean_acc`` and ``autoattack_acc`` (percent as text with two decimals, ``"89.69"``),
``reported`` and ``footnote``; its files live at ``model_info/<dataset>/<Linf|L2>/<Name>.json``.

From the report: ``clean_acc``, ``eps`` (the report's only eps, or ``--eps``), ``dataset`` (the data spec's
name when it is cifar10, cifar100 or imagenet, else ``--set dataset=...``), ``architecture`` (the model's
class), the threat model (Linf or L2; RobustBench has no other).  ``autoattack_acc`` is filled only when the
report is the standard AutoAttack alone -- one attack, the registered entry implementing the common name
``autoattack``, its parameters left at their defaults but for ``batch_size``, ``verbose`` and ``seed`` -- so
its worst case is AutoAttack's robust accuracy.  Otherwise it is null and ``footnote`` says what robustreg
measured instead (a warning says so too): a leaderboard number is AutoAttack's, never another attack's.
When fewer points than RobustBench's full test set (10,000; ImageNet 5,000) were evaluated, ``footnote``
says how many.  What a report cannot know (name, link, authors, venue, additional_data, reported,
number_forward_passes) is null unless given with ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import robustreg

__all__ = ["FIELDS", "STANDARD", "configure", "model_info", "run"]

#: RobustBench 1.1.1's ModelInfo fields, in its order
FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
          "architecture", "eps", "clean_acc", "reported", "corruptions_acc", "corruptions_acc_3d",
          "corruptions_mce", "corruptions_mce_3d", "autoattack_acc", "footnote")
_WRITTEN = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
            "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote")
STANDARD = "autoattack"  # the common name of the standard suite (the registry's same_as vocabulary)
_FREE_PARAMS = {"batch_size", "verbose", "seed"}  # they change how AutoAttack runs, not what it is
_THREATS = {"linf": "Linf", "l2": "L2"}
_FULL = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 5_000}


def _fail(message: str) -> robustreg.UsageError:
    return robustreg.UsageError(f"export robustbench: {message}")


def _percent(fraction: float) -> str:
    return str(round(100 * float(fraction), 2))


def _eps_text(eps: float) -> str:
    """``8/255`` as RobustBench writes it when eps is a whole number of 255ths, else the number."""
    steps = eps * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:g}"


def _pick_eps(report: Mapping[str, Any], eps: float | None) -> int:
    values = [float(e) for e in report["eps"]]
    if eps is None:
        if len(values) != 1:
            raise _fail(f"the report holds {len(values)} eps ({', '.join(f'{v:g}' for v in values)}); pass --eps")
        return 0
    close = [i for i, v in enumerate(values) if math.isclose(v, eps, rel_tol=1e-6)]
    if not close:
        raise _fail(f"--eps {eps:g} is not in the report (eps: {', '.join(f'{v:g}' for v in values)})")
    return close[0]


def standard_autoattack(report: Mapping[str, Any], registry: robustreg.Registry) -> str | None:
    """None when ``report`` is the standard AutoAttack alone, else why not (one phrase)."""
    attacks = report["attacks"]
    if len(attacks) != 1:
        return f"{len(attacks)} attacks ({', '.join(a['name'] for a in attacks)})"
    name = attacks[0]["name"]
    try:
        same_as = registry.attack(name).same_as
    except LookupError:
        return f"attack {name!r}, not registered here"
    if STANDARD not in same_as:
        return f"attack {name!r}, not the standard AutoAttack"
    changed = sorted(set(attacks[0].get("params") or {}) - _FREE_PARAMS)
    if changed:
        return f"the standard AutoAttack with {', '.join(changed)} changed"
    return None


def _dataset(report: Mapping[str, Any]) -> str | None:
    spec = str((report.get("data") or {}).get("spec") or "")
    name = spec.split(":", 1)[0].lower()
    return name if name in _FULL else None


def model_info(report: Mapping[str, Any], registry: robustreg.Registry, *, eps: float | None = None,
               values: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str | None]:
    """RobustBench's model-info dict from ``report`` and why ``autoattack_acc`` is null (None when filled)."""
    for key in ("clean_accuracy", "eps", "norm", "attacks", "worst_case", "n"):
        if key not in report:
            raise _fail(f"the report has no {key!r}: not a robustreg evaluation report.json")
    norm = str(report["norm"])
    if norm not in _THREATS:
        raise _fail(f"RobustBench has Linf and L2 tables, the report is {norm}")
    e = _pick_eps(report, eps)
    robust = float(report["worst_case"][e]["robust_accuracy"])
    info: dict[str, Any] = dict.fromkeys(_WRITTEN)
    info.update(dataset=_dataset(report), architecture=(report.get("model") or {}).get("class"),
                eps=_eps_text(float(report["eps"][e])), clean_acc=_percent(report["clean_accuracy"]))
    notes = []
    why = standard_autoattack(report, registry)
    if why is None:
        info["autoattack_acc"] = _percent(robust)
    else:
        labels = ", ".join(a.get("label") or a["name"] for a in report["attacks"])
        notes.append(f"robustreg measured {_percent(robust)}% robust accuracy (worst case of {labels}), not the "
                     f"standard AutoAttack")
    info.update(dict(values or {}))
    full = _FULL.get(str(info.get("dataset")))
    if full is not None and int(report["n"]) < full:
        notes.append(f"evaluated on the first {report['n']} of {full} test points")
    if notes:
        info["footnote"] = "; ".join([*([info["footnote"]] if info.get("footnote") else []), *notes])
    if info["dataset"] is None:
        raise _fail(f"the report's data ({(report.get('data') or {}).get('spec')!r}) is not cifar10, cifar100 or "
                    f"imagenet; give it with --set dataset=NAME")
    return info, why


_TYPES = {"additional_data": "bool", "number_forward_passes": "int"}
_SETTABLE = ("name", "link", "authors", "venue", "reported", "additional_data", "number_forward_passes", "dataset",
             "architecture", "footnote")  # the numbers measured (clean_acc, autoattack_acc, eps) come from the report


def _values(texts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in _SETTABLE:
            raise _fail(f"--set {text!r}: expected KEY=VALUE with KEY one of {', '.join(_SETTABLE)}")
        kind = _TYPES.get(key, "str")
        if kind == "bool":
            if value.lower() not in ("true", "false"):
                raise _fail(f"--set {text!r}: {key} must be true or false")
            out[key] = value.lower() == "true"
        elif kind == "int":
            try:
                out[key] = int(value)
            except ValueError:
                raise _fail(f"--set {text!r}: {key} must be an integer") from None
        else:
            out[key] = value
    return out


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=("robustbench",), help="the format written (RobustBench's model-info JSON)")
    p.add_argument("report", metavar="REPORT.json", help="an evaluation's report.json (evaluate, autoattack)")
    p.add_argument("file", metavar="FILE", help="the JSON file to write, e.g. model_info/cifar10/Linf/Name.json")
    p.add_argument("--eps", metavar="E", help="which of the report's eps (needed when it holds several)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"a field the report cannot know, one of {', '.join(_SETTABLE)} (repeatable)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.report)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"REPORT.json {args.report!r} cannot be read: {exc}") from None
    if not isinstance(report, dict):
        raise _fail(f"REPORT.json {args.report!r} is not a report (a JSON object)")
    eps = robustreg.eps_list(args.eps, flag="--eps")[0] if args.eps is not None else None
    info, why = model_info(report, args.registry, eps=eps, values=_values(args.set))
    if why is not None:
        warnings.warn(f"autoattack_acc left null: the report is {why} (see footnote)", UserWarning, stacklevel=2)
    robustreg.write_atomic(args.file, json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.file} (clean_acc {info['clean_acc']}, autoattack_acc {info['autoattack_acc']})",
          file=sys.stdout)
    return 0
