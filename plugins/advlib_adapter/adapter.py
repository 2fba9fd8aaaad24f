"""The generic adv-lib adapter: one robustreg Attack subclass per adv-lib attack function.

adv-lib (Jérôme Rony's ``adv_lib``) offers its attacks as functions ``attack(model, inputs, labels, ...)
-> adv_inputs``.  Each entry is an :class:`EntrySpec` (which function, which of our parameter names map
to which of its keywords, with adv-lib's own defaults); :func:`make_entry` turns a spec into an
:class:`~robustreg.Attack` subclass with a generated docstring (the kit: :mod:`robustreg.adapters`).
adv-lib is imported only when an attack runs, never when the plugin registers.

The pitfalls the adapter hides:

- importing ``adv_lib.attacks`` imports ``visdom`` (its plotting logger, a hard dependency that several
  attack modules import at the top): without it the import fails, which the adapter reports as a
  one-line ImportError naming both packages;
- adv-lib hard-codes the [0, 1] pixel box (some functions raise on anything else, others clamp to it):
  an entry refuses a ThreatModel with another box when it is built;
- its keywords are partly Greek (``ε``, ``α_init``, ``γ``) and differ from function to function: our
  common vocabulary is mapped through each :class:`~robustreg.Param`'s ``toolkit`` name;
- the norm goes in as a float (``float('inf')``, 2, 1); targeted attacks take the *target* classes as
  ``labels`` with ``targeted=True``;
- adv-lib draws its random starts from torch's global RNG: each call seeds it from the attack's seed
  inside :func:`robustreg.seeded_global_rngs`, which restores the caller's RNG states afterwards;
- adv-lib runs the model on the inputs' dtype: the batch is cast to the model's floating dtype for the
  call (the Attack base casts the result back to the caller's dtype);
- adv-lib returns the clean input for a sample it did not break (its PGD and APGD keep the last
  successful iterate, its minimal-norm attacks the smallest one); its minimal-norm attacks (FMN, DDN,
  C&W, DeepFool) are not bounded by eps: the adapter projects their result into the eps ball and the box,
  so such an entry is an eps-bounded evaluation of a minimal-norm search (a sample whose minimal
  perturbation is larger than eps is then usually not adversarial; the docstring of each says so);
  the eps-bounded ones only have their float slop clamped (:meth:`robustreg.ThreatModel.clamp_slop`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import AdapterEntry, Toolkit, ToolkitAttack, entry_docstring, make_entry_class

__all__ = ["TOOLKIT", "AdvlibAttack", "EntrySpec", "make_entry"]

TOOLKIT = Toolkit(
    prefix="advlib", distribution="adv-lib", module="adv_lib.attacks",
    requires=" (and visdom, which adv-lib imports)", install="pip install adv-lib visdom",
    quiet=("distutils Version classes are deprecated",),  # adv-lib's own use of distutils' LooseVersion
)
#: adv-lib's spelling of each norm
NORM_VALUES: Mapping[str, float] = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}


@dataclass(frozen=True)
class EntrySpec(AdapterEntry):
    """How one registry entry maps onto one adv-lib attack function (``call``, in adv_lib.attacks)."""

    targeted: bool = True  # the function takes ``targeted`` (labels are then the targets)
    eps_keyword: str | None = "eps"  # adv-lib's keyword for eps; None: the function takes no eps
    takes_norm: bool = False  # the function takes ``norm`` (a float)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # keywords the adapter always passes


def _work_dtype(model: nn.Module, x: torch.Tensor) -> torch.dtype:
    """The dtype adv-lib must run in: the model's first floating parameter's, else the input's."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return x.dtype


class AdvlibAttack(ToolkitAttack):
    """Base of every ``advlib:*`` entry; every declared parameter goes to the adv-lib function under its
    ``toolkit`` name (else its own).  A default of None is adv-lib's own default (None), so it is passed too."""

    toolkit = TOOLKIT
    spec: ClassVar[EntrySpec]

    def setup(self) -> None:
        if self.threat.box != (0.0, 1.0):
            raise ValueError(f"{self.label()}: adv-lib attacks work in the [0, 1] pixel box only, "
                             f"got box={self.threat.box!r}")
        check = getattr(self, "check_config", None)
        if check is not None:
            check()

    def toolkit_kwargs(self, targeted: bool) -> dict[str, Any]:
        """The keyword arguments of the adv-lib function (after ``model, inputs, labels``)."""
        spec = self.spec
        kwargs = self.params.toolkit_kwargs(self.config)
        kwargs.update(spec.fixed)
        if spec.eps_keyword is not None:
            kwargs[spec.eps_keyword] = self.threat.eps
        if spec.takes_norm:
            kwargs["norm"] = NORM_VALUES[self.threat.norm]
        if spec.targeted:
            kwargs["targeted"] = targeted
        return kwargs

    def call_toolkit(self, toolkit: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     target: torch.Tensor | None, seed: int) -> torch.Tensor:
        function = getattr(toolkit, self.toolkit_call())
        kwargs = self.toolkit_kwargs(targeted=target is not None)
        inputs = x.to(_work_dtype(model, x))
        return function(model, inputs, y if target is None else target, **kwargs)


def _docstring(spec: EntrySpec, version: str) -> str:
    return entry_docstring(
        spec, TOOLKIT, origin=f"adv_lib.attacks.{spec.call}, adv-lib {version}",
        eps="eps from the ThreatModel ([0, 1] pixel units; the box must be [0, 1]).",
        minimal_norm="Minimal-norm: adv-lib returns the smallest adversarial point it found (the clean input where "
                     "it found none), unbounded by eps; the adapter projects it into the eps ball (and the box), so "
                     "this entry is an eps-bounded attack and a sample whose minimal perturbation exceeds eps is "
                     "usually not adversarial after the projection.",
        seed="int seed of torch's global RNG inside a fork_rng (restored afterwards).", box="[0, 1]",
    )


def make_entry(spec: EntrySpec, check_config: Callable[[AdvlibAttack], None] | None = None) -> type[AdvlibAttack]:
    """The Attack subclass registered as ``advlib:<spec.name>``.

    ``check_config(self)``: optional cross-parameter checks run when an entry is built (one-line errors).
    """
    namespace = {"check_config": check_config} if check_config is not None else None
    return make_entry_class(spec, AdvlibAttack, doc=_docstring, module=__name__, namespace=namespace)
