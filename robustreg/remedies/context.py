"""What a remedy is handed: the points still standing, a budget, and one way to attack them.

A remedy never judges its own success: :meth:`RemedyContext.attack` runs a registered attack on the
points still standing through the evaluation's own :func:`robustreg.verdict.attack_each_target` (a point
outside the ball or the box is the attack's bug, an AttackError; a minimal-norm attack's point is read at
eps), and asks the model itself (float32, eval mode) whether it is misclassified -- or, for a randomised
model, whether it is misclassified in the majority of several draws (:func:`majority`).  What it breaks is removed
from the standing points and recorded as an :class:`Attempt`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ..data.source import Images, as_images
from ..threat import ThreatModel
from ..verdict import Verdict, attack_each_target, judge

__all__ = ["ARGMAX", "Aims", "Attempt", "Budget", "RemedyContext", "majority", "misclassified"]


#: a targeted evaluation's targets: sample indices (CPU) -> one target tensor per targeted run (CPU int64)
Aims = Callable[[torch.Tensor], list[torch.Tensor]]

#: how the default verdict decides, as the report says it
ARGMAX = "the model's argmax on the adversarial point differs from the label (or its output is not finite)"


def misclassified(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                  target: torch.Tensor | None = None) -> torch.Tensor:
    """The evaluation's own verdict: wrong argmax (with ``target``: the target's) or a non-finite output row."""
    return judge(model, x_adv, y, target)[0]


def majority(draws: int) -> tuple[Verdict, str]:
    """A verdict for a randomised model: broken when misclassified in more than half of ``draws`` forwards."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")

    def verdict(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
        wrong = torch.stack([misclassified(model, x_adv, y, target) for _ in range(draws)]).sum(dim=0)
        return wrong * 2 > draws

    return verdict, f"misclassified in the majority of {draws} forwards of the randomised model"


@dataclass
class Budget:
    """Forward + backward passes per sample the remedies may spend at each eps (``limit``); ``used``: per eps."""

    limit: float
    used: list[float] = field(default_factory=list)

    def left(self, e: int) -> float:
        return max(self.limit - self.used[e], 0.0)


@dataclass
class Attempt:
    """One attack a remedy ran at one eps: on how many points, what it broke (sample indices), the robust
    accuracy (fraction of n) before and after, its cost in passes per attacked sample."""

    remedy: str
    check: str
    attack: str
    label: str
    params: dict[str, Any]
    eps: float
    attacked: int
    broken: list[int]
    before: float
    after: float
    passes: float
    verdict: str
    ran: torch.Tensor | None = field(default=None, repr=False)  # bool n: the points it attacked (not reported)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "ran"}


@dataclass
class RemedyContext:
    """The evaluation as a remedy sees it.

    ``model``: the model under evaluation (eval mode, on ``device``); ``x``, ``y``: all n points (CPU; ``x``
    read by index, ``x[idx]``: a streamed dataset is never all in memory);
    ``eps``: the evaluated budgets, ascending; ``standing[e]``: per eps, the points clean-correct and
    unbroken so far (bool n, CPU; updated as remedies break points); ``check`` and ``message``: the
    warning being answered; ``remedy``: the running remedy's name; ``evaluated``: the evaluation's own
    attacks as ``(name, resolved params)``, in run order; ``rule``: the verdict every attack is judged by
    unless it names its own (for a randomised model the majority of several forwards, and ``standing``
    then holds the points correct under it); ``targets``: a targeted evaluation's targets (sample indices ->
    one target tensor per targeted run; None: untargeted): every attack then aims at them, a point is broken
    when its target is reached, and an attack that takes no target is not run (``skipped`` says so).  Read
    the rest as given.
    """

    model: nn.Module
    x: Images
    y: torch.Tensor
    eps: Sequence[float]
    norm: str
    standing: list[torch.Tensor]
    registry: Any
    device: torch.device
    seed: int | None
    batch_size: int
    budget: Budget
    check: str
    message: str
    remedy: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    evaluated: Sequence[tuple[str, dict[str, Any]]] = ()
    box: tuple[float, float] = (0.0, 1.0)
    rule: tuple[Verdict, str] = (misclassified, ARGMAX)  # the adaptive phase's verdict (robustreg.remedies.rule)
    targets: Aims | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)  # (remedy, check, reason): attacks not run

    def __post_init__(self) -> None:
        self.x = as_images(self.x)  # a tensor of the images is read by index as well

    @property
    def targeted(self) -> bool:
        """The evaluation is targeted: every attack aims at its targets (APGD-T's own targets do not apply)."""
        return self.targets is not None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def threat(self, e: int) -> ThreatModel:
        return ThreatModel(self.norm, self.eps[e], self.box)

    @property
    def num_classes(self) -> int:
        """Outputs of the model (one forward of one point)."""
        with torch.no_grad():
            return int(self.model(self.x[:1].to(self.device)).shape[1])

    def accuracy(self, e: int) -> float:
        """Robust accuracy at eps ``e`` so far (fraction of n)."""
        return float(self.standing[e].sum()) / self.n

    def sample(self, count: int = 32, e: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``count`` points still standing at eps ``e`` (default the largest), on the device."""
        e = len(self.eps) - 1 if e is None else e
        idx = self.standing[e].nonzero().flatten()[:count]
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    def attack(self, name: str, params: Mapping[str, Any] | None = None, *, model: nn.Module | None = None,
               label: str | None = None, eps: Sequence[int] | None = None,
               points: Callable[[int], torch.Tensor] | None = None,
               verdict: tuple[Verdict, str] | None = None) -> int:
        """Run the registered attack ``name`` with ``params`` at each eps index in ``eps`` (default all) on the
        points still standing there (``points(e)``: another bool mask of points to attack at ``e``), against
        ``model`` (default the evaluated model; e.g. a wrapper whose backward goes around a masking layer);
        every point is judged on the evaluated model by ``verdict`` (default the context's ``rule``); in a targeted
        evaluation the attack aims at each point's targets, and one that takes none is skipped.  With
        the argmax verdict a point broken at one eps is also broken at every larger eps (its adversarial
        point lies in their balls).  Returns the number of (point, eps) pairs broken; nothing runs at an eps
        whose budget is spent."""
        judge, rule = verdict if verdict is not None else self.rule
        spec = self.registry.attack(name)
        if self.targeted and (not spec.info.targeted or spec.info.picks_targets):
            why = "picks its own targets" if spec.info.picks_targets else "takes no target class"
            self.skipped.append({"remedy": self.remedy, "check": self.check,
                                 "reason": f"{label or name}: {why}, and the evaluation is targeted"})
            return 0
        values = dict(params or {})
        if self.seed is not None and "seed" in spec.params and "seed" not in values:
            values["seed"] = self.seed
        total = 0
        for e in (range(len(self.eps)) if eps is None else eps):
            mask = (self.standing[e] if points is None else points(e)).clone()
            idx = mask.nonzero().flatten()
            if idx.numel() == 0 or self.budget.left(e) <= 0:
                continue
            before = self.accuracy(e)
            built = spec.build(self.threat(e), **values)
            broken, passes = self._run(built, model if model is not None else self.model, e, idx, judge)
            hit = idx[broken]
            later = range(e, len(self.eps)) if rule == ARGMAX else range(e, e + 1)
            for k in later:
                self.standing[k][hit] = False
            self.budget.used[e] += passes
            total += int(hit.numel())
            self.attempts.append(Attempt(self.remedy, self.check, name, label or name, dict(values), self.eps[e],
                                         int(idx.numel()), hit.tolist(), before, self.accuracy(e), round(passes, 2),
                                         rule, mask.clone()))
        return total

    def _run(self, attack: Any, attacked: nn.Module, e: int, idx: torch.Tensor,
             judge: Verdict) -> tuple[torch.Tensor, float]:
        """Per point of ``idx``: broken; and the passes per attacked point.  A targeted evaluation runs once per
        target tensor, each run on the points no earlier one broke (:func:`robustreg.verdict.attack_each_target`)."""
        threat = self.threat(e)
        broken, passes = [], 0.0
        for chunk in idx.split(self.batch_size):
            x, y = self.x[chunk].to(self.device), self.y[chunk].to(self.device)
            aims = [None] if self.targets is None else [aim.to(self.device) for aim in self.targets(chunk)]
            judged = attack_each_target(attack, attacked, self.model, threat, x, y, aims, label=attack.label(),
                                        context=lambda: None, verdict=judge)
            broken.append(judged.broken)
            passes += sum(float(judged.result.extras[key].double().sum()) for key in ("forwards", "backwards"))
        return torch.cat(broken), passes / max(int(idx.numel()), 1)
