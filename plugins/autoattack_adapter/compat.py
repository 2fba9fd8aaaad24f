"""A small compatibility layer over the two AutoAttack distributions.

- ``autoattack``: the official package (github.com/fra31/auto-attack), ``AutoAttack(model, norm=, eps=,
  seed=, verbose=, attacks_to_run=, version=, device=)``; ``run_standard_evaluation(x, y, bs=)``
  returns ``x_adv``; it prints through its own logger when ``verbose``.
- ``pyautoattack`` (PyPI): keyword-only ``AutoAttack(model, *, attacks=, device=, eps=, norm=, seed=,
  version=)``; ``run_standard_evaluation(x, y, *, batch_size=)`` returns ``(x_adv, y_adv)``; it logs
  through ``logging.getLogger("auto-attack")`` and always has ``verbose=True``.

The official module is preferred when both are importable.  Both keep the same sub-attack objects
(``apgd``, ``apgd_targeted``, ``fab``, ``square``) configured by ``_set_version``, which the adapter's
cascade drives exactly as ``run_standard_evaluation`` does.  Nothing here is imported at plugin load.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
from torch import nn

__all__ = ["MODULES", "NORM_NAMES", "Toolkit", "installed_version", "load_toolkit", "quiet"]

MODULES = ("autoattack", "pyautoattack")  # preference order
NORM_NAMES = {"linf": "Linf", "l2": "L2", "l1": "L1"}
LOGGER = "auto-attack"


def installed_version() -> str:
    """``"<distribution> <version>"`` of the AutoAttack distribution found, read without importing it."""
    for dist in ("autoattack", "pyautoattack"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "AutoAttack (not installed)"


@dataclass(frozen=True)
class Toolkit:
    """The AutoAttack module found: its import name, version and ``AutoAttack`` class."""

    module: str
    version: str
    autoattack_class: type

    @property
    def official(self) -> bool:
        return self.module == "autoattack"

    def build(
        self, model: nn.Module, *, norm: str, eps: float, seed: int, version: str, device: torch.device,
        verbose: bool = False,
    ) -> Any:
        """An ``AutoAttack`` object configured for ``version`` ("standard", "plus" or "rand")."""
        if self.official:
            return self.autoattack_class(model, norm=NORM_NAMES[norm], eps=eps, seed=seed, verbose=verbose,
                                         version=version, device=device)
        return self.autoattack_class(model, norm=NORM_NAMES[norm], eps=eps, seed=seed, version=version,
                                     device=device)

    def run_standard_evaluation(self, adversary: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Any:
        """The toolkit's own evaluation; returns ``x_adv`` for both distributions."""
        if self.official:
            return adversary.run_standard_evaluation(x, y, bs=batch_size)
        return adversary.run_standard_evaluation(x, y, batch_size=batch_size)[0]


def load_toolkit(entry: str) -> Toolkit:
    """Import the official ``autoattack`` module, else ``pyautoattack``; a one-line error if neither."""
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # try the other distribution
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = "unknown"
        return Toolkit(name, f"{name} {version}", module.AutoAttack)
    raise ImportError(
        f"{entry} needs AutoAttack: pip install pyautoattack (or the official "
        "git+https://github.com/fra31/auto-attack)"
    ) from None


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Raise the ``auto-attack`` logger to WARNING unless ``verbose`` (then DEBUG, shown on stderr).

    Warnings (randomised model, zero gradients, Square beating the gradient attacks) still show:
    they flag an unreliable evaluation.
    """
    logger = logging.getLogger(LOGGER)
    level = logger.level
    handler = logging.StreamHandler() if verbose and not logger.hasHandlers() else None
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if handler is not None:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)
