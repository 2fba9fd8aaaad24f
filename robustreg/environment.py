"""What a report was computed with: versions, device, threads and command line (the report's ``environment``).

Recorded for the reader, never part of a run's identity: a resumed run or a finished report is matched on
its configuration (:func:`robustreg.evaluation.state.report_identity`), so another machine, thread count or
command line still resumes it.
"""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ._version import __version__

__all__ = ["device_name", "environment"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """``"cuda:0 (NVIDIA H100 80GB HBM3)"``, ``"cpu (Intel(R) Xeon(R) ...)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({_cpu_name()})" if device.type == "cpu" else str(device)


def environment(attack_classes: Iterable[type[Any]], device: torch.device) -> dict[str, Any]:
    """The report's ``environment``: robustreg, Python and torch versions, each used toolkit's
    distribution and version (``Attack.toolkit_versions``), the device's name, torch's thread count and
    the command line."""
    toolkits: dict[str, str] = {}
    for cls in attack_classes:
        toolkits.update(cls.toolkit_versions())
    return {
        "robustreg": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "toolkits": dict(sorted(toolkits.items())), "device": device_name(device),
        "threads": torch.get_num_threads(),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
    }
