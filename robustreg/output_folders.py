"""The output folders of a command (``--out``, the state's folder): what is in them is never lost or
silently reused.

- :func:`output_folders` finds a folder that cannot be written before any work starts (it creates the
  folder, then creates and removes a temporary file in it), removes the ``.NAME.PID.tmp`` files a
  killed write left (:func:`robustreg.files.remove_stale_temporaries`), and, should the run fail, removes
  the folders it created that are still empty; it holds each folder's lock meanwhile
  (:func:`robustreg.lock.folder_lock`), so a second run into the same folder is refused at once.
- :func:`existing_report` refuses a finished report.json of another configuration (one line naming
  the folder and what differs) unless ``--overwrite``, and hands back the report of the same
  configuration, so a rerun says the report is already there instead of recomputing it.
- :func:`refresh_rendered` re-renders report.md, results.csv and the PNG from report.json when they do
  not match it (what a kill between the renames of :func:`robustreg.report.write_report` leaves).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError
from .files import remove_stale_temporaries
from .lock import folder_lock
from .readback import Damage
from .report import REPORT_FILES, render_csv, render_markdown, write_report

__all__ = ["existing_report", "output_folders", "probe_folder", "refresh_rendered"]


def _missing(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, outermost first."""
    missing: list[Path] = []
    path = folder
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing[::-1]


def _remove_empty(folders: Sequence[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):  # not empty (the run wrote something) or already gone
            folder.rmdir()


def probe_folder(folder: Path, flag: str, given: Path | None = None) -> list[Path]:
    """Create ``folder`` (and its missing parents) and a temporary file in it, remove the file; return
    the folders created.  A folder that cannot be written is a :class:`UsageError` naming ``flag`` and
    ``given`` (what the flag said, e.g. the state file in ``folder``; default ``folder``)."""
    created: list[Path] = []
    try:
        for path in _missing(folder):
            path.mkdir()
            created.append(path)
        probe = folder / f".write-probe.{os.getpid()}.tmp"  # the .NAME.PID.tmp form: a killed probe is cleared
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as exc:
        _remove_empty(created)
        where = f" ({exc.filename})" if exc.filename else ""
        shown = f"{str(folder)!r}" if given in (None, folder) else f"{str(given)!r}: the folder {str(folder)!r}"
        raise UsageError(f"{flag} {shown} cannot be written: {exc.strerror or exc}{where}; "
                         f"choose another {flag}") from None
    return created


@contextlib.contextmanager
def output_folders(folders: Sequence[tuple[str, Path, Path]]) -> Iterator[None]:
    """Probe each ``(flag, what it gave, folder)``, hold its lock for the body (:func:`robustreg.lock.folder_lock`:
    a second run into it is refused) and clear its stale temporaries before the body runs; if the body
    fails (an error or an interrupt), remove the folders created here that are still empty."""
    created: list[Path] = []
    try:
        unique = {Path(os.path.abspath(folder)): (flag, given, folder) for flag, given, folder in reversed(folders)}
        with contextlib.ExitStack() as locks:  # released before the empty folders are removed
            for flag, given, folder in reversed(unique.values()):
                created += probe_folder(folder, flag, given)
                locks.enter_context(folder_lock(folder, flag, given))
                remove_stale_temporaries(folder)
            yield
    except BaseException:
        _remove_empty(created)
        raise


def _differences(saved: Mapping[str, str], now: Mapping[str, str], width: int = 80) -> list[str]:
    def short(value: Any) -> str:
        text = str(value)
        return text if len(text) <= width else text[: width - 3] + "..."

    return [f"{key} (report {short(saved.get(key))}, now {short(now[key])})"
            for key in now if saved.get(key) != now[key]]


def existing_report(out: Path, now: Callable[[], Mapping[str, str]],
                    saved: Callable[[Mapping[str, Any]], Mapping[str, str]], *, overwrite: bool,
                    flag: str = "--out") -> dict[str, Any] | None:
    """The finished report in ``out`` when this configuration wrote it; None when there is none (or
    ``overwrite``).  ``now()``: this run's identity (computed only when there is a report);
    ``saved(report)``: the report's, a :class:`~robustreg.readback.Damage` when the report holds what no run
    writes.  A damaged report or another configuration's is a :class:`UsageError`."""
    path = out / "report.json"
    if overwrite or not path.is_file():
        return None
    hint = f"pass --overwrite to replace it or choose another {flag}"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            raise ValueError(f"a JSON {type(report).__name__}, not a report")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{flag} {str(out)!r} holds a report.json that cannot be read ({exc}); {hint}") from None
    try:
        identity = saved(report)
    except Damage as exc:  # version and fingerprints may be right, the rest edited or cut: never trusted
        raise UsageError(f"{flag} {str(out)!r} holds a damaged report.json: {exc}; delete it, {hint}") from None
    differ = _differences(identity, now())
    if differ:
        raise UsageError(f"{flag} {str(out)!r} already holds a finished report of another configuration: "
                         f"{'; '.join(differ)}; {hint}")
    return report


def _text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def refresh_rendered(report: Mapping[str, Any], out: Path) -> bool:
    """Rewrite the report set from ``report`` (out's report.json) if report.md, results.csv or the PNG
    is missing or does not match it; return whether it did."""
    texts = {REPORT_FILES["markdown"]: render_markdown(report), REPORT_FILES["csv"]: render_csv(report)}
    stale = not (out / REPORT_FILES["plot"]).is_file() or any(_text_of(out / n) != t for n, t in texts.items())
    if stale:
        write_report(report, out)
    return stale
