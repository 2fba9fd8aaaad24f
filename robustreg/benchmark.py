"""``robustreg.benchmark``: RobustBench's one-call protocol, ``(clean accuracy, robust accuracy)``.

``benchmark(model, "cifar10:DIR", "Linf", "8/255", n_examples=1000)`` evaluates the first ``n_examples``
test images under the standard AutoAttack (Croce & Hein 2020) -- the registered entry that implements the
common attack name ``autoattack`` (``same_as``, compare's vocabulary), whichever plugin provides it -- and
returns the two fractions as RobustBench's ``benchmark`` does; ``attack=`` names another registered attack.
The full report (checks included) is :func:`robustreg.evaluate`'s, written to ``out`` when given.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from .data import load_data
from .evaluation import evaluate
from .registry import Registry

__all__ = ["STANDARD", "benchmark"]

#: the common name of the standard AutoAttack suite, as the registry's ``same_as`` tables spell it
STANDARD = "autoattack"


def _standard(registry: Registry) -> str:
    for spec in registry.list_attacks():
        if STANDARD in spec.same_as:
            return spec.name
    raise ValueError(f"no registered attack implements the standard {STANDARD!r} (install AutoAttack: "
                     "pip install pyautoattack), or pass attack=NAME")


def _size(data: Any) -> int:
    """How many samples ``data`` holds: an ``(x, y)`` pair's x, or anything with a length."""
    return len(data[0]) if isinstance(data, (tuple, list)) and len(data) == 2 else len(data)


def benchmark(model: nn.Module, dataset: Any, threat_model: str = "Linf", eps: float | str = "8/255", *,
              n_examples: int = 10000, attack: str | None = None, batch_size: int = 256,
              device: Any = None, registry: Registry | None = None,
              out: str | os.PathLike[str] | None = None) -> tuple[float, float]:
    """``(clean accuracy, robust accuracy)`` of ``model`` on the first ``n_examples`` of ``dataset`` (a data
    spec such as ``"cifar10:DIR"`` or anything :func:`robustreg.evaluate` takes) under ``attack`` (default
    the standard AutoAttack) at ``eps`` in the ``threat_model`` norm (``"Linf"``, ``"L2"``, ...)."""
    registry = registry if registry is not None else Registry.create()
    data = load_data(dataset, registry=registry) if isinstance(dataset, str) else dataset
    name = attack if attack is not None else _standard(registry)
    budgets: list[Any] = [eps]  # "8/255" too: evaluate reads it
    report = evaluate(model, data, [name], budgets, norm=threat_model, n=min(n_examples, _size(data)),
                      batch_size=batch_size, device=device, registry=registry, out=out, progress=False)
    return float(report["clean_accuracy"]), float(report["worst_case"][-1]["robust_accuracy"])
