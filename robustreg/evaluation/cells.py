"""Cells: the per-sample records of one attack at one eps, and their reductions for the report.

A :class:`Cell` holds, for each of the n evaluated samples, whether the attack ran on it, whether the
model got the adversarial point wrong, the perturbation's size, the queries spent and every extra the
attack reported (see :class:`robustreg.AttackResult`).  It is saved with the run's state after every
batch (as plain tensors and containers, :meth:`Cell.to_state`) and read back on resume.

Three extras feed the automatic checks (:mod:`robustreg.checks`) and are kept in a form that keeps the
state small: ``"loss_trace"`` (per sample N x T, or one mean curve T) is reduced at once to the sum of
the curves of the points the batch left standing (and their count), so the state holds one curve per
cell; ``"ever_broken"`` (bool per sample) is a per-sample extra like any other; ``"flags"`` (a string
or a list of strings: warnings the attack raised about the evaluation, e.g. AutoAttack's) is kept as
message -> number of batches that raised it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..attack import AttackResult

__all__ = ["FLAGS", "TRACE", "Cell", "masked_mean"]

TRACE, FLAGS = "loss_trace", "flags"  # the extras kept in their own form (see the module docstring)
EVER_BROKEN = "ever_broken"  # recorded per point like any extra; read by the silent-success check

_LEGACY_SUMMED_PREFIX = "seconds"  # how states without a "reductions" entry were accumulated


def _nan(n: int) -> torch.Tensor:
    return torch.full((n,), float("nan"), dtype=torch.float64)


def masked_mean(t: torch.Tensor, mask: torch.Tensor) -> float | None:
    """Mean of ``t`` over ``mask``, NaN entries left out; None when nothing is left."""
    values = t[mask].double()  # per-sample extras may be bool (e.g. "robust after" flags)
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else None


def _masked_sum(t: torch.Tensor, mask: torch.Tensor) -> float | None:
    values = t[mask].double()
    values = values[~torch.isnan(values)]
    return float(values.sum()) if values.numel() else None


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # non-numeric extras (e.g. a log string) are not reported


@dataclass
class Cell:
    """One attack at one eps over the n samples.

    ``extras``: name -> float64 tensor n (NaN where the attack did not run) of per-sample extras;
    ``scalars``: name -> [sum of value * weight, sum of weights] of per-batch scalar extras (weight:
    the batch size for a "mean" extra, 1 for a "sum" one); ``reductions``: name -> "sum" for the
    extras the attack declared summed.  ``trace``: the sum of the loss curves of the points left
    standing, over ``trace_count`` points; ``flags``: message -> batches that raised it.
    ``chunks_done`` counts the finished batches (resume point).
    """

    ran: torch.Tensor
    broken: torch.Tensor
    distance: torch.Tensor
    queries: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: dict[str, list[float]] = field(default_factory=dict)
    reductions: dict[str, str] = field(default_factory=dict)
    trace: list[float] = field(default_factory=list)
    trace_count: float = 0.0
    flags: dict[str, int] = field(default_factory=dict)
    nonfinite: torch.Tensor | None = None
    nan: int = 0
    seconds: float = 0.0
    chunks_done: int = 0
    done: bool = False

    @classmethod
    def empty(cls, n: int) -> Cell:
        return cls(ran=torch.zeros(n, dtype=torch.bool), broken=torch.zeros(n, dtype=torch.bool),
                   distance=torch.full((n,), float("nan")))

    # --- the state file ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain tensors and containers (loadable with ``torch.load(weights_only=True)``)."""
        return {"ran": self.ran, "broken": self.broken, "distance": self.distance, "queries": self.queries,
                "extras": self.extras, "scalars": self.scalars, "nan": self.nan, "seconds": self.seconds,
                "chunks_done": self.chunks_done, "done": self.done, "reductions": self.reductions,
                "trace": self.trace, "trace_count": self.trace_count, "flags": self.flags,
                "nonfinite": self.nonfinite}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Cell:
        scalars = dict(state["scalars"])
        if "reductions" in state:
            reductions = dict(state["reductions"])
        else:  # a state written before AttackResult.reductions: scalars named seconds* were summed
            reductions = {key: "sum" for key in scalars if key.startswith(_LEGACY_SUMMED_PREFIX)}
        return cls(ran=state["ran"], broken=state["broken"], distance=state["distance"], queries=state["queries"],
                   extras=dict(state["extras"]), scalars=scalars, reductions=reductions, nan=state["nan"],
                   seconds=state["seconds"], chunks_done=state["chunks_done"], done=state["done"],
                   trace=list(state.get("trace", [])), trace_count=float(state.get("trace_count", 0.0)),
                   flags=dict(state.get("flags", {})), nonfinite=state.get("nonfinite"))

    # --- recording one batch ---------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.ran.shape[0])

    def record(self, idx: torch.Tensor, broken: torch.Tensor, distance: torch.Tensor, result: AttackResult,
               nan_count: int, seconds: float, nonfinite: torch.Tensor | None = None) -> None:
        """Record one batch: the samples ``idx`` (CPU indices), what the model made of their adversarial
        points (``broken``, ``distance``, CPU), the attack's own result, NaN rows (their count, and per
        sample ``nonfinite`` when given) and wall time."""
        self.ran[idx] = True
        if nonfinite is not None:
            if self.nonfinite is None:
                self.nonfinite = torch.zeros(self.n, dtype=torch.bool)
            self.nonfinite[idx] = nonfinite.cpu()
        self.broken[idx] = broken
        self.distance[idx] = distance
        self.nan += nan_count
        self.seconds += seconds
        if result.queries is not None:
            self._record_queries(idx, result.queries)
        for key, value in result.extras.items():
            name = str(key)
            if name == TRACE:
                self._record_trace(value, broken, idx.numel())
                continue
            if name == FLAGS:
                for message in [value] if isinstance(value, str) else list(value or ()):
                    self.flags[str(message)] = self.flags.get(str(message), 0) + 1
                continue
            if result.reduction(name) == "sum":
                self.reductions[name] = "sum"
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == idx.numel():
                per = value.detach().to("cpu", torch.float64).reshape(idx.numel(), -1).mean(dim=1)
                self.extras.setdefault(name, _nan(self.n))[idx] = per
            else:
                self._record_scalar(name, value, idx.numel())

    def _record_trace(self, value: Any, broken: torch.Tensor, count: int) -> None:
        """Add the batch's loss curves of the points it left standing (a 1-D mean curve: weighted by count)."""
        try:
            trace = torch.as_tensor(value).detach().to("cpu", torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return  # not a trace: nothing the checks could read
        if trace.dim() == 2 and trace.shape[0] == count:
            standing = ~broken.cpu()
            curve, weight = trace[standing].sum(dim=0), float(standing.sum())
        elif trace.dim() == 1:
            curve, weight = trace * count, float(count)
        else:
            return
        if self.trace and len(self.trace) != len(curve):
            return  # another length than the batches before (should not happen within a cell)
        base = torch.tensor(self.trace, dtype=torch.float64) if self.trace else torch.zeros_like(curve)
        self.trace, self.trace_count = (base + curve).tolist(), self.trace_count + weight

    def mean_trace(self) -> list[float] | None:
        """The mean loss curve of the points the cell left standing (None when it reported none)."""
        if not self.trace or self.trace_count <= 0:
            return None
        return [value / self.trace_count for value in self.trace]

    def _record_queries(self, idx: torch.Tensor, queries: Any) -> None:
        q = torch.as_tensor(queries).detach().to("cpu", torch.float64).reshape(-1)
        if q.numel() == 1:
            q = q.expand(idx.numel())
        if q.numel() == idx.numel():
            if self.queries is None:
                self.queries = _nan(self.n)
            self.queries[idx] = q

    def _record_scalar(self, name: str, value: Any, count: int) -> None:
        number = _as_number(value)
        if number is None:
            return
        acc = self.scalars.setdefault(name, [0.0, 0.0])
        weight = 1.0 if self.reductions.get(name) == "sum" else float(count)
        acc[0] += number * weight
        acc[1] += weight

    # --- reductions for the report ---------------------------------------------------------------
    def query_mean(self) -> float | None:
        """Mean queries per attacked image, or None when the attack reports none."""
        return None if self.queries is None else masked_mean(self.queries, self.ran)

    def reduced_extras(self) -> dict[str, float | None]:
        """Each extra reduced over the attacked points and batches, per its declared reduction."""
        out: dict[str, float | None] = {}
        for key, values in self.extras.items():
            summed = self.reductions.get(key) == "sum"
            out[key] = _masked_sum(values, self.ran) if summed else masked_mean(values, self.ran)
        for key, (total, weight) in self.scalars.items():
            out[key] = total if self.reductions.get(key) == "sum" else (total / weight if weight else None)
        return out
