"""Conformance checks for attacks and defenses, and a pytest plugin that exposes them as fixtures.

Any plugin author can run the same checks robustreg runs on its own attacks::

    from robustreg import Registry
    from robustreg.testing import check_attack, tiny_model, tiny_batch

    spec = Registry.create().attack("my-attack")
    model = tiny_model()
    x, y = tiny_batch()
    check_attack(spec, model, x, y, params={"steps": 2})

Each ``check_*`` function takes the attack as an :class:`~robustreg.AttackSpec` or as a factory
``factory(threat, **params) -> Attack`` (an Attack subclass is one), a small model, a batch and
optionally a threat model and parameter overrides.  A failed check raises ``AssertionError`` with a
message naming the attack and what broke; :func:`check_attack` runs them all and reports every
failure at once.  :func:`check_defense` does the same for a defense (one training step: modes,
BatchNorm statistics, loss, gradients, state).  This is a test kit, so assert-style failures are what
it is for.

The module is also a pytest plugin (entry point ``pytest11: robustreg``) providing the fixtures
``robustreg_registry``, ``tiny_model`` and ``tiny_batch``, and parametrising any test that takes
an argument named ``robustreg_attack_name`` over every registered attack.  It imports only torch,
numpy and robustreg's core, so loading it costs little.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..registry import Registry
from .attacks import (
    CHECKS,
    check_attack,
    check_bad_inputs_rejected,
    check_batch_of_one,
    check_eps_ball_and_box,
    check_global_rng_untouched,
    check_inputs_untouched,
    check_model_state_restored,
    check_output_detached_same_device_dtype,
    check_raises_loss,
    check_randomized_seeds_differ,
    check_result_structure,
    check_seed_determinism,
    check_targeted,
    supported_params,
)
from .defenses import check_defense
from .models import default_threat, separable_batch, tiny_batch, tiny_model, trained_tiny_model

__all__ = [
    "CHECKS",
    "attack_names",
    "check_attack",
    "check_bad_inputs_rejected",
    "check_batch_of_one",
    "check_defense",
    "check_eps_ball_and_box",
    "check_global_rng_untouched",
    "check_inputs_untouched",
    "check_model_state_restored",
    "check_output_detached_same_device_dtype",
    "check_raises_loss",
    "check_randomized_seeds_differ",
    "check_result_structure",
    "check_seed_determinism",
    "check_targeted",
    "default_threat",
    "match_overrides",
    "separable_batch",
    "supported_params",
    "tiny_batch",
    "tiny_model",
    "trained_tiny_model",
]


# --- helpers for parametrising tests -------------------------------------------------------
def attack_names(pattern: str = "*", *, registry: Registry | None = None, **filters: Any) -> list[str]:
    """Registered attack names matching ``pattern`` and the ``list_attacks`` filters, for
    ``pytest.mark.parametrize``."""
    reg = registry if registry is not None else Registry.create()
    return [spec.name for spec in reg.list_attacks(pattern, **filters)]


def match_overrides(name: str, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the parameter overrides of every fnmatch pattern in ``overrides`` that ``name`` matches
    (later patterns win)."""
    merged: dict[str, Any] = {}
    for pattern, params in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            merged.update(params)
    return merged


# --- pytest plugin ---------------------------------------------------------------------------
try:  # the kit works without pytest; the fixtures need it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def robustreg_registry() -> Registry:
        """A registry built from the installed plugins (once per test session)."""
        return Registry.create()

    @pytest.fixture(name="tiny_model")
    def _tiny_model_fixture() -> nn.Module:
        """A fresh :func:`tiny_model` (10 classes, 1 x 8 x 8 inputs)."""
        return tiny_model()

    @pytest.fixture(name="tiny_batch")
    def _tiny_batch_fixture() -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`tiny_batch`: 8 images 1 x 8 x 8 and their labels."""
        return tiny_batch()

    def pytest_generate_tests(metafunc: Any) -> None:
        """Parametrise any test taking ``robustreg_attack_name`` over every registered attack."""
        if "robustreg_attack_name" in metafunc.fixturenames:
            metafunc.parametrize("robustreg_attack_name", attack_names())
