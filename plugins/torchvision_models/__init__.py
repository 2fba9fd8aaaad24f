"""Model source ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``, never a download.

Weights come only from a local file (``--weights``).  torchvision's models expect normalised inputs:
give ``--normalize`` with the statistics the weights were trained with.  torchvision is a dependency
of robustreg; the entry is a plugin like the optional sources.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import robustreg

__all__ = ["build", "robustreg_register_model_sources"]


def build(name: str, **params: Any) -> Any:
    """``torchvision.models.get_model(name, weights=None, **params)``; an unknown name lists close ones."""
    models = importlib.import_module("torchvision.models")
    for key in ("weights", "weights_backbone", "pretrained"):
        if params.get(key):
            raise robustreg.UserError(f"torchvision:{name}: {key}={params[key]!r} would download weights; "
                                      "robustreg never does: give a local file with --weights")
        params.pop(key, None)
    available = models.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise robustreg.UserError(f"torchvision:{name}: torchvision has no model {name!r}{hint} "
                                  "(torchvision.models.list_models() lists all)")
    return models.get_model(name, weights=None, **params)


@robustreg.hookimpl
def robustreg_register_model_sources(registrar: robustreg.Registrar) -> None:
    """Register the ``torchvision`` prefix."""
    registrar.add_model_source("torchvision", build, summary="torchvision.models.get_model(NAME), random weights "
                               "or --weights FILE", requires="torchvision", install="pip install torchvision")
