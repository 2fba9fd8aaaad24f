"""The one error type for a user's mistake, and where in the user's own code an exception came from.

:class:`UserError` (a ValueError) is what robustreg raises for something the user gave: a bad value,
a file that is not what its name says, a model that does not fit the data, model code that raised.
The ``robustreg`` command prints it as one line, ``robustreg: error: ...``, exit status 2; anything
else is a bug in robustreg or a plugin (one line saying so, the traceback with ``ROBUSTREG_DEBUG=1``).

:class:`ParamError` (:mod:`robustreg.params`) and the commands' :class:`~robustreg.UsageError` are
UserErrors.  :class:`ModelCodeError` is the user's own model code raising (its factory, its import,
its forward); :class:`CheckpointError` a weights file that cannot be read.
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "CheckpointError",
    "ModelCodeError",
    "ModelSpecError",
    "ModelTypeError",
    "UserError",
    "close_matches",
    "code_location",
    "describe_exception",
]


class UserError(ValueError):
    """A mistake in what the user gave; ``robustreg`` reports it as one line, exit status 2."""


class ModelCodeError(UserError):
    """The user's model code raised (importing it, its factory, its forward); the message says where."""


class ModelSpecError(ModuleNotFoundError, UserError):
    """A ``package.module:factory`` model spec whose module does not exist (also a ModuleNotFoundError)."""


class ModelTypeError(UserError, TypeError):
    """A model factory that returned something other than an ``nn.Module`` (also a TypeError)."""


class CheckpointError(UserError):
    """A weights / checkpoint file that cannot be read (empty, truncated, not a checkpoint)."""


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
