"""Run: the clean pass, then per cell (eps x attack) and per batch the attack, judged by the model.

Whether a sample is broken is decided by running the model on the adversarial point itself, never by
trusting the attack; a NaN output counts as broken (and is warned about).  A minimal-norm attack
(``AttackInfo.minimal_norm``) has no budget: at eps its result is read through
:func:`robustreg.attack.within_eps` (the clean point where its perturbation exceeds eps), so a sample
counts as broken only if its minimal perturbation fits in the eps ball.  The state is saved after
every batch, so an interrupted run resumes at the batch it stopped in.  Over several torch.distributed
ranks, :class:`ShardedRunner` runs each cell's batches round-robin and gathers them (see
:mod:`.distributed`).

Speed options (:class:`robustreg.runtime.SpeedOptions`): the attacks get the model prepared once by
:func:`robustreg.runtime.fast_model` (bf16 autocast, channels_last, torch.compile), a native attack runs
under the autocast as a whole; the clean pass, the verdict on every adversarial point and the automatic
checks use the model itself in float32, so an option can make an attack weaker, never a success that the
float32 model does not confirm.
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attack import Attack, ModelState
from ..data.source import Images, as_images
from ..progress import bar_postfix, progress_to
from ..runtime import FastModel, SpeedOptions, fast_model, model_device, predict
from ..threat import ThreatModel
from ..verdict import Judged, attack_and_judge, attack_each_target, clean_correct, nonfinite_rows
from .adversarial import AdversarialSink, AdvWriter
from .checking import evaluation_checks
from .config import EvalConfig, Plan
from .distributed import SINGLE, Group, Shards, check_pieces, plain_record, replay, shard_batches
from .probe import probe_model
from .state import DataHash, RunState, data_fingerprint, fingerprint, load_state, same_data
from .targets import Targets

__all__ = ["Finished", "Runner", "ShardedRunner", "run_and_check"]


@dataclass
class Runner:
    """Runs every cell of ``plan`` on ``x, y`` with the model on ``device``, recording into ``state``.

    ``attacked``: the model the attacks run (:func:`robustreg.runtime.fast_model`'s; default ``model``);
    ``model`` judges every adversarial point, in float32.  ``targets``: a targeted run's
    (:mod:`.targets`): each batch is attacked toward its samples' targets, broken = a target reached.
    ``x`` is read a batch at a time (``x[idx]``): a streamed dataset is never all in memory."""

    model: nn.Module
    x: Images
    y: torch.Tensor
    plan: Plan
    device: torch.device
    state: RunState
    bar: Any = None  # a tqdm bar over the attacked points, or None
    attacked: nn.Module | None = None
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    targets: Targets | None = None
    adv: AdversarialSink | None = None  # save_adv's writer, or an analysis: each batch's adversarial points
    warm_up: bool = False  # one untimed call per cell first (compare times toolkits, not their first-call set-up)

    def to_attack(self, e: int, a: int) -> torch.Tensor:
        """Indices attack ``a`` runs on at eps ``e`` (see :meth:`RunState.standing`)."""
        return self.state.standing(e, a, self.plan.mode).nonzero().flatten()

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
        if attack is not None:
            self._warm(attack, chunks[cell.chunks_done])
        for k in range(cell.chunks_done, len(chunks)):
            assert attack is not None
            batch = self._attack_batch(attack, self.plan.threat(e), chunks[k], self.plan.plans[a].label)
            self._keep(e, a, k, chunks[k], batch)  # before the state records the batch: a resume never loses it
            cell.record(chunks[k], batch.broken, batch.distance, batch.result, int(batch.nonfinite.sum()),
                        batch.seconds, batch.nonfinite)
            cell.chunks_done = k + 1
            self.state.save()
            self._advance(chunks[k].numel())
        cell.done = True
        self.state.save()
        if cell.nan:
            warnings.warn(f"attack {self.plan.plans[a].label!r} at eps={self.plan.eps[e]:g}: the model returned "
                          f"NaN logits on {cell.nan} adversarial points (counted as broken)", stacklevel=stacklevel)

    def _attack_batch(self, attack: Attack, threat: ThreatModel, idx: torch.Tensor, label: str) -> Judged:
        # a native attack runs under the autocast as a whole; a toolkit's gets it inside the model's forward
        whole = self.speed.autocast(self.device) if attack.info.toolkit == "native" else None
        model = self.attacked if self.attacked is not None else self.model
        if attack.info.needs_embedding and isinstance(model, FastModel):
            model = model.eager()  # its hooks on the head would not run in a compiled graph
        # the verdict: the model itself, float32 (no autocast, not compiled)
        x, y = self.x[idx].to(self.device), self.y[idx].to(self.device)
        if self.targets is None:
            return attack_and_judge(attack, model, self.model, threat, x, y, label=label, context=whole)
        targets = [t.to(self.device) for t in self.targets.rounds(idx, self.y[idx])]
        native = attack.info.toolkit == "native"  # a fresh autocast context per targeted run
        return attack_each_target(attack, model, self.model, threat, x, y, targets, label=label,
                                  context=lambda: self.speed.autocast(self.device) if native else None)

    def _warm(self, attack: Attack, idx: torch.Tensor) -> None:
        """With ``warm_up``: the attack once on one sample of ``idx``, untimed and unrecorded (a toolkit's lazy
        imports and first-call set-up are not the attack's time)."""
        if self.warm_up:
            model = self.attacked if self.attacked is not None else self.model
            attack.run(model, self.x[idx[:1]].to(self.device), self.y[idx[:1]].to(self.device))

    def _keep(self, e: int, a: int, k: int, idx: torch.Tensor, batch: Judged) -> None:
        if self.adv is not None and batch.x_adv is not None:
            self.adv.add(e, a, k, idx, batch.x_adv)

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


@dataclass
class ShardedRunner(Runner):
    """A :class:`Runner` on one rank of ``group``: each cell's batches are split as every sharded job is
    (:func:`~.distributed.shard_batches`: batch ``k`` on rank ``k % world_size``, every record on every rank,
    in batch order), and every rank replays them into the cell, so each holds the state one process would.
    ``shards``: this rank's file of batch records and the records a resumed run found (those batches are
    not rerun)."""

    group: Group = SINGLE
    shards: Shards | None = None
    gather_seconds: float = 0.0  # after this rank's batches: waiting for the others, the gather, the replay

    def run_cell(self, e: int, a: int, stacklevel: int = 2) -> None:
        cell = self.state.cell(e, a)
        if cell.done:
            return
        key = f"{e}:{a}"
        idx_all = self.to_attack(e, a)
        chunks = list(torch.split(idx_all, self.plan.batch_size)) if idx_all.numel() else []
        if cell.chunks_done == 0:
            self._advance(self.state.correct_count - idx_all.numel())
        known = dict(self.shards.known.get(key, {})) if self.shards is not None else {}
        start, ran = cell.chunks_done, set()
        attacks: list[Attack] = []  # built on this rank's first batch to run

        def batch(j: int) -> dict[str, Any]:
            k = start + j
            if k in known:  # recorded before an interruption (by any rank): not rerun
                return known[k]
            if not attacks:
                attacks.append(self.plan.build(e, a))
                self._warm(attacks[0], chunks[k])
            done = self._attack_batch(attacks[0], self.plan.threat(e), chunks[k], self.plan.plans[a].label)
            self._keep(e, a, k, chunks[k], done)
            record = plain_record(chunks[k], done.broken, done.distance, done.nonfinite, done.result, done.seconds)
            if self.shards is not None:
                self.shards.add(key, k, record)  # saved as soon as it is done: a resume does not rerun it
            ran.add(k)
            self._advance(chunks[k].numel())
            return record

        records, waited = shard_batches(self.group, len(chunks) - start, batch)
        replayed = time.perf_counter()
        for k, record in enumerate(records, start):
            if not torch.equal(record["idx"], chunks[k]):
                raise ValueError(f"batch {k} of cell {key} was recorded for other samples; delete the state "
                                 f"files to start fresh")
            replay(cell, record)
            if k not in ran:
                self._advance(chunks[k].numel())
        cell.chunks_done, cell.done = len(chunks), True
        self.state.save()  # only rank 0's state has a path
        self.group.barrier()  # the cell is in rank 0's state before any rank forgets its records
        self.gather_seconds += waited + time.perf_counter() - replayed
        if self.shards is not None:
            self.shards.forget(key)
        if cell.nan and self.group.is_main:
            warnings.warn(f"attack {self.plan.plans[a].label!r} at eps={self.plan.eps[e]:g}: the model returned "
                          f"NaN logits on {cell.nan} adversarial points (counted as broken)", stacklevel=stacklevel)


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    return tqdm(total=total, unit="pt", dynamic_ncols=True, leave=False)


def _open_state(model: nn.Module, x: Images, y: torch.Tensor, expected: dict[str, Any],
                config: EvalConfig, device: torch.device, group: Group = SINGLE) -> tuple[RunState, torch.Tensor]:
    """The saved state if there is one for this configuration, else a fresh one from the clean pass;
    and the clean logits (recomputed on resume: the checks read them).  Over several ranks rank 0
    reads the state file and the others get a copy (without a path: only rank 0 saves it); the clean
    pass is shared out in its batches (:func:`shard_batches`: the logits of one process).

    A streamed dataset (``expected["data"]`` None) is fingerprinted as the clean pass reads it, in one
    process (over several ranks each reads only its batches: rank 0 reads it all once more to hash it); a
    saved state is compared with it then (:func:`same_data`), before any attack runs."""
    path = config.state_file

    def read() -> dict[str, Any] | None:
        saved = load_state(path, expected) if path is not None else None
        probe_model(model, x, y, device=device)  # a model that does not fit the data: one clear error, before any work
        return saved

    saved = group.main_run(read)
    size = config.batch_size
    hashed = DataHash(x.shape, y) if expected["data"] is None and group.world_size == 1 else None

    def clean(k: int) -> torch.Tensor:
        batch = x[k * size:(k + 1) * size]
        if hashed is not None:
            hashed.update(batch)  # in batch order: one process runs k = 0, 1, ... in turn
        return predict(model, batch, device, size)

    parts, _ = shard_batches(group, -(-x.shape[0] // size), clean)
    clean_logits = torch.cat(parts)
    if expected["data"] is None:
        data = hashed.hexdigest() if hashed is not None else group.main_run(lambda: data_fingerprint(x, y))
        expected["data"] = data
        if saved is not None:
            same_data(path, saved, data)
    own = path if group.is_main else None
    if saved is not None:
        return RunState.from_saved(saved, own), clean_logits
    return RunState(expected, clean_correct(clean_logits, y), own), clean_logits


@dataclass
class Finished:
    """A finished run: its state, the clean logits (CPU), the report's ``checks`` list (rank 0's; empty
    on the other ranks) and every rank's seconds in the attacks (one entry in a single process), and of
    them those spent after its own batches of each cell (waiting for the others, the gather)."""

    state: RunState
    clean_logits: torch.Tensor
    checks: list[dict[str, str]] = field(default_factory=list)
    seconds_per_rank: list[float] = field(default_factory=list)
    gather_seconds_per_rank: list[float] = field(default_factory=list)
    targets: Targets | None = None  # a targeted run's (report.json's ``targeted`` entry)

    @property
    def nan_clean(self) -> int:
        """Clean points whose logits hold a NaN or inf (never counted as correct)."""
        return int(nonfinite_rows(self.clean_logits).sum())


def _example(x: Images, state: RunState, plan: Plan, device: torch.device) -> torch.Tensor:
    """A first batch as the attacks get it (clean-correct points, ``batch_size`` of them), to compile on."""
    points = state.clean_correct.nonzero().flatten()
    points = points if points.numel() else torch.arange(x.shape[0])
    return x[points[: plan.batch_size]].to(device)


@dataclass
class _Job:
    """One evaluation as :func:`run_and_check` opened it: what the cells run on and where they are kept."""

    model: nn.Module
    x: Images
    y: torch.Tensor
    plan: Plan
    config: EvalConfig
    device: torch.device
    state: RunState
    group: Group
    targets: Targets | None


def _run_cells(job: _Job, stacklevel: int) -> tuple[float, float]:
    """Every cell (sharded over ``job.group`` when it has several ranks); this rank's seconds, and of them
    those after its own batches of each cell (waiting for the other ranks, the gather)."""
    show = job.config.progress and job.group.is_main
    speed = job.config.speed
    started, gather = time.perf_counter(), 0.0
    example = _example(job.x, job.state, job.plan, job.device) if speed.compile else None
    with fast_model(job.model, job.device, speed, example) as attacked:
        bar = _progress_bar(show, len(job.plan.eps) * len(job.plan.plans) * job.state.correct_count)
        try:
            gather = _run_runner(job, bar, attacked, stacklevel + 1)
        finally:
            if bar is not None:
                bar.close()
    return time.perf_counter() - started, gather


def _run_runner(job: _Job, bar: Any, attacked: nn.Module, stacklevel: int) -> float:
    """One :class:`Runner` (a :class:`ShardedRunner` over several ranks) over every cell; the gather's seconds."""
    config, plan, state, group = job.config, job.plan, job.state, job.group
    adv = None
    if config.save_adv is not None:
        adv = AdvWriter(Path(config.save_adv), plan, state.fingerprint, list(job.x.shape[1:]), group.is_main)
        group.main_run(adv.start)  # rank 0 checks the folder; a refusal is raised on every rank before any writes
    common = {"bar": bar, "attacked": attacked, "speed": config.speed, "targets": job.targets, "adv": adv}
    # progress inside an attack call (AutoAttack's sub-attacks, SPSA's steps, ...) as the bar's postfix
    reports = progress_to(bar_postfix(bar)) if bar is not None else nullcontext()
    points = (job.model, job.x, job.y, plan, job.device, state)
    if group.world_size == 1 and not config.distributed:
        runner = Runner(*points, **common)
        with reports:
            runner.run_all(stacklevel + 1)
        gather = 0.0
    else:
        shards = Shards.open(config.state_file, state.fingerprint, group)
        runner = ShardedRunner(*points, group=group, shards=shards, **common)
        with reports:
            runner.run_all(stacklevel + 1)
        shards.remove(group)  # every cell is in rank 0's state now
        gather = runner.gather_seconds
    if adv is not None:
        size = plan.batch_size
        adv.finish({(e, a): -(-runner.to_attack(e, a).numel() // size) for e, a in plan.cells()})
    return gather


def run_and_check(model: nn.Module, x: Images | torch.Tensor, y: torch.Tensor, plan: Plan, config: EvalConfig,
                  device: torch.device, stacklevel: int = 2, group: Group = SINGLE) -> Finished:
    """Run the whole grid on the model (moved to ``device`` meanwhile; its modes and gradients are
    restored afterwards, also on an error or an interrupt), then the automatic checks
    (``config.no_check`` off) once at the end, on the finished state (a resumed run recomputes them).

    ``group``: the torch.distributed ranks sharing the batches (see :mod:`.distributed`); every rank
    ends with the same state and runs the checks, whose own attacks the ranks share; rank 0 reports them.
    ``stacklevel``: of the warnings, as ``warnings.warn`` counts it from here (2: this caller).
    ``x``: the images, read a batch at a time (a tensor is read by index as well).
    """
    x = as_images(x)
    expected = fingerprint(plan, x, y, model, config.speed)
    home = model_device(model)
    snapshot = ModelState(model)
    try:
        model.to(device)
        model.eval()
        state, clean_logits = _open_state(model, x, y, expected, config, device, group)
        state.save()
        num_classes = (config.data_info or {}).get("num_classes")
        targets = None if plan.targeted is None else Targets.choose(plan.targeted, clean_logits, y, plan.seed,
                                                                    num_classes)
        job = _Job(model, x, y, plan, config, device, state, group, targets)
        seconds, gather = _run_cells(job, stacklevel + 1)
        found = evaluation_checks(model, x, y, clean_logits, plan, state, device, config.no_check,
                                  check_pieces(group),  # on every rank: their attacks are shared out
                                  num_classes=num_classes)
        found = found if group.is_main else []
        timings = group.gather((round(seconds, 4), round(gather, 4)))
    finally:
        model.to(home)
        snapshot.restore()
    return Finished(state, clean_logits.cpu(), found, [t[0] for t in timings], [t[1] for t in timings], targets)
