"""Model source ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)``, never a download.

Weights come only from a local file (``--weights``, loaded by robustreg like any checkpoint).  timm's
models expect normalised inputs: give ``--normalize`` with the statistics the weights were trained with.
timm is an optional extra (``pip install 'robustreg[timm]'``), imported only when such a model is built.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import robustreg

__all__ = ["build", "robustreg_register_model_sources"]

INSTALL = "pip install 'robustreg[timm]'"


def build(name: str, **params: Any) -> Any:
    """``timm.create_model(name, pretrained=False, **params)``; an unknown name lists close ones."""
    timm = importlib.import_module("timm")
    if params.get("pretrained"):
        raise robustreg.UserError(f"timm:{name}: pretrained={params['pretrained']!r} would download weights; "
                                  "robustreg never does: give a local file with --weights")
    params.pop("pretrained", None)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise robustreg.UserError(f"timm:{name}: timm has no model {name!r}{hint} (timm.list_models() lists all)")
    return timm.create_model(name, pretrained=False, **params)


@robustreg.hookimpl
def robustreg_register_model_sources(registrar: robustreg.Registrar) -> None:
    """Register the ``timm`` prefix."""
    registrar.add_model_source("timm", build, summary="timm.create_model(NAME), random weights or --weights FILE",
                               requires="timm", install=INSTALL)
