"""How plugins are found: the hook specifications, the plugin manager factory (:class:`Registry`), the
:class:`Registrar` a plugin registers through and the specs it registers.

- :mod:`.hookspecs`: the typed ``robustreg_register_*`` hooks and ``hookimpl``;
- :mod:`.manager`: :class:`Registry` (built by a factory, no import-time globals), entry points, validation;
- :mod:`.registrar`: :class:`Registrar` and the registry's errors;
- :mod:`.specs`: what is registered (attacks, defenses, models, model sources, datasets, commands, analyses,
  checks, remedies) and an attack's resolved :class:`AttackConfig`.
"""

from __future__ import annotations

from .manager import (
    CORE_PLUGINS,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    KINDS,
    AnalysisSpec,
    AttackConfig,
    AttackSpec,
    CheckSpec,
    CommandSpec,
    DatasetSpec,
    DefenseSpec,
    DuplicateNameError,
    ModelSourceSpec,
    ModelSpec,
    PluginLoadError,
    PluginState,
    Registrar,
    Registry,
    RegistryError,
    RemedySpec,
    UnknownNameError,
    builtin_plugins,
    disabled_from_env,
    make_plugin_manager,
)

__all__ = ["CORE_PLUGINS", "DISABLE_ENV", "ENTRY_POINT_GROUP", "KINDS", "AnalysisSpec", "AttackConfig", "AttackSpec",
           "CheckSpec", "CommandSpec", "DatasetSpec", "DefenseSpec", "DuplicateNameError", "ModelSourceSpec",
           "ModelSpec", "PluginLoadError", "PluginState", "Registrar", "Registry", "RegistryError", "RemedySpec",
           "UnknownNameError", "builtin_plugins", "disabled_from_env", "make_plugin_manager"]
