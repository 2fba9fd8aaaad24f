"""The Defense contract: a training objective over one batch.

A defense is built from the registry by name with its own keyword parameters.  The trainer calls
``defense.loss(model, x, y, step=...)`` on every batch, with the model in train mode; the defense
makes whatever adversarial examples it needs (through attacks, or its own inner loop), and returns
a :class:`DefenseOutput`: the scalar loss to back-propagate and the numbers worth logging.  A
defense that carries state between batches (FreeAT's replayed perturbation, a cascade store's
position) exposes it through ``state_dict`` / ``load_state_dict`` so that a resumed run is exact.

Extension points let a mechanism compose onto any defense without the defense knowing it (say, one
plugin's inner loss and regulariser onto every adversarial-training defense of another plugin).  A
:class:`Mechanism` declares its own parameters and is handed to the defense's constructor
(``MyDefense(mechanisms=[m], eps=...)``); its parameters then appear in the defense's ``config`` and
as attributes.  A defense that supports mechanisms routes three things through the base:

- :meth:`Defense.forward`: every forward pass whose output a mechanism may read (the inner attack's
  and the objective's on x_adv); one pass, with the embedding when a mechanism needs it.
- :meth:`Defense.inner_loss`: the inner attack's loss of that forward pass; a mechanism may
  replace the defense's own (:meth:`Mechanism.inner_loss`).
- :meth:`Defense.add_terms`: the training objective plus each mechanism's extra terms on x_adv
  (:meth:`Mechanism.extra_terms`), logged as ``loss_<name>``.

And one a defense declares for the trainer: :meth:`Defense.head`, the prediction head the trained
model predicts with (a :class:`robustreg.embedding.Head`; None: the model's own ``W z + b``).  The
trainer applies it to the model it trains and records it in ``final.pt`` / ``last.pt``, and
:func:`robustreg.build_model` applies it again on loading, so evaluation scores the classifier that
was trained.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .attack import ModelState
from .embedding import Embedding, Head, embed
from .params import ParamSet

__all__ = [
    "Defense",
    "DefenseInfo",
    "DefenseOutput",
    "ExtraTerm",
    "ForwardPass",
    "Mechanism",
    "crafting",
    "unwrap",
]


@dataclass(frozen=True)
class DefenseInfo:
    """What a defense is: its paper, whether it is single-step, whether it needs the embedding.

    ``lr_warmup_epochs``: the linear lr warm-up the defense needs to train from scratch (0: none), which
    the trainer applies when the config leaves ``lr_warmup_epochs`` unset; say why in the docstring.
    """

    source: str = ""
    paper: str | None = None
    single_step: bool = False
    needs_embedding: bool = False
    summary: str = ""
    lr_warmup_epochs: float = 0.0


@dataclass
class DefenseOutput:
    """``loss``: the scalar to minimise.  ``metrics``: floats to log (loss terms, accuracies).

    ``logits_clean`` / ``logits_adv`` are optional, for the trainer's batch accuracies; their labels are the
    batch's first rows unless ``labels_clean`` / ``labels_adv`` say otherwise (a defense whose clean rows are
    another part of the batch, e.g. Kurakin's adversarial rows first).
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    logits_clean: torch.Tensor | None = None
    logits_adv: torch.Tensor | None = None
    labels_clean: torch.Tensor | None = None
    labels_adv: torch.Tensor | None = None


_RESERVED = frozenset({"info", "name", "params", "config", "loss", "state_dict", "load_state_dict", "declaration",
                       "setup", "mechanisms", "forward", "inner_loss", "add_terms", "owner", "extra_terms",
                       "head"})


# --- extension points: what a mechanism sees and adds -------------------------------------------
@dataclass
class ForwardPass:
    """One forward pass of a batch: the logits and, when a mechanism needs it, the embedding of that same pass."""

    logits: torch.Tensor
    embedding: Embedding | None = None

    def cosine(self) -> torch.Tensor:
        """cos(theta) of this pass (N x K); needs the embedding (a mechanism with ``needs_embedding``)."""
        if self.embedding is None:
            raise RuntimeError("this forward pass has no embedding: the mechanism must set needs_embedding = True")
        return self.embedding.cosine()


@dataclass(frozen=True)
class ExtraTerm:
    """A term added to a defense's training objective: ``loss + weight * value``, logged as ``loss_<name>``."""

    name: str
    value: torch.Tensor
    weight: float = 1.0


class Mechanism:
    """A training mechanism composed onto any defense through the Defense extension points.

    Subclasses declare ``params`` (a :class:`robustreg.ParamSet`), may derive values in
    :meth:`setup`, set ``needs_embedding`` when they read cos(theta) or the features, and override
    :meth:`inner_loss` and / or :meth:`extra_terms`.  Built with its keyword parameters (``owner``
    names the composed entry in error messages) and given to a defense's constructor::

        defense = MyDefense(mechanisms=[MyMechanism(owner="my-defense-plus", weight=0.2)], eps=8 / 255)
    """

    name: ClassVar[str] = ""
    params: ClassVar[ParamSet] = ParamSet()
    needs_embedding: ClassVar[bool] = False

    def __init__(self, *, owner: str | None = None, **params: Any) -> None:
        #: the name errors use: the composed entry's (``owner``), else the mechanism's own
        self.owner = owner or self.name or type(self).__name__
        #: the mechanism's parameters, validated against :attr:`params` (defaults filled in)
        self.config: dict[str, Any] = self.params.resolve(self.owner, params)
        for key, value in self.config.items():
            setattr(self, key, value)
        self.setup()

    def setup(self) -> None:
        """Checks across parameters and derived values (override); raise ParamError naming ``self.owner``."""

    def with_values(self, **values: Any) -> Mechanism:
        """A shallow copy with ``values`` (declared names, validated) in place of the current ones; this
        mechanism is unchanged.  ``config`` keeps the values it was built with; ``setup`` is not run again."""
        checked = {name: self._declared(name).validate(self.owner, value) for name, value in values.items()}
        new = copy.copy(self)
        for name, value in checked.items():
            setattr(new, name, value)
        return new

    def _declared(self, name: str) -> Any:
        if name not in self.params:
            raise self.params.unknown_error(self.owner, name)
        return self.params[name]

    def inner_loss(self, out: ForwardPass, y: torch.Tensor) -> torch.Tensor | None:
        """The inner attack's loss (summed over the batch) from one forward pass of x_adv, in place of the
        defense's own; None keeps the defense's."""
        return None

    def extra_terms(self, out_adv: ForwardPass, y: torch.Tensor) -> list[ExtraTerm]:
        """Terms added to the training objective, from the objective's forward pass of x_adv."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config.items())})"


class Defense:
    """Base class of every defense.

    Subclasses set ``info``, declare their parameters in ``params`` (a :class:`robustreg.ParamSet`)
    and implement :meth:`loss`.  The base validates the constructor's keyword arguments against the
    declaration (one-line errors naming the defense) and sets each as an attribute; :meth:`setup`
    may derive more.  ``mechanisms``: :class:`Mechanism` objects composed onto the defense (their
    parameters join ``config`` and the attributes); a defense supports them by routing its forward
    passes, inner loss and objective through :meth:`forward`, :meth:`inner_loss` and :meth:`add_terms`.
    """

    info: ClassVar[DefenseInfo]
    name: ClassVar[str] = ""
    params: ClassVar[ParamSet] = ParamSet()
    #: the mechanisms composed onto this defense (set by the constructor)
    mechanisms: tuple[Mechanism, ...] = ()

    @property
    def crafts_with_batch_statistics(self) -> bool:
        """True when the defense deliberately crafts its examples with the model in train mode, updating
        BatchNorm's running statistics as its authors' code does (fast AT, GradAlign); the conformance kit
        then checks that only the defense's own forwards changed them, not that they are untouched."""
        return False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("params")
        if declared is not None and not isinstance(declared, ParamSet):
            cls.params = ParamSet(declared)
        reserved = sorted(set(cls.params.names()) & _RESERVED)
        if reserved:
            raise TypeError(f"{cls.__name__} declares reserved parameter name(s) {', '.join(reserved)}")

    @classmethod
    def declaration(cls) -> ParamSet:
        return cls.params

    @classmethod
    def label(cls) -> str:
        return cls.name or cls.__name__

    def __init__(self, *, mechanisms: Iterable[Mechanism] = (), **params: Any) -> None:
        self.mechanisms = tuple(mechanisms)
        own = self.declaration().resolve(self.label(), params)
        extra: dict[str, Any] = {}
        for mech in self.mechanisms:
            if not isinstance(mech, Mechanism):
                raise TypeError(f"{self.label()}: mechanisms must be robustreg.Mechanism objects, got {mech!r}")
            clash = sorted(set(mech.config) & (set(own) | set(extra) | _RESERVED))
            if clash:
                raise TypeError(f"{self.label()}: mechanism {type(mech).__name__} declares parameter(s) "
                                f"{', '.join(clash)} the defense already has")
            extra.update(mech.config)
        #: the defense's parameters, validated against :attr:`params` (defaults filled in), then the mechanisms'
        self.config: dict[str, Any] = {**own, **extra}
        for key, value in self.config.items():
            setattr(self, key, value)
        self.setup()

    def setup(self) -> None:
        """Checks across parameters and derived values, after the declared ones are set (override)."""

    def with_values(self, **values: Any) -> Defense:
        """A copy of this defense with ``values`` in place of its parameters' current ones; this defense is
        unchanged.  How the trainer hands a schedule's values (eps warm-up, milestones) to the defense for one
        step, never by setting them on the defense it trains with.

        Each name must be declared by the defense or by a composed mechanism (which gets a copy with the
        value too) and each value passes its declaration.  The copy is shallow: it shares the objects that
        hold the defense's running state (generators, stores, buffers), and what ``loss`` reassigns on it is
        the copy's, so the trainer carries the copy on to the next step.  ``config`` keeps the values the
        defense was built with; ``setup`` is not run again (values it derived stay as built).
        """
        checked = {name: self._declared(name).validate(self.label(), value) for name, value in values.items()}
        new = copy.copy(self)
        for name, value in checked.items():
            setattr(new, name, value)
        new.mechanisms = tuple(
            mech.with_values(**{k: v for k, v in checked.items() if k in mech.config})
            if any(k in mech.config for k in checked) else mech
            for mech in self.mechanisms)
        return new

    def _declared(self, name: str) -> Any:
        """The declaration of ``name``: the defense's own, else a composed mechanism's (UnknownParamError)."""
        own = self.declaration()
        if name in own:
            return own[name]
        for mech in self.mechanisms:
            if name in mech.params:
                return mech.params[name]
        raise (own + [p for mech in self.mechanisms for p in mech.params]).unknown_error(self.label(), name)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        raise NotImplementedError

    # --- extension points (see the module docstring) ------------------------------------------
    def forward(self, model: nn.Module, x: torch.Tensor) -> ForwardPass:
        """One forward pass of ``x``: the logits, with the embedding of the same pass when a mechanism needs it."""
        if any(mech.needs_embedding for mech in self.mechanisms):
            emb = embed(model, x)
            return ForwardPass(emb.logits, emb)
        return ForwardPass(model(x))

    def inner_loss(self, out: ForwardPass, y: torch.Tensor,
                   own: Callable[[ForwardPass], torch.Tensor]) -> torch.Tensor:
        """The inner attack's loss of the forward pass ``out`` of x_adv: the last mechanism's that replaces it,
        else ``own(out)`` (the defense's, computed only when used)."""
        for mech in reversed(self.mechanisms):
            value = mech.inner_loss(out, y)
            if value is not None:
                return value
        return own(out)

    def add_terms(self, loss: torch.Tensor, out_adv: ForwardPass, y: torch.Tensor,
                  metrics: dict[str, float]) -> torch.Tensor:
        """``loss`` plus every mechanism's extra terms on the forward pass ``out_adv`` (each logged in ``metrics``)."""
        for mech in self.mechanisms:
            for term in mech.extra_terms(out_adv, y):
                metrics[f"loss_{term.name}"] = float(term.value.detach())
                loss = loss + term.weight * term.value
        return loss

    def head(self) -> Head | None:
        """The prediction head the trained model predicts with; None (the default): the model's own final
        ``nn.Linear``, ``W z + b``.

        A defense whose logits are not ``W z + b`` (say ``s * cos(theta)``) returns that :class:`Head`
        (``Head("cosine", s=self.s)``).  The trainer applies it to the model before training
        (:func:`robustreg.embedding.apply_head`: ``model(x)`` then returns the head's logits, the
        parameters and :func:`embed` are unchanged), records it next to the weights in ``final.pt`` and
        ``last.pt``, and :func:`robustreg.build_model` applies it again when it loads them.
        """
        return None

    def state_dict(self) -> dict[str, Any]:
        """State carried between batches (tensors and plain values); empty for most defenses."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got keys {sorted(state)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --- helpers for defenses that craft adversarial examples inside ``loss`` ------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel (attacks must not trigger DDP's sync)."""
    inner = getattr(model, "module", None)
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) and isinstance(inner, nn.Module):
        return inner
    return model


@contextmanager
def crafting(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and grad enabled while a defense crafts its examples; all restored after.

    Yields the unwrapped model (DDP's ``.module``) to attack, so crafting neither updates BatchNorm
    statistics nor fills parameter gradients nor triggers DDP's gradient sync.
    """
    state = ModelState(model)
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            yield unwrap(model)
    finally:
        state.restore()
