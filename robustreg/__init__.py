"""robustreg: a plugin-based registry of adversarial attacks and defenses for PyTorch.

The public API; everything else is private.  Plugins register through the ``robustreg``
entry-point group with the hooks in :mod:`robustreg.registry.hookspecs`, against plugin API ``PLUGIN_API``
(its deprecation policy: :mod:`robustreg.plugin_api`).  A plugin's command is built with
:mod:`robustreg.cli_kit`, a public module of its own: ``import robustreg`` loads no CLI layer.
"""

from __future__ import annotations

from typing import Any

from . import attack as _attack_module
from ._version import __version__
from .adapters import AdapterEntry, Toolkit, ToolkitAttack, entry_docstring, make_entry_class
from .adaptive import BPDA, EoT, PassCounter
from .ascent import copy_rows, draw_seed, pgd_steps, projected_gradient_ascent, seeded_global_rngs
from .attack import (
    Attack,
    AttackError,
    AttackInfo,
    AttackResult,
    ModelState,
    within_eps,
)
from .benchmark import benchmark
from .data import LabeledData, load_data
from .defense import Defense, DefenseInfo, DefenseOutput, ExtraTerm, ForwardPass, Mechanism, crafting, unwrap
from .embedding import Embedding, Head, apply_head, embed
from .errors import MissingPackageError, UsageError, UserError
from .evaluation import EvalConfig, Mode, evaluate
from .files import save_atomic, write_atomic
from .labels import least_likely
from .lock import FolderInUse, folder_lock
from .models import build_model
from .oneshot import CallableModule, make_attack
from .params import Param, ParamError, ParamSet, ParamTypeError, UnknownParamError
from .plugin_api import (
    CLI_KIT_NAMES,
    PLUGIN_API,
    PluginContractError,
    RobustregDeprecationWarning,
    cli_kit_name,
    install_moved_modules,
)
from .progress import Progress, report_progress, wants_progress
from .registry import (
    AttackConfig,
    AttackSpec,
    DatasetSpec,
    DefenseSpec,
    DuplicateNameError,
    ModelSpec,
    PluginLoadError,
    Registrar,
    Registry,
    RegistryError,
    UnknownNameError,
)
from .registry.hookspecs import hookimpl
from .runtime import resolve_device
from .threat import ThreatModel, parse_eps
from .training import TrainConfig, Trainer, train

# robustreg.attack("pgd", eps=8/255, norm="Linf", steps=10) -> a ready attack; the module stays importable
_attack_module.__class__ = CallableModule

__all__ = [
    "PLUGIN_API",
    "AdapterEntry",
    "BPDA",
    "Attack",
    "AttackError",
    "AttackInfo",
    "AttackResult",
    "AttackConfig",
    "AttackSpec",
    "DatasetSpec",
    "Defense",
    "DefenseInfo",
    "DefenseOutput",
    "DefenseSpec",
    "DuplicateNameError",
    "EoT",
    "Embedding",
    "EvalConfig",
    "ExtraTerm",
    "FolderInUse",
    "Head",
    "ForwardPass",
    "LabeledData",
    "Mechanism",
    "MissingPackageError",
    "Mode",
    "ModelSpec",
    "ModelState",
    "Param",
    "ParamError",
    "PassCounter",
    "Progress",
    "ParamSet",
    "ParamTypeError",
    "PluginContractError",
    "PluginLoadError",
    "Registrar",
    "Registry",
    "RegistryError",
    "RobustregDeprecationWarning",
    "ThreatModel",
    "Toolkit",
    "ToolkitAttack",
    "TrainConfig",
    "Trainer",
    "UnknownNameError",
    "UnknownParamError",
    "UsageError",
    "UserError",
    "apply_head",
    "build_model",
    "copy_rows",
    "crafting",
    "draw_seed",
    "embed",
    "entry_docstring",
    "benchmark",
    "evaluate",
    "folder_lock",
    "hookimpl",
    "least_likely",
    "load_data",
    "make_attack",
    "make_entry_class",
    "parse_eps",
    "pgd_steps",
    "projected_gradient_ascent",
    "report_progress",
    "resolve_device",
    "save_atomic",
    "seeded_global_rngs",
    "train",
    "unwrap",
    "wants_progress",
    "within_eps",
    "write_atomic",
    "__version__",
]

install_moved_modules()  # robustreg.hookspecs, robustreg.comparison, ...: their old paths still import, warning


def __getattr__(name: str) -> Any:
    """The command kit's helpers under their old names (``robustreg.add_run_args``): still there, with a
    warning naming the new import (:data:`robustreg.plugin_api.CLI_KIT_NAMES`), until plugin API 1.2."""
    if name in CLI_KIT_NAMES:
        return cli_kit_name(name)
    raise AttributeError(f"module 'robustreg' has no attribute {name!r}")
