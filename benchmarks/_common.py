"""Helpers shared by the benchmarks: timing, real models and data, Markdown output."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    load hits them all alike and none always runs first (:func:`timed_rounds`, its wall times only).
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    return [[t.wall for t in per_round] for per_round in timed_rounds(fns, device, repeats)]


class ModelClock:
    """Seconds inside the model's own forward and backward passes, and the samples they ran on, counted by
    hooks while any code calls it.

    It makes a timing robust to the machine's speed drifting: a call's model work (its passes) is the same
    whatever the attack around it, so the time the model took per sample in one call against another tells
    how much faster the machine ran then, and a call's wall time can be corrected by it (see
    :func:`corrected_ratio`).  A forward: the root module's pre- and post-hooks.  A backward: from the
    gradient reaching the input of the last ``nn.Linear`` (the head's features, which every loss reaches,
    the logits' or SI-PGD's cosine) to the gradient reaching the model's input (tensor hooks).  ``model``
    must be called as a whole (a toolkit that runs an ``nn.Sequential``'s children one by one bypasses
    the root's hooks: wrap it, see :class:`Whole`).  One backward per forward, before the next forward
    (an attack step's pattern): a forward drops the tensor hooks the previous one left."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forward_s = self.backward_s = 0.0
        self.forward_n = self.backward_n = 0
        self._forward_start = self._backward_start = 0.0
        self._pending: list[torch.utils.hooks.RemovableHandle] = []  # the last forward's tensor hooks
        heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if not heads:
            raise ValueError("ModelClock needs a model with an nn.Linear head")
        model.register_forward_pre_hook(self._forward_begins)
        model.register_forward_hook(self._forward_ends)
        heads[-1].register_forward_pre_hook(self._head_runs)

    def _forward_begins(self, _m: object, args: tuple) -> None:
        for handle in self._pending:  # an attack reuses its iterate: its hooks would pile up
            handle.remove()
        self._pending.clear()
        x = args[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self._pending.append(x.register_hook(self._backward_ends))
        self._forward_start = time.perf_counter()

    def _forward_ends(self, _m: object, args: tuple, _out: object) -> None:
        self.forward_s += time.perf_counter() - self._forward_start
        self.forward_n += int(args[0].shape[0])

    def _head_runs(self, _m: object, args: tuple) -> None:
        if torch.is_grad_enabled() and args[0].requires_grad:
            self._pending.append(args[0].register_hook(self._backward_begins))

    def _backward_begins(self, _grad: torch.Tensor) -> None:
        self._backward_start = time.perf_counter()

    def _backward_ends(self, grad: torch.Tensor) -> None:
        self.backward_s += time.perf_counter() - self._backward_start
        self.backward_n += int(grad.shape[0])

    def reading(self) -> tuple[float, float, int, int]:
        return self.forward_s, self.backward_s, self.forward_n, self.backward_n

    def since(self, before: tuple[float, float, int, int]) -> tuple[float, float, int, int]:
        """What was counted after ``before`` (an earlier :meth:`reading`)."""
        f_s, b_s, f_n, b_n = self.reading()
        return f_s - before[0], b_s - before[1], f_n - before[2], b_n - before[3]


class Whole(torch.nn.Module):
    """``model`` called as one module, for a toolkit that would run an ``nn.Sequential``'s children one by
    one (ART does, to collect layer outputs): the same computation, seen by :class:`ModelClock`'s hooks."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass(frozen=True)
class Timing:
    """One call: wall s, CPU s, minor page faults, and (with a :class:`ModelClock`) the model's seconds and
    samples in forward and backward passes during it."""

    wall: float
    cpu: float
    faults: int
    model: tuple[float, float, int, int] | None = None


def timed_rounds(fns: list[Callable[[], object]], device: torch.device, repeats: int,
                 clock: ModelClock | None = None) -> list[list[Timing]]:
    """A :class:`Timing` of each ``fns[i]()`` per round; each round starts one later (as
    :func:`interleaved_times`).  CPU time is the steadier of the two on a shared machine; the page faults
    show how much of a run went to fresh memory (the CPU allocator hands big freed blocks back to the OS)."""
    times: list[list[Timing]] = [[] for _ in fns]
    for r in range(repeats):
        for i in [(r + j) % len(fns) for j in range(len(fns))]:
            sync(device)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            before = clock.reading() if clock is not None else (0.0, 0.0, 0, 0)
            wall, cpu = time.perf_counter(), time.process_time()
            fns[i]()
            sync(device)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[i].append(Timing(wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
                                   clock.since(before) if clock is not None else None))
    return times


def corrected_ratio(t: Timing, ref: Timing) -> float | None:
    """``t.wall / ref.wall`` as if the machine had run ``t``'s call at the speed it ran ``ref``'s.

    The speed of each call is read from the model's own passes in it (:class:`ModelClock`): ``t``'s
    model seconds against what its forward and backward samples cost per sample in ``ref``'s call.  A
    slowdown of the machine (another tenant, the memory bus) slows the model and the code around it
    alike, so it cancels; what is left is the work outside the model.  None without model passes."""
    if t.model is None or ref.model is None:
        return None
    f_s, b_s, f_n, b_n = t.model
    rf_s, rb_s, rf_n, rb_n = ref.model
    if not (f_n and b_n and rf_n and rb_n):
        return None
    expected = f_n * rf_s / rf_n + b_n * rb_s / rb_n  # t's passes at ref's per-sample speed
    speed = (f_s + b_s) / expected  # > 1: the machine ran t's call slower
    return t.wall / speed / ref.wall


def quartiles(values: list[float]) -> str:
    """``median [first quartile, third quartile]`` of ``values`` (one value: itself three times)."""
    if len(values) < 2:
        return f"{values[0]:.3f} [{values[0]:.3f}, {values[0]:.3f}]"
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{med:.3f} [{q1:.3f}, {q3:.3f}]"


def round_ratios(times: list[Timing], ref: list[Timing]) -> dict[str, list[float] | None]:
    """Per round, ``times``' call over ``ref``'s call of the same round: plain wall, CPU, and
    :func:`corrected_ratio` (None when some round's model passes were not seen)."""
    corrected = [corrected_ratio(t, r) for t, r in zip(times, ref)]
    return {
        "wall": [t.wall / r.wall for t, r in zip(times, ref)],
        "cpu": [t.cpu / r.cpu for t, r in zip(times, ref)],
        "corrected": None if any(c is None for c in corrected) else [c for c in corrected if c is not None],
    }


def _samples_ratio(times: list[Timing], ref: list[Timing]) -> str:
    """The samples a call sent through the model (forward and backward) over the reference's (median): below 1
    when an attack stops working on the samples it has broken."""
    def samples(t: Timing) -> int:
        return 0 if t.model is None else t.model[2] + t.model[3]

    base = statistics.median(samples(t) for t in ref)
    return "n/a" if not base else f"{statistics.median(samples(t) for t in times) / base:.3f}"


def ratio_rows(labels: list[str], times: list[list[Timing]], steps: int) -> list[list[object]]:
    """Per candidate: median wall s, the median and quartiles of the per-round plain wall ratios to
    candidate 0, the median of the same for CPU time, page faults per step (median), and (when the
    rounds were clocked) the model's work against candidate 0's (:func:`_samples_ratio`) and the median
    and the quartiles of the per-round :func:`corrected_ratio`."""
    clocked = all(t.model is not None for t in times[0])
    rows: list[list[object]] = []
    for label, per_round in zip(labels, times):
        ratios = round_ratios(per_round, times[0])
        row: list[object] = [
            label, statistics.median(t.wall for t in per_round), quartiles(ratios["wall"] or []),
            statistics.median(ratios["cpu"] or []), round(statistics.median(t.faults for t in per_round) / steps),
        ]
        if clocked:
            fixed = ratios["corrected"]
            row.append(_samples_ratio(per_round, times[0]))
            row.append("n/a (the model's passes are not seen)" if fixed is None else quartiles(fixed))
        rows.append(row)
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
