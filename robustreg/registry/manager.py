"""The plugin manager factory and name -> spec lookup.

``Registry.create()`` builds a fresh ``pluggy.PluginManager("robustreg")``: hook specs, then the
plugin names blocked by ``ROBUSTREG_DISABLE_PLUGINS=name,name``, then robustreg's own defaults
(models and datasets), then every entry point of the ``robustreg`` group (built-ins included), then
``check_pending()``.  It then calls the register hooks, each plugin with its own
:class:`Registrar`.  There is no module-level manager: every ``create()`` is independent.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import importlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from ..attack import Attack
from ..defense import Defense
from ..errors import close_matches
from ..threat import ThreatModel
from . import hookspecs
from .registrar import DuplicateNameError, PluginLoadError, Registrar, RegistryError, UnknownNameError, singular
from .specs import (
    AnalysisSpec,
    AttackConfig,
    AttackSpec,
    CheckSpec,
    CommandSpec,
    DatasetSpec,
    DefenseSpec,
    ModelSourceSpec,
    ModelSpec,
    RemedySpec,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "DISABLE_ENV",
    "AnalysisSpec",
    "AttackConfig",
    "AttackSpec",
    "CheckSpec",
    "CommandSpec",
    "DatasetSpec",
    "DefenseSpec",
    "DuplicateNameError",
    "ModelSourceSpec",
    "ModelSpec",
    "PluginLoadError",
    "PluginState",
    "Registrar",
    "Registry",
    "RemedySpec",
    "RegistryError",
    "UnknownNameError",
    "builtin_plugins",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "robustreg"
DISABLE_ENV = "ROBUSTREG_DISABLE_PLUGINS"
CORE_PLUGINS = ("robustreg.models", "robustreg.data", "robustreg.checks", "robustreg.commands")
KINDS = ("attacks", "defenses", "models", "model_sources", "datasets", "commands", "analyses", "checks", "remedies")


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
    blocked = disabled_from_env() if disabled is None else set(disabled)
    for name in blocked:
        pm.set_blocked(name)
    errors: list[tuple[str, str]] = []

    def fail(name: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if strict:
            raise PluginLoadError(f"plugin {name!r} failed to load: {message}") from exc
        errors.append((name, message))

    def add(name: str, load: Callable[[], object]) -> None:
        try:
            plugin = load()
            pm.register(plugin, name=name)
            _check_hooks(pm, name, plugin)
        except Exception as exc:  # a broken third-party plugin must not take the others down
            if pm.has_plugin(name):
                pm.unregister(name=name)
            fail(name, exc)

    known = set(CORE_PLUGINS)
    for modname in CORE_PLUGINS:
        if not pm.is_blocked(modname):
            pm.register(importlib.import_module(modname), name=modname)
    if entry_points:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            known.add(ep.name)
            if not (pm.is_blocked(ep.name) or pm.has_plugin(ep.name)):
                add(ep.name, ep.load)
    for name, plugin in plugins:
        known.add(name)
        if not pm.is_blocked(name):
            add(name, lambda plugin=plugin: plugin)  # type: ignore[misc]
    pm.check_pending()
    unknown = sorted(blocked - known)
    if unknown and entry_points:
        warnings.warn(f"{DISABLE_ENV} names no installed plugin: {', '.join(unknown)} "
                      f"(plugins: {', '.join(sorted(known))})", stacklevel=3)
    return pm, errors


def _check_hooks(pm: pluggy.PluginManager, name: str, plugin: object) -> None:
    """A misspelt hook is an error of its plugin; a hook-like function without the marker, a warning."""
    callers = pm.get_hookcallers(plugin) or []
    unknown = sorted(hc.name for hc in callers if not hc.has_spec())
    if unknown:
        hooks = [h for h in dir(hookspecs) if h.startswith("robustreg_")]
        close = difflib.get_close_matches(unknown[0], hooks, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f" (hooks: {', '.join(hooks)})"
        raise ValueError(f"unknown hook {unknown[0]!r}{hint}")
    marked = {hc.name for hc in callers}
    for attr in dir(plugin):
        if attr.startswith("robustreg_register") and attr not in marked and callable(getattr(plugin, attr, None)):
            warnings.warn(f"plugin {name!r}: {attr} has no @robustreg.hookimpl marker and is ignored", stacklevel=4)


def builtin_plugins() -> set[str]:
    """Plugin names shipped with robustreg itself (the core's and the entry points of its distribution)."""
    names = set(CORE_PLUGINS)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None and dist.name == "robustreg":
            names.add(ep.name)
    return names


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
        builtin = builtin_plugins()
        deferred: dict[str, list[Callable[[Registrar], None]]] = {}
        for staged in self._collect(pm, strict, deferred).values():
            for kind, specs in staged.items():
                for spec in specs.values():
                    self._merge(kind, spec, builtin)
        self._run_deferred(deferred, builtin, strict)

    def _run_deferred(self, deferred: dict[str, list[Callable[[Registrar], None]]], builtin: set[str],
                      strict: bool) -> None:
        """The ``registrar.defer`` callbacks, once all entries are in; each callback's entries staged on their own."""
        for name, callbacks in deferred.items():
            for callback in callbacks:
                sink: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
                try:
                    callback(Registrar(name, sink, lookup=self._get))
                except Exception as exc:
                    if strict:
                        raise PluginLoadError(f"plugin {name!r} failed in a deferred registration: {exc}") from exc
                    self.load_errors.append((name, f"{type(exc).__name__}: {exc}"))
                    continue
                for kind, specs in sink.items():
                    for spec in specs.values():
                        self._merge(kind, spec, builtin)

    def _collect(self, pm: pluggy.PluginManager, strict: bool,
                 deferred: dict[str, list[Callable[[Registrar], None]]]) -> dict[str, dict[str, dict[str, Any]]]:
        """Each plugin's entries, staged on its own; a plugin whose hook raises leaves none behind (nor its
        deferred callbacks, collected in ``deferred``)."""
        staged: dict[str, dict[str, dict[str, Any]]] = {}
        failed: set[str] = set()
        for kind in KINDS:
            caller = getattr(pm.hook, f"robustreg_register_{kind}")
            for impl in reversed(caller.get_hookimpls()):
                name = impl.plugin_name
                if name in failed:
                    continue
                sink = staged.setdefault(name, {k: {} for k in KINDS})
                try:
                    impl.function(registrar=Registrar(name, sink, deferred=deferred.setdefault(name, [])))
                except Exception as exc:
                    if strict:
                        raise PluginLoadError(f"plugin {name!r} failed to register {kind}: {exc}") from exc
                    self.load_errors.append((name, f"{type(exc).__name__}: {exc}"))
                    failed.add(name)
                    del staged[name]
                    deferred.pop(name, None)
        return staged

    def _merge(self, kind: str, spec: Any, builtin: set[str]) -> None:
        existing = self._entries[kind].get(spec.name)
        if existing is not None:
            culprit = spec.plugin if spec.plugin not in builtin or existing.plugin in builtin else existing.plugin
            raise DuplicateNameError(
                f"{singular(kind)} {spec.name!r} is registered by both plugin {existing.plugin!r} and plugin "
                f"{spec.plugin!r}; disable one with {DISABLE_ENV}={culprit}"
            )
        self._entries[kind][spec.name] = spec

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
        close = close_matches(name, entries, n=5, cutoff=0.5)
        close += [n for n in entries if n.split(":")[-1].lower() == name.lower() and n not in close]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown {singular(kind)} {name!r}{hint} (`robustreg list {kind}` shows all {len(entries)})"
        )

    def attack(self, name: str) -> AttackSpec:
        return self._get("attacks", name)

    def defense(self, name: str) -> DefenseSpec:
        return self._get("defenses", name)

    def model(self, name: str) -> ModelSpec:
        return self._get("models", name)

    def model_source(self, prefix: str) -> ModelSourceSpec:
        return self._get("model_sources", prefix)

    def dataset(self, name: str) -> DatasetSpec:
        return self._get("datasets", name)

    def analysis(self, name: str) -> AnalysisSpec:
        return self._get("analyses", name)

    def analyses(self) -> builtins.list[AnalysisSpec]:
        """The registered analyses, in registration order (``robustreg analyze --help``)."""
        return list(self._entries["analyses"].values())

    def check(self, name: str) -> CheckSpec:
        return self._get("checks", name)

    def remedy(self, name: str) -> RemedySpec:
        return self._get("remedies", name)

    def checks(self) -> builtins.list[CheckSpec]:
        """Every registered check, in the order they run: the core's, then each plugin's as registered."""
        return sorted(self._entries["checks"].values(), key=lambda spec: spec.plugin not in CORE_PLUGINS)

    def remedies_for(self, check: str) -> builtins.list[RemedySpec]:
        """The remedies that answer ``check``'s warnings, in registration order."""
        return [spec for spec in self._entries["remedies"].values() if check in spec.answers]

    def build_attack(self, name: str, threat: ThreatModel, **params: Any) -> Attack:
        """Attack ``name`` for ``threat``; a toolkit's name of a parameter (``alpha``) is read as the declared
        one (``step_size``), see :meth:`param_aliases`."""
        return self.attack_config(name, params).build(threat)

    def attack_config(self, name: str, params: Mapping[str, Any] | None = None) -> AttackConfig:
        """Attack ``name``'s parameters resolved once: its registered defaults, then ``params`` (a toolkit's
        name read as the declared one, see :meth:`param_aliases`), validated; the result builds the attack
        for any threat model without merging or validating again (:meth:`AttackConfig.build`)."""
        return self.attack(name).configure(params or {}, self.param_aliases())

    def param_aliases(self) -> dict[str, set[str]]:
        """Toolkit name -> the declared names it stands for, over every registered attack (``{"alpha":
        {"step_size"}, "max_iter": {"steps", "n_queries", ...}}``): what :func:`robustreg.params.canonical_name`
        reads for an entry that does not declare that name itself.  "eps" and "epsilon" are left out: they
        name the threat's budget to a user, whatever one toolkit calls its step."""
        table: dict[str, set[str]] = {}
        for spec in self._entries["attacks"].values():
            for p in spec.params:
                if p.toolkit and p.toolkit != p.name and p.toolkit not in ("eps", "epsilon"):
                    table.setdefault(p.toolkit, set()).add(p.name)
        return table

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

    def list(self, kind: str = "attacks", pattern: str = "*", **filters: Any) -> builtins.list[Any]:
        """Entries of ``kind`` matching ``pattern``; attack filters: norm, toolkit, paper, kind."""
        if kind == "attacks":
            return self.list_attacks(pattern, **filters)
        if filters:
            raise ValueError(f"filters {sorted(filters)} apply to attacks only")
        entries = self.entries(kind)
        return [entries[n] for n in sorted(entries) if fnmatch.fnmatchcase(n, pattern)]

    def plugins(self) -> builtins.list[tuple[str, str]]:
        """``[(plugin name, distribution and version, or module)]`` of every plugin loaded."""
        dists = _distributions()
        out = []
        for name, plugin in self.plugin_manager.list_name_plugin():
            if plugin is not None:
                out.append((name, dists.get(name, getattr(plugin, "__name__", type(plugin).__name__))))
        return sorted(out)

    def plugin_states(self) -> builtins.list[PluginState]:
        """Every plugin loaded or tried, by name: where it comes from and, for one that failed (to import,
        to register, or in a deferred registration), its error -- it then contributes no entry."""
        errors: dict[str, builtins.list[str]] = {}
        for name, message in self.load_errors:
            errors.setdefault(name, []).append(message)
        sources = dict(self.plugins())
        dists = _distributions()
        names = sorted(set(sources) | set(errors))
        return [PluginState(n, sources.get(n) or dists.get(n, "-"), "; ".join(errors.get(n, [])) or None)
                for n in names]


@dataclass(frozen=True)
class PluginState:
    """One plugin as ``robustreg list plugins`` shows it: ``error`` is None for a plugin that loaded."""

    name: str
    source: str
    error: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else f"failed: {self.error}"


def _distributions() -> dict[str, str]:
    """Entry-point name -> ``"distribution version"`` (or the entry point's module) of every plugin installed."""
    dists = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dists[ep.name] = f"{dist.name} {dist.version}" if dist is not None else ep.value
    return dists
