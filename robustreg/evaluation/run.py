"""Run: the clean pass, then per cell (eps x attack) and per batch the attack, judged by the model.

Whether a sample is broken is decided by running the model on the adversarial point itself, never by
trusting the attack; a NaN output counts as broken (and is warned about).  The state is saved after
every batch, so an interrupted run resumes at the batch it stopped in.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..attack import Attack, AttackError, AttackResult, ModelState
from ..runtime import model_device, predict
from ..threat import ThreatModel
from .checking import clean_correct, evaluation_checks, nonfinite_rows
from .config import EvalConfig, Plan
from .probe import probe_model, sanity_checks
from .state import RunState, fingerprint, load_state

__all__ = ["Finished", "Runner", "run_and_check"]


@dataclass
class _Batch:
    """What the model made of one batch of adversarial points (all on the CPU)."""

    broken: torch.Tensor
    distance: torch.Tensor
    nan_rows: torch.Tensor
    result: AttackResult
    seconds: float


@dataclass
class Runner:
    """Runs every cell of ``plan`` on ``x, y`` with the model on ``device``, recording into ``state``."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    plan: Plan
    device: torch.device
    state: RunState
    bar: Any = None  # a tqdm bar over the attacked points, or None

    def to_attack(self, e: int, a: int) -> torch.Tensor:
        """Indices attack ``a`` runs on at eps ``e`` (see :meth:`RunState.standing`)."""
        return self.state.standing(e, a, self.plan.cascade).nonzero().flatten()

    def run_all(self, stacklevel: int = 2) -> None:
        if self.bar is not None and self.state.resumed:
            self.bar.update(self.done_work())
        for e, a in self.plan.cells():
            if self.bar is not None:
                self.bar.set_description(f"{self.plan.plans[a].label} eps={self.plan.eps[e]:.4g}")
            self.run_cell(e, a, stacklevel + 1)

    def run_cell(self, e: int, a: int, stacklevel: int = 2) -> None:
        """Attack ``a`` at eps ``e`` on its points, batch by batch from where a saved state stopped."""
        cell = self.state.cell(e, a)
        if cell.done:
            return
        idx_all = self.to_attack(e, a)
        chunks = list(torch.split(idx_all, self.plan.batch_size)) if idx_all.numel() else []
        if cell.chunks_done == 0:
            self._advance(self.state.correct_count - idx_all.numel())  # points an earlier attack broke
        attack = self.plan.build(e, a) if len(chunks) > cell.chunks_done else None
        for k in range(cell.chunks_done, len(chunks)):
            assert attack is not None
            batch = self._attack_batch(attack, self.plan.threat(e), chunks[k], self.plan.plans[a].label)
            cell.record(chunks[k], batch.broken, batch.distance, batch.result, int(batch.nan_rows.sum()),
                        batch.seconds, batch.nan_rows)
            cell.chunks_done = k + 1
            self.state.save()
            self._advance(chunks[k].numel())
        cell.done = True
        self.state.save()
        if cell.nan:
            warnings.warn(f"attack {self.plan.plans[a].label!r} at eps={self.plan.eps[e]:g}: the model returned "
                          f"NaN logits on {cell.nan} adversarial points (counted as broken)", stacklevel=stacklevel)

    def _attack_batch(self, attack: Attack, threat: ThreatModel, idx: torch.Tensor, label: str) -> _Batch:
        x = self.x[idx].to(self.device)
        y = self.y[idx].to(self.device)
        start = time.perf_counter()
        result = attack.run(self.model, x, y)
        seconds = time.perf_counter() - start
        x_adv = result.x_adv
        if not bool(threat.contains(x_adv, x).all()):  # the base checks this too; never trust an attack
            raise AttackError(f"attack {label!r} returned points outside {threat.describe()}")
        with torch.no_grad():
            logits = self.model(x_adv).float()
        nan_rows = nonfinite_rows(logits)
        broken = (logits.argmax(dim=1) != y) | nan_rows  # a NaN output is not a correct prediction
        return _Batch(broken.cpu(), threat.distance(x_adv, x).float().cpu(), nan_rows.cpu(), result, seconds)

    def _advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def done_work(self) -> int:
        """Attacked (or skipped) points a resumed state has already accounted for, for the progress bar."""
        correct = self.state.correct_count
        done = 0
        for e, a in self.plan.cells():
            cell = self.state.started(e, a)
            if cell is None:
                continue
            skipped = correct - self.to_attack(e, a).numel()
            done += correct if cell.done else min(correct, cell.chunks_done * self.plan.batch_size + skipped)
        return done


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pt", dynamic_ncols=True, leave=False)


def _open_state(model: nn.Module, x: torch.Tensor, y: torch.Tensor, expected: dict[str, Any],
                config: EvalConfig, device: torch.device, stacklevel: int) -> tuple[RunState, torch.Tensor]:
    """The saved state if there is one for this configuration, else a fresh one from the clean pass;
    and the clean logits (recomputed on resume: the checks read them)."""
    path = config.state_file
    saved = load_state(path, expected) if path is not None else None
    probe_model(model, x, y, device=device)  # a model that does not fit the data: one clear error, before any work
    clean_logits = predict(model, x, device, config.batch_size)
    sanity_checks(model, x, y, clean_logits, device, stacklevel + 1)
    if saved is not None:
        return RunState.from_saved(saved, path), clean_logits
    return RunState(expected, clean_correct(clean_logits, y), path), clean_logits


@dataclass
class Finished:
    """A finished run: its state, the clean logits (CPU) and the report's ``checks`` list."""

    state: RunState
    clean_logits: torch.Tensor
    checks: list[dict[str, str]] = field(default_factory=list)

    @property
    def nan_clean(self) -> int:
        """Clean points whose logits hold a NaN or inf (never counted as correct)."""
        return int(nonfinite_rows(self.clean_logits).sum())


def run_and_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, plan: Plan, config: EvalConfig,
                  device: torch.device, stacklevel: int = 2) -> Finished:
    """Run the whole grid on the model (moved to ``device`` meanwhile; its modes and gradients are
    restored afterwards, also on an error or an interrupt), then the automatic checks
    (``config.no_check`` off) once at the end, on the finished state (a resumed run recomputes them).

    ``stacklevel``: of the warnings, as ``warnings.warn`` counts it from here (2: this caller).
    """
    expected = fingerprint(plan, x, y, model)
    home = model_device(model)
    snapshot = ModelState(model)
    try:
        model.to(device)
        model.eval()
        state, clean_logits = _open_state(model, x, y, expected, config, device, stacklevel + 1)
        state.save()
        bar = _progress_bar(config.progress, len(plan.eps) * len(plan.plans) * state.correct_count)
        try:
            Runner(model, x, y, plan, device, state, bar).run_all(stacklevel + 1)
        finally:
            if bar is not None:
                bar.close()
        found = evaluation_checks(model, x, y, clean_logits, plan, state, device, config.no_check)
    finally:
        model.to(home)
        snapshot.restore()
    return Finished(state, clean_logits.cpu(), found)
