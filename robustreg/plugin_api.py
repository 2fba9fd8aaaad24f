"""The plugin API's version and its deprecation policy.

``PLUGIN_API`` is the version of the contract between robustreg and its plugins (the hooks, the
:class:`~robustreg.Registrar`, the Attack and Defense bases, declared parameters); ``robustreg list
plugins`` shows it.  A change that breaks a plugin written against the previous minor version keeps
the old form working for one minor version (pytest's policy): in the version that introduces it the
old form still loads, with one :class:`RobustregDeprecationWarning` per entry naming the plugin, the
entry and the new form; from ``removed_in`` on it fails, with an error naming the entry and the fix.

Deprecations in force:

- 1.1 (removed in 1.2): ``defaults=`` for an entry that declares no parameters.  The values become
  declared parameters typed by their values (``steps=10`` -> ``Param("steps", "int", 10, ...)``).
- 1.1 (removed in 1.2): a factory function with neither ``params=`` nor a declaration: it takes the
  parameters every attack takes (``robustreg.Attack.declaration()``; none for a defense).
- 1.1 (removed in 1.2): a command helper from the package root (``robustreg.add_run_args``,
  ``robustreg.run_evaluation``, ... :data:`CLI_KIT_NAMES`).  They live in :mod:`robustreg.cli_kit`
  (``from robustreg.cli_kit import add_run_args``), so that ``import robustreg`` loads no CLI layer.
- 1.1 (removed in 1.2): the modules that moved into the ``registry/`` and ``compare/`` folders, by their old
  paths (``robustreg.hookspecs``, ``robustreg.registrar``, ``robustreg.specs``, ``robustreg.comparison*``:
  :data:`MOVED_MODULES`): importing one gives the moved module, with a warning naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from .errors import UserError

__all__ = [
    "PLUGIN_API",
    "UNDECLARED_DEFAULTS",
    "UNDECLARED_FACTORY",
    "CLI_KIT_IN_ROOT",
    "CLI_KIT_NAMES",
    "MODULE_MOVED",
    "MOVED_MODULES",
    "Deprecation",
    "MovedModules",
    "PluginContractError",
    "RobustregDeprecationWarning",
    "api_version",
    "install_moved_modules",
    "cli_kit_name",
    "show_deprecations",
]

PLUGIN_API = "1.1"


class RobustregDeprecationWarning(DeprecationWarning):
    """A plugin uses a form the plugin API still accepts but will not in its next minor version."""


class PluginContractError(UserError, TypeError):
    """A plugin breaks the plugin API (a form no longer accepted, or never valid); the message names the
    entry and the fix.  The registry reports the plugin as failed and loads the others."""


def api_version(text: str) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; anything else is a ValueError naming the text."""
    major, dot, minor = text.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise ValueError(f"plugin API version must be MAJOR.MINOR, got {text!r}")
    return int(major), int(minor)


@dataclass(frozen=True)
class Deprecation:
    """An old form of the plugin API: accepted with a warning from ``since``, refused from ``removed_in``."""

    what: str
    since: str
    removed_in: str

    def expired(self, api: str) -> bool:
        return api_version(api) >= api_version(self.removed_in)

    def apply(self, owner: str, fix: str, *, used: str | None = None, api: str = PLUGIN_API,
              stacklevel: int = 2) -> None:
        """Warn that ``owner`` (``plugin 'p', attack 'a'``) uses the old form, or raise
        :class:`PluginContractError` where ``api`` no longer accepts it.  ``fix``: what to write instead;
        ``used``: the old form as the plugin wrote it (default :attr:`what`)."""
        used = used or self.what
        if self.expired(api):
            raise PluginContractError(f"{owner}: {used} is no longer accepted since plugin API "
                                      f"{self.removed_in} (deprecated since {self.since}); {fix}")
        warnings.warn(RobustregDeprecationWarning(
            f"{owner}: {used} is deprecated since plugin API {self.since} and stops working in "
            f"{self.removed_in}; {fix}"), stacklevel=stacklevel + 1)


UNDECLARED_DEFAULTS = Deprecation("defaults= without declared params", since="1.1", removed_in="1.2")
UNDECLARED_FACTORY = Deprecation("a factory without declared params", since="1.1", removed_in="1.2")
CLI_KIT_IN_ROOT = Deprecation("a command helper from the package root", since="1.1", removed_in="1.2")
# the helpers plugin API 1.0 exported from ``robustreg`` itself
CLI_KIT_NAMES = ("add_adaptive_args", "add_model_data_args", "add_run_args", "check_run_args", "eps_list",
                 "param_values", "run_evaluation")


def cli_kit_name(name: str) -> Any:
    """``robustreg.NAME`` for a name of :data:`CLI_KIT_NAMES`: :mod:`robustreg.cli_kit`'s, with one warning
    naming the new import.  The kit is imported here, on first use, because importing it at the top of
    ``robustreg`` is what the move avoids (it loads argparse helpers, evaluation and data loading)."""
    CLI_KIT_IN_ROOT.apply("a plugin's command", f"import it from robustreg.cli_kit "
                          f"(from robustreg.cli_kit import {name})", used=f"robustreg.{name}", stacklevel=3)
    return getattr(importlib.import_module("robustreg.cli_kit"), name)


MODULE_MOVED = Deprecation("a module's old path", since="1.1", removed_in="1.2")
#: old dotted path -> where the module lives now
MOVED_MODULES = {
    "robustreg.hookspecs": "robustreg.registry.hookspecs",
    "robustreg.registrar": "robustreg.registry.registrar",
    "robustreg.specs": "robustreg.registry.specs",
    "robustreg.comparison": "robustreg.compare.run",
    "robustreg.comparison_check": "robustreg.compare.check",
    "robustreg.comparison_config": "robustreg.compare.config",
    "robustreg.comparison_params": "robustreg.compare.params",
    "robustreg.comparison_render": "robustreg.compare.render",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """An import hook (on ``sys.meta_path`` from ``import robustreg`` on) that answers a module's old path
    (:data:`MOVED_MODULES`) with the module itself, imported from its new path, and one warning."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED_MODULES else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        new = MOVED_MODULES[spec.name]
        MODULE_MOVED.apply("an import", f"import {new}", used=f"import {spec.name}", stacklevel=4)
        return importlib.import_module(new)  # the same module object: no second copy of its classes

    def exec_module(self, module: Any) -> None:
        """The module ran when it was imported from its new path."""


def install_moved_modules() -> None:
    """Put :class:`MovedModules` on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())


def show_deprecations() -> None:
    """Show each plugin deprecation once per entry (Python hides DeprecationWarnings outside ``__main__``);
    a user's own ``-W`` / ``PYTHONWARNINGS`` filters are left to decide."""
    if not sys.warnoptions:
        warnings.filterwarnings("default", category=RobustregDeprecationWarning)
