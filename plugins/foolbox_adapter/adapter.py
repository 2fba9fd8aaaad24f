"""The generic foolbox adapter: one robustreg Attack subclass per foolbox attack family.

foolbox 3 spells one attack as one class per norm (``LinfPGD``, ``L2PGD``): an :class:`EntrySpec` names
the class for each norm the entry supports, and which of our parameter names map to which of the
class's keywords.  :func:`make_entry` turns a spec into an :class:`~robustreg.Attack` subclass with a
generated docstring.  foolbox (and eagerpy) are imported only when an attack runs, never when the
plugin registers.

The pitfalls the adapter hides:

- foolbox attacks a ``foolbox.PyTorchModel``, which moves the module to its ``device`` argument
  (default: ``cuda:0`` whenever CUDA is available, wherever the model is): the wrapper is built on the
  model's own device, so the caller's model is never moved, and with the ThreatModel's box as ``bounds``;
- it warns when it wraps a model in train mode: with ``eval_mode=False`` that is what the caller asked
  for, so the wrapper is built in eval mode (it calls the model in whatever mode the model is in);
- an attack is called as ``attack(fmodel, inputs, criterion, epsilons=eps)`` and returns the triple
  ``(raw, clipped, success)``; the adapter returns ``clipped`` (the perturbation foolbox clipped to eps
  itself: for its minimal-norm attacks -- FMN, DDN, C&W, DeepFool -- that is foolbox's own projection of
  the minimal point onto the eps ball, so such an entry is an eps-bounded evaluation of a minimal-norm
  search) and leaves ``success`` (the evaluation recomputes it);
- labels go in as a ``Misclassification`` criterion, targets as a ``TargetedMisclassification``;
- eagerpy computes gradients with ``loss.backward()``: the Attack base freezes the model's parameters
  while the attack runs, so no ``.grad`` is left on them;
- foolbox draws random starts from torch's global RNG (through eagerpy): each call seeds it from the
  attack's seed inside :func:`robustreg.seeded_global_rngs`, which restores the caller's RNG states;
- the batch is cast to the model's floating dtype for the call (the base casts the result back), and
  foolbox's float slop at the ball's edge is clamped (:meth:`robustreg.ThreatModel.clamp_slop`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import Attack, AttackInfo, Param, ParamSet, draw_seed, seeded_global_rngs

__all__ = ["EntrySpec", "FoolboxAttack", "import_foolbox", "make_entry", "toolkit_version"]

TOOLKIT = "foolbox"
_INSTALL = "pip install foolbox"


def toolkit_version() -> str:
    """foolbox's installed version, read from its metadata (does not import it)."""
    try:
        return metadata.version(TOOLKIT)
    except metadata.PackageNotFoundError:
        return "not installed"


def import_foolbox(entry: str) -> Any:
    """Import foolbox or raise a one-line ImportError saying what to install."""
    try:
        with warnings.catch_warnings():  # foolbox imports scipy.ndimage.filters (deprecated): noise for its users
            warnings.filterwarnings("ignore", message=".*scipy.ndimage.filters.*", category=DeprecationWarning)
            return importlib.import_module(TOOLKIT)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or TOOLKIT
        raise ImportError(f"{entry} needs the foolbox package; {missing} could not be imported: {_INSTALL}") from None


@dataclass(frozen=True)
class EntrySpec:
    """How one registry entry maps onto foolbox's classes (one per norm)."""

    name: str  # the part after "foolbox:"
    classes: Mapping[str, str]  # our norm -> class name in foolbox.attacks
    title: str  # one line: what it does
    paper: str  # title, year, arXiv id
    params: tuple[Param, ...] = ()  # ``toolkit`` = foolbox's keyword where it differs from ours
    #: our parameters whose None means "the class's own default" (which differs per norm): not passed when None
    per_class_default: tuple[str, ...] = ()
    targeted: bool = True
    randomized: bool = False
    minimal_norm: bool = False  # a foolbox MinimizationAttack: the result is foolbox's clip to eps
    single_step: bool = False
    note: str = ""
    #: for ``robustreg compare``: our parameters the class does not take but runs as; ``...``: does not
    #: apply to what it does (see :mod:`robustreg.comparison_params`)
    implied: Mapping[str, Any] = field(default_factory=dict)

    @property
    def norms(self) -> tuple[str, ...]:
        return tuple(self.classes)


def _model_device_dtype(model: nn.Module, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Where the model lives and the dtype it computes in (its first floating parameter's; else x's)."""
    device, dtype = None, None
    for p in model.parameters():
        device = device or p.device
        if p.is_floating_point():
            dtype = p.dtype
            break
    return device or x.device, dtype or x.dtype


def _foolbox_model(fb: Any, model: nn.Module, box: tuple[float, float], device: torch.device) -> Any:
    """``foolbox.PyTorchModel`` on the model's own device (so it moves nothing), built in eval mode.

    foolbox warns when it wraps a model in train mode (forcing the warning on inside its own
    ``catch_warnings``, so no filter silences it); with ``eval_mode=False`` train mode is what the caller
    asked for.  The wrapper calls the model in whatever mode it is in when the attack runs, so it is built
    with the model in eval mode and the modes are put back at once.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return fb.PyTorchModel(model, bounds=box, device=device)
    finally:
        for module, training in modes:
            module.training = training


class FoolboxAttack(Attack):
    """Base of every ``foolbox:*`` entry; subclasses are made by :func:`make_entry`.

    ``params`` is ``ParamSet(spec.params)``; every declared parameter goes to the foolbox constructor under
    its ``toolkit`` name (else its own), except a ``per_class_default`` one left at None.
    """

    spec: ClassVar[EntrySpec]
    implied: ClassVar[Mapping[str, Any]] = {}
    minimal_norm: ClassVar[bool] = False

    def toolkit_class(self) -> str:
        """The foolbox class for the threat model's norm."""
        return self.spec.classes[self.threat.norm]

    def toolkit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the foolbox constructor."""
        skip = {k for k in self.spec.per_class_default if self.config.get(k) is None}
        return self.params.toolkit_kwargs({k: v for k, v in self.config.items() if k not in skip})

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        fb = import_foolbox(self.label())
        seed = self.seed if self.seed is not None else draw_seed(generator)
        device, dtype = _model_device_dtype(model, x)
        inputs = x.to(device=device, dtype=dtype)
        if target is None:
            criterion = fb.criteria.Misclassification(y.to(device))
        else:
            criterion = fb.criteria.TargetedMisclassification(target.to(device))
        fmodel = _foolbox_model(fb, model, self.threat.box, device)
        with seeded_global_rngs(seed, x.device):
            attack = getattr(fb.attacks, self.toolkit_class())(**self.toolkit_kwargs())
            _, clipped, _ = attack(fmodel, inputs, criterion, epsilons=self.threat.eps)
        x_adv = clipped.detach().to(device=x.device, dtype=x.dtype)
        return self.threat.clamp_slop(x_adv, x)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _docstring(spec: EntrySpec, version: str) -> str:
    classes = ", ".join(f"{norm}: {cls}" for norm, cls in spec.classes.items())
    lines = [
        f"{spec.title} (foolbox {version}: {classes}).",
        "",
        f"Paper: {spec.paper}.",
        f"Norm(s): {', '.join(spec.norms)}; eps from the ThreatModel ([0, 1] pixel units), foolbox's ``epsilons``; "
        "the box is foolbox's ``bounds``.",
    ]
    if spec.minimal_norm:
        lines.append(
            "Minimal-norm: foolbox finds the smallest adversarial perturbation it can (unbounded by eps) and clips it "
            "to eps itself (its ``clipped`` output, which the adapter returns), so this entry is an eps-bounded "
            "attack and a sample whose minimal perturbation exceeds eps is usually not adversarial after the clip."
        )
    if spec.note:
        lines.append(spec.note)
    lines += ["", "Parameters (keyword-only; robustreg name -> foolbox keyword, default):"]
    for p in spec.params:
        unit = f", {p.unit}" if p.unit else ""
        lines.append(f"    {p.name} -> {p.toolkit or p.name} ({p.allowed()}; default {_fmt(p.default)}{unit}): {p.doc}")
    lines += [
        "    seed (default None): int seed of torch's global RNG inside a fork_rng (restored afterwards).",
        "    eval_mode (default True): attack the model in eval mode (its mode is restored afterwards).",
        "",
        "Inputs: float N x C x H x W in the box, int64 labels.",
        "",
        "Example::",
        "",
        "    reg = robustreg.Registry.create()",
        f"    attack = reg.build_attack('foolbox:{spec.name}', ThreatModel('{spec.norms[0]}', 0.3), seed=0)",
        "    x_adv = attack(model, x, y)",
    ]
    return "\n".join(lines)


def make_entry(spec: EntrySpec) -> type[FoolboxAttack]:
    """The Attack subclass registered as ``foolbox:<spec.name>``."""
    version = toolkit_version()
    info = AttackInfo(
        norms=spec.norms,
        targeted=spec.targeted,
        single_step=spec.single_step,
        randomized=spec.randomized,
        source=f"foolbox {version} ({', '.join(dict.fromkeys(spec.classes.values()))}); {spec.paper}",
        toolkit=TOOLKIT,
        summary=spec.title,
    )
    qualname = "Foolbox" + "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_"))
    namespace: dict[str, Any] = {
        "__doc__": _docstring(spec, version),
        "__module__": __name__,
        "__qualname__": qualname,
        "name": f"{TOOLKIT}:{spec.name}",
        "info": info,
        "spec": spec,
        "params": ParamSet(spec.params),
        "implied": dict(spec.implied),
        "minimal_norm": spec.minimal_norm,
    }
    return type(qualname, (FoolboxAttack,), namespace)
