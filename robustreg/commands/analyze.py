"""``robustreg analyze NAME``: the papers' analyses (:mod:`robustreg.analysis`) on any model.

Each registered :class:`robustreg.analysis.Analysis` is a sub-command; its report (report.json, report.md,
PNGs) is written atomically to ``--out`` (default ``robustreg-out/analyze-NAME``).

Under torchrun (``WORLD_SIZE`` and ``RANK`` set), ``analyze transfer`` shares its crafting batches over the
ranks (:func:`robustreg.analysis.transfer.transfer` with ``distributed=True``) and rank 0 alone probes
``--out``, writes the report and prints; the other analyses run in one process (several ranks: refused).
"""

from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
from pathlib import Path

from .common import DEFAULT_OUT, UsageError, start_over_hint

__all__ = ["HELP", "configure", "run"]

HELP = "the papers' analyses (transfer, gradient correlation, logit scale, loss surfaces, ...) on any model"
SHARDED = ("transfer",)  # the analyses that share their work over torchrun ranks


def configure(p: argparse.ArgumentParser) -> None:
    from ..analysis import ANALYSES

    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", parser_class=type(p))
    for analysis in ANALYSES.values():
        q = sub.add_parser(analysis.name, help=analysis.summary, description=analysis.summary)
        analysis.configure(q)
        q.set_defaults(on_interrupt=start_over_hint)


def run(args: argparse.Namespace) -> int:
    from ..analysis import ANALYSES, write_analysis
    from ..evaluation.distributed import env_world_size, torchrun_env
    from .outputs import output_folders

    if args.analysis is None:
        raise UsageError(f"analyze needs an analysis: one of {', '.join(ANALYSES)}")
    if torchrun_env() and env_world_size() > 1 and args.analysis not in SHARDED:
        raise UsageError(f"analyze {args.analysis} runs in one process (under torchrun only "
                         f"{', '.join(f'analyze {name}' for name in SHARDED)} shares its work over the ranks); "
                         f"got WORLD_SIZE={env_world_size()}")
    main = not torchrun_env() or int(os.environ["RANK"]) == 0
    out = Path(args.out or Path(DEFAULT_OUT) / f"analyze-{args.analysis}")
    # rank 0 alone probes the folder (and clears stale temporaries) and writes the report
    with output_folders([("--out", out, out)]) if main else nullcontext():
        output = ANALYSES[args.analysis].run(args)
        if not main:
            return 0
        paths = write_analysis(output, out)
    print(output.markdown.split("\n## ", 1)[0].rstrip())
    print(f"\nreport: {out / 'report.json'} (also {', '.join(p.name for p in paths if p.name != 'report.json')})")
    return 0
