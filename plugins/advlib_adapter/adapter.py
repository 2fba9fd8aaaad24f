"""The generic adv-lib adapter: one robustreg Attack subclass per adv-lib attack function.

adv-lib (Jérôme Rony's ``adv_lib``) offers its attacks as functions ``attack(model, inputs, labels, ...)
-> adv_inputs``.  Each entry is an :class:`EntrySpec` (which function, which of our parameter names map
to which of its keywords, with adv-lib's own defaults); :func:`make_entry` turns a spec into an
:class:`~robustreg.Attack` subclass with a generated docstring.  adv-lib is imported only when an
attack runs, never when the plugin registers.

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

import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import torch
from torch import nn

from robustreg import Attack, AttackInfo, Param, ParamSet, draw_seed, seeded_global_rngs

__all__ = ["EntrySpec", "AdvlibAttack", "import_advlib", "make_entry", "toolkit_version"]

TOOLKIT = "advlib"
DISTRIBUTION = "adv-lib"
#: adv-lib's spelling of each norm
NORM_VALUES: Mapping[str, float] = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}
_INSTALL = "pip install adv-lib visdom"


def toolkit_version() -> str:
    """adv-lib's installed version, read from its metadata (does not import it)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "not installed"


def import_advlib(entry: str) -> Any:
    """``adv_lib.attacks``, or a one-line ImportError saying what to install."""
    try:
        with warnings.catch_warnings():  # adv-lib's own use of distutils' LooseVersion: noise for its users
            warnings.filterwarnings("ignore", message="distutils Version classes are deprecated",
                                    category=DeprecationWarning)
            return importlib.import_module("adv_lib.attacks")
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "adv_lib"
        raise ImportError(f"{entry} needs the adv-lib package (and visdom, which adv-lib imports); "
                          f"{missing} could not be imported: {_INSTALL}") from None


@dataclass(frozen=True)
class EntrySpec:
    """How one registry entry maps onto one adv-lib attack function."""

    name: str  # the part after "advlib:"
    function: str  # in adv_lib.attacks, e.g. "pgd_linf"
    title: str  # one line: what it does
    paper: str  # title, year, arXiv id
    norms: tuple[str, ...]
    params: tuple[Param, ...] = ()  # ``toolkit`` = adv-lib's keyword where it differs from ours
    eps_keyword: str | None = "eps"  # adv-lib's keyword for eps; None: the function takes no eps
    takes_norm: bool = False  # the function takes ``norm`` (a float)
    targeted: bool = True  # the function takes ``targeted`` (labels are then the targets)
    randomized: bool = False
    minimal_norm: bool = False  # minimises the norm, unbounded by eps: the adapter projects into the ball
    single_step: bool = False
    fixed: Mapping[str, Any] = field(default_factory=dict)  # keywords the adapter always passes
    note: str = ""
    #: for ``robustreg compare``: our parameters the function does not take but runs as; ``...``: does
    #: not apply to what it does (see :mod:`robustreg.comparison_params`)
    implied: Mapping[str, Any] = field(default_factory=dict)


def _work_dtype(model: nn.Module, x: torch.Tensor) -> torch.dtype:
    """The dtype adv-lib must run in: the model's first floating parameter's, else the input's."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return x.dtype


class AdvlibAttack(Attack):
    """Base of every ``advlib:*`` entry; subclasses are made by :func:`make_entry`.

    ``params`` is ``ParamSet(spec.params)``; every declared parameter goes to the adv-lib function under
    its ``toolkit`` name (else its own).  A default of None is adv-lib's own default (None), so it is passed too.
    """

    spec: ClassVar[EntrySpec]
    implied: ClassVar[Mapping[str, Any]] = {}
    #: the toolkit minimises the norm without bounding it by eps; the adapter projects into the ball
    minimal_norm: ClassVar[bool] = False

    @classmethod
    def toolkit_versions(cls) -> dict[str, str]:
        """adv-lib's distribution and version, for the report's environment."""
        return {DISTRIBUTION: toolkit_version()}

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

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attacks = import_advlib(self.label())
        function = getattr(attacks, self.spec.function)
        seed = self.seed if self.seed is not None else draw_seed(generator)
        kwargs = self.toolkit_kwargs(targeted=target is not None)
        labels = y if target is None else target
        inputs = x.to(_work_dtype(model, x))
        with seeded_global_rngs(seed, x.device):
            x_adv = function(model, inputs, labels, **kwargs).detach().to(x.dtype)
        if self.minimal_norm:  # adv-lib minimises the norm, unbounded by eps: the adapter projects
            return self.threat.project(x_adv, x)
        return self.threat.clamp_slop(x_adv, x)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _docstring(spec: EntrySpec, version: str) -> str:
    lines = [
        f"{spec.title} (adv_lib.attacks.{spec.function}, adv-lib {version}).",
        "",
        f"Paper: {spec.paper}.",
        f"Norm(s): {', '.join(spec.norms)}; eps from the ThreatModel ([0, 1] pixel units; the box must be [0, 1]).",
    ]
    if spec.minimal_norm:
        lines.append(
            "Minimal-norm: adv-lib returns the smallest adversarial point it found (the clean input where it found "
            "none), unbounded by eps; the adapter projects it into the eps ball (and the box), so this entry is an "
            "eps-bounded attack and a sample whose minimal perturbation exceeds eps is usually not adversarial "
            "after the projection."
        )
    if spec.note:
        lines.append(spec.note)
    lines += ["", "Parameters (keyword-only; robustreg name -> adv-lib keyword, default):"]
    for p in spec.params:
        unit = f", {p.unit}" if p.unit else ""
        lines.append(f"    {p.name} -> {p.toolkit or p.name} ({p.allowed()}; default {_fmt(p.default)}{unit}): {p.doc}")
    lines += [
        "    seed (default None): int seed of torch's global RNG inside a fork_rng (restored afterwards).",
        "    eval_mode (default True): attack the model in eval mode (its mode is restored afterwards).",
        "",
        "Inputs: float N x C x H x W in [0, 1], int64 labels.",
        "",
        "Example::",
        "",
        "    reg = robustreg.Registry.create()",
        f"    attack = reg.build_attack('advlib:{spec.name}', ThreatModel('{spec.norms[0]}', 0.3), seed=0)",
        "    x_adv = attack(model, x, y)",
    ]
    return "\n".join(lines)


def make_entry(spec: EntrySpec, check_config: Any = None) -> type[AdvlibAttack]:
    """The Attack subclass registered as ``advlib:<spec.name>``.

    ``check_config(self)``: optional cross-parameter checks run when an entry is built (one-line errors).
    """
    version = toolkit_version()
    info = AttackInfo(
        norms=spec.norms,
        targeted=spec.targeted,
        single_step=spec.single_step,
        randomized=spec.randomized,
        source=f"adv-lib {version} ({spec.function}); {spec.paper}",
        toolkit=TOOLKIT,
        summary=spec.title,
    )
    qualname = "Advlib" + "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_"))
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
    if check_config is not None:
        namespace["check_config"] = check_config
    return type(qualname, (AdvlibAttack,), namespace)
