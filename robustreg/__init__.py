"""robustreg: a plugin-based registry of adversarial attacks and defenses for PyTorch.

The public API; everything else is private.  Plugins register through the ``robustreg``
entry-point group with the hooks in :mod:`robustreg.hookspecs`.
"""

from __future__ import annotations

from .attack import (
    Attack,
    AttackError,
    AttackInfo,
    AttackResult,
    ModelState,
    draw_seed,
    pgd_steps,
    projected_gradient_ascent,
    seeded_global_rngs,
)
from .defense import Defense, DefenseInfo, DefenseOutput, crafting, unwrap
from .embedding import Embedding, embed
from .evaluation import evaluate
from .files import save_atomic, write_atomic
from .hookspecs import hookimpl
from .params import Param, ParamError, ParamSet, ParamTypeError, UnknownParamError
from .registry import (
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
from .threat import ThreatModel, parse_eps
from .training import TrainConfig, Trainer, train

__version__ = "0.1.0"

__all__ = [
    "Attack",
    "AttackError",
    "AttackInfo",
    "AttackResult",
    "AttackSpec",
    "DatasetSpec",
    "Defense",
    "DefenseInfo",
    "DefenseOutput",
    "DefenseSpec",
    "DuplicateNameError",
    "Embedding",
    "ModelSpec",
    "ModelState",
    "Param",
    "ParamError",
    "ParamSet",
    "ParamTypeError",
    "PluginLoadError",
    "Registrar",
    "Registry",
    "RegistryError",
    "ThreatModel",
    "TrainConfig",
    "Trainer",
    "UnknownNameError",
    "UnknownParamError",
    "__version__",
    "crafting",
    "draw_seed",
    "embed",
    "evaluate",
    "hookimpl",
    "parse_eps",
    "pgd_steps",
    "projected_gradient_ascent",
    "save_atomic",
    "seeded_global_rngs",
    "train",
    "unwrap",
    "write_atomic",
]
