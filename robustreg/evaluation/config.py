"""Plan: what one evaluation runs (EvalConfig, Mode) and the grid it resolves to (AttackPlan, Plan).

:class:`EvalConfig` holds every option of :func:`robustreg.evaluation.evaluate` and checks them when
it is made; :func:`make_plan` turns the attack list and the eps list into a :class:`Plan` whose
attacks are looked up and built once at the smallest eps, so an unknown name, an unsupported norm or
a bad parameter fails before any work.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import torch

from ..attack import Attack
from ..checks import check_names
from ..options import with_options
from ..params import canonical_names
from ..plugin_api import RobustregDeprecationWarning
from ..registry import Registry
from ..registry.specs import AttackConfig
from ..runtime import SpeedOptions
from ..threat import ThreatModel, as_eps, canonical_norm
from .targets import check_attacks_take_targets, check_targeted

__all__ = ["ADAPTIVE_BUDGET", "AttackPlan", "EvalConfig", "Mode", "Plan", "attack_config", "attack_params",
           "eps_values", "make_plan", "mode_option", "plan_attacks"]

#: forward + backward passes per sample the remedies of ``adaptive=True`` may spend at each eps by default
ADAPTIVE_BUDGET = 5000


class Mode(str, Enum):
    """How the attacks of one eps share the points.

    ``CASCADE`` (AutoAttack-style): each attack runs on the points still standing, so an attack's
    robust accuracy is cumulative.  ``INDEPENDENT``: every attack runs on all clean-correct points,
    so its robust accuracy is standalone.  The value is what the report's ``"mode"`` says.
    """

    CASCADE = "cascade"
    INDEPENDENT = "independent"

    @classmethod
    def coerce(cls, value: Mode | str) -> Mode:
        """A Mode from a Mode or its value ("cascade" / "independent")."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"mode must be {' or '.join(repr(m.value) for m in cls)}, got {value!r}") from None


def mode_option(options: Mapping[str, Any], caller: str, stacklevel: int = 4) -> dict[str, Any]:
    """``options`` with the deprecated ``early_exit`` (bool) read as ``mode`` (True: CASCADE, False:
    INDEPENDENT) and a RobustregDeprecationWarning (a DeprecationWarning) naming ``caller`` and the fix (at
    ``stacklevel``: 4 names the caller of a function that reads its options through a ``from_options``); both
    given and disagreeing: ValueError."""
    out = dict(options)
    if "early_exit" not in out:
        return out
    early_exit = out.pop("early_exit")
    if not isinstance(early_exit, bool):
        raise ValueError(f"early_exit must be True or False, got {early_exit!r}; pass mode=Mode.CASCADE or "
                         f"Mode.INDEPENDENT")
    mode = Mode.CASCADE if early_exit else Mode.INDEPENDENT
    warnings.warn(f"{caller}: early_exit={early_exit} is deprecated; pass mode=Mode.{mode.name} "
                  f"(mode={mode.value!r})", RobustregDeprecationWarning, stacklevel=stacklevel)
    if "mode" in out and Mode.coerce(out["mode"]) is not mode:
        raise ValueError(f"early_exit and mode={out['mode']!r} disagree; pass only mode")
    out["mode"] = mode
    return out


@dataclass(frozen=True)
class EvalConfig:
    """Every option of one evaluation (see :func:`robustreg.evaluation.evaluate` for each one).

    ``amp``, ``channels_last``, ``compile`` and ``cudnn_benchmark`` are :class:`robustreg.runtime.SpeedOptions`
    (:attr:`speed`); a bad value is a ValueError naming the option.

    ``mode`` also takes its value as text; ``EvalConfig.from_options(config, **options)`` also reads
    the deprecated ``early_exit=True/False`` (cascade / independent), with a DeprecationWarning.
    """

    norm: str = "linf"
    n: int | None = None
    batch_size: int = 256
    device: str | torch.device | None = None  # None: where the model is (runtime.resolve_device)
    seed: int | None = 0
    mode: Mode = Mode.CASCADE
    out: str | os.PathLike[str] | None = None
    state_path: str | os.PathLike[str] | None = None
    keep_state: bool = False
    registry: Any = None
    progress: bool = True
    params: Mapping[str, Mapping[str, Any]] | None = None
    model_info: Mapping[str, Any] | None = None
    data_info: Mapping[str, Any] | None = None
    no_check: Sequence[str] = ()
    distributed: bool = False
    amp: str = "off"
    channels_last: bool = False
    compile: bool | str = False
    cudnn_benchmark: bool = False
    adaptive: bool = False
    adaptive_budget: float = ADAPTIVE_BUDGET
    output: str | int | None = None  # the logits in a dict / tuple output (robustreg.models.outputs)
    targeted: str | None = None  # None: untargeted; "random", "least-likely", "all-classes" (.targets)
    save_adv: str | os.PathLike[str] | None = None  # a folder keeping every cell's adversarial points (.adversarial)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.coerce(self.mode))
        object.__setattr__(self, "compile", self.speed.compile)  # checks all four; True -> "inductor"
        # the names are checked against the registry's checks in make_plan (a plugin may add checks)
        object.__setattr__(self, "no_check", tuple(sorted(check_names(self.no_check, known=None))))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        object.__setattr__(self, "norm", canonical_norm(self.norm))  # "Linf", np.inf, ... -> "linf" (a ValueError)
        if not isinstance(self.adaptive, bool):
            raise ValueError(f"adaptive must be True or False, got {self.adaptive!r}")
        check_targeted(self.targeted)
        budget = self.adaptive_budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < float("inf"):
            raise ValueError(f"adaptive_budget must be a positive finite number of forward + backward passes per "
                             f"sample, got {budget!r}")

    @classmethod
    def from_options(cls, config: EvalConfig | None = None, **options: Any) -> EvalConfig:
        """``config`` (default: all defaults) with ``options`` replacing its fields.

        ``early_exit`` (bool), the deprecated name of ``mode``, is read as it: True -> CASCADE, False ->
        INDEPENDENT, with a DeprecationWarning.  An unknown option raises TypeError, as an unknown keyword
        argument would.
        """
        return with_options(cls, config, mode_option(options, "evaluate()"), caller="evaluate()")

    @property
    def speed(self) -> SpeedOptions:
        """The speed options (``amp``, ``channels_last``, ``compile``, ``cudnn_benchmark``) as one value."""
        return SpeedOptions(self.amp, self.channels_last, self.compile, self.cudnn_benchmark)

    @property
    def out_dir(self) -> Path | None:
        return Path(self.out) if self.out is not None else None

    @property
    def state_file(self) -> Path | None:
        """``state_path``, else ``out/state.pt`` when ``out`` is given, else None (no state saved)."""
        if self.state_path is not None:
            return Path(self.state_path)
        out_dir = self.out_dir
        return out_dir / "state.pt" if out_dir is not None else None


@dataclass(frozen=True)
class AttackPlan:
    """One attack of the grid: its registry name, its parameters and the label used in the report."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def _attack_entry(item: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) \
            and isinstance(item[1], Mapping):
        return item[0], dict(item[1])
    raise ValueError(f"attacks entries must be a name or a (name, params dict) pair, got {item!r}")


def plan_attacks(attacks: Sequence[Any], params: Mapping[str, Mapping[str, Any]] | None) -> list[AttackPlan]:
    """The attack list as plans: ``params[name]`` merged under each entry's own, labels "name", "name#2", ..."""
    if isinstance(attacks, (str, bytes)) or not isinstance(attacks, Sequence) or len(attacks) == 0:
        raise ValueError(f"attacks must be a non-empty list of names or (name, params) pairs, got {attacks!r}")
    extra = dict(params or {})
    entries = [_attack_entry(item) for item in attacks]
    unknown = set(extra) - {name for name, _ in entries}
    if unknown:
        raise ValueError(f"params given for attack(s) not in the list: {', '.join(sorted(unknown))}")
    counts: dict[str, int] = {}
    plans = []
    for name, own in entries:
        counts[name] = counts.get(name, 0) + 1
        label = name if counts[name] == 1 else f"{name}#{counts[name]}"
        plans.append(AttackPlan(name, {**dict(extra.get(name, {})), **own}, label))
    return plans


def eps_values(eps: Any, norm: str) -> list[float]:
    """One eps or a list -> the sorted distinct values, each checked against the norm's range.

    Each value may be a number, text (``"8/255"``) or a 0-d tensor / numpy scalar (:func:`robustreg.threat.as_eps`).
    """
    values = [eps] if _one_eps(eps) else _listed(eps)
    if not values:
        raise ValueError("eps must hold at least one value")
    return sorted({ThreatModel(norm, as_eps(value)).eps for value in values})  # validates range for the norm


def _one_eps(eps: Any) -> bool:
    return isinstance(eps, (str, int, float)) or getattr(eps, "ndim", None) == 0


def _listed(eps: Any) -> list[Any]:
    try:
        return list(eps)
    except TypeError:
        raise ValueError(f"eps must be a number, a fraction like '8/255', a 0-d tensor or a list of them, "
                         f"got {type(eps).__name__}") from None


def attack_params(registry: Any, plan: AttackPlan, seed: int | None) -> dict[str, Any]:
    """The parameters the attack is built with: the registry's defaults, then the plan's, then the seed
    (resolved and validated once, :meth:`robustreg.Registry.attack_config`)."""
    return dict(attack_config(registry, plan, seed).values)


def attack_config(registry: Any, plan: AttackPlan, seed: int | None) -> AttackConfig:
    """The attack's configuration resolved once: the registry's defaults, the plan's values, then ``seed``
    unless the plan sets one."""
    params = dict(plan.params)
    params.setdefault("seed", seed)
    try:
        return registry.attack_config(plan.name, params)
    except TypeError as exc:  # an unknown name (UnknownParamError is a TypeError): say which attack list entry
        raise TypeError(f"attack {plan.name!r} rejected its parameters {plan.params!r}: {exc}") from exc


class Buildable(Protocol):
    """What a plan builds an attack from: a :class:`robustreg.AttackConfig` (its parameters resolved once), or an
    attack a caller built (:func:`robustreg.evaluation.craft.craft_attack`)."""

    @property
    def values(self) -> Mapping[str, Any]: ...

    def build(self, threat: ThreatModel) -> Attack: ...


@dataclass(frozen=True)
class Plan:
    """The resolved grid: attacks (in run order) x eps (ascending) under one norm, seed and mode.

    ``configs``: each attack's parameters resolved once (:class:`robustreg.AttackConfig`, in the order of
    ``plans``; any :class:`Buildable`); :meth:`build` only builds them for an eps."""

    plans: list[AttackPlan]
    eps: list[float]
    norm: str
    seed: int | None
    mode: Mode
    batch_size: int
    registry: Any
    targeted: str | None = None  # the targeted mode (robustreg.evaluation.targets), None: untargeted
    configs: tuple[Buildable, ...] = ()

    def __post_init__(self) -> None:
        if not self.configs:  # a Plan made by hand: resolve here, once
            object.__setattr__(self, "configs", tuple(attack_config(self.registry, p, self.seed) for p in self.plans))
        if len(self.configs) != len(self.plans):
            raise ValueError(f"configs must hold one AttackConfig per plan ({len(self.plans)}), "
                             f"got {len(self.configs)}")

    def cells(self) -> list[tuple[int, int]]:
        """(eps index, attack index) of every cell, in run (and report) order."""
        return [(e, a) for e in range(len(self.eps)) for a in range(len(self.plans))]

    def params(self, a: int) -> dict[str, Any]:
        """Attack ``a``'s parameters as its factory gets them (registered defaults, the plan's, the seed)."""
        return dict(self.configs[a].values)

    def threat(self, e: int) -> ThreatModel:
        return ThreatModel(self.norm, self.eps[e])

    def build(self, e: int, a: int) -> Attack:
        """Attack ``a`` built at eps ``e`` from its resolved configuration (nothing looked up or merged again)."""
        plan = self.plans[a]
        try:
            return self.configs[a].build(self.threat(e))
        except TypeError as exc:
            raise TypeError(f"attack {plan.name!r} rejected its parameters {plan.params!r}: {exc}") from exc


def make_plan(attacks: Sequence[Any], eps: Any, config: EvalConfig) -> Plan:
    """Plan the grid and fail early: every attack is looked up, checked for the norm, its parameters resolved
    (merged and validated, once) and built once."""
    values = eps_values(eps, config.norm)
    registry = config.registry if config.registry is not None else Registry.create()
    aliases = registry.param_aliases()  # a toolkit's name (alpha) is read as ours (step_size), in the report too
    plans = [replace(p, params=canonical_names(registry.attack(p.name).params, p.name, p.params, aliases))
             for p in plan_attacks(attacks, config.params)]
    check_names(config.no_check, [spec.name for spec in registry.checks()])  # an unknown name: ValueError
    check_attacks_take_targets(config.targeted, [p.name for p in plans], registry, config.norm)
    for attack in plans:
        spec = registry.attack(attack.name)
        if config.norm not in spec.info.norms:
            raise ValueError(f"attack {attack.name!r} supports norm(s) {', '.join(spec.info.norms)}, "
                             f"got norm={config.norm!r}")
    configs = tuple(attack_config(registry, p, config.seed) for p in plans)
    plan = Plan(plans, values, config.norm, config.seed, config.mode, config.batch_size, registry, config.targeted,
                configs)
    for a in range(len(plans)):
        plan.build(0, a)  # the factory's own checks (setup) fail here, before any work
    return plan
