"""robustreg: a plugin-based registry of adversarial attacks and defenses for PyTorch.

The public API; everything else is private.  Plugins register through the ``robustreg``
entry-point group with the hooks in :mod:`robustreg.hookspecs`, against plugin API ``PLUGIN_API``
(its deprecation policy: :mod:`robustreg.plugin_api`).
"""

from __future__ import annotations

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
from .commands import (
    UsageError,
    add_adaptive_args,
    add_model_data_args,
    add_run_args,
    check_run_args,
    eps_list,
    param_values,
    run_evaluation,
)
from .data import LabeledData, load_data
from .defense import Defense, DefenseInfo, DefenseOutput, ExtraTerm, ForwardPass, Mechanism, crafting, unwrap
from .embedding import Embedding, Head, apply_head, embed
from .errors import MissingPackageError, UserError
from .evaluation import EvalConfig, Mode, evaluate
from .files import save_atomic, write_atomic
from .hookspecs import hookimpl
from .labels import least_likely
from .lock import FolderInUse, folder_lock
from .models import build_model
from .params import Param, ParamError, ParamSet, ParamTypeError, UnknownParamError
from .plugin_api import PLUGIN_API, PluginContractError, RobustregDeprecationWarning
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
from .runtime import resolve_device
from .threat import ThreatModel, parse_eps
from .training import TrainConfig, Trainer, train

__version__ = "0.1.0"

from . import attack as _attack_module
from .oneshot import CallableModule, make_attack

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
    "add_model_data_args",
    "apply_head",
    "add_adaptive_args",
    "add_run_args",
    "build_model",
    "check_run_args",
    "copy_rows",
    "crafting",
    "draw_seed",
    "embed",
    "entry_docstring",
    "eps_list",
    "benchmark",
    "evaluate",
    "folder_lock",
    "hookimpl",
    "least_likely",
    "load_data",
    "make_attack",
    "make_entry_class",
    "param_values",
    "parse_eps",
    "pgd_steps",
    "projected_gradient_ascent",
    "report_progress",
    "resolve_device",
    "run_evaluation",
    "save_atomic",
    "seeded_global_rngs",
    "train",
    "unwrap",
    "wants_progress",
    "within_eps",
    "write_atomic",
    "__version__",
]
