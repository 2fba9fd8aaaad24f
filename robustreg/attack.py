"""The Attack contract and the base class that enforces it.

An attack is built with a :class:`~robustreg.threat.ThreatModel` and its own keyword parameters and
called as ``attack(model, x, y) -> x_adv``.  The base class, not each attack, guarantees the
contract: inputs are checked, the attack's own result is verified to lie in the eps ball and the
box up to float rounding (an :class:`AttackError` otherwise: the base never hides a bug by
projecting; only rounding is clamped, then verified again; a minimal-norm attack's result is held to
the box and to being adversarial where it claims success instead, see :class:`AttackInfo`), the
parameters are frozen while the attack runs (input gradients only) and the model's train/eval mode
and its parameters' ``.grad`` / ``requires_grad`` are restored after, the caller's tensors are never
written to, and randomness comes from a local ``torch.Generator``.  The model's forward and backward
passes are counted by hooks (:class:`robustreg.adaptive.PassCounter`) and reported per attacked sample as
``extras["forwards"]`` / ``extras["backwards"]``; ``eot=N`` attacks the mean of N draws of a randomised
model (:class:`robustreg.adaptive.EoT`).  Subclasses implement :meth:`Attack.perturb` only.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import torch
from torch import nn

from .adaptive import EoT, PassCounter
from .params import Param, ParamSet, canonical_names
from .progress import ProgressCallback, progress_to
from .threat import NORMS, ThreatModel

__all__ = [
    "BOX_SLACK",
    "KINDS",
    "PASS_EXTRAS",
    "Attack",
    "AttackError",
    "AttackInfo",
    "AttackResult",
    "ModelState",
    "ball_slack",
    "within_eps",
]

KINDS = ("white-box", "score", "decision", "transfer")

#: How far outside the box an attack's own output may be (float rounding), in pixel units.
BOX_SLACK = 1e-6


def _extremes(x: torch.Tensor) -> tuple[float, float]:
    """Smallest and largest value of ``x`` in one pass (NaN if it holds one; an inf shows as itself)."""
    low, high = torch.aminmax(x)
    return float(low), float(high)


def ball_slack(threat: ThreatModel, x: torch.Tensor) -> float:
    """How far beyond eps an attack's own output may be: float rounding, not a bug.

    1e-6 relative to eps plus one unit in the last place of the box's largest magnitude per
    coordinate the norm adds up (linf 1, l2 sqrt(d), l1 d; d the size of one sample).
    """
    d = x[0].numel() if x.dim() > 0 and x.shape[0] > 0 else 1
    ulp = torch.finfo(x.dtype).eps * max(abs(threat.box[0]), abs(threat.box[1]))
    per_norm = {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[threat.norm]
    return 1e-6 * threat.eps + per_norm * ulp

def within_eps(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A minimal-norm attack's result read at the threat's eps: ``x_adv`` where its perturbation's norm
    is <= eps (up to :func:`ball_slack`), the clean point ``x`` elsewhere (that sample is not broken at eps)."""
    fits = threat.distance(x_adv, x) <= threat.eps + ball_slack(threat, x)
    return torch.where(fits.view(-1, *([1] * (x.dim() - 1))), x_adv, x)


#: Parameters every attack takes (declared after its own).
COMMON_PARAMS = ParamSet([
    Param("seed", "int", None, "seed of the attack's local generator; None draws one from torch's global RNG",
          low=0, high=2**63 - 1, optional=True),
    Param("eval_mode", "bool", True, "put the model in eval mode while attacking (its mode is restored after)"),
    Param("eot", "int", 1, "attack the mean of this many draws of a randomised model (robustreg.EoT); 1 = off",
          low=1),
])
_RESERVED = frozenset({"threat", "info", "name", "params", "config", "run", "perturb", "label", "declaration"})
#: the extras the base adds to every result: the model's forward and backward passes per attacked sample
PASS_EXTRAS = ("forwards", "backwards")


class AttackError(RuntimeError):
    """An attack produced something that breaks the contract (NaN, outside the ball, ...)."""


@dataclass(frozen=True)
class AttackInfo:
    """What an attack is; shown by ``robustreg list`` and used for filtering.

    ``kind``: white-box (gradients), score (probabilities only), decision (labels only) or transfer.
    ``source``: the paper (e.g. ``"paper 004"`` or a citation) or the toolkit it comes from.
    ``toolkit``: ``"native"`` for robustreg's own code, else the wrapped toolkit's name.
    ``single_step``: one gradient step (FGSM-like), for the ``iterative-beats-single-step`` check.
    ``aims_at``: where an untargeted call pushes a point when that is not simply "any wrong class", e.g.
    ``"least-likely"`` (a step toward the least-likely class); the ``iterative-beats-single-step`` check
    compares only attacks that aim alike ("" = any wrong class).
    ``minimal_norm``: the attack searches, per sample, the smallest perturbation that changes the
    decision (FMN, DDN), so the threat's eps is no budget for it: it returns that point, of whatever
    norm, or the clean point where it found none, and reports ``extras["success"]`` (bool per
    sample).  The base verifies the result against the box, not the ball, and runs the model on it:
    every point reported successful must be adversarial (argmax != y, or == target), every other
    one must be the clean point (without ``"success"``, every moved point counts as a claim); an
    :class:`AttackError` otherwise.  An evaluation at eps counts a sample broken only where that
    perturbation's norm is <= eps (:func:`within_eps`); ``robustreg curve`` reads every eps from one run.
    ``picks_targets``: the attack runs a targeted protocol of its own (it chooses the target classes itself,
    e.g. the most likely wrong ones, and counts any misclassification as success), so it takes no caller's
    target: a targeted evaluation refuses it, and its numbers are untargeted robust accuracy.
    """

    norms: tuple[str, ...]
    kind: str = "white-box"
    targeted: bool = False
    single_step: bool = False
    aims_at: str = ""
    needs_embedding: bool = False
    randomized: bool = False
    minimal_norm: bool = False
    picks_targets: bool = False
    source: str = ""
    toolkit: str = "native"
    paper: str | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        bad = [n for n in self.norms if n not in NORMS]
        if not self.norms or bad:
            raise ValueError(f"norms must be a non-empty subset of {NORMS}, got {self.norms!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class AttackResult:
    """What :meth:`Attack.run` returns.

    ``queries``: model queries spent per sample (black-box attacks), else None.
    ``extras``: per-sample tensors or scalars worth reporting (e.g. RayS' boundary distance).
    ``reductions``: how the evaluation reduces an extra over the batches it ran on, by name:
    ``"mean"`` (the default for a name not listed: per-sample values averaged over the attacked
    points, scalars averaged over batches weighted by batch size) or ``"sum"`` (per-sample values
    and per-batch scalars added up, e.g. wall time ``{"seconds:apgd-ce": "sum"}``).
    """

    REDUCTIONS: ClassVar[tuple[str, ...]] = ("mean", "sum")

    x_adv: torch.Tensor
    queries: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    reductions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, how in self.reductions.items():
            if how not in self.REDUCTIONS:
                raise ValueError(f"AttackResult.reductions[{key!r}] must be one of "
                                 f"{', '.join(map(repr, self.REDUCTIONS))}, got {how!r}")

    def reduction(self, key: str) -> str:
        """How extra ``key`` is reduced over batches: "sum" if declared so, else "mean"."""
        return self.reductions.get(key, "mean")

    def __repr__(self) -> str:
        """One line: the batch's shape, dtype and device, mean queries, the extras' names (not the tensors)."""
        x = self.x_adv
        shape = "x".join(str(d) for d in x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        where = f" {str(x.dtype).removeprefix('torch.')} {x.device}" if isinstance(x, torch.Tensor) else ""
        queries = "" if self.queries is None else f", queries: mean {float(self.queries.float().mean()):.4g}"
        extras = f", extras: {', '.join(self.extras)}" if self.extras else ""
        return f"AttackResult(x_adv: {shape}{where}{queries}{extras})"


class ModelState:
    """Snapshot of a model's train/eval flags and its parameters' ``requires_grad`` and ``.grad``.

    ``restore()`` puts every one of them back, so a toolkit that calls ``backward()`` on the
    parameters or flips the mode leaves no trace.  ``clear_grads()`` detaches the caller's ``.grad``
    tensors meanwhile, so such a ``backward()`` cannot accumulate into them either.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes = [(m, m.training) for m in model.modules()]
        self.params = [(p, p.requires_grad, p.grad) for p in model.parameters()]

    def clear_grads(self) -> None:
        for p, _, _ in self.params:
            p.grad = None

    def restore(self) -> None:
        for module, training in self.modes:
            module.training = training
        for p, requires_grad, grad in self.params:
            p.requires_grad_(requires_grad)
            p.grad = grad


def _private(t: torch.Tensor) -> torch.Tensor:
    """The attack's own copy of a caller's tensor, contiguous: a permuted numpy batch (NHWC -> NCHW) is not,
    and toolkits ``.view`` their inputs, which fails on one ("view size is not compatible")."""
    return t.detach().clone(memory_format=torch.contiguous_format)


class Attack:
    """Base class of every attack.

    Parameters common to all attacks (keyword-only):

    - ``threat``: the :class:`ThreatModel` (norm, eps, box).
    - ``seed``: if given, every call draws its randomness from a fresh ``torch.Generator`` seeded
      with it, so two calls on the same inputs give the same result; if None, the generator is
      seeded from torch's global RNG (one draw).
    - ``eval_mode``: put the model in eval mode while attacking (default True); the mode found is
      restored afterwards either way.
    - ``eot``: attack ``EoT(model, eot)``, the mean of ``eot`` draws of a randomised model (default 1:
      the model itself); the result is judged by the caller on the model itself.

    A subclass sets the class attribute ``info``, declares its parameters in ``params`` (a
    :class:`robustreg.ParamSet` of :class:`robustreg.Param`) and implements :meth:`perturb`.  The base
    validates the constructor's keyword arguments against the declaration (unknown names, types,
    ranges: one-line errors naming the attack) and sets each as an attribute; :meth:`setup` may derive
    more.  Nothing is set after construction.
    """

    info: ClassVar[AttackInfo]
    name: ClassVar[str] = ""
    params: ClassVar[ParamSet] = ParamSet()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("params")
        if declared is not None and not isinstance(declared, ParamSet):
            cls.params = ParamSet(declared)  # a tuple of Params is accepted
        reserved = sorted(set(cls.params.names()) & (_RESERVED | set(COMMON_PARAMS.names())))
        if reserved:
            raise TypeError(f"{cls.__name__} declares reserved parameter name(s) {', '.join(reserved)}")

    @classmethod
    def toolkit_versions(cls) -> dict[str, str]:
        """``{distribution: version}`` of the toolkit this attack wraps, for the report's ``environment``;
        ``{}`` for a native attack.  The default reads the distribution named ``info.toolkit``; an adapter
        whose distribution has another name (or several candidates) overrides this."""
        if cls.info.toolkit == "native":
            return {}
        try:
            return {cls.info.toolkit: metadata.version(cls.info.toolkit)}
        except metadata.PackageNotFoundError:
            return {}

    @classmethod
    def declaration(cls) -> ParamSet:
        """Every parameter the attack takes: its own, then ``seed`` and ``eval_mode``."""
        return cls.params + COMMON_PARAMS

    def __init__(self, threat: ThreatModel, **params: Any) -> None:
        if not isinstance(threat, ThreatModel):
            raise TypeError(f"threat must be a robustreg.ThreatModel, got {type(threat).__name__}")
        if threat.norm not in self.info.norms:
            raise ValueError(
                f"{self.label()} supports norm(s) {', '.join(self.info.norms)}, got norm={threat.norm!r}"
            )
        declared = self.declaration()
        values = declared.resolve(self.label(), canonical_names(declared, self.label(), params))
        self.threat = threat
        self.seed: int | None = values.pop("seed")
        self.eval_mode: bool = values.pop("eval_mode")
        self.eot: int = values.pop("eot")
        #: the attack's own parameters, validated against :attr:`params` (defaults filled in)
        self.config: dict[str, Any] = values
        for key, value in values.items():
            setattr(self, key, value)
        self.setup()

    def setup(self) -> None:
        """Checks across parameters and derived values, after the declared ones are set (override)."""

    # --- what subclasses implement -------------------------------------------------------
    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor | AttackResult:
        """Return adversarial examples for the validated batch (x is a private, contiguous copy).

        The result must lie in the eps ball and the box (up to float rounding): the base verifies it
        and raises :class:`AttackError` otherwise; it does not project.  An attack projects inside
        its own loop.  An attack declaring ``info.minimal_norm`` is held to the box and to its claims
        of success instead of the ball (see :class:`AttackInfo`).
        """
        raise NotImplementedError

    # --- the contract --------------------------------------------------------------------
    @classmethod
    def label(cls) -> str:
        return cls.name or cls.__name__

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``attack(model, x, y) -> x_adv`` (detached, same device and dtype as x)."""
        return self.run(model, x, y, target=target).x_adv

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
        progress: ProgressCallback | None = None,
    ) -> AttackResult:
        """Like ``__call__`` but returns the :class:`AttackResult` (queries and extras too).

        ``progress``: called with a :class:`robustreg.progress.Progress` whenever the attack reports how far it
        is (:func:`robustreg.progress.report_progress`; an attack that does not report never calls it)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        state = ModelState(model)
        try:
            state.clear_grads()
            # Attacks need input gradients only: frozen parameters keep a toolkit's backward() (CW, FAB,
            # DeepFool, AutoAttack) from computing and filling parameter gradients.  Restored below.
            for p in model.parameters():
                p.requires_grad_(False)
            self._check_inputs(model, x, y, target)
            if self.eval_mode:
                model.eval()
            generator = self._generator(x.device)
            attacked = model if self.eot == 1 else EoT(model, self.eot)
            reports = progress_to(progress) if progress is not None else nullcontext()
            with torch.enable_grad(), PassCounter(model) as passes, reports:
                out = self.perturb(attacked, _private(x), _private(y), generator,
                                   None if target is None else _private(target))
            result = out if isinstance(out, AttackResult) else AttackResult(out)
            n = x.shape[0]  # counted by hooks on the model, never declared by the attack: toolkits' too
            result.extras["forwards"] = torch.full((n,), passes.forwards / n, dtype=torch.float64)
            result.extras["backwards"] = torch.full((n,), passes.backwards / n, dtype=torch.float64)
            result.x_adv = self._finalise(result.x_adv, x)
            if self.info.minimal_norm:  # judged in the mode the attack ran in, before it is restored
                self._check_claims(model, result, x, y, target)
        finally:
            state.restore()
        return result

    def _generator(self, device: torch.device) -> torch.Generator:
        seed = self.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator(device=device).manual_seed(seed)

    def _check_inputs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> int:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty batch N x C x H x W (N >= 1), got shape {tuple(x.shape)}")
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
            raise TypeError(
                f"y must be an int64 tensor of class indices, got {getattr(y, 'dtype', type(y).__name__)}; "
                "use y.long()"
            )
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
        if y.device != x.device:
            raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
        xmin, xmax = _extremes(x)
        if not (math.isfinite(xmin) and math.isfinite(xmax)):
            raise ValueError("x contains NaN or inf values")
        lo, hi = self.threat.box
        if xmin < lo or xmax > hi:
            raise ValueError(
                f"x must be in the box [{lo:g}, {hi:g}], got values in [{xmin:.4g}, {xmax:.4g}]; "
                "put normalisation inside the model (robustreg.models.Normalize)"
            )
        if target is not None:
            if not self.info.targeted:
                raise ValueError(f"{self.label()} is untargeted; target must be None")
            if target.dtype != torch.int64 or target.shape != y.shape:
                raise ValueError(f"target must be an int64 tensor of shape {tuple(y.shape)}")
        # One eval-mode forward of a single sample tells the number of classes without touching
        # BatchNorm statistics.
        was_training = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                logits = model(x[:1])
        finally:
            for module, training in was_training:
                module.training = training
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ValueError(
                f"model must return logits of shape N x K, got {getattr(logits, 'shape', type(logits).__name__)} "
                "(a dict, tuple or .logits output: robustreg.models.outputs.LogitsOf picks the logits)"
            )
        num_classes = logits.shape[1]
        for name, labels in (("y", y), ("target", target)):
            if labels is not None and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(
                    f"{name} must hold class indices in [0, {num_classes - 1}], "
                    f"got values in [{int(labels.min())}, {int(labels.max())}]"
                )
        return num_classes

    def _finalise(self, x_adv: Any, x: torch.Tensor) -> torch.Tensor:
        """Verify ``perturb``'s own output, clamp float rounding only, verify again.

        A point in the box and within :meth:`ThreatModel.ball_limit` of ``x`` is returned as it is (the
        evaluation's own check accepts it; a projection would move it by rounding only, no closer in float32).

        A result outside the ball or the box by more than float rounding is the attack's bug and an
        AttackError; projecting it here would hide the bug (and report numbers of another attack).
        """
        if not isinstance(x_adv, torch.Tensor):
            kind = f"{type(x_adv).__module__}.{type(x_adv).__qualname__}".removeprefix("builtins.")
            raise AttackError(f"{self.label()} returned a {kind}, not a torch.Tensor "
                              f"(expected shape {tuple(x.shape)})")
        if x_adv.shape != x.shape:
            raise AttackError(f"{self.label()} returned shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}")
        x_adv = x_adv.detach().to(device=x.device, dtype=x.dtype)
        xmin, xmax = _extremes(x_adv)
        if not (math.isfinite(xmin) and math.isfinite(xmax)):
            raise AttackError(f"{self.label()} returned NaN or inf values")
        problem, worst = self._outside(x_adv, x, xmin, xmax)
        if problem:
            raise AttackError(f"{self.label()} returned {problem}; the attack must project its own result "
                              "(the base verifies, it does not project)")
        lo, hi = self.threat.box
        in_box = lo <= xmin and xmax <= hi
        if self.info.minimal_norm:  # no ball to clamp into: only the box's rounding
            return x_adv if in_box else x_adv.clamp(lo, hi)
        if in_box and worst <= self.threat.ball_limit():
            return x_adv  # within rounding of the ball (in float32 its edge is a rounding of eps itself)
        x_adv = self.threat.project(x_adv, x)  # moves a point by float rounding at most (verified above)
        inside = self.threat.contains(x_adv, x)
        if not bool(inside.all()):
            worst = float(self.threat.distance(x_adv, x).max())
            raise AttackError(
                f"{self.label()} left the {self.threat.describe()} ball or the box after clamping rounding "
                f"(max distance {worst:.6g}); this is a bug in the attack"
            )
        return x_adv

    def _outside(self, x_adv: torch.Tensor, x: torch.Tensor, xmin: float, xmax: float) -> tuple[str | None, float]:
        """What is wrong with ``x_adv`` (whose extreme values are ``xmin``, ``xmax``) beyond float rounding,
        or None; and its largest distance from ``x`` (0 when that was not needed).

        Slack: 1e-6 relative to eps for the ball, plus the rounding of one subtraction per coordinate
        (one unit in the last place of the box's largest value, summed over the coordinates the norm
        sums: 1 for linf, sqrt(d) for l2, d for l1), so a small eps in float32 is not refused for
        rounding; 1e-6 absolute for the box.
        """
        t = self.threat
        lo, hi = t.box
        if xmin < lo - BOX_SLACK or xmax > hi + BOX_SLACK:
            return f"values in [{xmin:.9g}, {xmax:.9g}], outside the box [{lo:g}, {hi:g}]", 0.0
        if self.info.minimal_norm:  # eps is no budget for it (AttackInfo.minimal_norm)
            return None, 0.0
        worst = float(t.distance(x_adv, x).max())
        if worst > t.eps + ball_slack(t, x):
            return (f"a point outside the {t.describe()} ball: max {t.norm} distance {worst:.9g} "
                    f"exceeds eps {t.eps:.9g} by {worst - t.eps:.3g}"), worst
        return None, worst

    def _check_claims(self, model: nn.Module, result: AttackResult, x: torch.Tensor, y: torch.Tensor,
                      target: torch.Tensor | None) -> None:
        """A minimal-norm result: adversarial wherever the attack reports success, the clean point elsewhere."""
        x_adv, n = result.x_adv, x.shape[0]
        moved = (x_adv != x).reshape(n, -1).any(dim=1)
        success = result.extras.get("success")
        if success is None:
            claimed = moved
        elif isinstance(success, torch.Tensor) and success.shape == (n,):
            claimed = success.to(device=x.device, dtype=torch.bool)
        else:
            raise AttackError(f"{self.label()} reported extras['success'] of "
                              f"{getattr(success, 'shape', type(success).__name__)}; expected a bool tensor ({n},)")
        with torch.no_grad():
            pred = model(x_adv).argmax(dim=1)
        adversarial = pred == target if target is not None else pred != y
        false_claims, strays = int((claimed & ~adversarial).sum()), int((moved & ~claimed).sum())
        if false_claims:
            what = "as the target" if target is not None else "as a wrong class"
            raise AttackError(f"{self.label()} reported success on {false_claims} of {n} points the model does "
                              f"not classify {what}; this is a bug in the attack")
        if strays:
            raise AttackError(f"{self.label()} moved {strays} of {n} points it reports no success on; a "
                              "minimal-norm attack returns the clean point where it found no adversarial one")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threat.describe()}, seed={self.seed})"
