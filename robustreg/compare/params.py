"""What ``compare`` gives each toolkit: the native attack's full configuration, mapped to each entry.

:func:`native_config` resolves the native attack's declaration with the given values (an unknown
name is an :class:`~robustreg.UnknownParamError` with close matches) and turns a ``None`` that
means "computed" into its number where the native attack says what it computes: an attack with an
``effective_<name>`` attribute (PGD's ``effective_step_size``, ``None = eps / 4``) supplies it.

:func:`map_config` gives that configuration to one toolkit entry:

- a parameter the entry declares (our vocabulary; the entry's ``Param.toolkit`` says the toolkit's
  keyword) is passed with the native value; a value its declaration refuses (a loss it lacks) makes
  the parameter *missing*;
- a parameter the entry does not declare but whose value it runs anyway is *implied*: the entry
  says so in its class attribute ``implied`` (``{"restarts": 1, "loss": "ce"}``: one run, on the
  cross-entropy); the value ``...`` marks a parameter that does not apply to what the entry does
  (``kappa``, the cap of the C&W margin, for an entry that ascends the cross-entropy);
- any other parameter is *missing*: the entry runs without it, and its row is not the same attack;
- the values the entry's ``same_as`` selects (``{"loss": "dlr"}``) are passed too (a native value
  that contradicts one is missing);
- parameters only the toolkit has (ART's ``batch_size``) keep the entry's defaults.

The core knows no toolkit here either: everything comes from the declarations.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..attack import COMMON_PARAMS, Attack
from ..params import ParamError
from ..registry import AttackSpec
from ..threat import ThreatModel

__all__ = ["Mapped", "map_config", "map_given", "native_config", "toolkit_view"]

COMMON = frozenset(COMMON_PARAMS.names())


@dataclass
class Mapped:
    """One row's configuration.  ``kwargs``: what the entry is built with (our names);
    ``params``: what the row runs, in our vocabulary; ``toolkit_params``: the toolkit's names and
    values; ``missing``: our names it cannot take; ``implied``: our names it runs without taking."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    toolkit_params: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    implied: list[str] = field(default_factory=list)

    @property
    def same_attack(self) -> bool:
        return not self.missing


def native_config(spec: AttackSpec, threat: ThreatModel, given: Mapping[str, Any]) -> dict[str, Any]:
    """The native attack's every parameter (less ``seed`` / ``eval_mode``), ``given`` over its defaults,
    each ``None`` replaced by the attack's ``effective_<name>`` where it has one."""
    config = {k: v for k, v in spec.resolve(**given).items() if k not in COMMON}
    if any(v is None for v in config.values()):
        built = spec.build(threat, **given)
        for key, value in config.items():
            effective = getattr(built, f"effective_{key}", None) if value is None else None
            if effective is not None:
                config[key] = effective
    return config


def _takes(spec: AttackSpec) -> tuple[set[str], bool]:
    """The names an entry takes, and whether it takes any name (an undeclared ``**kwargs`` factory)."""
    declared = spec.params
    if not declared and isinstance(spec.factory, type) and issubclass(spec.factory, Attack):
        declared = spec.factory.declaration()
    if declared:
        return set(declared.names()), False
    try:
        sig = inspect.signature(spec.factory)
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _accepts(spec: AttackSpec, key: str, value: Any) -> bool:
    names, var_kw = _takes(spec)
    if key not in names and not (var_kw and key in spec.defaults):
        return False
    if key in spec.params:
        try:
            spec.params[key].validate(spec.name, value)
        except ParamError:
            return False
    return True


def toolkit_view(spec: AttackSpec, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's every own parameter under the toolkit's name (``Param.toolkit``, else its own) with
    the value it is built with.  Where several of our names set one toolkit keyword (ART's aliases),
    a later ``None`` does not replace an earlier value."""
    if not spec.params:
        return {k: v for k, v in {**spec.defaults, **kwargs}.items() if k not in COMMON}
    values = spec.params.resolve(spec.name, {**spec.defaults, **kwargs})
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name in COMMON:
            continue
        key, value = p.toolkit or p.name, values[p.name]
        if value is None and key in out:
            continue
        out[key] = value
    return out


def map_config(spec: AttackSpec, config: Mapping[str, Any], selection: Mapping[str, Any]) -> Mapped:
    """The native ``config`` given to the entry ``spec`` (``selection``: its ``same_as`` values)."""
    implied: Mapping[str, Any] = getattr(spec.factory, "implied", None) or {}
    out = Mapped()
    for key, value in config.items():
        if key in selection:
            if selection[key] == value:
                out.params[key] = value
            else:
                out.missing.append(key)
        elif _accepts(spec, key, value):
            out.kwargs[key] = out.params[key] = value
        elif key in implied and (implied[key] is ... or implied[key] == value):
            out.implied.append(key)
            if implied[key] is not ...:
                out.params[key] = value
        else:
            out.missing.append(key)
    out.kwargs.update(selection)
    out.toolkit_params = toolkit_view(spec, out.kwargs)
    return out


def map_given(spec: AttackSpec, given: Mapping[str, Any], selection: Mapping[str, Any]) -> Mapped:
    """Without a native attack: the ``given`` values the entry takes, plus its ``same_as`` values."""
    out = Mapped()
    for key, value in given.items():
        if key in COMMON or _accepts(spec, key, value):
            out.kwargs[key] = value
        else:
            out.missing.append(key)
    out.kwargs.update(selection)
    out.params = {k: v for k, v in out.kwargs.items() if k not in COMMON}
    out.toolkit_params = toolkit_view(spec, out.kwargs)
    return out
