"""The ``robustreg`` command.

Subcommands: ``list`` (what is registered), ``evaluate`` (attacks x eps -> report), ``autoattack``
(the AutoAttack suite through its adapter), ``compare`` and ``train`` when
:mod:`robustreg.comparison` / :mod:`robustreg.training` are present, and every command a plugin
registers through ``robustreg_register_commands``.

User errors (an unknown name, a bad value, a missing file) exit with status 2 and one line on
stderr, ``robustreg: error: ...``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

from .registry import Registry, RegistryError
from .threat import NORMS, parse_eps

__all__ = ["DEFAULT_ATTACKS", "DEFAULT_EPS", "DEFAULT_MODEL", "build_parser", "main", "parse_param"]

PROG = "robustreg"
DEFAULT_MODEL = "digits-cnn-pretrained"
DEFAULT_DATA = "digits"
DEFAULT_ATTACKS = ("fgsm", "pgd", "pgd-cw", "si-pgd")
# digits pixels are 17 grey levels (k/16); on digits-cnn-pretrained 0.05 / 0.1 / 0.15 give roughly
# 90% / 55% / 20% robust accuracy, so every column of the demo table says something
DEFAULT_EPS = (0.05, 0.1, 0.15)
DEFAULT_PARAMS = {"pgd": {"steps": 10}, "pgd-cw": {"steps": 10}, "si-pgd": {"steps": 10}}  # demo: < 1 min on 2 cores
DEFAULT_OUT = "robustreg-out"
LIST_KINDS = ("attacks", "defenses", "models", "datasets", "plugins", "commands")
AUTOATTACK_VERSIONS = ("standard", "plus", "rand")
_TERMINAL_CELL = 70  # the terminal table cuts longer cells; --markdown and --json never do


class UsageError(Exception):
    """A mistake in the command line; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


# --------------------------------------------------------------------------------------------
# value parsing
# --------------------------------------------------------------------------------------------
def _value(text: str) -> Any:
    """A --param value: bool, None, int, float, a fraction like 1/255, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if "/" in text:
        try:
            return float(Fraction(text.strip()))
        except (ValueError, ZeroDivisionError):
            pass
    return text


def parse_param(text: str) -> tuple[str, str, Any]:
    """``"pgd.steps=40"`` -> ``("pgd", "steps", 40)``; the attack name may hold ':' (``art:pgd.eps_step=...``)."""
    left, sep, raw = text.partition("=")
    name, dot, key = left.rpartition(".")
    if not sep or not dot or not name or not key.isidentifier():
        raise UsageError(f"--param must look like ATTACK.KEY=VALUE (e.g. pgd.steps=40), got {text!r}")
    return name, key, _value(raw)


def _eps_values(text: str, scale: float | None) -> list[float]:
    values = []
    for part in text.split(","):
        if part.strip():
            try:
                # a fraction like 8/255 is explicit already; --eps-scale applies to plain numbers only
                values.append(parse_eps(part, scale=None if "/" in part else scale))
            except ValueError as exc:
                raise UsageError(f"--eps {text!r}: {exc}") from None
    if not values:
        raise UsageError(f"--eps must list at least one value, got {text!r}")
    return values


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------
def _attack_row(spec: Any) -> dict[str, Any]:
    info = spec.info
    return {
        "name": spec.name,
        "norms": list(info.norms),
        "kind": info.kind,
        "toolkit": info.toolkit,
        "paper": info.paper,
        "source": info.source,
        "targeted": info.targeted,
        "needs_embedding": info.needs_embedding,
        "randomized": info.randomized,
        "plugin": spec.plugin,
        "summary": spec.summary,
        "defaults": json.loads(json.dumps(dict(spec.defaults), default=repr)),
    }


def _rows_for(registry: Registry, kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    pattern = args.pattern or "*"
    if kind == "attacks":
        specs = registry.list_attacks(pattern, norm=args.norm, toolkit=args.toolkit, paper=args.paper, kind=args.kind)
        return [_attack_row(s) for s in specs]
    if any(v is not None for v in (args.norm, args.toolkit, args.paper, args.kind)):
        raise UsageError(f"--norm/--toolkit/--paper/--kind filter attacks only, not {kind}")
    if kind == "plugins":
        import fnmatch

        return [{"name": n, "source": s} for n, s in registry.plugins() if fnmatch.fnmatchcase(n, pattern)]
    rows = []
    for spec in registry.list(kind, pattern):
        row: dict[str, Any] = {"name": spec.name, "plugin": spec.plugin}
        if kind == "defenses":
            row.update(paper=spec.info.paper, source=spec.info.source, single_step=spec.info.single_step,
                       needs_embedding=spec.info.needs_embedding)
        elif kind == "models":
            row.update(num_classes=spec.num_classes,
                       input_shape=list(spec.input_shape) if spec.input_shape else None)
        elif kind == "datasets":
            row.update(needs_root=spec.needs_root)
        row["summary"] = spec.summary
        rows.append(row)
    return rows


_COLUMNS = {
    "attacks": [("name", "name"), ("norms", "norms"), ("kind", "kind"), ("toolkit", "toolkit"),
                ("paper/source", "_source"), ("targeted", "targeted"), ("needs-embedding", "needs_embedding"),
                ("randomized", "randomized"), ("summary", "summary")],
    "defenses": [("name", "name"), ("paper/source", "_source"), ("single-step", "single_step"),
                 ("needs-embedding", "needs_embedding"), ("plugin", "plugin"), ("summary", "summary")],
    "models": [("name", "name"), ("classes", "num_classes"), ("input", "input_shape"), ("plugin", "plugin"),
               ("summary", "summary")],
    "datasets": [("name", "name"), ("needs-root", "needs_root"), ("plugin", "plugin"), ("summary", "summary")],
    "plugins": [("name", "name"), ("source", "source")],
    "commands": [("name", "name"), ("plugin", "plugin"), ("summary", "summary")],
}


def _cell(row: dict[str, Any], key: str) -> str:
    if key == "_source":
        paper, source = row.get("paper"), row.get("source") or ""
        tag = f"paper {paper}" if paper and f"paper {paper}" not in source else ""
        return ", ".join(p for p in (tag, source) if p) or "-"
    value = row.get(key)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "-" if value in (None, "") else str(value)


def _render_rows(rows: list[dict[str, Any]], kind: str, markdown: bool) -> str:
    cols = _COLUMNS[kind]
    table = [[_cell(r, key) for _, key in cols] for r in rows]
    header = [title for title, _ in cols]
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in table]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc])
    table = [[c if len(c) <= _TERMINAL_CELL else c[:_TERMINAL_CELL - 3] + "..." for c in row] for row in table]
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    registry: Registry = args.registry
    kind, pattern = args.what, args.pattern
    if kind is not None and kind not in LIST_KINDS:
        if pattern is not None:
            raise UsageError(f"list: unknown kind {kind!r}; choose from {', '.join(LIST_KINDS)}")
        kind, pattern = "attacks", kind  # `robustreg list 'pgd*'` filters attacks
    args.pattern = pattern
    kind = kind or "attacks"
    rows = _rows_for(registry, kind, args)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_render_rows(rows, kind, args.markdown))
    return 0


# --------------------------------------------------------------------------------------------
# evaluate / autoattack
# --------------------------------------------------------------------------------------------
def _add_model_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", metavar="SPEC", help="registered model name, file.py:factory or pkg.mod:factory")
    g.add_argument("--weights", metavar="PATH", help="checkpoint to load into the model")
    g.add_argument("--normalize", metavar="MEAN,...:STD,...",
                   help="wrap the model in Normalize(mean, std) ('cifar10' also works)")
    g.add_argument("--data", metavar="SPEC", help="digits, digits28, mnist:DIR, cifar10:DIR, cifar100:DIR, "
                                                 "svhn:DIR, npz:PATH or a registered name")
    g.add_argument("--split", default="test", choices=("test", "train"), help="data split (default test)")
    g.add_argument("--n", type=int, metavar="N", help="evaluate the first N samples (default all)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--norm", default="linf", choices=NORMS, help="threat-model norm (default linf)")
    g.add_argument("--eps-scale", type=float, metavar="S",
                   help="divide plain --eps numbers (not fractions) by S: --eps 8 --eps-scale 255")
    g.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per attack call (default 256)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    g.add_argument("--seed", type=int, default=0, help="seed passed to every attack (default 0)")
    g.add_argument("--out", metavar="DIR", help=f"report folder (default ./{DEFAULT_OUT})")
    g.add_argument("--state", metavar="PATH", help="state file for resuming (default OUT/state.pt)")
    g.add_argument("--keep-state", action="store_true", help="keep the state file after a finished run")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    _add_model_data_args(p)
    g = p.add_argument_group("attacks")
    g.add_argument("--attacks", metavar="NAME[,NAME...]", help="registered attack names, run in this order")
    g.add_argument("--eps", metavar="E[,E...]", help="budgets in [0, 1] units: 0.031, 8/255 (or see --eps-scale)")
    g.add_argument("--param", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="attack parameter, e.g. pgd.steps=40 or pgd.step_size=1/255 (repeatable)")
    g.add_argument("--no-early-exit", action="store_true",
                   help="run every attack on all clean-correct points (standalone numbers) instead of a cascade")
    _add_run_args(p)


def _configure_autoattack(p: argparse.ArgumentParser) -> None:
    _add_model_data_args(p)
    p.add_argument("--eps", metavar="E", help="budget in [0, 1] units, e.g. 8/255")
    p.add_argument("--version", default="standard", choices=AUTOATTACK_VERSIONS, help="AutoAttack suite")
    _add_run_args(p)


def _check_file(flag: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{flag} {path!r}: no such file")


def _load_model_and_data(args: argparse.Namespace, model_spec: str, data_spec: str) -> tuple[Any, Any]:
    from .data import load_data
    from .models import build_model

    _check_file("--weights", args.weights)
    try:
        model = build_model(model_spec, weights=args.weights, normalize=args.normalize,
                            registry=args.registry)
    except (LookupError, ValueError, TypeError, OSError) as exc:
        raise UsageError(f"--model {model_spec!r}: {exc}") from exc
    try:
        data = load_data(data_spec, args.split, registry=args.registry)
    except (LookupError, ValueError, TypeError, OSError) as exc:
        raise UsageError(f"--data {data_spec!r}: {exc}") from exc
    if args.n is not None and (args.n < 1 or args.n > len(data)):
        raise UsageError(f"--n {args.n}: must be between 1 and the size of {data_spec!r} ({len(data)} samples)")
    return model, data


def _check_run_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.eps_scale is not None and args.eps_scale <= 0:
        raise UsageError(f"--eps-scale must be > 0, got {args.eps_scale}")
    if args.device not in ("cpu", "cuda", "auto") and not args.device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {args.device!r}")


def _run_evaluation(args: argparse.Namespace, model_spec: str, data_spec: str, attacks: list[str],
                    eps: list[float], params: dict[str, dict[str, Any]], early_exit: bool) -> dict[str, Any]:
    from .evaluation import evaluate
    from .report import render_table

    model, data = _load_model_and_data(args, model_spec, data_spec)
    out = Path(args.out or DEFAULT_OUT)
    report = evaluate(
        model, data, [(name, {}) for name in attacks], eps, norm=args.norm, n=args.n, batch_size=args.batch_size,
        device=args.device, seed=args.seed, early_exit=early_exit, out=out, state_path=args.state,
        keep_state=args.keep_state, registry=args.registry, progress=not args.quiet, params=params,
        model_info={"spec": model_spec, "weights": args.weights, "normalize": args.normalize},
        data_info={"spec": data_spec, "split": args.split},
    )
    print(render_table(report))
    print(f"\nreport: {out / 'report.json'} (also report.md, results.csv, robust_accuracy.png)")
    return report


def _cmd_evaluate(args: argparse.Namespace) -> int:
    registry: Registry = args.registry
    _check_run_args(args)
    given = {flag: getattr(args, attr) for flag, attr in
             (("--model", "model"), ("--data", "data"), ("--attacks", "attacks"), ("--eps", "eps"))}
    if any(v is not None for v in given.values()):
        missing = [flag for flag, v in given.items() if v is None and flag in ("--model", "--data")]
        if missing:
            present = ", ".join(f for f, v in given.items() if v is not None)
            raise UsageError(f"{' and '.join(missing)} required when {present} is given "
                             f"(run `robustreg evaluate` with no arguments for the built-in demo)")
    model_spec = args.model or DEFAULT_MODEL
    data_spec = args.data or DEFAULT_DATA
    if args.attacks is not None:
        attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
        if not attacks:
            raise UsageError(f"--attacks must name at least one attack, got {args.attacks!r}")
        for name in attacks:
            try:
                registry.attack(name)
            except LookupError as exc:
                raise UsageError(f"--attacks {name!r}: {exc}") from None
    else:
        attacks = [a for a in DEFAULT_ATTACKS if a in registry.entries("attacks")]
        if not attacks:
            raise UsageError(f"none of the default attacks ({', '.join(DEFAULT_ATTACKS)}) is registered; "
                             "pass --attacks (see `robustreg list`)")
    eps = _eps_values(args.eps, args.eps_scale) if args.eps is not None else list(DEFAULT_EPS)
    params: dict[str, dict[str, Any]] = {}
    if args.attacks is None:
        params = {name: dict(DEFAULT_PARAMS[name]) for name in attacks if name in DEFAULT_PARAMS}
    for text in args.param:
        name, key, value = parse_param(text)
        if name not in attacks:
            raise UsageError(f"--param {text!r}: attack {name!r} is not in --attacks ({', '.join(attacks)})")
        params.setdefault(name, {})[key] = value
    _run_evaluation(args, model_spec, data_spec, attacks, eps, params, not args.no_early_exit)
    return 0


def _autoattack_summary(report: dict[str, Any]) -> str:
    """Clean accuracy, robust accuracy after each sub-attack (fraction of all n), final, max perturbation."""
    result = report["results"][0]
    extras = result.get("extras", {})
    n, attacked = report["n"], result.get("attacked", 0)
    rows = [("clean accuracy", f"{100 * report['clean_accuracy']:.2f}%")]
    for key, value in extras.items():
        if key.startswith("robust_after:") and value is not None:
            sub = key.split(":", 1)[1]
            seconds = extras.get(f"seconds:{sub}")
            shown = f"  ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
            # the extra is the mean over the attacked (clean-correct) points; rescale to all n samples
            rows.append((f"robust after {sub}", f"{100 * value * attacked / n:.2f}%{shown}"))
    rows.append(("robust accuracy", f"{100 * result['robust_accuracy']:.2f}%"))
    rows.append(("max perturbation", f"{result['max_perturbation']:.6g} ({report['norm']})"))
    rows.append(("total time", f"{result['seconds']:.1f} s"))
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in rows)


def _cmd_autoattack(args: argparse.Namespace) -> int:
    registry: Registry = args.registry
    _check_run_args(args)
    missing = [flag for flag, v in (("--model", args.model), ("--data", args.data), ("--eps", args.eps)) if v is None]
    if missing:
        raise UsageError(f"autoattack needs {', '.join(missing)}")
    name = f"autoattack:{args.version}"
    if name not in registry.entries("attacks"):
        failed = [msg for plugin, msg in registry.load_errors if "autoattack" in plugin]
        why = f" (plugin failed to load: {failed[0]})" if failed else ""
        raise UsageError(f"attack {name!r} is not registered{why}; install AutoAttack with `pip install pyautoattack`")
    eps = _eps_values(args.eps, args.eps_scale)
    if len(eps) != 1:
        raise UsageError(f"--eps takes one value for autoattack, got {args.eps!r}")
    report = _run_evaluation(args, args.model, args.data, [name], eps, {}, True)
    print()
    print(_autoattack_summary(report))
    return 0


# --------------------------------------------------------------------------------------------
# parser and main
# --------------------------------------------------------------------------------------------
def _add_optional_commands(sub: Any) -> None:
    """compare / train come from modules other helpers own; a missing one just isn't offered."""
    for module in ("comparison", "training"):
        try:
            mod = importlib.import_module(f".{module}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{module}":
                continue
            sys.stderr.write(f"{PROG}: warning: robustreg.{module} failed to import ({exc}); its command is off\n")
            continue
        except Exception as exc:  # a broken optional command must not take `list` down; reported, not hidden
            sys.stderr.write(f"{PROG}: warning: robustreg.{module} failed to import "
                             f"({type(exc).__name__}: {exc}); its command is off\n")
            continue
        add = getattr(mod, "add_parser", None)
        if add is not None:
            add(sub)


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    """The full parser: built-in subcommands, compare/train if present, then every plugin command."""
    parser = _Parser(prog=PROG, description="A plugin-based registry of adversarial attacks and defenses.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (anywhere on the line)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.set_defaults(registry=registry, func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list registered attacks, defenses, models, datasets, plugins, commands")
    p.add_argument("what", nargs="?", metavar="KIND", help=f"one of {', '.join(LIST_KINDS)} (default attacks)")
    p.add_argument("pattern", nargs="?", metavar="PATTERN", help="fnmatch pattern on the name, e.g. 'art:*'")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--markdown", action="store_true", help="GitHub Markdown table")
    p.add_argument("--norm", choices=NORMS, help="attacks supporting this norm")
    p.add_argument("--toolkit", help="attacks from this toolkit (native, art, torchattacks, autoattack)")
    p.add_argument("--paper", help="attacks from this paper id (e.g. 000, 004)")
    p.add_argument("--kind", choices=("white-box", "score", "decision", "transfer"), help="attack kind")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("evaluate", help="robust accuracy of a model under attacks x eps (no arguments: a demo)")
    _configure_evaluate(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("autoattack", help="run the AutoAttack suite (needs pyautoattack)")
    _configure_autoattack(p)
    p.set_defaults(func=_cmd_autoattack)

    _add_optional_commands(sub)
    taken = set(sub.choices)
    for spec in registry.entries("commands").values():
        if spec.name in taken:
            sys.stderr.write(f"{PROG}: warning: plugin {spec.plugin!r} command {spec.name!r} clashes with a "
                             "built-in command and is ignored\n")
            continue
        cp = sub.add_parser(spec.name, help=spec.summary)
        spec.configure(cp)
        cp.set_defaults(func=spec.run)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None, *, registry: Registry | None = None) -> int:
    """Entry point of the ``robustreg`` console script; returns the exit status.

    ``registry``: use this registry instead of ``Registry.create()`` (tests, notebooks).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line (before or after the subcommand)
    debug = "--debug" in argv or bool(os.environ.get("ROBUSTREG_DEBUG"))
    argv = [a for a in argv if a != "--debug"]
    try:
        registry = registry if registry is not None else Registry.create()
    except RegistryError as exc:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    for plugin, message in registry.load_errors:
        sys.stderr.write(f"{PROG}: warning: plugin {plugin!r} failed to load: {message}\n")
    parser = build_parser(registry)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed as one line) or --help / --version
        return exc.code if isinstance(exc.code, int) else 2
    if args.func is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.command in ("evaluate", "autoattack"):
            state = args.state or Path(args.out or DEFAULT_OUT) / "state.pt"
            sys.stderr.write(f"{PROG}: interrupted; run the same command again to resume from {state}\n")
        else:
            sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except (UsageError, ValueError, TypeError, LookupError, OSError, RegistryError) as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
