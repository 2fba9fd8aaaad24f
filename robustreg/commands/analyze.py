"""``robustreg analyze NAME``: the papers' analyses (:mod:`robustreg.analysis`) on any model.

Each registered :class:`robustreg.analysis.Analysis` is a sub-command; its report (report.json, report.md,
PNGs) is written atomically to ``--out`` (default ``robustreg-out/analyze-NAME``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import DEFAULT_OUT, UsageError

__all__ = ["HELP", "configure", "run"]

HELP = "the papers' analyses (transfer, gradient correlation, logit scale, loss surfaces, ...) on any model"


def configure(p: argparse.ArgumentParser) -> None:
    from ..analysis import ANALYSES

    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", parser_class=type(p))
    for analysis in ANALYSES.values():
        q = sub.add_parser(analysis.name, help=analysis.summary, description=analysis.summary)
        analysis.configure(q)


def run(args: argparse.Namespace) -> int:
    from ..analysis import ANALYSES, write_analysis
    from .outputs import output_folders

    if args.analysis is None:
        raise UsageError(f"analyze needs an analysis: one of {', '.join(ANALYSES)}")
    out = Path(args.out or Path(DEFAULT_OUT) / f"analyze-{args.analysis}")
    with output_folders([("--out", out, out)]):
        output = ANALYSES[args.analysis].run(args)
        paths = write_analysis(output, out)
    print(output.markdown.split("\n## ", 1)[0].rstrip())
    print(f"\nreport: {out / 'report.json'} (also {', '.join(p.name for p in paths if p.name != 'report.json')})")
    return 0
