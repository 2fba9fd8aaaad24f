""":func:`run_remedies`: the remedies of the checks that warned, then the checks again, until none is left.

Each round runs, for every warning check, the registered remedies that answer it (each remedy once per
evaluation, answering the first warning check it names), the cheapest first (their declared ``cost``);
one whose cost exceeds what is left of the budget is skipped (``skipped`` in the report, as is an attack a
targeted evaluation cannot aim: one that takes no target or picks its own).  Then the
checks run again on the evaluation with every remedy attack added as a cell of its own, and a check that
now warns for the first time gets its remedies in the next round.  It stops when a round has nothing new
to run, after ``rounds`` rounds, or when the budget is spent at every eps.  A remedy that raises is
recorded with its error and the others go on (a remedy, like a check, never crashes the report).

Every point is judged by one rule (:mod:`.rule`), stated in the report: the evaluation's argmax for a
deterministic model; for a randomised one the majority of several forwards, for the clean points as for
the adversarial ones, so the remedies then start from the points correct under that rule.  With a seed,
the model's own randomness in this phase is drawn from it (the global generator is forked and restored),
so the phase gives the same report every time, also when a resumed run repeats it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..attack import ModelState
from ..data.source import Images
from ..runtime import model_device
from .context import Aims, Attempt, Budget, RemedyContext
from .rule import Rule, correct_under, rule_for

__all__ = ["Adaptive", "RemedyJob", "run_remedies"]

Checks = list[dict[str, Any]]


@dataclass
class Adaptive:
    """What the remedies did: ``attempts`` in order, ``failed`` (remedy, check, error), ``standing`` per eps
    after them, the budget, ``checks_after`` (the checks' list on the result) and the rounds run."""

    attempts: list[Attempt]
    failed: list[dict[str, str]]
    standing: list[torch.Tensor]
    budget: Budget
    checks_after: Checks
    rounds: int
    remedies: list[dict[str, str]] = field(default_factory=list)  # (remedy, check) in the order they ran
    skipped: list[dict[str, str]] = field(default_factory=list)  # (remedy, check, reason): not run
    verdict: str = ""  # the rule every point was judged by (robustreg.remedies.rule)
    clean: float | None = None  # for a randomised model: the clean accuracy under that rule

    def to_json(self, eps: Sequence[float], before: Sequence[float], n: int) -> dict[str, Any]:
        """The report's ``adaptive`` entry (``before``: the robust accuracy per eps before any remedy)."""
        return {
            "enabled": True,
            "budget": self.budget.limit,
            "budget_used": [round(u, 2) for u in self.budget.used],
            "rounds": self.rounds,
            "remedies": self.remedies,
            "runs": [a.to_json() for a in self.attempts],
            "failed": self.failed,
            "skipped": self.skipped,
            "verdict": self.verdict,
            "clean_accuracy": self.clean,
            "robust_accuracy": [{"eps": e, "before": b, "after": float(s.sum()) / n}
                                for e, b, s in zip(eps, before, self.standing)],
            "checks_after": self.checks_after,
        }


@dataclass(frozen=True)
class RemedyJob:
    """What the remedies of one evaluation share: the model and its n samples (read a batch at a time), the
    evaluation's eps (ascending) and norm, where the remedies come from, the device, the seed of the phase (None:
    not seeded), the batch size, the budget in forward + backward passes per sample at each eps, the
    evaluation's attacks ``(name, resolved params)``, the most rounds of remedies then checks, and a targeted
    evaluation's targets (None: untargeted)."""

    model: nn.Module
    x: Images
    y: torch.Tensor
    eps: Sequence[float]
    norm: str
    registry: Any
    device: torch.device
    seed: int | None
    batch_size: int
    budget: float
    evaluated: Sequence[tuple[str, dict[str, Any]]] = ()
    rounds: int = 3
    targets: Aims | None = None  # a targeted evaluation's (RemedyContext.targets); None: untargeted


def run_remedies(job: RemedyJob, standing: Sequence[torch.Tensor], checks: Checks,
                 recheck: Callable[[list[Attempt]], Checks]) -> Adaptive:
    """Run the remedies for ``checks`` (the evaluation's list) on ``standing`` (per eps, copied); ``recheck``
    gives the checks' list again with the remedies' attempts as extra cells.  The model runs on ``job.device``
    in eval mode meanwhile; its placement, modes and gradients are restored after, also on an error."""
    model, device = job.model, job.device
    home, snapshot = model_device(model), ModelState(model)
    try:
        model.to(device).eval()
        with _seeded(job.seed, device):
            rule = rule_for(model, job.x, device)
            clean = correct_under(rule, model, job.x, job.y, device, job.batch_size) if rule.randomised else None
            # under a majority rule the cells' one-forward verdicts do not count: start from every point correct
            left = [s.clone() for s in standing] if clean is None else [clean.clone() for _ in job.eps]
            done = _rounds(job, left, checks, recheck, rule)
        done.verdict, done.clean = rule.text, None if clean is None else float(clean.sum()) / max(len(job.y), 1)
        return done
    finally:
        model.to(home)
        snapshot.restore()


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """The global generators (CPU, and ``device``'s when it is CUDA) seeded with ``seed`` inside, restored
    after; nothing when ``seed`` is None."""
    if seed is None:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _rounds(job: RemedyJob, standing: Sequence[torch.Tensor], checks: Checks,
            recheck: Callable[[list[Attempt]], Checks], rule: Rule) -> Adaptive:
    eps, registry = job.eps, job.registry
    left = list(standing)
    spent = Budget(float(job.budget), [0.0] * len(eps))
    attempts: list[Attempt] = []
    failed: list[dict[str, str]] = []
    ran: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    current, done = checks, 0
    for _ in range(job.rounds):
        todo = _todo(current, registry, {r["remedy"] for r in ran + skipped})
        if not todo or all(spent.left(e) <= 0 for e in range(len(eps))):
            break
        done += 1
        for check, spec in todo:
            room = max(spent.left(e) for e in range(len(eps)))
            if spec.cost > room:
                skipped.append({"remedy": spec.name, "check": check["name"],
                                "reason": f"costs about {spec.cost:g} passes per sample, {room:g} left of the budget"})
                continue
            ctx = RemedyContext(job.model, job.x, job.y, eps, job.norm, left, registry, job.device, job.seed,
                                job.batch_size, spent, check["name"], check["message"], spec.name, attempts,
                                job.evaluated, rule=(rule.verdict, rule.text), targets=job.targets,
                                skipped=skipped)
            ran.append({"remedy": spec.name, "check": check["name"]})
            try:
                spec.run(ctx)
            except Exception as exc:  # a remedy must never crash the report
                failed.append({"remedy": spec.name, "check": check["name"], "error": f"{type(exc).__name__}: {exc}"})
        current = recheck(attempts)
    return Adaptive(attempts, failed, left, spent, current, done, ran, skipped)


def _todo(checks: Checks, registry: Any, ran: set[str]) -> list[tuple[dict[str, Any], Any]]:
    """(warning check, remedy spec) pairs not yet run, each remedy once (for the first check it answers)."""
    todo, taken = [], set(ran)
    for check in checks:
        if check.get("status") != "warn":
            continue
        for spec in registry.remedies_for(check["name"]):
            if spec.name not in taken:
                taken.add(spec.name)
                todo.append((check, spec))
    return sorted(todo, key=lambda pair: pair[1].cost)  # stable: registration order among equal costs


def suggestions(checks: Checks, registry: Any) -> Checks:
    """``checks`` with, on each warning, ``remedies``: the names of the remedies ``--adaptive`` would run."""
    out = []
    for check in checks:
        names = [spec.name for spec in registry.remedies_for(check["name"])] if check.get("status") == "warn" else []
        out.append({**check, "remedies": names} if names else dict(check))
    return out
