"""What the registry holds: one spec per registered attack, defense, model, dataset and command.

A spec is an immutable record of the entry (its factory, what it is, which plugin registered it,
its declared parameters with the registration's defaults applied) and builds the entry by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import Any

from ..attack import Attack, AttackInfo
from ..defense import Defense, DefenseInfo
from ..errors import MissingPackageError
from ..params import ParamSet, canonical_names
from ..threat import ThreatModel

__all__ = ["AttackConfig", "AttackSpec", "CheckSpec", "CommandSpec", "DatasetSpec", "DefenseSpec", "ModelSourceSpec",
           "ModelSpec", "RemedySpec", "summary_of", "validated"]


def validated(name: str, params: ParamSet, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against ``params`` (errors name the registered entry), not filled with defaults; a
    toolkit's name of a parameter (``Param.toolkit``) is read as the declared name."""
    values = canonical_names(params, name, values)
    resolved = params.resolve(name, values)
    return {key: resolved[key] for key in values}


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack.  ``params``: its declaration with the registration's ``defaults`` applied.

    ``demo``: part of the default attack set of ``robustreg evaluate`` when no ``--attacks`` is given.
    """

    name: str
    factory: Callable[..., Attack]
    info: AttackInfo
    plugin: str
    summary: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    same_as: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    params: ParamSet = field(default_factory=ParamSet)
    demo: bool = False

    def build(self, threat: ThreatModel, **params: Any) -> Attack:
        """Build the attack for ``threat`` with ``defaults`` updated by ``params`` (validated first)."""
        return self.configure(params).build(threat)

    def configure(self, params: Mapping[str, Any],
                  aliases: Mapping[str, Iterable[str]] | None = None) -> AttackConfig:
        """The attack's resolved configuration: the registration's ``defaults`` updated by ``params`` (each key
        under its declared name, ``aliases`` as :func:`robustreg.params.canonical_name` reads them), validated
        here, once; :meth:`AttackConfig.build` then only builds."""
        given = canonical_names(self.params, self.name, params, aliases)
        merged = {**self.defaults, **given}
        resolved = self.params.resolve(self.name, merged)
        return AttackConfig(self, MappingProxyType({key: resolved[key] for key in merged}))

    def resolve(self, **params: Any) -> dict[str, Any]:
        """Every parameter's effective value when built with ``params`` (declared defaults filled in)."""
        return self.params.resolve(self.name, params)


@dataclass(frozen=True)
class AttackConfig:
    """One attack's parameters resolved once (:meth:`AttackSpec.configure`): the registered entry and the
    keyword arguments its factory gets (the registration's defaults, then the caller's values, under their
    declared names, validated).  Immutable; building it for a threat model is pure."""

    spec: AttackSpec
    values: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def build(self, threat: ThreatModel) -> Attack:
        """The attack for ``threat``, built with :attr:`values` (nothing merged or validated again here)."""
        attack = self.spec.factory(threat, **self.values)
        if not isinstance(attack, Attack):
            raise TypeError(f"the factory of attack {self.spec.name!r} (plugin {self.spec.plugin!r}) returned "
                            f"{type(attack).__name__}, not a robustreg.Attack")
        return attack

    def resolved(self) -> dict[str, Any]:
        """Every declared parameter's value (the declared defaults filled in where :attr:`values` has none)."""
        return {**self.spec.params.defaults(), **self.values}


@dataclass(frozen=True)
class DefenseSpec:
    """A registered defense.  ``params``: its declaration with the registration's ``defaults`` applied."""

    name: str
    factory: Callable[..., Defense]
    info: DefenseInfo
    plugin: str
    summary: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: ParamSet = field(default_factory=ParamSet)

    def build(self, **params: Any) -> Defense:
        """Build the defense with ``defaults`` updated by ``params`` (validated first)."""
        defense = self.factory(**{**self.defaults, **validated(self.name, self.params, params)})
        if not isinstance(defense, Defense):
            raise TypeError(f"the factory of defense {self.name!r} (plugin {self.plugin!r}) returned "
                            f"{type(defense).__name__}, not a robustreg.Defense")
        return defense

    def resolve(self, **params: Any) -> dict[str, Any]:
        return self.params.resolve(self.name, params)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., Any]
    plugin: str
    summary: str = ""
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None

    def build(self, **params: Any) -> Any:
        return self.factory(**params)


@dataclass(frozen=True)
class ModelSourceSpec:
    """A registered model source: a model spec ``PREFIX:REST`` is built by ``builder(REST, **params)``.

    ``requires``: the distributions the builder imports (an optional extra); a missing one is reported
    before building, as one line with ``install``.  ``loads_weights``: the builder reads ``weights=`` itself
    (a checkpoint layout of its own) instead of :func:`robustreg.models.load_checkpoint`.
    """

    name: str
    builder: Callable[..., Any]
    plugin: str
    summary: str = ""
    requires: tuple[str, ...] = ()
    install: str = ""
    loads_weights: bool = False

    def missing(self) -> list[str]:
        """The required distributions that are not installed (by their metadata, not by a module on the path:
        a folder another package bundles under the same name is not the distribution)."""
        out = []
        for dist in self.requires:
            try:
                metadata.distribution(dist)
            except metadata.PackageNotFoundError:
                out.append(dist)
        return out

    def build(self, rest: str, **params: Any) -> Any:
        missing = self.missing()
        if missing:
            hint = self.install or "pip install " + " ".join(missing)
            raise MissingPackageError(f"model source {self.name!r} needs {', '.join(missing)}, which is not "
                                      f"installed: {hint}")
        if not rest.strip():
            raise ValueError(f"model spec {self.name + ':'!r} names no model after {self.name + ':'!r} "
                             f"({self.summary or 'see robustreg list model_sources'})")
        return self.builder(rest.strip(), **params)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]
    plugin: str
    summary: str = ""


@dataclass(frozen=True)
class AnalysisSpec:
    """A registered analysis, the subcommand ``robustreg analyze NAME``: ``configure(parser)`` adds its
    arguments, ``run(args)`` computes it and returns a :class:`robustreg.analysis.AnalysisOutput`.
    ``distributed``: under torchrun it shares its work over the ranks itself (the others run in one process)."""

    name: str
    configure: Callable[[Any], None]
    run: Callable[[Any], Any]
    plugin: str
    summary: str = ""
    distributed: bool = False


@dataclass(frozen=True)
class CheckSpec:
    """A registered automatic check: ``check(ctx) -> (status, message)``; ``doc``: where its explanation
    is (a URL or ``path#anchor``)."""

    name: str
    check: Callable[[Any], tuple[str, str]]
    plugin: str
    summary: str = ""
    doc: str = ""


@dataclass(frozen=True)
class RemedySpec:
    """A registered remedy: ``run(ctx)`` attacks what a warning check says the evaluation missed.
    ``answers``: the names of the checks whose warnings it answers; ``cost``: about how many forward +
    backward passes per sample its first attack spends at each eps (cheaper remedies run first)."""

    name: str
    run: Callable[[Any], None]
    answers: tuple[str, ...]
    plugin: str
    summary: str = ""
    cost: float = 0.0


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.  ``flippable``: horizontal flips are a valid augmentation (not digits).
    ``augment``: the trainer's default (``augment: null``) augments it (random crop, flip where flippable);
    False for MNIST, which paper 000 (Na et al. 2018, section 5) and Madry et al. train un-augmented."""

    name: str
    loader: Callable[..., Any]
    plugin: str
    summary: str = ""
    needs_root: bool = False
    flippable: bool = False
    augment: bool = True

    def load(self, split: str = "test", root: str | None = None) -> Any:
        return self.loader(split, root)


def summary_of(obj: Any, given: str | None) -> str:
    if given:
        return given
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""
