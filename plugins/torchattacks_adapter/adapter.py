"""The generic torchattacks adapter: one robustreg Attack subclass per torchattacks class.

Each entry is described by an :class:`EntrySpec` (which torchattacks class, which of our parameter
names map to which of its keywords, with torchattacks' own defaults).  :func:`make_entry` turns a spec
into an :class:`~robustreg.Attack` subclass with a generated docstring.  torchattacks itself is
imported only when an attack is built, never when the plugin is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import Attack, AttackInfo, Param, ParamSet, draw_seed, seeded_global_rngs

__all__ = ["EntrySpec", "TorchattacksAttack", "import_torchattacks", "make_entry", "toolkit_version"]

TOOLKIT = "torchattacks"
NORM_NAMES = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def toolkit_version() -> str:
    """torchattacks' installed version, read from its metadata (does not import it)."""
    try:
        return metadata.version(TOOLKIT)
    except metadata.PackageNotFoundError:
        return "not installed"


def import_torchattacks(entry: str) -> Any:
    """Import torchattacks or raise a one-line ImportError saying what to install."""
    try:
        return importlib.import_module(TOOLKIT)
    except ImportError:
        raise ImportError(f"{entry} needs the torchattacks package: pip install torchattacks") from None


@dataclass(frozen=True)
class EntrySpec:
    """How one registry entry maps onto one torchattacks class."""

    name: str  # the part after "torchattacks:"
    toolkit_class: str  # e.g. "PGD"
    title: str  # one line: what it does
    paper: str  # title, year, arXiv id
    norms: tuple[str, ...]
    params: tuple[Param, ...] = ()  # robustreg Params; ``toolkit`` = torchattacks' keyword where it differs
    kind: str = "white-box"
    targeted: bool = False
    randomized: bool = False
    takes_eps: bool = True
    takes_norm: bool = False
    takes_seed: bool = False  # the torchattacks class has its own ``seed`` keyword
    takes_n_classes: bool = False  # ``n_classes`` inferred from the model when None
    minimal_norm: bool = False  # the toolkit minimises the norm; the adapter projects into the eps ball
    single_step: bool = False  # one gradient step (AttackInfo.single_step)
    note: str = ""
    #: for ``robustreg compare``: our parameters the class does not take but runs as (``{"restarts": 1}``);
    #: ``...``: does not apply to what it does (see :mod:`robustreg.comparison_params`)
    implied: Mapping[str, Any] = field(default_factory=dict)


class TorchattacksAttack(Attack):
    """Base of every ``torchattacks:*`` entry; subclasses are made by :func:`make_entry`.

    ``params`` is ``ParamSet(spec.params)``; every declared parameter goes to the torchattacks constructor
    under its ``toolkit`` name (else its own).
    """

    spec: ClassVar[EntrySpec]
    implied: ClassVar[Mapping[str, Any]] = {}

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

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ta = import_torchattacks(self.label())
        # torchattacks draws from torch's global RNG (and APGD/FAB/Square reseed it): seed it from our
        # generator (or our seed) inside fork_rng so the caller's global RNG state is left untouched.
        seed = self.seed if self.seed is not None else draw_seed(generator)
        kwargs = self.toolkit_kwargs(model, x, seed)
        with seeded_global_rngs(seed, x.device):
            attack = getattr(ta, self.spec.toolkit_class)(model, **kwargs)
            if not self.eval_mode and model.training:
                attack.set_model_training_mode(model_training=True, batchnorm_training=True, dropout_training=True)
            labels = y
            if target is not None:
                attack.set_mode_targeted_by_label(quiet=True)
                labels = target
            x_adv = attack(x, labels).detach()
        if self.spec.minimal_norm:  # torchattacks minimises the norm, unbounded by eps: the adapter projects
            return self.threat.project(x_adv, x)
        return self.threat.clamp_slop(x_adv, x)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        for denom in (255,):
            if abs(value * denom - round(value * denom)) < 1e-9 and value < 1 and round(value * denom) > 0:
                return f"{round(value * denom)}/{denom}"
        return f"{value:g}"
    return repr(value)


def _docstring(spec: EntrySpec, version: str) -> str:
    lines = [
        f"{spec.title} (torchattacks.{spec.toolkit_class}, torchattacks {version}).",
        "",
        f"Paper: {spec.paper}.",
        f"Norm(s): {', '.join(spec.norms)}; eps from the ThreatModel ([0, 1] pixel units)"
        + (" (not a torchattacks parameter: the adapter projects the result into the eps ball)."
           if not spec.takes_eps else "."),
    ]
    if spec.minimal_norm:
        lines.append(
            "Minimal-norm; the adapter projects the result into the eps ball (and the box), so this entry is "
            "an eps-bounded attack."
        )
    if spec.note:
        lines.append(spec.note)
    lines += ["", "Parameters (keyword-only; robustreg name -> torchattacks keyword, default):"]
    for p in spec.params:
        unit = f", {p.unit}" if p.unit else ""
        lines.append(f"    {p.name} -> {p.toolkit or p.name} ({p.allowed()}; default {_fmt(p.default)}{unit}): {p.doc}")
    seed_doc = "also torchattacks' own `seed`" if spec.takes_seed else "seeds torch's RNG inside a fork_rng"
    lines += [
        f"    seed (default None): int seed; {seed_doc}; torch's global RNG is restored afterwards.",
        "    eval_mode (default True): attack the model in eval mode (its mode is restored afterwards).",
        "",
        "Inputs: float N x C x H x W in [0, 1], int64 labels.",
        "",
        "Example::",
        "",
        "    reg = robustreg.Registry.create()",
        f"    attack = reg.build_attack('torchattacks:{spec.name}', ThreatModel('{spec.norms[0]}', 0.3), seed=0)",
        "    x_adv = attack(model, x, y)",
    ]
    return "\n".join(lines)


def make_entry(spec: EntrySpec) -> type[TorchattacksAttack]:
    """The Attack subclass registered as ``torchattacks:<spec.name>``."""
    version = toolkit_version()
    info = AttackInfo(
        norms=spec.norms,
        kind=spec.kind,
        targeted=spec.targeted,
        single_step=spec.single_step,
        randomized=spec.randomized,
        source=f"torchattacks {version} ({spec.toolkit_class}); {spec.paper}",
        toolkit=TOOLKIT,
        summary=spec.title,
    )
    namespace: Mapping[str, Any] = {
        "__doc__": _docstring(spec, version),
        "__module__": __name__,
        "__qualname__": f"Torchattacks{spec.toolkit_class}",
        "name": f"{TOOLKIT}:{spec.name}",
        "info": info,
        "spec": spec,
        "params": ParamSet(spec.params),
        "implied": dict(spec.implied),
    }
    return type(f"Torchattacks{spec.toolkit_class}", (TorchattacksAttack,), dict(namespace))
