"""``robustreg analyze NAME``: the analyses the installed plugins registered, on any model.

Each analysis registered through ``robustreg_register_analyses`` is a sub-command; its report (report.json,
report.md, PNGs) is written atomically to ``--out`` (default ``robustreg-out/analyze-NAME``).

Under torchrun (``WORLD_SIZE`` and ``RANK`` set), an analysis registered with ``distributed=True`` shares its
work over the ranks itself and rank 0 alone probes ``--out``, writes the report and prints; the other analyses
run in one process (several ranks: refused).
"""

from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
from pathlib import Path

from ..analysis import write_analysis
from ..cli_kit import DEFAULT_OUT, UsageError, start_over_hint
from ..evaluation.distributed import env_world_size, torchrun_env
from ..output_folders import output_folders
from ..registry import Registry

__all__ = ["HELP", "configure", "run"]

HELP = "the analyses the installed plugins registered (`robustreg analyze --help`), on any model"


def _registry(p: argparse.ArgumentParser) -> Registry:
    """The registry ``robustreg.cli.build_parser`` put into the command's defaults (else the installed one)."""
    registry = p.get_default("registry")
    return registry if isinstance(registry, Registry) else Registry.create()


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", parser_class=type(p))
    for analysis in _registry(p).analyses():
        q = sub.add_parser(analysis.name, help=analysis.summary, description=analysis.summary)
        analysis.configure(q)
        q.set_defaults(on_interrupt=start_over_hint)


def run(args: argparse.Namespace) -> int:
    analyses = args.registry.analyses()
    if args.analysis is None:
        names = ", ".join(a.name for a in analyses) or "none installed"
        raise UsageError(f"analyze needs an analysis: one of {names}")
    spec = args.registry.analysis(args.analysis)
    if torchrun_env() and env_world_size() > 1 and not spec.distributed:
        shared = ", ".join(f"analyze {a.name}" for a in analyses if a.distributed) or "no analysis"
        raise UsageError(f"analyze {args.analysis} runs in one process (under torchrun only {shared} shares its "
                         f"work over the ranks); got WORLD_SIZE={env_world_size()}")
    main = not torchrun_env() or int(os.environ["RANK"]) == 0
    out = Path(args.out or Path(DEFAULT_OUT) / f"analyze-{args.analysis}")
    # rank 0 alone probes the folder (and clears stale temporaries) and writes the report
    with output_folders([("--out", out, out)]) if main else nullcontext():
        output = spec.run(args)
        if not main:
            return 0
        paths = write_analysis(output, out)
    print(output.markdown.split("\n## ", 1)[0].rstrip())
    print(f"\nreport: {out / 'report.json'} (also {', '.join(p.name for p in paths if p.name != 'report.json')})")
    return 0
