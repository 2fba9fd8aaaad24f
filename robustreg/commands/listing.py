"""``robustreg list``: what is registered, as a terminal table, a Markdown table or JSON.

``robustreg list attacks NAME`` (an exact name; the same for defenses) shows that entry's declared
parameters one per row instead.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from typing import Any

from .._version import __version__
from ..attack import COMMON_PARAMS
from ..cli_kit import UsageError, norm_arg
from ..params import ParamSet
from ..plugin_api import PLUGIN_API
from ..registry import Registry
from ..tables import format_table
from ..threat import NORMS

__all__ = ["LIST_KINDS", "configure", "run"]

LIST_KINDS = ("attacks", "defenses", "models", "model_sources", "datasets", "plugins", "commands", "analyses", "checks",
              "remedies")
_TERMINAL_CELL = 70  # the terminal table cuts longer cells; --markdown and --json never do

_COLUMNS = {
    "attacks": [("name", "name"), ("norms", "norms"), ("kind", "kind"), ("toolkit", "toolkit"),
                ("paper/source", "_source"), ("targeted", "targeted"), ("needs-embedding", "needs_embedding"),
                ("randomized", "randomized"), ("summary", "summary"), ("params", "_params")],
    "defenses": [("name", "name"), ("paper/source", "_source"), ("single-step", "single_step"),
                 ("needs-embedding", "needs_embedding"), ("plugin", "plugin"), ("summary", "summary"),
                 ("params", "_params")],
    "models": [("name", "name"), ("classes", "num_classes"), ("input", "input_shape"), ("plugin", "plugin"),
               ("summary", "summary")],
    "model_sources": [("prefix", "name"), ("requires", "requires"), ("plugin", "plugin"), ("summary", "summary")],
    "datasets": [("name", "name"), ("needs-root", "needs_root"), ("plugin", "plugin"), ("summary", "summary")],
    "plugins": [("name", "name"), ("source", "source"), ("status", "_status")],
    "commands": [("name", "name"), ("plugin", "plugin"), ("summary", "summary")],
    "analyses": [("name", "name"), ("plugin", "plugin"), ("torchrun-shared", "distributed"), ("summary", "summary")],
    "checks": [("name", "name"), ("plugin", "plugin"), ("doc", "doc")],
    "remedies": [("name", "name"), ("answers", "answers"), ("plugin", "plugin"), ("summary", "summary")],
}
_PARAM_COLUMNS = [("name", "name"), ("type", "type"), ("default", "default"), ("allowed", "allowed"),
                  ("unit", "unit"), ("doc", "doc"), ("toolkit name", "toolkit")]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", metavar="KIND", help=f"one of {', '.join(LIST_KINDS)} (default attacks)")
    p.add_argument("pattern", nargs="?", metavar="PATTERN",
                   help="fnmatch pattern on the name, e.g. 'TOOLKIT:*'; an exact attack or defense name shows "
                        "its declared parameters")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--markdown", action="store_true", help="GitHub Markdown table")
    p.add_argument("--norm", type=norm_arg, choices=NORMS, help="attacks supporting this norm")
    p.add_argument("--toolkit", help="attacks from this toolkit (native, or an adapter's prefix, the text before ':')")
    p.add_argument("--paper", help="attacks from this paper id (the paper column of `robustreg list`)")
    p.add_argument("--kind", choices=("white-box", "score", "decision", "transfer"), help="attack kind")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _declared(spec: Any) -> dict[str, Any]:
    params: ParamSet = spec.params
    return {"params": params.to_json(), "defaults": _jsonable(dict(spec.defaults))}


def _attack_row(spec: Any) -> dict[str, Any]:
    info = spec.info
    return {
        "name": spec.name, "norms": list(info.norms), "kind": info.kind, "toolkit": info.toolkit,
        "paper": info.paper, "source": info.source, "targeted": info.targeted,
        "needs_embedding": info.needs_embedding, "randomized": info.randomized, "demo": spec.demo,
        "plugin": spec.plugin, "summary": spec.summary, **_declared(spec),
    }


def _row(kind: str, spec: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": spec.name, "plugin": spec.plugin}
    if kind == "defenses":
        row.update(paper=spec.info.paper, source=spec.info.source, single_step=spec.info.single_step,
                   needs_embedding=spec.info.needs_embedding)
    elif kind == "models":
        row.update(num_classes=spec.num_classes, input_shape=list(spec.input_shape) if spec.input_shape else None)
    elif kind == "model_sources":
        row.update(requires=list(spec.requires), install=spec.install, missing=spec.missing())
    elif kind == "datasets":
        row.update(needs_root=spec.needs_root)
    elif kind == "analyses":
        row.update(distributed=spec.distributed)
    elif kind == "checks":
        row.update(doc=spec.doc)
    elif kind == "remedies":
        row.update(answers=list(spec.answers))
    row["summary"] = spec.summary
    if kind == "defenses":
        row.update(_declared(spec))
    return row


def _rows_for(registry: Registry, kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    pattern = args.pattern or "*"
    if kind == "attacks":
        specs = registry.list_attacks(pattern, norm=args.norm, toolkit=args.toolkit, paper=args.paper, kind=args.kind)
        return [_attack_row(s) for s in specs]
    if any(v is not None for v in (args.norm, args.toolkit, args.paper, args.kind)):
        raise UsageError(f"--norm/--toolkit/--paper/--kind filter attacks only, not {kind}")
    if kind == "plugins":
        return [{"name": p.name, "source": p.source, "status": "ok" if p.error is None else "failed", "error": p.error}
                for p in registry.plugin_states() if fnmatch.fnmatchcase(p.name, pattern)]
    return [_row(kind, spec) for spec in registry.list(kind, pattern)]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _params_cell(row: dict[str, Any]) -> str:
    """``steps=20, step_size=None, ...``: the declared defaults, less the parameters every attack has."""
    common = set(COMMON_PARAMS.names())
    shown = [f"{p['name']}={_short(p['default'])}" for p in row["params"] if p["name"] not in common]
    return ", ".join(shown) or "-"


def _cell(row: dict[str, Any], key: str) -> str:
    if key == "_source":
        paper, source = row.get("paper"), row.get("source") or ""
        tag = f"paper {paper}" if paper and f"paper {paper}" not in source else ""
        return ", ".join(p for p in (tag, source) if p) or "-"
    if key == "_params":
        return _params_cell(row)
    if key == "_status":
        return "ok" if row["error"] is None else f"failed: {row['error']}"
    value = row.get(key)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "-" if value in (None, "") else str(value)


def _render(rows: list[dict[str, Any]], columns: list[tuple[str, str]], markdown: bool,
            max_cell: int | None = _TERMINAL_CELL) -> str:
    table = [[_cell(r, key) for _, key in columns] for r in rows]
    return format_table([title for title, _ in columns], table, markdown=markdown,
                        max_cell=None if markdown else max_cell)


def _show_entry(registry: Registry, kind: str, name: str, args: argparse.Namespace) -> int:
    """One attack's or defense's declared parameters, one row each."""
    spec = registry.attack(name) if kind == "attacks" else registry.defense(name)
    row = _attack_row(spec) if kind == "attacks" else _row(kind, spec)
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    params = [{**p, "default": f"{d:.6g}" if isinstance(d := p["default"], float) else repr(d)}
              for p in row["params"]]
    if not args.markdown:
        print(f"{kind[:-1]} {spec.name} (plugin {spec.plugin}): {spec.summary or '-'}\n")
    if params:
        print(_render(params, _PARAM_COLUMNS, args.markdown, max_cell=None))  # a doc is one line: never cut
    else:
        print("no declared parameters")
    return 0


def run(args: argparse.Namespace) -> int:
    registry: Registry = args.registry
    kind, pattern = args.what, args.pattern
    if kind is not None and kind not in LIST_KINDS:
        if pattern is not None:
            raise UsageError(f"list: unknown kind {kind!r}; choose from {', '.join(LIST_KINDS)}")
        kind, pattern = "attacks", kind  # `robustreg list 'pgd*'` filters attacks
    args.pattern = pattern
    kind = kind or "attacks"
    filtered = any(f is not None for f in (args.norm, args.toolkit, args.paper, args.kind))
    if args.what in ("attacks", "defenses") and pattern in registry.entries(args.what) and not filtered:
        return _show_entry(registry, args.what, pattern, args)
    rows = _rows_for(registry, kind, args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if kind == "plugins":  # a failed plugin's error is shown whole
        print(f"plugin API {PLUGIN_API} (robustreg {__version__}; see README, \"Migrating a plugin\")\n")
    print(_render(rows, _COLUMNS[kind], args.markdown, max_cell=None if kind == "plugins" else _TERMINAL_CELL))
    return 0
