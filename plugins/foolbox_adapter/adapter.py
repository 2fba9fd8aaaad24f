"""The generic foolbox adapter: one robustreg Attack subclass per foolbox attack family.

foolbox 3 spells one attack as one class per norm (``LinfPGD``, ``L2PGD``): an :class:`EntrySpec` names
the class for each norm the entry supports, and which of our parameter names map to which of the
class's keywords.  :func:`make_entry` turns a spec into an :class:`~robustreg.Attack` subclass with a
generated docstring (the kit: :mod:`robustreg.adapters`).  foolbox (and eagerpy) are imported only when
an attack runs, never when the plugin registers.

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

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import AdapterEntry, Toolkit, ToolkitAttack, entry_docstring, make_entry_class

__all__ = ["TOOLKIT", "EntrySpec", "FoolboxAttack", "make_entry"]

#: foolbox imports scipy.ndimage.filters (deprecated): noise for its users
TOOLKIT = Toolkit(prefix="foolbox", distribution="foolbox", module="foolbox", quiet=(".*scipy.ndimage.filters.*",))


@dataclass(frozen=True)
class EntrySpec(AdapterEntry):
    """How one registry entry maps onto foolbox's classes: ``call`` is our norm -> class in foolbox.attacks."""

    targeted: bool = True
    #: our parameters whose None means "the class's own default" (which differs per norm): not passed when None
    per_class_default: tuple[str, ...] = ()


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


class FoolboxAttack(ToolkitAttack):
    """Base of every ``foolbox:*`` entry; every declared parameter goes to the foolbox constructor under its
    ``toolkit`` name (else its own), except a ``per_class_default`` one left at None."""

    toolkit = TOOLKIT
    spec: ClassVar[EntrySpec]
    clips_to_eps = True  # a minimal-norm result is foolbox's own clip to eps (its ``clipped`` output)

    def toolkit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the foolbox constructor."""
        skip = {k for k in self.spec.per_class_default if self.config.get(k) is None}
        return self.params.toolkit_kwargs({k: v for k, v in self.config.items() if k not in skip})

    def call_toolkit(self, toolkit: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     target: torch.Tensor | None, seed: int) -> torch.Tensor:
        device, dtype = _model_device_dtype(model, x)
        if target is None:
            criterion = toolkit.criteria.Misclassification(y.to(device))
        else:
            criterion = toolkit.criteria.TargetedMisclassification(target.to(device))
        fmodel = _foolbox_model(toolkit, model, self.threat.box, device)
        attack = getattr(toolkit.attacks, self.toolkit_call())(**self.toolkit_kwargs())
        _, clipped, _ = attack(fmodel, x.to(device=device, dtype=dtype), criterion, epsilons=self.threat.eps)
        return clipped.to(device=x.device)


def _docstring(spec: EntrySpec, version: str) -> str:
    classes = ", ".join(f"{norm}: {cls}" for norm, cls in spec.calls().items())
    return entry_docstring(
        spec, TOOLKIT, origin=f"foolbox {version}: {classes}",
        eps="eps from the ThreatModel ([0, 1] pixel units), foolbox's ``epsilons``; the box is foolbox's "
            "``bounds``.",
        minimal_norm="Minimal-norm: foolbox finds the smallest adversarial perturbation it can (unbounded by eps) "
                     "and clips it to eps itself (its ``clipped`` output, which the adapter returns), so this entry "
                     "is an eps-bounded attack and a sample whose minimal perturbation exceeds eps is usually not "
                     "adversarial after the clip.",
        seed="int seed of torch's global RNG inside a fork_rng (restored afterwards).", box="the box",
    )


def make_entry(spec: EntrySpec) -> type[FoolboxAttack]:
    """The Attack subclass registered as ``foolbox:<spec.name>``."""
    return make_entry_class(spec, FoolboxAttack, doc=_docstring, module=__name__)
