"""Model specs ``PREFIX:REST`` that a registered model source builds (``timm:resnet18``, ``hf:./my-vit``).

The core names no source: plugins register them through ``robustreg_register_model_sources``; this
module only finds the one a spec's prefix names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from ..registry.specs import ModelSourceSpec

__all__ = ["model_source"]

# a source prefix is a bare name: 'pkg.mod:factory' and 'path/net.py:factory' never consult the registry
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def model_source(spec: str, registry: Registry | None) -> tuple[ModelSourceSpec, str] | None:
    """``(the source, REST)`` when ``spec`` is ``PREFIX:REST`` for a registered source's prefix and not itself
    a registered model name (a plugin's own ``"zoo:wrn"`` wins); otherwise None."""
    prefix, sep, rest = spec.partition(":")
    if not sep or not _PREFIX.match(prefix):
        return None
    if registry is None:
        registry = Registry.create()
    if spec in registry.entries("models"):
        return None
    source = registry.entries("model_sources").get(prefix)
    return (source, rest) if source is not None else None
