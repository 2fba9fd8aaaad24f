"""One run at a time in a folder: the lock a run holds on what it writes, and the last look before it writes.

:func:`folder_lock` takes an exclusive ``fcntl.flock`` on ``FOLDER/.robustreg.lock`` for the whole run and
writes the holder into it (pid, host, command, start time).  A second run is refused at once with one line
naming the folder and the holder (:class:`FolderInUse`, a :class:`~robustreg.UserError`: exit status 2).  The
kernel drops a flock when its holder dies, however it dies, so a lock file that still names a holder while
its flock is free was left by a killed run: it is taken over with a notice on stderr.  A run that ends
removes the file (still holding the lock, so no third run locks a file that is being removed).

:class:`ReportGuard` is the last look before a report is written: report.json as the run found it at its
start, compared again just before the run writes its own, so a report of another configuration that
appeared meanwhile (a writer that does not take the lock) is refused instead of replaced.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["LOCK_FILE", "FolderInUse", "Holder", "ReportGuard", "folder_lock"]

LOCK_FILE = ".robustreg.lock"
_WIDTH = 120  # of the holder's command in the refusal: one line, not a screen


class FolderInUse(UserError):
    """Another run holds the lock of a folder this run would write (exit status 2)."""


def _command_line() -> str:
    """This process's command line, ``robustreg ...`` when it is the robustreg command."""
    argv = list(sys.argv) or ["python"]
    name = Path(argv[0]).name
    head = "robustreg" if name in ("robustreg", "__main__.py") else argv[0]
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock: what the lock file says."""

    pid: int
    host: str
    command: str
    started: str

    @classmethod
    def me(cls, command: str | None = None) -> Holder:
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), command or _command_line(), started)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock file's text names; None for an empty or unreadable file."""
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data.get("command", "?")),
                       str(data.get("started", "?")))
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        command = self.command if len(self.command) <= _WIDTH else self.command[: _WIDTH - 3] + "..."
        return f"pid {self.pid} on {self.host}, since {self.started}: {command}"


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _write(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(asdict(holder)) + "\n").encode("utf-8"))


def _acquire(path: Path) -> tuple[int, bool]:
    """An open descriptor of ``path`` and whether this process now holds its exclusive flock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return fd, False
        except BaseException:
            os.close(fd)
            raise
        # the run before may have removed the file between our open and our flock: the lock we hold is then
        # on a file nobody else opens, so take the one now at ``path`` instead
        try:
            mine, there = os.fstat(fd), os.stat(path)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                return fd, True
        except FileNotFoundError:
            pass
        os.close(fd)


def _shown(folder: Path, given: Path | None) -> str:
    return f"{str(folder)!r}" if given in (None, folder) else f"{str(given)!r}: its folder {str(folder)!r}"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], flag: str = "--out", given: str | os.PathLike[str] | None = None,
                *, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing; removed again if the body fails and leaves it
    empty) for the body; yield the lock file's path.

    ``flag`` and ``given`` (what the flag said, e.g. the state file in ``folder``) name the folder in the
    messages; ``command``: the holder's command line (default this process's).  Another live holder:
    :class:`FolderInUse`; a holder that died: taken over, with a notice on stderr.  On a file system
    without flock the run goes on unlocked, with a warning on stderr.
    """
    folder = Path(folder)
    where = _shown(folder, Path(given) if given is not None else None)
    path = folder / LOCK_FILE
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, locked = _acquire(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise UserError(f"{flag} {where} cannot be locked: {exc.strerror or exc}; choose another {flag}") from None
        sys.stderr.write(f"robustreg: warning: {flag} {where} cannot be locked ({exc.strerror}): another run "
                         f"writing into it at the same time would not be noticed\n")
        fd, locked = -1, False
    if fd < 0:
        yield path
        return
    try:
        previous = Holder.parse(_read(fd))
        if not locked:
            holder = previous.describe() if previous is not None else "its holder is starting"
            raise FolderInUse(f"{flag} {where} is in use by another robustreg run ({holder}); wait for it to "
                              f"finish or choose another {flag}")
        if previous is not None:  # its flock is free: the run that wrote it was killed before removing it
            sys.stderr.write(f"robustreg: warning: taking over the lock of {folder} left by pid {previous.pid} "
                             f"on {previous.host} (no longer running)\n")
        _write(fd, Holder.me(command))
        try:
            yield path
        except BaseException:
            _release(path, folder if created else None)
            raise
        _release(path, None)
    finally:
        os.close(fd)


def _release(path: Path, created: Path | None) -> None:
    """Remove the lock file (the flock still held: see :func:`_acquire`) and ``created``, the folder the
    lock made for a run that failed, if it is empty."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if created is not None:
        with contextlib.suppress(OSError):  # not empty: the run wrote something
            created.rmdir()


def _identity_of(path: Path, identity: Callable[[Mapping[str, Any]], Mapping[str, str]]) -> dict[str, str] | None:
    """``identity`` of the report at ``path``; None when there is none; a marker when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"report.json": f"unreadable ({exc.strerror})"}
    try:
        report = json.loads(text)
    except ValueError:
        return {"report.json": "not JSON"}
    return dict(identity(report)) if isinstance(report, dict) else {"report.json": "not a report"}


def _short(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class ReportGuard:
    """``folder``'s report.json as a run found it at its start (``seen``: its identity, None: no report).

    ``identity(report)``: the values that say which configuration wrote a report (string -> string).
    """

    folder: Path
    identity: Callable[[Mapping[str, Any]], Mapping[str, str]]
    seen: dict[str, str] | None

    @classmethod
    def take(cls, folder: str | os.PathLike[str], identity: Callable[[Mapping[str, Any]], Mapping[str, str]]
             ) -> ReportGuard:
        folder = Path(folder)
        return cls(folder, identity, _identity_of(folder / "report.json", identity))

    def check(self, report: Mapping[str, Any], flag: str = "--out", kept: str = "") -> None:
        """Just before writing ``report``: refuse (a UserError) when report.json changed since the start into
        a report of another configuration than ``report``'s.  ``kept``: what the message adds (where this
        run's work is kept)."""
        now = _identity_of(self.folder / "report.json", self.identity)
        mine = dict(self.identity(report))
        if now is None or now == self.seen or now == mine:
            return
        differ = "; ".join(f"{key} (there {_short(now.get(key))}, this run {_short(mine.get(key))})"
                           for key in sorted(set(now) | set(mine)) if now.get(key) != mine.get(key))
        raise UserError(f"{flag} {str(self.folder)!r}: another run wrote a report of another configuration "
                        f"while this one ran ({differ}); this run's report is not written{kept}; choose "
                        f"another {flag}")
