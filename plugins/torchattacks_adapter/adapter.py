"""The generic torchattacks adapter: one robustreg Attack subclass per torchattacks class.

Each entry is an :class:`EntrySpec` (which torchattacks class, which of our parameter names map to which
of its keywords, with torchattacks' own defaults); :func:`make_entry` turns it into an
:class:`~robustreg.Attack` subclass with a generated docstring (the kit: :mod:`robustreg.adapters`).
torchattacks itself is imported only when an attack runs, never when the plugin is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import AdapterEntry, Toolkit, ToolkitAttack, entry_docstring, make_entry_class

__all__ = ["TOOLKIT", "EntrySpec", "TorchattacksAttack", "make_entry"]

TOOLKIT = Toolkit(prefix="torchattacks", distribution="torchattacks", module="torchattacks")
NORM_NAMES = {"linf": "Linf", "l2": "L2", "l1": "L1"}


@dataclass(frozen=True)
class EntrySpec(AdapterEntry):
    """How one registry entry maps onto one torchattacks class (``call``, e.g. "PGD")."""

    takes_eps: bool = True
    takes_norm: bool = False
    takes_seed: bool = False  # the torchattacks class has its own ``seed`` keyword
    takes_n_classes: bool = False  # ``n_classes`` inferred from the model when None


class TorchattacksAttack(ToolkitAttack):
    """Base of every ``torchattacks:*`` entry; every declared parameter goes to the torchattacks constructor
    under its ``toolkit`` name (else its own)."""

    toolkit = TOOLKIT
    spec: ClassVar[EntrySpec]

    def toolkit_kwargs(self, model: nn.Module, x: torch.Tensor, seed: int) -> dict[str, Any]:
        """The keyword arguments of the torchattacks constructor (after ``model``)."""
        spec = self.spec
        kwargs = self.params.toolkit_kwargs(self.config)
        if spec.takes_eps:
            kwargs["eps"] = self.threat.eps
        if spec.takes_norm:
            kwargs["norm"] = NORM_NAMES[self.threat.norm]
        if spec.takes_seed:
            kwargs["seed"] = seed
        if spec.takes_n_classes and kwargs.get("n_classes") is None:
            with torch.no_grad():
                kwargs["n_classes"] = int(model(x[:1]).shape[1])
        return kwargs

    def call_toolkit(self, toolkit: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     target: torch.Tensor | None, seed: int) -> torch.Tensor:
        attack = getattr(toolkit, self.toolkit_call())(model, **self.toolkit_kwargs(model, x, seed))
        if not self.eval_mode and model.training:
            attack.set_model_training_mode(model_training=True, batchnorm_training=True, dropout_training=True)
        if target is not None:
            attack.set_mode_targeted_by_label(quiet=True)
        return attack(x, y if target is None else target)


def _docstring(spec: EntrySpec, version: str) -> str:
    seed = "also torchattacks' own `seed`" if spec.takes_seed else "seeds torch's RNG inside a fork_rng"
    return entry_docstring(
        spec, TOOLKIT, origin=f"torchattacks.{spec.call}, torchattacks {version}",
        eps="eps from the ThreatModel ([0, 1] pixel units)"
            + ("." if spec.takes_eps else " (not a torchattacks parameter: the adapter projects the result into the "
                                     "eps ball)."),
        minimal_norm="Minimal-norm; the adapter projects the result into the eps ball (and the box), so this entry "
                     "is an eps-bounded attack.",
        seed=f"int seed; {seed}; torch's global RNG is restored afterwards.", box="[0, 1]",
    )


def make_entry(spec: EntrySpec) -> type[TorchattacksAttack]:
    """The Attack subclass registered as ``torchattacks:<spec.name>``."""
    return make_entry_class(spec, TorchattacksAttack, doc=_docstring, module=__name__,
                            qualname=f"Torchattacks{spec.call}")
