"""An entry's declared parameters, from what its plugin registered -- including the pre-1.1 forms.

Plugin API 1.1 wants every parameter declared (:mod:`robustreg.params`).  A plugin written before it
registers an Attack or Defense subclass that declares nothing and passes ``defaults={"steps": 10}``
(its ``__init__`` takes ``steps``), or a factory function with no declaration at all.  Until plugin
API 1.2 (:mod:`robustreg.plugin_api`) such an entry still loads: its undeclared defaults become
declared parameters typed by their values, with one :class:`RobustregDeprecationWarning` naming the
plugin, the entry and the declaration to write instead.  What cannot be declared from a value (None,
a list), and a default that a declaring entry does not declare, fail with the entry and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .attack import COMMON_PARAMS
from .params import Param, ParamSet
from .plugin_api import PLUGIN_API, UNDECLARED_DEFAULTS, UNDECLARED_FACTORY, PluginContractError

__all__ = ["declared", "inferred"]

# bool before int: True is an int too
_TYPES: tuple[tuple[type, str], ...] = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"))


def declared(kind: str, name: str, plugin: str, factory: Any, params: Any, defaults: Mapping[str, Any] | None,
             *, api: str = PLUGIN_API) -> ParamSet:
    """The entry's declaration (``params`` if given, else the factory's) with ``defaults`` applied.

    An entry that declares nothing of its own takes its undeclared ``defaults`` as declared parameters
    (deprecated, see the module docstring); ``api``: the plugin API version whose rules apply.
    """
    owner = f"plugin {plugin!r}, {kind} {name!r}"
    given = dict(defaults or {})
    base = _declaration(factory) if params is None else _as_set(params)
    if base is not None and (params is not None or _declares_own(factory)):
        return _with_defaults(owner, factory, base, given)
    base = base if base is not None else (COMMON_PARAMS if kind == "attack" else ParamSet())
    undeclared = {key: value for key, value in given.items() if key not in base}
    if undeclared:
        extra = ParamSet(inferred(owner, key, value) for key, value in undeclared.items())
        UNDECLARED_DEFAULTS.apply(owner, _fix(kind, name, factory, extra), api=api, stacklevel=3,
                                  used=f"defaults={undeclared!r} without declared params")
        base = extra + base
    elif _declaration(factory) is None:
        UNDECLARED_FACTORY.apply(owner, _fix(kind, name, factory, ParamSet()), api=api, stacklevel=3)
    return base.with_defaults(**given)


def inferred(owner: str, key: str, value: Any) -> Param:
    """The parameter ``key`` declared from its default ``value``: its type is the value's."""
    for cls, type_name in _TYPES:
        if isinstance(value, cls):
            return Param(key, type_name, value, f"declared from the plugin's defaults= ({type_name}, from its value)")
    optional = ", optional=True" if value is None else ""
    raise PluginContractError(
        f"{owner}: defaults={{{key!r}: {value!r}}} cannot be declared from its value (only bool, int, float "
        f"and str can); declare it: Param({key!r}, TYPE, {value!r}, 'what it does'{optional}) with TYPE one "
        "of int, float, bool, str, choice")


def _as_set(params: Any) -> ParamSet:
    return params if isinstance(params, ParamSet) else ParamSet(params)


def _declaration(factory: Any) -> ParamSet | None:
    declare = getattr(factory, "declaration", None)
    params = declare() if callable(declare) else getattr(factory, "params", None)
    return None if params is None else _as_set(params)


def _declares_own(factory: Any) -> bool:
    """The factory declares parameters of its own (not only those every attack takes)."""
    own = getattr(factory, "params", None)
    return own is not None and len(_as_set(own)) > 0


def _with_defaults(owner: str, factory: Any, decl: ParamSet, given: dict[str, Any]) -> ParamSet:
    """``decl`` with ``given`` as defaults; a name it does not declare is an error naming the entry."""
    for key in given:
        if key not in decl:
            where = f"{factory.__name__}.params" if isinstance(factory, type) else "params="
            raise PluginContractError(f"{decl.unknown_error(owner, key)}; declare {key!r} in {where} or drop "
                                      "it from defaults=")
    return decl.with_defaults(**given)


def _fix(kind: str, name: str, factory: Any, extra: ParamSet) -> str:
    """The declaration to write instead, with the parameters spelled out."""
    listed = ", ".join(f"robustreg.Param({p.name!r}, {p.type!r}, {p.default!r}, 'what it does')" for p in extra)
    if isinstance(factory, type):
        return (f"declare them: class {factory.__name__}: params = robustreg.ParamSet([{listed}]) "
                "(declared parameters become attributes; drop them from __init__ and defaults=)")
    common = " + robustreg.Attack.declaration()" if kind == "attack" else ""
    them = "them" if len(extra) else "its parameters"
    return f"declare {them}: registrar.add_{kind}({name!r}, ..., params=robustreg.ParamSet([{listed}]){common})"
