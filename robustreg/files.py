"""Atomic file writes: nothing a run writes (reports, state, checkpoints, stores) is ever half-written.

Each write goes to a temporary file in the target's folder, is flushed and fsynced, then moved onto
the target with ``os.replace``; on any error the temporary file is removed and the old target stays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["save_atomic", "write_atomic"]


def _atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; return the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return _atomic(path, lambda fh: fh.write(payload))


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; return the path."""
    return _atomic(path, lambda fh: torch.save(obj, fh))
