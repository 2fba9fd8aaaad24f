"""While a zoo entry's architecture is built, every download path it could take raises instead.

Some entries build their network with pretrained weights (``timm.create_model(..., pretrained=True)``,
torchvision's ``pretrained=True``); robustreg never downloads, so those fail in one line naming the entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import robustreg

__all__ = ["no_downloads"]

# (module, attribute): torch.hub's two entry points and the names timm's builder imported them under
_PATHS = (
    ("torch.hub", "load_state_dict_from_url"),
    ("torch.hub", "download_url_to_file"),
    ("timm.models._builder", "load_state_dict_from_url"),
    ("timm.models._builder", "download_cached_file"),
    ("timm.models._builder", "load_state_dict_from_hf"),
    ("timm.models._builder", "load_custom_from_hf"),
)


@contextmanager
def no_downloads(what: str) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        source = next((a for a in args if isinstance(a, str)), "a remote file")
        raise robustreg.UserError(f"{what}: building it would download {source}; robustreg never downloads "
                                  "(this entry's architecture needs pretrained weights at construction)")

    patched: list[tuple[Any, str, Any]] = []
    try:
        for module_name, attr in _PATHS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            if hasattr(module, attr):
                patched.append((module, attr, getattr(module, attr)))
                setattr(module, attr, refuse)
        yield
    finally:
        for module, attr, original in reversed(patched):
            setattr(module, attr, original)
