"""Helpers shared by the benchmarks: timing, real models and data, Markdown output."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("ROBUSTREG_SHARED", HERE.parent.parent / "shared"))


def retain_freed_memory() -> bool:
    """Keep glibc malloc from handing freed memory back to the OS (no mmap for big blocks, no trimming):
    the same as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`` in the environment.  A freed
    activation is then reused without page faults, which on a VM cost more than an attack's own update.
    False where there is no glibc (the setting does not apply)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or platform.system() != "Linux":
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    fns: list[Callable[[], object]], device: torch.device, repeats: int = 5, warmup: int = 1
) -> list[list[float]]:
    """Wall times of each ``fns[i]()`` over ``repeats`` rounds, after ``warmup`` rounds (device synchronised).

    Each round runs every function once, starting one later each round, so a drift in the machine's
    load hits them all alike and none always runs first.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for i in [(r + j) % len(fns) for j in range(len(fns))]:
            sync(device)
            start = time.perf_counter()
            fns[i]()
            sync(device)
            times[i].append(time.perf_counter() - start)
    return times


def timed_rounds(fns: list[Callable[[], object]], device: torch.device,
                 repeats: int) -> list[list[tuple[float, float, int]]]:
    """(wall s, CPU s, minor page faults) of each ``fns[i]()`` per round; each round starts one later (as
    :func:`interleaved_times`).  CPU time is the steadier of the two on a shared machine; the page faults
    show how much of a run went to fresh memory (the CPU allocator hands big freed blocks back to the OS)."""
    times: list[list[tuple[float, float, int]]] = [[] for _ in fns]
    for r in range(repeats):
        for i in [(r + j) % len(fns) for j in range(len(fns))]:
            sync(device)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            wall, cpu = time.perf_counter(), time.process_time()
            fns[i]()
            sync(device)
            times[i].append((time.perf_counter() - wall, time.process_time() - cpu,
                             resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
    return times


def ratio_rows(labels: list[str], times: list[list[tuple[float, float, int]]], steps: int) -> list[list[object]]:
    """Per candidate: median wall s, median of the per-round wall ratios to candidate 0, the same for CPU
    time, and page faults per step (median)."""
    rows: list[list[object]] = []
    for label, per_round in zip(labels, times):
        rows.append([
            label, statistics.median(t[0] for t in per_round),
            statistics.median(t[0] / ref[0] for t, ref in zip(per_round, times[0])),
            statistics.median(t[1] / ref[1] for t, ref in zip(per_round, times[0])),
            round(statistics.median(t[2] for t in per_round) / steps),
        ])
    return rows


def machine() -> str:
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    else:
        gpu = "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(name: str, title: str, body: str) -> Path:
    path = HERE / "results" / f"{name}.md"
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(f"# {title}\n\nMachine: {machine()}\n\n{body}\n")
    os.replace(tmp, path)
    return path


def real_model_and_data(which: str, n: int, device: torch.device):
    """("mnist" | "cifar") -> (model in eval mode on device, x, y) from ../shared; SystemExit if absent."""
    from robustreg.data import load_data
    from robustreg.models import build_model

    if which == "mnist":
        model = build_model("lenet5-mnist", weights=str(SHARED / "models" / "mnist_lenet5_advtrained.pt"))
        data = load_data(f"mnist:{SHARED / 'data' / 'mnist'}")
    elif which == "cifar":
        model = build_model("resnet4b", weights=str(SHARED / "models" / "resnet4b.pth"))
        data = load_data(f"npz:{SHARED / 'data' / 'cifar10' / 'cifar10_test_first932.npz'}")
    else:
        raise SystemExit(f"--model must be mnist or cifar, got {which!r}")
    x, y = data.tensors(min(n, len(data)))
    return model.to(device).eval(), x.to(device), y.to(device)
