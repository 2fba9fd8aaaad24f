"""What every ART entry shares: the lazy import, the cached classifier, the RNG scope, the numpy round trip.

ART (adversarial-robustness-toolbox) is imported only when an entry is built or run, never when the
plugin registers, so ``robustreg list`` works without it.  The adapter hides ART's pitfalls:

- ART works on float32 numpy arrays on the CPU: inputs go out as float32 arrays, results come back as
  tensors on the input's device and dtype.
- Under NumPy 2, ART's HopSkipJump promotes float32 arrays to float64 in its own arithmetic (binary
  search) and feeds them to the model: on a plain ``PyTorchClassifier`` it fails with "mat1 and mat2
  must have the same dtype" whether it is given float32 or float64 inputs (measured, ART 1.20.1,
  NumPy 2.4).  The module ART sees casts every input to the model's dtype first, so every attack gets
  float32 arrays and any model dtype works.
- ART's ``PyTorchClassifier`` calls ``train(mode)``, ``zero_grad()`` and ``backward()`` on the model it
  holds.  The module ART holds is a parameter-free forward that reaches the real model through a weak
  reference: ART's mode switches and ``zero_grad`` never reach the caller's model (its mode is what the
  Attack base set, which honours ``eval_mode=False``), and the model's parameters are frozen while ART
  runs, so ``backward()`` computes input gradients only and fills no ``.grad`` (the base restores
  ``requires_grad`` afterwards either way).
- ART draws randomness from numpy's global RNG, Python's ``random`` (Square L2) and torch's global RNG.
  Each call seeds all three from the attack's ``torch.Generator`` and restores their states afterwards.
- Labels go to ART one-hot (every attack accepts them); progress bars are off (``verbose=False``);
  ART's NumPy-2 DeprecationWarning about ``__array__`` and Square's divide-by-zero RuntimeWarnings are
  silenced around the ART call only.

Attack-specific pitfalls (GeoDA under NumPy 2, the unseeded starting points of HopSkipJump and Boundary,
SimBA's need for probabilities, ZOO's ``nb_parallel``, ART's targeted-by-default Boundary and Sign-OPT)
are handled in :mod:`.black_box`; ART's AutoAttack in :mod:`.white_box`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from collections.abc import Collection, Iterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from robustreg import Attack, AttackResult, Param, ParamSet, ThreatModel, Toolkit, draw_seed, seeded_global_rngs

__all__ = ["ART", "ArtAttack", "alias", "art_options", "art_version", "classifier_for", "count",
           "flag", "fraction", "import_art", "non_negative", "positive"]

#: ART as the adapter kit imports it (when an attack runs) and reads its version
ART = Toolkit(prefix="art", distribution="adversarial-robustness-toolbox", module="art", requires=" (ART)")


def import_art(who: str) -> Any:
    """Import ART or raise a one-line ImportError naming the package to install."""
    return ART.load(who)


def art_version() -> str:
    """ART's version, or "not installed"."""
    return ART.version()


class ArtForward(nn.Module):
    """The module ART holds: casts inputs to the model's dtype and calls the model through a weak reference.

    It owns no parameters and no submodules, so ART's ``train()``, ``to()`` and ``zero_grad()`` calls stop
    here.  ``count`` adds up the samples forwarded (model queries), for black-box entries.
    ``probabilities=True`` returns softmax outputs (SimBA refuses logits).
    """

    _model_ref: weakref.ReferenceType[nn.Module]  # set past nn.Module's __setattr__: a weak link, not a submodule

    def __init__(self, model: nn.Module, dtype: torch.dtype, probabilities: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "_model_ref", weakref.ref(model))
        self.dtype = dtype
        self.probabilities = probabilities
        self.count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self._model_ref()
        if model is None:
            raise RuntimeError("the model this ART classifier wrapped has been garbage-collected")
        self.count += int(x.shape[0])
        out = model(x.to(self.dtype))
        return torch.softmax(out, dim=1) if self.probabilities else out


# model -> {(device, dtype, input shape, box, probabilities): (forward, classifier)}.  The classifier holds
# only the ArtForward, which holds the model weakly, so the cache never keeps a model alive.
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], tuple[ArtForward, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _model_dtype(model: nn.Module, x: torch.Tensor) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return x.dtype


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # no BatchNorm statistics touched by this one probe
    try:
        with torch.no_grad():
            logits = model(x[:1].to(_model_dtype(model, x)))
    finally:
        for module, training in modes:
            module.training = training
    return int(logits.shape[1])


def classifier_for(
    model: nn.Module, x: torch.Tensor, box: tuple[float, float] = (0.0, 1.0), *, probabilities: bool = False
) -> tuple[ArtForward, Any]:
    """ART's ``PyTorchClassifier`` for ``model`` on ``x``'s device, built once per (model, device, dtype, shape).

    Returns ``(forward, classifier)``; ``forward.count`` counts the samples the classifier forwards.
    """
    import_art("the ART adapter")
    from art.estimators.classification import PyTorchClassifier

    dtype = _model_dtype(model, x)
    key = (x.device, dtype, tuple(x.shape[1:]), tuple(box), probabilities)
    per_model = _CACHE.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    forward = ArtForward(model, dtype, probabilities)
    on_cuda = x.device.type == "cuda"
    # ART puts a "gpu" classifier on torch.cuda.current_device(): make that the input's device.
    device_ctx = torch.cuda.device(x.device) if on_cuda else contextlib.nullcontext()
    with device_ctx:
        classifier = PyTorchClassifier(
            model=forward,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=_num_classes(model, x),
            optimizer=None,
            clip_values=tuple(box),
            device_type="gpu" if on_cuda else "cpu",
        )
    per_model[key] = (forward, classifier)
    return forward, classifier


@contextlib.contextmanager
def _quiet_art() -> Iterator[None]:
    """Silence two kinds of noise ART makes under NumPy 2 and that we cannot act on.

    ART converts torch tensors with ``np.array`` (a DeprecationWarning about ``__array__``'s ``copy``
    keyword, e.g. PGD with restarts), and Square L2 divides by zero norms on tiny images (RuntimeWarnings;
    NaN never escapes: the Attack base rejects a non-finite result).
    """
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        yield


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A float32 C-contiguous CPU array (a copy, never a view of the caller's tensor)."""
    return np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.float32).numpy()).copy()


def one_hot(y: torch.Tensor, num_classes: int) -> np.ndarray:
    """One-hot float32 labels: every ART attack accepts them (some reject or misread index labels)."""
    out = np.zeros((y.shape[0], num_classes), dtype=np.float32)
    out[np.arange(y.shape[0]), y.detach().cpu().numpy()] = 1.0
    return out


# --- parameter declarations -----------------------------------------------------------------
_FINITE: dict[str, Any] = {"high": math.inf, "high_open": True}


def count(name: str, default: int | None, doc: str, *, low: int = 1, toolkit: str | None = None,
          sane_high: int | None = None) -> Param:
    """An int parameter >= ``low`` (1 unless given); ``sane_high`` for an iteration or query count."""
    return Param(name, "int", default, doc, low=low, toolkit=toolkit, optional=default is None, sane_high=sane_high)


def positive(name: str, default: float | None, doc: str, *, toolkit: str | None = None, unit: str = "") -> Param:
    """A finite number > 0 (None allowed when it is the default: "computed")."""
    return Param(name, "float", default, doc, low=0, low_open=True, toolkit=toolkit, unit=unit,
                 optional=default is None, **_FINITE)


def non_negative(name: str, default: float, doc: str) -> Param:
    """A finite number >= 0."""
    return Param(name, "float", default, doc, low=0, **_FINITE)


def fraction(name: str, default: float, doc: str) -> Param:
    """A number in (0, 1]."""
    return Param(name, "float", default, doc, low=0, low_open=True, high=1)


def flag(name: str, default: bool, doc: str) -> Param:
    return Param(name, "bool", default, doc)


def alias(param: Param, name: str | None = None) -> Param:
    """Another name for ``param``'s ART keyword (default None: not given); ``name`` None = ART's own name.

    Declare aliases after ``param`` and ART's own name last: the last one given wins (see :func:`art_options`).
    """
    target = param.toolkit or param.name
    doc = f"ART's own name for {param.name}; wins over it" if name is None else f"same as {param.name}"
    return replace(param, name=name or target, default=None, optional=True, doc=doc,
                   toolkit=None if name is None else target)


def art_options(params: ParamSet, config: Mapping[str, Any], own: Collection[str]) -> dict[str, Any]:
    """ART keyword -> value, from the resolved ``config`` (our names), less the entry's ``own`` parameters.

    Several of our names may set one ART keyword (``steps``, ``max_iter``): the value of the last one
    declared that is not None wins, so a given alias beats the default of our name and ART's own name
    (declared last) beats both.  None where all are None: "computed" in :meth:`ArtAttack.art_kwargs`.
    """
    art = [p for p in params if p.name not in own]
    options: dict[str, Any] = dict.fromkeys(p.toolkit or p.name for p in art)
    options.update(params.toolkit_kwargs({p.name: config[p.name] for p in art if config[p.name] is not None}))
    return options


class ArtAttack(Attack):
    """Base of every ``art:<attack>`` entry: builds ART's attack per call on the cached classifier.

    A subclass sets ``name``, ``info``, ``art_class`` (a name in ``art.attacks.evasion``) and:

    - ``params``: the declaration (a :class:`robustreg.ParamSet`).  A parameter goes to ART under its
      ``toolkit`` name, else under its own (ART's) name; :func:`alias` declares other names for one ART
      keyword (ART's own name among them, which wins over ours);
    - ``own``: our parameters that are not ART keywords, turned into ART's in :meth:`art_kwargs` /
      :meth:`build_art_attack` (``random_start``, ``restarts``, ...);
    - ``fixed``: ART keywords the adapter always sets (``verbose=False``, ``targeted=False``, ...).

    ``options`` holds the ART keywords with their values (None: computed in :meth:`art_kwargs`).
    """

    art_class: ClassVar[str] = ""
    own: ClassVar[tuple[str, ...]] = ()
    fixed: ClassVar[Mapping[str, Any]] = {"verbose": False}
    probabilities: ClassVar[bool] = False
    #: ART minimises the perturbation's norm and does not bound it by eps: the adapter projects the
    #: result into the eps ball (and the box); an eps-bounded attack's result only has its slop clamped
    minimal_norm: ClassVar[bool] = False
    #: for ``robustreg compare``: our parameters ART's class does not take but runs as (``{"loss": "ce"}``);
    #: ``...``: does not apply to what it does (see :mod:`robustreg.compare.params`)
    implied: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def toolkit_versions(cls) -> dict[str, str]:
        """ART's distribution and version, for the report's environment."""
        return {"adversarial-robustness-toolbox": art_version()}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = sorted(set(cls.own) - set(cls.params.names()))
        if missing:
            raise TypeError(f"{cls.__name__}: own names undeclared parameter(s) {', '.join(missing)}")

    def setup(self) -> None:
        import_art(self.label())
        self.options = art_options(self.params, self.config, self.own)

    # --- what subclasses may override --------------------------------------------------------
    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        """Keyword arguments for ART's attack constructor (besides the estimator)."""
        kwargs = dict(self.options)
        kwargs.update(self.fixed)
        return kwargs

    def build_art_attack(self, classifier: Any, num_samples: int) -> Any:
        from art.attacks import evasion

        return getattr(evasion, self.art_class)(classifier, **self.art_kwargs(num_samples))

    def generate(self, attack: Any, x: np.ndarray, y: np.ndarray, forward: ArtForward,
                 generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor | None]:
        """Run ART on the numpy batch; return the adversarial batch and per-sample queries (or None)."""
        return attack.generate(x=x, y=y), None

    # --- the adapter ------------------------------------------------------------------------
    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> AttackResult:
        import_art(self.label())
        forward, classifier = classifier_for(model, x, self.threat.box, probabilities=self.probabilities)
        seed = draw_seed(generator)
        x_np, y_np = to_numpy(x), one_hot(y, classifier.nb_classes)
        with seeded_global_rngs(seed, x.device), _quiet_art():
            attack = self.build_art_attack(classifier, x.shape[0])
            x_adv, queries = self.generate(attack, x_np, y_np, forward, generator)
        x_adv_t = torch.from_numpy(np.asarray(x_adv, dtype=np.float32)).to(device=x.device, dtype=x.dtype)
        if self.minimal_norm:  # ART minimises the norm without bounding it by eps: the adapter projects
            x_adv_t = self.threat.project(x_adv_t, x)
        else:
            x_adv_t = self.threat.clamp_slop(x_adv_t, x)
        if queries is not None:
            queries = queries.to(x.device)
        return AttackResult(x_adv_t, queries=queries)


def art_norm(threat: ThreatModel) -> Any:
    """ART's spelling of the threat model's norm."""
    return {"linf": np.inf, "l2": 2, "l1": 1}[threat.norm]
