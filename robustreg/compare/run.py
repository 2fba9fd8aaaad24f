"""Run one attack from several toolkits on the same samples and report them side by side.

``compare(model, data, "pgd", 8/255)`` looks up the attack under each toolkit's registry name
(``pgd`` for robustreg's own, ``torchattacks:pgd``, ``art:pgd``, ...), runs every one that exists
on the same clean-correct samples with the same seed, and reports robust accuracy, time (also
relative to the native attack), the largest perturbation, the attack's own summary as a note, and
for each pair of toolkits the fraction of samples on which they agree (both broken or both not).

The core knows no toolkit: it only builds names and looks them up in the registry.  Where a
toolkit spells an attack differently, the toolkit's plugin says so when it registers the entry
(``registrar.add_attack(..., same_as={"fgsm": {}})``), so adding a toolkit never adds a code branch.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import nn

from ..attack import PASS_EXTRAS, ModelState
from ..checks import CellView, CheckContext, Checks, check_names, registered, run_checks, warn_checks
from ..data.first import first_images
from ..data.source import Images
from ..environment import environment
from ..errors import close_matches
from ..evaluation.cells import Cell
from ..evaluation.checking import view_of
from ..evaluation.config import AttackPlan, Mode, Plan
from ..evaluation.distributed import SINGLE, Group, check_pieces, process_group
from ..evaluation.run import Runner, ShardedRunner
from ..evaluation.state import RunState, hashed_clean_pass
from ..models.outputs import logits_model
from ..options import with_options
from ..registry import AttackSpec, Registry
from ..registry.registrar import UnknownNameError
from ..remedies import RemedyJob, run_remedies, suggestions
from ..remedies.views import attempt_views
from ..runtime import resolve_device
from ..stats import beyond_noise
from ..threat import ThreatModel, parse_eps
from ..verdict import clean_correct
from .config import CompareConfig
from .params import COMMON, Mapped, map_config, map_given, native_config
from .render import render_markdown, render_table, write_report

__all__ = [
    "CompareConfig",
    "agreement",
    "attack_names",
    "check_attack_name",
    "compare",
    "default_toolkits",
    "disagreements",
    "registered_toolkits",
    "render_markdown",
    "render_table",
    "resolve",
    "write_report",
]


@dataclass(frozen=True)
class Resolved:
    """Where ``attack`` from ``toolkit`` lives: the spec (None if unavailable) and why not."""

    toolkit: str
    name: str
    spec: AttackSpec | None
    params: Mapping[str, Any]
    reason: str = ""


def registered_toolkits(registry: Registry, attack: str | None = None, norm: str = "linf") -> list[str]:
    """The toolkits of the registered attacks (each ``info.toolkit`` once): ``native`` first, then by name.

    With ``attack``: only the toolkits that have it for ``norm`` (what ``compare`` runs by default).
    """
    found = {spec.info.toolkit for spec in registry.entries("attacks").values()}
    if attack is not None:
        found = {t for t in found if resolve(registry, attack, t, norm).spec is not None}
    return sorted(found, key=lambda t: (t != "native", t))


def attack_names(registry: Registry) -> set[str]:
    """Every name ``compare`` knows an attack by: the native names, the toolkits' names without their
    ``<toolkit>:`` prefix, and the common names the entries declare with ``same_as``."""
    names: set[str] = set()
    for name, spec in registry.entries("attacks").items():
        names.add(name.split(":", 1)[-1])
        names.update(spec.same_as)
    return names


def check_attack_name(registry: Registry, attack: str) -> None:
    """An attack name no toolkit has is an UnknownNameError with the close matches (case ignored)."""
    known = attack_names(registry)
    if attack in known:
        return
    close = close_matches(attack, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"unknown attack {attack!r}{hint} (`robustreg list attacks` shows all)")


def default_toolkits(registry: Registry, attack: str, norm: str) -> list[str]:
    """Every registered toolkit that has ``attack`` for ``norm`` (native first); an unknown attack, or one no
    toolkit has for ``norm``, is a one-line error instead of an empty list."""
    check_attack_name(registry, attack)
    found = registered_toolkits(registry, attack, norm)
    if not found:
        raise ValueError(f"no toolkit has attack {attack!r} for the {norm} norm "
                         f"(`robustreg list attacks` shows each attack's norms)")
    return found


def _toolkit_names(registry: Registry, toolkits: Sequence[str] | str | None, attack: str, norm: str) -> list[str]:
    """``toolkits`` (a list or ``"a,b"``) checked, each once; None: every registered toolkit that has ``attack``."""
    if toolkits is None:
        return default_toolkits(registry, attack, norm)
    check_attack_name(registry, attack)
    if isinstance(toolkits, str):
        toolkits = [t.strip() for t in toolkits.split(",")]
    names = list(dict.fromkeys(toolkits))
    if not names or any(not isinstance(t, str) or not t for t in names):
        raise ValueError(f"toolkits must be a non-empty list of names such as {registered_toolkits(registry)}, "
                         f"got {names!r}")
    return names


def resolve(registry: Registry, attack: str, toolkit: str, norm: str) -> Resolved:
    """Find ``attack`` of ``toolkit`` for ``norm``: the entry of the default name (``attack`` for
    "native", ``"<toolkit>:<attack>"`` otherwise) if it supports ``norm``, else an entry of that
    toolkit registered with ``same_as`` naming ``attack`` that does (built with its parameters)."""
    default = attack if toolkit == "native" else f"{toolkit}:{attack}"
    entries = registry.entries("attacks")
    spec = entries.get(default)
    if spec is not None and norm in spec.info.norms:
        return Resolved(toolkit, default, spec, {})
    for name, other in entries.items():
        if attack in other.same_as and other.info.toolkit == toolkit and norm in other.info.norms:
            return Resolved(toolkit, name, other, dict(other.same_as[attack]))
    if spec is None:
        return Resolved(toolkit, default, None, {}, f"{default!r} is not registered")
    supported = ", ".join(spec.info.norms)
    return Resolved(toolkit, default, None, {}, f"{default} does not support {norm} (only {supported})")


def agreement(broken: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """For each pair of toolkits (in the given order), the fraction of samples where both broke the
    sample or both did not; None when there are no samples."""
    out: dict[str, float | None] = {}
    for a, b in itertools.combinations(list(broken), 2):
        ba, bb = broken[a].bool(), broken[b].bool()
        if ba.shape != bb.shape:
            raise ValueError(f"broken flags of {a!r} and {b!r} have different shapes "
                             f"{tuple(ba.shape)} and {tuple(bb.shape)}")
        out[f"{a}|{b}"] = float((ba == bb).float().mean()) if ba.numel() else None
    return out


class _Run(NamedTuple):
    """One toolkit's attack: its evaluation :class:`~robustreg.evaluation.cells.Cell` over all n samples
    (which recorded each batch exactly as ``evaluate`` does: broken flags, perturbations, queries, extras,
    the base's pass counts, flags, loss traces) and ``broken``, its flags on the attacked samples."""

    cell: Cell
    broken: torch.Tensor

    @property
    def seconds(self) -> float:
        return self.cell.seconds

    @property
    def max_dist(self) -> float:
        ran = self.cell.ran
        return float(self.cell.distance[ran].max()) if bool(ran.any()) else 0.0

    @property
    def broken_samples(self) -> list[int]:
        """The indices (among the n samples) of the attacked samples the row broke."""
        return (self.cell.broken & self.cell.ran).nonzero().flatten().tolist()

    def summary(self) -> dict[str, Any]:
        """The row's mean queries and passes per attacked sample (None where the attack reports none)."""
        extras = self.cell.reduced_extras()
        return {"mean_queries": self.cell.query_mean(), **{key: extras.get(key) for key in PASS_EXTRAS}}


@dataclass(frozen=True)
class _Job:
    """What every row of one comparison shares: the model (on ``device``, in eval mode while it runs), the n
    samples (``x`` read a batch at a time: a streamed dataset is never all in memory), the threat model, the
    batch size and the ranks of ``group``."""

    model: nn.Module
    x: Images
    y: torch.Tensor
    threat: ThreatModel
    device: torch.device
    batch_size: int
    group: Group = SINGLE


def _run_one(job: _Job, spec: AttackSpec, params: Mapping[str, Any], correct: torch.Tensor,
             seed: int) -> tuple[_Run, float]:
    """One toolkit's attack as one cell of the evaluation engine (:class:`~robustreg.evaluation.run.Runner`, a
    :class:`~robustreg.evaluation.run.ShardedRunner` over the ranks of ``job.group``): on the clean-correct
    samples (``correct``: flags over the n), in the engine's batches, judged and recorded as ``evaluate`` judges
    and records them, after one untimed call (a toolkit's first-call set-up is not the attack); and the seconds
    this rank waited for the others."""
    config = spec.configure({**params, "seed": seed})  # resolved (merged, validated) once per row
    plan = Plan([AttackPlan(spec.name, dict(params), spec.name)], [job.threat.eps], job.threat.norm, seed,
                Mode.INDEPENDENT, job.batch_size, None, configs=(config,))
    state = RunState({}, correct.cpu())  # no state file: a comparison is rerun whole
    if job.group.world_size == 1:
        Runner(job.model, job.x, job.y, plan, job.device, state, warm_up=True).run_cell(0, 0)
        waited = 0.0
    else:
        runner = ShardedRunner(job.model, job.x, job.y, plan, job.device, state, warm_up=True, group=job.group)
        runner.run_cell(0, 0)
        waited = runner.gather_seconds
    cell = state.cell(0, 0)
    return _Run(cell, cell.broken[correct.cpu()]), waited


def _check_args(registry: Registry, toolkits: Sequence[str] | str | None, attack: Any, norm: str,
                eps: float | str) -> tuple[list[str], str, ThreatModel]:
    if not isinstance(attack, str) or not attack.strip():
        raise ValueError(f"attack must be a non-empty name such as 'pgd', got {attack!r}")
    names = _toolkit_names(registry, toolkits, attack.strip(), norm)
    threat = ThreatModel(norm, parse_eps(eps) if isinstance(eps, str) else eps)
    return names, attack.strip(), threat


def _plan(registry: Registry, attack: str, threat: ThreatModel, resolved: Sequence[Resolved],
          given: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Mapped | None]]:
    """The native configuration (None without a native attack) and each row's mapping of it."""
    if "seed" in given:
        raise ValueError("seed is compare's own argument (seed=, --seed), not an attack parameter")
    native = resolve(registry, attack, "native", threat.norm)  # its same_as values select the variant
    config = native_config(native.spec, threat, {**native.params, **given}) if native.spec is not None else None
    common = {k: v for k, v in given.items() if k in COMMON}
    plans: list[Mapped | None] = []
    for res in resolved:
        if res.spec is None:
            plans.append(None)
            continue
        mapped = (map_config(res.spec, config, res.params) if config is not None
                  else map_given(res.spec, given, res.params))
        mapped.kwargs.update(common)
        plans.append(mapped)
    return config, plans


def _new_row(res: Resolved, mapped: Mapped | None) -> dict[str, Any]:
    row: dict[str, Any] = {"toolkit": res.toolkit, "name": res.name, "available": res.spec is not None,
                           "robust_accuracy": None, "seconds": None, "relative_seconds": None,
                           "forwards": None, "backwards": None,
                           "max_perturbation": None, "mean_queries": None, "broken_samples": None,
                           "note": res.reason,
                           "same_attack": None, "missing": [], "implied": [], "params": {}, "toolkit_params": {}}
    if res.spec is not None and mapped is not None:
        row.update(note=res.spec.summary or res.spec.info.summary, same_attack=mapped.same_attack,
                   missing=mapped.missing, implied=mapped.implied, params=mapped.params,
                   toolkit_params=mapped.toolkit_params)
    return row


def _attack_rows(resolved: Sequence[Resolved], plans: Sequence[Mapped | None], run: Any, n: int, n_correct: int,
                 progress: bool) -> tuple[list[dict[str, Any]], dict[str, _Run]]:
    """Run every available row (``run(spec, kwargs)`` -> :func:`_run_one`'s :class:`_Run`); the rows and runs."""
    rows: list[dict[str, Any]] = []
    runs: dict[str, _Run] = {}
    for res, mapped in zip(resolved, plans):
        row = _new_row(res, mapped)
        rows.append(row)
        if res.spec is None or mapped is None:
            continue
        if progress:
            sys.stderr.write(f"compare: {res.name} on {n_correct} samples ...\n")
        try:
            done = run(res.spec, mapped.kwargs)
        except Exception as exc:  # one toolkit failing must not hide the others' results; it is reported
            row.update(available=False, error=f"{type(exc).__name__}: {exc}")
            if progress:
                sys.stderr.write(f"compare: {res.name} failed: {type(exc).__name__}: {exc}\n")
            continue
        runs[res.toolkit] = done
        row.update(robust_accuracy=(n_correct - int(done.broken.sum())) / n, seconds=done.seconds,
                   max_perturbation=done.max_dist, broken_samples=done.broken_samples, **done.summary())
    native = next((r for r in rows if r["toolkit"] == "native" and r["seconds"] is not None), None)
    for row in rows:
        if native is not None and row["seconds"] is not None and native["seconds"] > 0:
            row["relative_seconds"] = row["seconds"] / native["seconds"]
    return rows, runs


def _noise(resolved: Sequence[Resolved], plans: Sequence[Mapped | None], broken_by: Mapping[str, torch.Tensor],
           run: Any, seed: int, index: torch.Tensor) -> dict[str, Any] | None:
    """Random-start noise: the native attack run again with ``seed + 1`` on the same samples; the samples
    whose verdict flips.  0 for a deterministic native attack; None without a native result."""
    native = next(((r, m) for r, m in zip(resolved, plans) if r.toolkit == "native"), None)
    if native is None or native[0].spec is None or native[1] is None or "native" not in broken_by:
        return None
    spec, mapped, first = native[0].spec, native[1], broken_by["native"]
    if not spec.info.randomized:
        return {"toolkit": "native", "seeds": [seed], "fraction": 0.0, "count": 0, "samples": [],
                "note": "deterministic attack: no random-start noise"}
    try:
        second = run(spec, mapped.kwargs, seed + 1).broken
    except Exception as exc:  # the first native run succeeded; report why the second did not
        return {"toolkit": "native", "seeds": [seed, seed + 1], "fraction": None, "count": None, "samples": [],
                "note": f"second run failed: {type(exc).__name__}: {exc}"}
    flips = first != second
    return {"toolkit": "native", "seeds": [seed, seed + 1],
            "fraction": float(flips.double().mean()) if flips.numel() else 0.0,
            "count": int(flips.sum()), "samples": index[flips].tolist()}


def disagreements(broken: Mapping[str, torch.Tensor], index: torch.Tensor,
                  expected_noise: float | None) -> list[dict[str, Any]]:
    """Every pair of toolkits that disagrees on some samples: which (``samples``: indices among the n
    samples), how many (``count``, ``fraction`` of the attacked samples, ``only_broken_by`` each side)
    and whether that is more than random-start noise: ``beyond_noise`` when the fraction that differs
    exceeds ``expected_noise`` (the native attack's flips between two seeds) by more than the sampling
    noise of that rate on the ``m`` samples (:func:`robustreg.stats.beyond_noise`; None when the noise is
    unknown)."""
    out = []
    for a, b in itertools.combinations(list(broken), 2):
        ba, bb = broken[a].bool(), broken[b].bool()
        differ = ba != bb
        count, m = int(differ.sum()), int(differ.numel())
        if not count:
            continue
        beyond = None if expected_noise is None else beyond_noise(count / m - expected_noise, expected_noise, m)
        out.append({"pair": [a, b], "samples": index[differ].tolist(), "count": count, "fraction": count / m,
                    "only_broken_by": {a: int((ba & ~bb).sum()), b: int((bb & ~ba).sum())},
                    "expected_noise": expected_noise, "beyond_noise": beyond})
    return out


def _checks(job: _Job, clean_logits: torch.Tensor, cells: Sequence[Any], seed: int, disabled: Iterable[str],
            checks: Checks) -> list[dict[str, str]]:
    """The report's automatic checks on ``cells`` (:func:`_cells`); every rank of ``job.group`` runs them,
    sharing their attacks."""
    threat, device = job.threat, job.device
    ctx = CheckContext(job.model, job.x, job.y, clean_logits, norm=threat.norm,
                       cells=list(cells), device=device, seed=seed, box=threat.box, shard=check_pieces(job.group))
    return [result.to_json() for result in run_checks(ctx, disabled=disabled, checks=checks)]


def _cells(resolved: Sequence[Resolved], plans: Sequence[Mapped | None], runs: Mapping[str, _Run],
           eps: float) -> list[Any]:
    """One check cell per toolkit row that ran, seen as the evaluation sees its cells."""
    return [view_of(runs[res.toolkit].cell, res.name, eps, res.spec, mapped.kwargs)
            for res, mapped in zip(resolved, plans)
            if res.toolkit in runs and res.spec is not None and mapped is not None]


def _attack_all(job: _Job, resolved: Sequence[Resolved], plans: Sequence[Mapped | None], cfg: CompareConfig,
                no_check: Iterable[str], checks: Checks) -> tuple[Any, ...]:
    """(clean-correct flags, rows, runs per toolkit, noise, checks, this rank's (seconds, seconds waiting
    for the others)) with the model's state restored after.  Every rank of ``job.group`` attacks its share
    of each row's batches and ends with every row, then runs the checks (sharing their attacks)."""
    model, x, y, device, group, seed = job.model, job.x, job.y, job.device, job.group, cfg.seed
    state = ModelState(model)
    model_device = next((p.device for p in model.parameters()), None)
    started, waited = time.perf_counter(), [0.0]
    try:
        model.to(device).eval()
        clean_logits, fingerprint = hashed_clean_pass(model, x, y, device, job.batch_size)  # read once, hashed
        correct = clean_correct(clean_logits, y)
        index = torch.nonzero(correct, as_tuple=False).flatten()

        def run(spec: AttackSpec, kwargs: Mapping[str, Any], run_seed: int = seed) -> _Run:
            done, wait = _run_one(job, spec, kwargs, correct, run_seed)
            waited[0] += wait
            return done

        rows, runs = _attack_rows(resolved, plans, run, int(x.shape[0]), int(correct.sum()),
                                  cfg.progress and group.is_main)
        broken_by = {toolkit: done.broken for toolkit, done in runs.items()}
        noisy = _noise(resolved, plans, broken_by, run, seed, index) if cfg.noise else None
        seconds = time.perf_counter() - started
        found = _checks(job, clean_logits, _cells(resolved, plans, runs, job.threat.eps), seed, no_check, checks)
    finally:
        state.restore()
        if model_device is not None:
            model.to(model_device)

    def recheck(extra: Sequence[CellView]) -> list[dict[str, str]]:
        cells = _cells(resolved, plans, runs, job.threat.eps) + list(extra)
        return _checks(replace(job, group=SINGLE), clean_logits, cells, seed, no_check, checks)

    return correct, rows, broken_by, noisy, found, (round(seconds, 4), round(waited[0], 4)), recheck, fingerprint


def _remedied(job: RemedyJob, correct: torch.Tensor, broken_by: Mapping[str, torch.Tensor],
              checks: list[dict[str, Any]],
              recheck: Callable[[Sequence[CellView]], list[dict[str, str]]]) -> dict[str, Any]:
    """The report's ``adaptive`` entry: the remedies of ``checks`` on the points no row broke (``broken_by``:
    per row, flags over the clean-correct points), and the checks again (``recheck``) with each remedy
    attack as a cell of its own, as the evaluation does."""
    standing, index = correct.clone(), correct.nonzero().flatten()
    for broken in broken_by.values():
        standing[index[broken.cpu()]] = False
    n = int(job.x.shape[0])
    done = run_remedies(job, [standing], checks, lambda attempts: recheck(attempt_views(attempts, job.registry, n)))
    return done.to_json(job.eps, [float(standing.sum()) / n], n)


def compare(
    model: nn.Module,
    data: Any,
    attack: str,
    eps: float | str,
    config: CompareConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run ``attack`` from each of ``toolkits`` on the same samples, with the same configuration, and compare.

    The options are a :class:`~robustreg.compare.config.CompareConfig` (``config``) whose fields
    ``options`` replace (the keywords below); they are checked once, before any work.

    ``toolkits``: default every toolkit with a registered attack (:func:`registered_toolkits`).
    ``device``: where to run ("cpu", "cuda", "cuda:N", "auto"; default None: where the model is).
    ``data``: as :func:`robustreg.evaluate` takes it (LabeledData, (x, y) tensors or numpy arrays, Dataset,
    DataLoader); its first ``n`` samples are used (all if None), streamed as ``evaluate`` streams them: a
    Dataset (an in-order DataLoader's) is read ``batch_size`` images at a time for the clean pass, each row's
    batches, the checks and the remedies, never all at once (a shuffling DataLoader is collected into
    memory).  Every toolkit attacks the clean-correct ones among them with the same ThreatModel(norm, eps)
    and ``seed``.  ``params`` (robustreg's vocabulary) override the native attack's declared defaults (an
    unknown name is an error with close matches); that full native configuration goes to every toolkit,
    mapped by :mod:`robustreg.compare.params`.  A row whose entry cannot take a parameter lists it in
    ``missing`` and has ``same_attack: False`` (it still runs with what it takes).  Without a native attack,
    ``params`` go to the entries that take them.
    A toolkit without the attack gets ``available: False`` and the reason as its note; an attack that
    raises gets ``available: False`` and the error in ``error`` (the other toolkits still run).
    ``output``: the logits in a model output that is not a tensor, as :func:`robustreg.evaluate` reads it.
    ``noise``: measure random-start noise (the native attack again with ``seed + 1``).
    ``no_check``: automatic checks to turn off (``robustreg.checks.CHECKS``; docs/checks.md); the others
    run on every row that ran, each row a cell of the attack at ``eps``.
    ``adaptive``: as for ``evaluate``, the remedies of the checks that warned run on the points no row broke
    (within ``adaptive_budget`` passes per sample), on rank 0, and the checks run again with each remedy
    attack as a cell of its own (a check that warns anew gets its remedies); the report gains ``adaptive``
    (its ``robust_accuracy`` gives the worst case over the rows before and after them, ``checks_after`` the
    checks on the result).
    ``distributed``: share each row's batches over the torch.distributed ranks, as ``evaluate`` does (call
    it on every rank of a torchrun launch; the group is initialised from ``WORLD_SIZE`` / ``RANK`` /
    ``LOCAL_RANK`` if it is not yet; ``device="cuda"`` or ``"auto"`` means ``cuda:LOCAL_RANK``).  Batch k
    of a row runs on rank ``k % world_size`` and every attack call is seeded afresh, so the report is the
    one of a single process with the same seed (but for the seconds, ``distributed`` and ``environment``); every rank
    returns it, and only rank 0 writes ``out``, runs the checks and warns.

    Returns the report (also written to ``out``/report.json and report.md when ``out`` is given)::

        {"attack", "eps", "norm", "n", "clean_accuracy", "data": {"fingerprint"}, "params", "native_params", "seed",
         "results": [{"toolkit", "name", "available", "robust_accuracy", "seconds", "relative_seconds",
                      "forwards", "backwards", "max_perturbation", "mean_queries", "note", "same_attack", "missing",
                      "broken_samples", "implied", "params", "toolkit_params"[, "error"]}],
         "agreement": {"a|b": fraction of the attacked samples where a and b agree, ...},
         "noise": {"toolkit", "seeds", "fraction", "count", "samples"} or None,
         "disagreements": [{"pair", "samples", "count", "fraction", "only_broken_by", "expected_noise",
                            "beyond_noise"}],
         "checks": [{"name", "status", "message", "doc"}],
         "distributed": {"world_size", "seconds_per_rank", "gather_seconds_per_rank"}}

    ``robust_accuracy`` counts misclassified clean samples as broken (fraction of the n samples);
    ``relative_seconds`` is seconds / the native attack's seconds (None without a native row);
    ``broken_samples``: the indices (among the n) of the attacked samples the row broke;
    ``distributed``: the number of ranks, each one's seconds in the attacks and of them those spent waiting
    for the others (a plain call: one rank).
    """
    cfg = with_options(CompareConfig, config, options, caller="compare()")
    registry = cfg.registry if cfg.registry is not None else Registry.create()
    norm, seed, batch_size = cfg.norm, cfg.seed, cfg.batch_size  # norm: canonical, as reported
    toolkits, attack, threat = _check_args(registry, cfg.toolkits, attack, norm, eps)
    given = cfg.given
    local = os.environ.get("LOCAL_RANK") if cfg.distributed else None  # under torchrun: "cuda" is cuda:LOCAL_RANK
    dev = resolve_device(cfg.device, model, local_rank=int(local) if local else None)  # None: where the model is
    x, y, _ = first_images(data, cfg.n)  # a Dataset is streamed: read a batch at a time, never all at once
    home = next((p.device for p in model.parameters()), torch.device("cpu"))
    model = logits_model(model, cfg.output, x[:1].to(home))  # a dict / tuple / .logits output reduced to logits
    resolved = [resolve(registry, attack, t, norm) for t in toolkits]
    if all(r.spec is None for r in resolved):
        raise ValueError(f"no toolkit among {', '.join(toolkits)} has attack {attack!r} for {norm} "
                         "(`robustreg list attacks` shows every registered name)")
    native, plans = _plan(registry, attack, threat, resolved, given)
    known = registered(registry.checks())
    disabled = check_names(cfg.no_check, [name for name, _, _ in known])  # unknown: ValueError, before any work
    ranks = process_group(dev) if cfg.distributed else nullcontext(SINGLE)
    with ranks as group:
        job = _Job(model, x, y, threat, dev, batch_size, group)
        correct, rows, broken_by, noisy, checks, seconds, recheck, fingerprint = _attack_all(job, resolved, plans, cfg,
                                                                                             disabled, known)
        timings = group.gather(seconds)
        remedies = RemedyJob(model, x, y, [threat.eps], threat.norm, registry, dev, seed, batch_size,
                             cfg.adaptive_budget)
        remedied = None if not cfg.adaptive else group.main_run(lambda: _remedied(remedies, correct, broken_by, checks,
                                                                                  recheck))
    index = torch.nonzero(correct, as_tuple=False).flatten()
    report = {
        "attack": attack, "eps": threat.eps, "norm": norm, "n": int(x.shape[0]),
        "clean_accuracy": float(correct.float().mean()), "data": {"fingerprint": fingerprint}, "params": given,
        "native_params": native, "seed": seed,
        "results": rows, "agreement": agreement(broken_by), "noise": noisy,
        "disagreements": disagreements(broken_by, index, noisy["fraction"] if noisy else None),
        "checks": checks,
        "distributed": {"world_size": len(timings), "seconds_per_rank": [t[0] for t in timings],
                        "gather_seconds_per_rank": [t[1] for t in timings]},
        "environment": environment([r.spec.factory for r in resolved  # the entries registered as classes
                                    if r.spec is not None and isinstance(r.spec.factory, type)], dev),
    }
    if remedied is not None:
        report["adaptive"] = remedied
    if group.is_main:
        report["checks"] = checks = suggestions(checks, registry)
        if cfg.out is not None:
            write_report(report, cfg.out)
        if not cfg.adaptive:
            warn_checks(checks)  # one CheckWarning per warning check, naming compare()'s caller
    return report
