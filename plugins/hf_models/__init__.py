"""Model source ``hf:LOCAL_DIR``: a Hugging Face image classifier saved in a local folder, never a download.

``AutoModelForImageClassification.from_pretrained(LOCAL_DIR, local_files_only=True)``: a hub id or a
folder that does not exist is refused in one line.  The folder's ``preprocessor_config.json`` (when it
asks for normalisation) puts its ``image_mean`` / ``image_std`` in front of the model, so the model takes
[0, 1] images like every robustreg model; resizing stays the caller's (give images of the size the model
was trained on).  transformers is an optional extra (``pip install 'robustreg[hf]'``).
"""

from __future__ import annotations

import robustreg

from .model import build

__all__ = ["build", "robustreg_register_model_sources"]


@robustreg.hookimpl
def robustreg_register_model_sources(registrar: robustreg.Registrar) -> None:
    """Register the ``hf`` prefix."""
    registrar.add_model_source("hf", build, summary="Hugging Face image classifier from a local folder "
                               "(hf:./my-vit), never the hub", requires="transformers",
                               install="pip install 'robustreg[hf]'")
