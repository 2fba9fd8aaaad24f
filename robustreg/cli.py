"""The ``robustreg`` command: the parser is built from the registered commands.

Every subcommand -- the core's own ``list``, ``evaluate``, ``compare`` and ``train``
(:mod:`robustreg.commands`) as much as a plugin's (the AutoAttack adapter's ``autoattack``, the
cascade plugin's ``cascade-store``) -- is registered through ``robustreg_register_commands``.

User errors (:class:`robustreg.UserError`: an unknown name, a bad value, a file that is not what it
should be, a model that does not fit the data; a registry error; an OSError on a path) exit with
status 2 and one line on stderr, ``robustreg: error: ...``; so do the user's model code raising and a
full or read-only disk.  Anything else is a bug: one line saying so, exit status 1.  ``--debug`` (or
``ROBUSTREG_DEBUG=1``) shows the traceback instead.  Ctrl-C (status 130) and SIGTERM (143) end with one
line, ``robustreg: interrupted; ...``, saying how to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from ._version import __version__
from .checks import CheckWarning
from .errors import UsageError, UserError, describe_exception, model_code_file
from .plugin_api import show_deprecations
from .registry import CORE_PLUGINS, Registry, RegistryError

__all__ = ["PROG", "UsageError", "UserError", "build_parser", "debug_enabled", "main", "user_error_message"]

PROG = "robustreg"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    """The full parser: one subcommand per registered command, in registration order (the core's first)."""
    parser = _Parser(prog=PROG, description="A plugin-based registry of adversarial attacks and defenses.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (anywhere on the line)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(registry=registry, func=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    specs = sorted(registry.entries("commands").values(), key=lambda spec: spec.plugin not in CORE_PLUGINS)
    for spec in specs:
        p = sub.add_parser(spec.name, help=spec.summary)
        p.set_defaults(registry=registry)  # a command whose arguments depend on the registry reads it here
        spec.configure(p)
        p.set_defaults(func=spec.run)
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return 2


_OWN_CODE = ("robustreg", "robustreg_plugins")


def _raised_by_us(exc: BaseException) -> bool:
    """The innermost frame of ``exc`` is robustreg's or a plugin's code (not torch's, numpy's, ...)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.split(".")[0] in _OWN_CODE


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, None for an internal error (a bug).

    User errors: a :class:`~robustreg.UserError` (ParamError, UsageError, StorageError, ...), a registry
    error, any exception out of the user's model code (:func:`robustreg.errors.model_code_file`), an
    OSError on a path, and a ValueError raised by robustreg's own checks (the API's bad-value error);
    not a ValueError from inside torch, nor a TypeError, KeyError, RuntimeError, ... from robustreg.
    """
    if isinstance(exc, (UserError, RegistryError)):
        return str(exc) or type(exc).__name__
    model_file = model_code_file(exc)
    if model_file is not None:  # the user's model raised mid-run, as the probe says when it raises at the start
        return f"the model's forward raised {describe_exception(exc, model_file)}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, ValueError) and _raised_by_us(exc):
        return str(exc) or type(exc).__name__
    return None


def _bug(exc: BaseException) -> int:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    first = (str(exc).strip().splitlines() or [""])[0]
    sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}{': ' + first if first else ''}{at} -- this "
                     f"is a bug; rerun with ROBUSTREG_DEBUG=1 for the traceback and report it\n")
    return 1


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, ``timeout``, torchrun stopping its workers), raised where the run is so
    that it unwinds as Ctrl-C does: atomic writes drop their temporaries, the state of the last batch stays."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` in the body (main thread only: elsewhere Python has no handlers);
    the caller's handler is put back after (``main`` may be called from tests or notebooks)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)  # None: set outside Python


def _interrupted(args: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    """``robustreg: interrupted (SIGTERM); run the same command again to resume from ...``: the command's
    ``on_interrupt(args)`` says how to go on; status 143 for SIGTERM (128 + 15), 130 for Ctrl-C."""
    terminated = isinstance(exc, _Terminated)
    hint = getattr(args, "on_interrupt", None)
    advice = hint(args) if callable(hint) else None
    sys.stderr.write(f"{PROG}: interrupted{' (SIGTERM)' if terminated else ''}{'; ' + advice if advice else ''}\n")
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def _reader_left() -> int:
    """The reader of our output closed it (``robustreg list | head``): stop quietly with status 0, as a
    command killed by SIGPIPE does in a shell pipeline.  stdout goes to /dev/null so that the flush at exit
    does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        with _sigterm_unwinds():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        return _interrupted(args, exc)
    except BrokenPipeError:
        return _reader_left()
    except Exception as exc:
        if debug:
            raise
        message = user_error_message(exc)
        return _fail(message) if message is not None else _bug(exc)


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    """``--debug`` on the line or ``ROBUSTREG_DEBUG`` set (to anything but ``0`` or empty)."""
    return "--debug" in argv or os.environ.get("ROBUSTREG_DEBUG", "") not in ("", "0")


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` on the command line: one ``robustreg: warning: ...`` line, without Python's
    installation path and source line."""
    (file or sys.stderr).write(f"{PROG}: warning: {' '.join(str(message).split())}\n")


def _one_line_warnings(fn: Callable[..., int]) -> Callable[..., int]:
    """Run ``fn`` with every warning shown as :func:`_warning_line` (restored afterwards: the Python API keeps
    Python's own format)."""
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            return fn(*args, **kwargs)
    return wrapped


@_one_line_warnings
def main(argv: Sequence[str] | None = None, *, registry: Registry | None = None) -> int:
    """Entry point of the ``robustreg`` console script; returns the exit status.

    ``registry``: use this registry instead of ``Registry.create()`` (tests, notebooks).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m robustreg -- evaluate ...`: the `--` keeps torchrun off our options
        argv = argv[1:]
    # --debug is accepted anywhere on the line (before or after the subcommand)
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != "--debug"]
    show_deprecations()  # Python hides DeprecationWarnings outside __main__; a plugin's show once per entry
    try:
        registry = registry if registry is not None else Registry.create()
    except RegistryError as exc:
        if debug:
            raise
        return _fail(str(exc))
    for plugin, message in registry.load_errors:
        sys.stderr.write(f"{PROG}: warning: plugin {plugin!r} failed to load: {message}\n")
    parser = build_parser(registry)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed as one line) or --help / --version
        return exc.code if isinstance(exc.code, int) else 2
    if args.func is None:
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckWarning)  # every command prints its report's checks itself
        return _run(args, debug)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
