"""Atomic file writes: nothing a run writes (reports, state, checkpoints, stores) is ever half-written.

Each write goes to a temporary file ``.NAME.PID.tmp`` in the target's folder, is flushed and fsynced,
then moved onto the target with ``os.replace``; on any error the temporary file is removed and the old
target stays.  :func:`write_set_atomic` writes several files so that a kill leaves either the old set
or the new one (the key file last); :func:`remove_stale_temporaries` clears what a killed write left.
A disk that is full, over quota, read-only or failing is a :class:`~robustreg.errors.StorageError` (a
one-line user error naming the file and, when full, the bytes free), not a bug.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import storage_error, storage_errors

__all__ = ["remove_stale_temporaries", "save_atomic", "write_atomic", "write_set_atomic"]

_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _payload(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _remove(temporaries: list[Path]) -> None:
    for tmp in temporaries:
        with contextlib.suppress(OSError):  # gone already (renamed), or a failing disk refusing even this
            tmp.unlink()


def _atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    # a full or read-only disk is the user's to fix: say so, naming the target, once the temporary is
    # gone (so that the bytes free are those the next try will find)
    with storage_errors(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            _remove([tmp])
    return path


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; return the path."""
    payload = _payload(data)
    def write(fh: BinaryIO) -> None:
        fh.write(payload)

    return _atomic(path, write)


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; return the path.

    The bytes are serialised in memory first: torch's zip writer turns a failed write (a full disk) into a
    RuntimeError that hides the OSError, which :func:`write_atomic`'s plain write keeps.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)

    def write(fh: BinaryIO) -> None:
        fh.write(buffer.getbuffer())

    return _atomic(path, write)


def write_set_atomic(folder: str | os.PathLike[str], files: Mapping[str, bytes | str], *, last: str) -> list[Path]:
    """Write ``files`` (name -> text or bytes) into ``folder``: every temporary first, then every rename,
    ``last`` renamed after all the others.

    A kill before the renames leaves the old set; during them, the files already renamed are new but
    ``last`` (the key file, e.g. report.json that the others are rendered from) is still the old one,
    so a reader that trusts ``last`` and regenerates the rest never sees a mismatched set.
    """
    out = Path(folder)
    if last not in files:
        raise ValueError(f"last must be one of the files, got {last!r}")
    order = [name for name in files if name != last] + [last]
    staged: list[tuple[Path, Path]] = []
    target = out / last
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name in order:
                target = out / name
                staged.append((_temporary(target), target))  # before the write: a failed write is removed too
                with open(staged[-1][0], "wb") as fh:
                    fh.write(_payload(files[name]))
                    fh.flush()
                    os.fsync(fh.fileno())
            for tmp, target in staged:
                os.replace(tmp, target)
        finally:
            _remove([tmp for tmp, _ in staged])
    except OSError as exc:  # a full or read-only disk: named (the file that failed) once the temporaries are gone
        mapped = storage_error(exc, target)
        if mapped is None:
            raise
        raise mapped from exc
    return [target for _, target in staged]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the ``.NAME.PID.tmp`` files in ``folder`` whose writing process is gone; return them."""
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in root.iterdir():
        match = _TMP.match(path.name)
        if match and path.is_file() and not _alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
