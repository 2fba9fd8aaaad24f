"""The Attack contract and the base class that enforces it.

An attack is built with a :class:`~robustreg.threat.ThreatModel` and its own keyword parameters and
called as ``attack(model, x, y) -> x_adv``.  The base class, not each attack, guarantees the
contract: inputs are checked, the result is projected into the eps ball and the box and then
verified, the parameters are frozen while the attack runs (input gradients only) and the model's
train/eval mode and its parameters' ``.grad`` / ``requires_grad`` are restored after, the caller's
tensors are never written to, and randomness comes from a local ``torch.Generator``.
Subclasses implement :meth:`Attack.perturb` only.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .params import Param, ParamSet
from .threat import NORMS, ThreatModel

__all__ = [
    "KINDS",
    "Attack",
    "AttackError",
    "AttackInfo",
    "AttackResult",
    "ModelState",
    "draw_seed",
    "pgd_steps",
    "projected_gradient_ascent",
    "seeded_global_rngs",
]

KINDS = ("white-box", "score", "decision", "transfer")

#: Parameters every attack takes (declared after its own).
COMMON_PARAMS = ParamSet([
    Param("seed", "int", None, "seed of the attack's local generator; None draws one from torch's global RNG",
          low=0, high=2**63 - 1, optional=True),
    Param("eval_mode", "bool", True, "put the model in eval mode while attacking (its mode is restored after)"),
])
_RESERVED = frozenset({"threat", "info", "name", "params", "config", "run", "perturb", "label", "declaration"})


class AttackError(RuntimeError):
    """An attack produced something that breaks the contract (NaN, outside the ball, ...)."""


@dataclass(frozen=True)
class AttackInfo:
    """What an attack is; shown by ``robustreg list`` and used for filtering.

    ``kind``: white-box (gradients), score (probabilities only), decision (labels only) or transfer.
    ``source``: the paper (e.g. ``"paper 004"`` or a citation) or the toolkit it comes from.
    ``toolkit``: ``"native"`` for robustreg's own code, else the wrapped toolkit's name.
    """

    norms: tuple[str, ...]
    kind: str = "white-box"
    targeted: bool = False
    needs_embedding: bool = False
    randomized: bool = False
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
    """

    x_adv: torch.Tensor
    queries: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


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


class Attack:
    """Base class of every attack.

    Parameters common to all attacks (keyword-only):

    - ``threat``: the :class:`ThreatModel` (norm, eps, box).
    - ``seed``: if given, every call draws its randomness from a fresh ``torch.Generator`` seeded
      with it, so two calls on the same inputs give the same result; if None, the generator is
      seeded from torch's global RNG (one draw).
    - ``eval_mode``: put the model in eval mode while attacking (default True); the mode found is
      restored afterwards either way.

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
        if callable(declared) or not isinstance(cls.params, ParamSet):  # TEMPORARY: a legacy params() method
            return
        if declared is not None and not isinstance(declared, ParamSet):
            cls.params = ParamSet(declared)  # a tuple of Params is accepted
        reserved = sorted(set(cls.params.names()) & (_RESERVED | set(COMMON_PARAMS.names())))
        if reserved:
            raise TypeError(f"{cls.__name__} declares reserved parameter name(s) {', '.join(reserved)}")

    @classmethod
    def declaration(cls) -> ParamSet:
        """Every parameter the attack takes: its own, then ``seed`` and ``eval_mode``."""
        own = cls.params if isinstance(cls.params, ParamSet) else ParamSet()  # TEMPORARY: legacy adapters
        return own + COMMON_PARAMS

    def __init__(self, threat: ThreatModel, **params: Any) -> None:
        if not isinstance(threat, ThreatModel):
            raise TypeError(f"threat must be a robustreg.ThreatModel, got {type(threat).__name__}")
        if threat.norm not in self.info.norms:
            raise ValueError(
                f"{self.label()} supports norm(s) {', '.join(self.info.norms)}, got norm={threat.norm!r}"
            )
        values = self.declaration().resolve(self.label(), params)
        self.threat = threat
        self.seed: int | None = values.pop("seed")
        self.eval_mode: bool = values.pop("eval_mode")
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
        """Return adversarial examples for the validated batch (x is a private copy).

        The base projects the result into the ball and the box afterwards; an attack should still
        project inside its loop where its algorithm does.
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
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None
    ) -> AttackResult:
        """Like ``__call__`` but returns the :class:`AttackResult` (queries and extras too)."""
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
            with torch.enable_grad():
                out = self.perturb(model, x.detach().clone(), y.detach().clone(), generator,
                                   None if target is None else target.detach().clone())
        finally:
            state.restore()
        result = out if isinstance(out, AttackResult) else AttackResult(out)
        result.x_adv = self._finalise(result.x_adv, x)
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
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or inf values")
        lo, hi = self.threat.box
        xmin, xmax = float(x.min()), float(x.max())
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
                f"model must return logits of shape N x K, got {getattr(logits, 'shape', type(logits).__name__)}"
            )
        num_classes = logits.shape[1]
        for name, labels in (("y", y), ("target", target)):
            if labels is not None and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(
                    f"{name} must hold class indices in [0, {num_classes - 1}], "
                    f"got values in [{int(labels.min())}, {int(labels.max())}]"
                )
        return num_classes

    def _finalise(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
            raise AttackError(
                f"{self.label()} returned shape {getattr(x_adv, 'shape', None)}, expected {tuple(x.shape)}"
            )
        x_adv = x_adv.detach().to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(x_adv).all()):
            raise AttackError(f"{self.label()} returned NaN or inf values")
        x_adv = self.threat.project(x_adv, x)
        inside = self.threat.contains(x_adv, x)
        if not bool(inside.all()):
            worst = float(self.threat.distance(x_adv, x).max())
            raise AttackError(
                f"{self.label()} left the {self.threat.describe()} ball or the box after projection "
                f"(max distance {worst:.6g}); this is a bug in the attack"
            )
        return x_adv

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threat.describe()}, seed={self.seed})"


# --- the projected-gradient loop shared by attacks and the defenses' inner loops -----------------
def _succeeded(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    pred = logits.argmax(dim=1)
    return pred == target if target is not None else pred != y


def pgd_steps(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    x_start: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
) -> torch.Tensor:
    """``steps`` projected ascent steps on the scalar ``loss_fn(x_adv)`` from ``x_start`` (detached result).

    linf: x <- clip(x + step_size * sign(g)) (one clamp against bounds computed once); l2:
    x <- proj(x + step_size * g / |g|_2).  One forward and one input gradient per step
    (``torch.autograd.grad``: parameter gradients are never filled), no host syncs.  Attacks
    and the defenses' inner loops share it.
    """
    linf = threat.norm == "linf"
    if linf:
        lo = (x - threat.eps).clamp_min(threat.box[0])
        hi = (x + threat.eps).clamp_max(threat.box[1])
        x_adv = torch.minimum(torch.maximum(x_start.detach(), lo), hi)
    else:
        x_adv = threat.project(x_start.detach(), x)
    view = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
        with torch.no_grad():
            if linf:  # in place: one image-sized temporary per step instead of four
                x_adv.add_(grad.sign(), alpha=step_size)  # grad may be an expanded view: no sign_()
                torch.maximum(x_adv, lo, out=x_adv)
                torch.minimum(x_adv, hi, out=x_adv)
            else:
                g_norm = grad.reshape(grad.shape[0], -1).norm(dim=1).clamp_min(1e-12).view(view)
                x_adv = threat.project(x_adv + step_size * grad / g_norm, x)
    return x_adv.detach()


def _ascent_run(model, loss_fn, x, y, target, threat: ThreatModel, steps: int, step_size: float,
                random_start: bool, generator: torch.Generator) -> torch.Tensor:
    start = threat.random_point(x, generator) if random_start else x
    return pgd_steps(lambda xa: loss_fn(model, xa, y, target), x, start, threat, steps=steps, step_size=step_size)


def projected_gradient_ascent(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    random_start: bool,
    restarts: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """PGD with random start and restarts: :func:`pgd_steps` on ``loss_fn(model, x_adv, y, target)``.

    ``random_start`` draws the start from ``threat.random_point`` with ``generator``.  ``restarts``
    runs: each later run attacks only the samples no earlier run has broken (misclassified, or
    classified as ``target``); a sample still standing keeps the latest run's point.  ``loss_fn``
    returns a scalar to maximise (a targeted attack's loss_fn negates its loss).
    """
    kw = dict(steps=steps, step_size=step_size, random_start=random_start, generator=generator)
    x_best = _ascent_run(model, loss_fn, x, y, target, threat, **kw)
    if restarts == 1:
        return x_best
    with torch.no_grad():
        broken = _succeeded(model(x_best), y, target)
    for _ in range(restarts - 1):
        idx = (~broken).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        t = None if target is None else target[idx]
        x_new = _ascent_run(model, loss_fn, x[idx], y[idx], t, threat, **kw)
        with torch.no_grad():
            ok = _succeeded(model(x_new), y[idx], t)
        x_best[idx] = x_new
        broken[idx] = ok
    return x_best


# --- for attacks that wrap code drawing from the global RNGs (the toolkits) --------------------------
def draw_seed(generator: torch.Generator) -> int:
    """An int seed in [0, 2**31 - 1) drawn from the attack's ``generator``, for code that takes a seed."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


@contextlib.contextmanager
def seeded_global_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's CPU RNG, the CUDA RNG of ``device`` (and the current CUDA device), numpy's and
    Python's global RNGs with ``seed``; put the caller's states of all of them back afterwards.

    Wrap a toolkit call in it: the toolkit's randomness then follows the attack's seed and the
    caller's global RNG streams are left as they were (the attack contract).
    """
    cuda = []
    if torch.cuda.is_available():
        cuda = sorted({torch.cuda.current_device()}
                      | ({device.index if device.index is not None else torch.cuda.current_device()}
                         if device.type == "cuda" else set()))
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=cuda):
        try:
            np.random.seed(seed)
            random.seed(seed)
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
