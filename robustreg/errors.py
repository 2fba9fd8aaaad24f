"""The one error type for a user's mistake, and where in the user's own code an exception came from.

:class:`UserError` (a ValueError) is what robustreg raises for something the user gave: a bad value,
a file that is not what its name says, a model that does not fit the data, model code that raised.
The ``robustreg`` command prints it as one line, ``robustreg: error: ...``, exit status 2; anything
else is a bug in robustreg or a plugin (one line saying so, the traceback with ``ROBUSTREG_DEBUG=1``).

:class:`ParamError` (:mod:`robustreg.params`) and the commands' :class:`~robustreg.UsageError` are
UserErrors.  :class:`ModelCodeError` is the user's own model code raising (its factory, its import,
its forward); :class:`CheckpointError` a weights file that cannot be read; :class:`StorageError` a file that
cannot be written because of where it goes (a full disk, a quota, a read-only or failing device).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import shutil
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointError",
    "MissingPackageError",
    "ModelCodeError",
    "ModelSpecError",
    "ModelTypeError",
    "StorageError",
    "UsageError",
    "UserError",
    "close_matches",
    "code_location",
    "describe_exception",
    "model_code_file",
    "storage_error",
    "storage_errors",
]


class UserError(ValueError):
    """A mistake in what the user gave; ``robustreg`` reports it as one line, exit status 2."""


class UsageError(UserError):
    """A mistake in the command line (a :class:`UserError`); ``robustreg`` reports it as one line, exit
    status 2."""


class ModelCodeError(UserError):
    """The user's model code raised (importing it, its factory, its forward); the message says where."""


class ModelSpecError(ModuleNotFoundError, UserError):
    """A ``package.module:factory`` model spec whose module does not exist (also a ModuleNotFoundError)."""


class ModelTypeError(UserError, TypeError):
    """A model factory that returned something other than an ``nn.Module`` (also a TypeError)."""


class MissingPackageError(UserError, ImportError):
    """An optional package a plugin's entry needs is not installed; the message says how to install it
    (also an ImportError)."""


class CheckpointError(UserError):
    """A weights / checkpoint file that cannot be read (empty, truncated, not a checkpoint)."""


class StorageError(UserError, OSError):
    """A file that cannot be written because of the environment, not robustreg: ENOSPC, EDQUOT, EROFS or EIO
    (also an OSError with that errno).  The message names the file and, on a full disk, the bytes free."""

    def __init__(self, code: int, message: str, filename: str) -> None:
        super().__init__(message)  # ValueError's init (first in the MRO) leaves OSError's fields unset
        self.errno, self.strerror, self.filename = code, message, filename

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno 28] ...: 'path'"
        return str(self.strerror)

    def __reduce__(self) -> tuple[type[StorageError], tuple[Any, ...]]:
        return type(self), (self.errno, self.strerror, self.filename)


#: the errors of the disk a file goes to, not of robustreg or of what the user asked for
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def _free_bytes(folder: Path) -> int | None:
    for place in (folder, *folder.parents):  # the folder itself may not exist (mkdir was what failed)
        try:
            return shutil.disk_usage(place).free
        except OSError:
            continue
    return None


def storage_error(exc: BaseException, path: str | os.PathLike[str]) -> StorageError | None:
    """``cannot write PATH: no space left on device (N bytes free)`` as a :class:`StorageError` when ``exc`` is
    an OSError of the disk (:data:`STORAGE_ERRNOS`) met writing ``path``; None for any other exception."""
    if not isinstance(exc, OSError) or isinstance(exc, StorageError) or exc.errno not in STORAGE_ERRNOS:
        return None
    target = Path(path)
    reason = os.strerror(exc.errno)
    reason = reason[:1].lower() + reason[1:]
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(target.parent)
        reason += f" ({free} bytes free)" if free is not None else ""
    return StorageError(exc.errno, f"cannot write {target}: {reason}", str(target))


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise the disk's errors met in the body as a :class:`StorageError` naming ``path`` (:func:`storage_error`);
    any other exception passes unchanged."""
    try:
        yield
    except OSError as exc:
        mapped = storage_error(exc, path)
        if mapped is None:
            raise
        raise mapped from exc


def _library_dirs() -> tuple[str, str]:
    import torch

    return (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.__file__) + os.sep)


def code_location(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str | None:
    """``file:line`` of the last traceback frame of ``exc`` in ``path`` (the user's file), else the last
    frame outside torch and the standard library; a SyntaxError's own file and line; None if none."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        target = str(Path(path).resolve())
        inside = [f for f in frames if f.filename and str(Path(f.filename).resolve()) == target]
        if inside:
            return f"{inside[-1].filename}:{inside[-1].lineno}"
    torch_dir, stdlib_dir = _library_dirs()

    def library(name: str) -> bool:
        return name.startswith(("<", torch_dir)) or (
            name.startswith(stdlib_dir) and "site-packages" not in name and "dist-packages" not in name)

    outside = [f for f in frames if not library(f.filename)]
    return f"{outside[-1].filename}:{outside[-1].lineno}" if outside else None


_OWN_PACKAGES = ("robustreg", "robustreg_plugins")


def _frames(exc: BaseException) -> list[Any]:
    """The frames of ``exc``'s traceback, innermost first."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames[::-1]


def model_code_file(exc: BaseException) -> str | None:
    """The file of the user's model code ``exc`` came out of, None if robustreg's own code raised it.

    The innermost frame outside torch and the standard library is not robustreg's (nor a robustreg plugin's),
    and it or a frame around it, before any of robustreg's, is a method of an ``nn.Module`` that is not
    robustreg's or torch's: the user's model (from ``file.py:factory``, ``pkg.mod:factory`` or a model source)
    raised in its forward, on the 25th call as well as the first.  A plugin's own attack raising is not this.
    """
    from torch import nn

    torch_dir, stdlib_dir = _library_dirs()
    for frame in _frames(exc):
        name = frame.f_code.co_filename
        if name.startswith(("<", torch_dir)) or (name.startswith(stdlib_dir) and "-packages" not in name):
            continue
        if str(frame.f_globals.get("__name__", "")).split(".")[0] in _OWN_PACKAGES:
            return None  # robustreg's code raised, or called what raised without a user module in between
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and type(owner).__module__.split(".")[0] not in (*_OWN_PACKAGES, "torch"):
            return str(name)
    return None


def describe_exception(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """``RuntimeError: message (at file.py:12)``: the exception's type, first line and where (see
    :func:`code_location`)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SyntaxError):
        text = exc.msg or text
    where = code_location(exc, path)
    return f"{type(exc).__name__}{': ' + text if text else ''}{f' (at {where})' if where else ''}"


def close_matches(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The candidates closest to ``name`` for a "did you mean" hint, ignoring case (``PGD`` finds ``pgd``);
    an exact match but for case comes first."""
    by_lower: dict[str, list[str]] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), []).append(candidate)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=cutoff)
    return [original for lower in close for original in by_lower[lower]][:n]
