"""Shared by the reproduction scripts: the machine, the output folder, the report set (Markdown, JSON, PNG).

Each claim writes ``benchmarks/results/reproduce/<claim>/`` (or ``--out``): ``report.md`` (the paper's
numbers beside ours, the protocol, what differs from the paper, seeds, machine, wall time),
``report.json`` (the same numbers, machine-readable) and one PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results" / "reproduce"
SHARED = Path(os.environ.get("ROBUSTREG_SHARED", HERE.parent.parent.parent / "shared"))

if str(HERE.parent) not in sys.path:  # so `python benchmarks/reproduce/x.py` finds benchmarks/_common.py
    sys.path.insert(0, str(HERE.parent))

from _common import markdown_table  # noqa: E402

__all__ = ["RESULTS", "SHARED", "Clock", "base_parser", "machine_lines", "markdown_table", "out_dir",
           "pct", "write_report"]


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default results/reproduce/<claim>)")
    parser.add_argument("--smoke", action="store_true", help="smallest configuration (tests): a few images, "
                        "1 epoch, 2 steps; the numbers mean nothing")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    return parser


def out_dir(args: argparse.Namespace, claim: str) -> Path:
    path = args.out if args.out is not None else RESULTS / claim
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_lines() -> list[str]:
    """``uname -a``, cores, threads, torch, and the load (saying so when another job shared the cores)."""
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        uname = " ".join(platform.uname())
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU used"
    threads = torch.get_num_threads()
    shared = load is not None and load[0] > threads + 0.5  # more running than this script's own threads
    return [f"- `uname -a`: `{uname}`",
            f"- CPU cores: {os.cpu_count()}; torch threads: {threads} "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); {gpu}; torch {torch.__version__}",
            "- load average at the end: " + ("unknown" if load is None else ", ".join(f"{v:.2f}" for v in load))
            + (" -- more than this script's threads: another job shared the cores, so wall times are upper bounds, "
               "not speed measurements" if shared else "")]


class Clock:
    """Wall time since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start



def add_rerender(parser: argparse.ArgumentParser) -> None:
    """``--rerender REPORT_JSON``: rewrite the report from an earlier run's numbers (no training, no attacks)."""
    parser.add_argument("--rerender", type=Path, default=None, metavar="REPORT_JSON",
                        help="rewrite the report from the numbers of an earlier report.json (no training, no attacks)")


def earlier_run(args: argparse.Namespace, clock: Clock) -> dict[str, Any] | None:
    """The ``--rerender`` run's report.json, with ``clock`` set back by that run's wall time (the report then
    gives the run's time plus the re-render's); None without ``--rerender``."""
    if args.rerender is None:
        return None
    earlier: dict[str, Any] = json.loads(args.rerender.read_text())
    clock.start -= earlier["wall_seconds"]
    return earlier


def rerender_note(args: argparse.Namespace) -> list[str]:
    """The report's line saying it was re-rendered (none for a run)."""
    if args.rerender is None:
        return []
    return [f"Re-rendered from `{args.rerender.name}` of the run (the same numbers; the wall time is the run's plus "
            "the re-render's)."]


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def draw_bars(ax: Any, series: dict[str, list[float]], ticks: list[str], title: str, ylabel: str, *,
              errors: dict[str, list[float]] | None = None, tick_size: float | None = None,
              rotation: float = 0) -> None:
    """Grouped bars on ``ax``: one bar per series at every tick (``errors``: the series' error bars)."""
    width = 0.8 / max(len(series), 1)
    for k, (label, values) in enumerate(series.items()):
        offset = (k - (len(series) - 1) / 2) * width
        yerr = None if errors is None else errors[label]
        ax.bar([i + offset for i in range(len(ticks))], values, width, yerr=yerr, capsize=2 if yerr else 0,
               label=label)
    ax.set_xticks(range(len(ticks)))
    ax.set_xticklabels(ticks, fontsize=tick_size, rotation=rotation)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def grouped_bars(series: dict[str, list[float]], ticks: list[str], title: str, ylabel: str, *,
                 size: tuple[float, float], errors: dict[str, list[float]] | None = None,
                 tick_size: float | None = None) -> bytes:
    """A PNG of one :func:`draw_bars` panel."""
    from robustreg.analysis import figure, figure_png

    fig = figure(*size)
    draw_bars(fig.subplots(), series, ticks, title, ylabel, errors=errors, tick_size=tick_size)
    return figure_png(fig)


def write_report(out: Path, title: str, sections: list[str], numbers: dict[str, Any], clock: Clock,
                 png: bytes | None = None, png_name: str = "figure.png") -> Path:
    """report.md (sections + machine + wall time), report.json (numbers + the same) and the PNG."""
    wall = clock.seconds()
    if png is not None:
        (out / png_name).write_bytes(png)
        sections = [*sections, f"![{png_name}]({png_name})"]
    machine = machine_lines()
    body = "\n\n".join(sections)
    md = (f"# {title}\n\n{body}\n\n## Machine and wall time\n\n" + "\n".join(machine)
          + f"\n- wall time of this script: {wall:.0f} s ({wall / 60:.1f} min)\n")
    numbers = {**numbers, "wall_seconds": round(wall, 1), "machine": machine}
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    os.replace(tmp, out / "report.json")
    tmp = out / "report.md.tmp"
    tmp.write_text(md)
    os.replace(tmp, out / "report.md")
    return out / "report.md"
