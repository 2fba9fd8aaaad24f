"""Progress inside one attack call: an optional callback the caller hands in, and the attack's reports to it.

A long call (AutoAttack's sub-attacks, SPSA's steps, RayS' queries on a batch) says how far it is with
:func:`report_progress` -- ``report_progress("apgd-t", done, total)`` -- which does nothing unless a caller
asked for progress: ``attack.run(model, x, y, progress=callback)`` or, around any code, ``with
progress_to(callback):``.  The callback gets a :class:`Progress`.  An attack that never reports (every
third-party attack written before this) runs exactly as before: the evaluation's bar then moves per batch
only.  The evaluation hands its tqdm bar's :func:`bar_postfix` to every attack call it makes, so the bar
shows the stage and its percentage between batches.

The callback travels in a :class:`contextvars.ContextVar`, not on the attack: nothing is set on an attack
after construction, and a nested call (an attack inside a remedy) reports to the innermost caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["Progress", "ProgressCallback", "bar_postfix", "progress_to", "report_progress", "wants_progress"]


@dataclass(frozen=True)
class Progress:
    """How far one attack call is: ``done`` of ``total`` (in the attack's own unit) in ``stage``."""

    stage: str
    done: float
    total: float

    @property
    def fraction(self) -> float:
        return min(1.0, max(0.0, self.done / self.total)) if self.total > 0 else 0.0

    def __str__(self) -> str:
        return f"{self.stage} {100 * self.fraction:.0f}%"


ProgressCallback = Callable[[Progress], None]
_CURRENT: ContextVar[ProgressCallback | None] = ContextVar("robustreg_progress", default=None)


def wants_progress() -> bool:
    """Has a caller asked for progress (an attack may skip computing what it would report otherwise)?"""
    return _CURRENT.get() is not None


def report_progress(stage: str, done: float, total: float) -> None:
    """Tell the caller (if one asked, see :func:`progress_to`) that ``done`` of ``total`` of ``stage`` is done."""
    callback = _CURRENT.get()
    if callback is not None:
        callback(Progress(str(stage), float(done), float(total)))


@contextmanager
def progress_to(callback: ProgressCallback | None) -> Iterator[None]:
    """Within the block, :func:`report_progress` calls ``callback`` (None: nothing is reported)."""
    token = _CURRENT.set(callback)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def bar_postfix(bar: Any, interval: float = 0.5) -> ProgressCallback:
    """A callback that shows each report as the postfix of a tqdm ``bar``, redrawn at most every ``interval``
    seconds (an attack may report thousands of times a second)."""
    last = [0.0]

    def show(progress: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            bar.set_postfix_str(str(progress), refresh=True)

    return show
