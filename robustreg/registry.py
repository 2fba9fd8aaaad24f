"""The plugin manager factory and name -> spec lookup.

``Registry.create()`` builds a fresh ``pluggy.PluginManager("robustreg")``: hook specs, then the
plugin names blocked by ``ROBUSTREG_DISABLE_PLUGINS=name,name``, then robustreg's own defaults
(models and datasets), then every entry point of the ``robustreg`` group (built-ins included), then
``check_pending()``.  It then calls the register hooks, each plugin with its own
:class:`Registrar`.  There is no module-level manager: every ``create()`` is independent.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .attack import Attack, AttackInfo
from .defense import Defense, DefenseInfo
from .params import ParamSet
from .threat import ThreatModel

__all__ = [
    "ENTRY_POINT_GROUP",
    "DISABLE_ENV",
    "AttackSpec",
    "CommandSpec",
    "DatasetSpec",
    "DefenseSpec",
    "DuplicateNameError",
    "ModelSpec",
    "PluginLoadError",
    "Registrar",
    "Registry",
    "RegistryError",
    "UnknownNameError",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "robustreg"
DISABLE_ENV = "ROBUSTREG_DISABLE_PLUGINS"
CORE_PLUGINS = ("robustreg.models", "robustreg.data")
KINDS = ("attacks", "defenses", "models", "datasets", "commands")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(:[a-z0-9][a-z0-9_.-]*)?$")


class RegistryError(Exception):
    """Base class of registry errors."""


class UnknownNameError(RegistryError, LookupError):
    """No entry of that name; the message lists close matches."""


class DuplicateNameError(RegistryError):
    """Two plugins registered the same name; the message names both."""


class PluginLoadError(RegistryError):
    """A plugin failed to import or to register (raised only in strict mode)."""


def _legacy(factory: Any) -> bool:
    """TEMPORARY (redesign in progress): a factory whose own parameters are not declared yet."""
    import inspect

    if isinstance(factory, type) and isinstance(getattr(factory, "params", None), ParamSet) and factory.params:
        return False
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    return any(p.name not in ("self", "threat", "seed", "eval_mode") for p in sig.parameters.values())


def _validated(name: str, params: ParamSet, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against ``params`` (errors name the registered entry), not filled with defaults."""
    if params is _LEGACY:
        return dict(values)
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
        return self.factory(threat, **{**self.defaults, **_validated(self.name, self.params, params)})

    def resolve(self, **params: Any) -> dict[str, Any]:
        """Every parameter's effective value when built with ``params`` (declared defaults filled in)."""
        return self.params.resolve(self.name, params)


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
        return self.factory(**{**self.defaults, **_validated(self.name, self.params, params)})

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
class CommandSpec:
    name: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]
    plugin: str
    summary: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.  ``flippable``: horizontal flips are a valid augmentation (not digits)."""

    name: str
    loader: Callable[..., Any]
    plugin: str
    summary: str = ""
    needs_root: bool = False
    flippable: bool = False

    def load(self, split: str = "test", root: str | None = None) -> Any:
        return self.loader(split, root)


_LEGACY = ParamSet()


def _declared(kind: str, name: str, plugin: str, factory: Any, params: Any,
              defaults: Mapping[str, Any] | None) -> ParamSet:
    """The entry's declaration: ``params`` if given, else the factory's ``declaration()``; ``defaults`` applied."""
    if params is None:
        declare = getattr(factory, "declaration", None)
        params = declare() if callable(declare) else getattr(factory, "params", None)
    if not isinstance(params, (ParamSet, list, tuple)) and _legacy(factory):
        return _LEGACY
    if params is None:
        raise TypeError(f"{kind} {name!r} of plugin {plugin!r} declares no parameters: give params=ParamSet([...]) "
                        "or register a class with a `params` declaration")
    declared = params if isinstance(params, ParamSet) else ParamSet(params)
    if not [p for p in declared if p.name not in ("seed", "eval_mode")] and _legacy(factory):
        return _LEGACY
    return declared.with_defaults(**dict(defaults or {}))


def _summary(obj: Any, given: str | None) -> str:
    if given:
        return given
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


class Registrar:
    """Passed to every register hook; collects one plugin's entries.

    Built-in plugins use it exactly as a third party would::

        @robustreg.hookimpl
        def robustreg_register_attacks(registrar):
            registrar.add_attack("my-attack", MyAttack)
    """

    def __init__(self, plugin: str, sink: dict[str, dict[str, Any]]) -> None:
        self.plugin = plugin
        self._sink = sink

    def _add(self, kind: str, spec: Any) -> None:
        if not isinstance(spec.name, str) or not _NAME.match(spec.name):
            raise ValueError(
                f"{kind[:-1]} name must be lower-case letters, digits, '-', '_' or '.', optionally "
                f"prefixed 'toolkit:', got {spec.name!r} (plugin {self.plugin!r})"
            )
        existing = self._sink[kind].get(spec.name)
        if existing is not None:
            raise DuplicateNameError(
                f"{kind[:-1]} {spec.name!r} is registered by both plugin {existing.plugin!r} and plugin "
                f"{self.plugin!r}; disable one with {DISABLE_ENV}={self.plugin}"
            )
        self._sink[kind][spec.name] = spec

    def add_attack(
        self,
        name: str,
        factory: Callable[..., Attack],
        *,
        info: AttackInfo | None = None,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        same_as: Mapping[str, Mapping[str, Any]] | None = None,
        params: ParamSet | None = None,
        demo: bool = False,
    ) -> None:
        """Register ``factory(threat, **params) -> Attack``; ``info`` defaults to ``factory.info``.

        ``params``: the declaration; defaults to ``factory.declaration()`` (an Attack subclass's
        ``params`` plus ``seed`` and ``eval_mode``).  ``defaults``: other default values, applied
        whenever the attack is built by name (and shown by ``robustreg list``); a caller's
        parameters override them.  ``demo``: run by ``robustreg evaluate`` when no attacks are given.
        ``same_as``: the common names
        this entry implements under a name of its own, each with the parameters that select it,
        for ``robustreg compare`` -- e.g. a toolkit's generic APGD registered as
        ``same_as={"apgd-ce": {"loss": "ce"}, "apgd-dlr": {"loss": "dlr"}}``.
        """
        info = info if info is not None else getattr(factory, "info", None)
        if not isinstance(info, AttackInfo):
            raise TypeError(f"attack {name!r} of plugin {self.plugin!r} needs an AttackInfo (info=...)")
        same_as = {key: dict(value) for key, value in (same_as or {}).items()}
        bad = [key for key in same_as if not isinstance(key, str) or not _NAME.match(key)]
        if bad:
            raise ValueError(f"same_as of attack {name!r} (plugin {self.plugin!r}) must map attack names to "
                             f"parameter dicts, got keys {bad!r}")
        declared = _declared("attack", name, self.plugin, factory, params, defaults)
        for key, value in same_as.items():
            _validated(f"same_as[{key!r}] of attack {name!r}", declared, value)
        self._add("attacks", AttackSpec(name, factory, info, self.plugin, _summary(factory, summary or info.summary),
                                        dict(defaults or {}), same_as, declared, bool(demo)))

    def add_defense(
        self,
        name: str,
        factory: Callable[..., Defense],
        *,
        info: DefenseInfo | None = None,
        summary: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        params: ParamSet | None = None,
    ) -> None:
        """Register ``factory(**params) -> Defense``; ``info`` defaults to ``factory.info``.

        ``params`` / ``defaults`` as for :meth:`add_attack` (the declaration defaults to ``factory.params``).
        """
        info = info if info is not None else getattr(factory, "info", DefenseInfo())
        declared = _declared("defense", name, self.plugin, factory, params, defaults)
        self._add("defenses", DefenseSpec(name, factory, info, self.plugin, _summary(factory, summary or info.summary),
                                          dict(defaults or {}), declared))

    def add_model(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        summary: str | None = None,
        num_classes: int | None = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        """Register ``factory(**params) -> nn.Module`` (an architecture or a zoo entry)."""
        self._add("models", ModelSpec(name, factory, self.plugin, _summary(factory, summary), num_classes, input_shape))

    def add_dataset(
        self, name: str, loader: Callable[..., Any], *, summary: str | None = None, needs_root: bool = False,
        flippable: bool = False,
    ) -> None:
        """Register ``loader(split, root) -> LabeledData``; ``needs_root``: the SPEC must be ``name:DIR``;
        ``flippable``: random horizontal flips are a valid training augmentation for it."""
        self._add("datasets", DatasetSpec(name, loader, self.plugin, _summary(loader, summary), needs_root,
                                          bool(flippable)))


    def add_command(
        self, name: str, configure: Callable[[Any], None], run: Callable[[Any], int], *, help: str = ""
    ) -> None:
        """Register a ``robustreg NAME`` subcommand: ``configure(parser)`` then ``run(args) -> int``."""
        self._add("commands", CommandSpec(name, configure, run, self.plugin, help))


def disabled_from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def make_plugin_manager(
    *,
    strict: bool = False,
    entry_points: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
    disabled: Iterable[str] | None = None,
) -> tuple[pluggy.PluginManager, list[tuple[str, str]]]:
    """Build a plugin manager; return it with ``[(plugin name, error)]`` for plugins that failed.

    ``plugins``: extra ``(name, module_or_object)`` pairs registered after the entry points (tests,
    notebooks).  ``disabled``: names to block; defaults to ``$ROBUSTREG_DISABLE_PLUGINS``.
    """
    pm = pluggy.PluginManager("robustreg")
    pm.add_hookspecs(hookspecs)
    for name in disabled_from_env() if disabled is None else set(disabled):
        pm.set_blocked(name)
    errors: list[tuple[str, str]] = []

    def fail(name: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if strict:
            raise PluginLoadError(f"plugin {name!r} failed to load: {message}") from exc
        errors.append((name, message))

    for modname in CORE_PLUGINS:
        if not pm.is_blocked(modname):
            pm.register(importlib.import_module(modname), name=modname)
    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not take the others down
                fail(ep.name, exc)
    for name, plugin in plugins:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    pm.check_pending()
    return pm, errors


class Registry:
    """All registered attacks, defenses, models and datasets, looked up by name.

    Build one with :meth:`create`; it is an ordinary object (no global state), so tests build as
    many as they like.
    """

    def __init__(self, pm: pluggy.PluginManager, errors: list[tuple[str, str]] | None = None,
                 *, strict: bool = False) -> None:
        self.plugin_manager = pm
        self.load_errors: list[tuple[str, str]] = list(errors or [])
        self._entries: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            caller = getattr(pm.hook, f"robustreg_register_{kind}")
            for impl in reversed(caller.get_hookimpls()):
                try:
                    impl.function(registrar=Registrar(impl.plugin_name, self._entries))
                except DuplicateNameError:
                    raise
                except Exception as exc:
                    if strict:
                        raise PluginLoadError(f"plugin {impl.plugin_name!r} failed to register {kind}: {exc}") from exc
                    self.load_errors.append((impl.plugin_name, f"{type(exc).__name__}: {exc}"))

    @classmethod
    def create(
        cls,
        *,
        strict: bool = False,
        entry_points: bool = True,
        plugins: Iterable[tuple[str, object]] = (),
        disabled: Iterable[str] | None = None,
    ) -> Registry:
        """Build a registry from the installed plugins (see :func:`make_plugin_manager`)."""
        pm, errors = make_plugin_manager(strict=strict, entry_points=entry_points, plugins=plugins, disabled=disabled)
        return cls(pm, errors, strict=strict)

    # --- lookup --------------------------------------------------------------------------
    def _get(self, kind: str, name: str) -> Any:
        entries = self._entries[kind]
        if name in entries:
            return entries[name]
        close = difflib.get_close_matches(name, list(entries), n=5, cutoff=0.5)
        close += [n for n in entries if n.split(":")[-1] == name and n not in close]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown {kind[:-1]} {name!r}{hint} (`robustreg list {kind}` shows all {len(entries)})"
        )

    def attack(self, name: str) -> AttackSpec:
        return self._get("attacks", name)

    def defense(self, name: str) -> DefenseSpec:
        return self._get("defenses", name)

    def model(self, name: str) -> ModelSpec:
        return self._get("models", name)

    def dataset(self, name: str) -> DatasetSpec:
        return self._get("datasets", name)

    def build_attack(self, name: str, threat: ThreatModel, **params: Any) -> Attack:
        return self.attack(name).build(threat, **params)

    def build_defense(self, name: str, **params: Any) -> Defense:
        return self.defense(name).build(**params)

    def entries(self, kind: str) -> Mapping[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        return dict(self._entries[kind])

    # --- listing -------------------------------------------------------------------------
    def list_attacks(
        self,
        pattern: str = "*",
        *,
        norm: str | None = None,
        toolkit: str | None = None,
        paper: str | None = None,
        kind: str | None = None,
    ) -> list[AttackSpec]:
        """Attacks whose name matches the fnmatch ``pattern`` and every filter given."""
        out = []
        for name in sorted(self._entries["attacks"]):
            spec = self._entries["attacks"][name]
            info = spec.info
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            if norm is not None and norm not in info.norms:
                continue
            if toolkit is not None and info.toolkit != toolkit:
                continue
            if paper is not None and (info.paper or "") != paper:
                continue
            if kind is not None and info.kind != kind:
                continue
            out.append(spec)
        return out

    def list(self, kind: str = "attacks", pattern: str = "*", **filters: Any) -> list[Any]:
        """Entries of ``kind`` matching ``pattern``; attack filters: norm, toolkit, paper, kind."""
        if kind == "attacks":
            return self.list_attacks(pattern, **filters)
        if filters:
            raise ValueError(f"filters {sorted(filters)} apply to attacks only")
        entries = self.entries(kind)
        return [entries[n] for n in sorted(entries) if fnmatch.fnmatchcase(n, pattern)]

    def plugins(self) -> list[tuple[str, str]]:
        """``[(plugin name, distribution and version, or module)]`` of every plugin loaded."""
        dists = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dists[ep.name] = f"{dist.name} {dist.version}" if dist is not None else ep.value
        out = []
        for name, plugin in self.plugin_manager.list_name_plugin():
            if plugin is not None:
                out.append((name, dists.get(name, getattr(plugin, "__name__", type(plugin).__name__))))
        return sorted(out)
