"""Atomic writes: a failed write keeps the old file and leaves no temporary behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustreg import save_atomic, write_atomic
from robustreg.files import remove_stale_temporaries, write_set_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "f.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    with pytest.raises(TypeError):
        write_atomic(target, object())  # a failed write keeps the old file
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_save_atomic_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    save_atomic({"a": torch.ones(2)}, target)
    save_atomic({"a": torch.zeros(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_atomic({"x": Unpicklable()}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.zeros(2))  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_write_set_atomic_renames_the_key_file_last(tmp_path, monkeypatch):
    from robustreg import files

    write_set_atomic(tmp_path, {"report.json": "old", "report.md": "old md"}, last="report.json")
    renamed = []
    real_replace = files.os.replace

    def replace_then_die(src, dst):
        if len(renamed) == 1:
            raise KeyboardInterrupt  # a kill between two renames
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_set_atomic(tmp_path, {"report.json": "new", "report.md": "new md"}, last="report.json")
    assert renamed == ["report.md"]
    assert (tmp_path / "report.json").read_text() == "old"  # the key file still describes the old run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]  # no temporaries left
    with pytest.raises(ValueError, match="last must be one of"):
        write_set_atomic(tmp_path, {"a": "x"}, last="b")


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = tmp_path / f".report.json.{int(dead.stdout)}.tmp"
    live = tmp_path / f".state.pt.{os.getpid()}.tmp"
    other = tmp_path / "notes.tmp"
    for path in (stale, live, other):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
    assert remove_stale_temporaries(tmp_path / "missing") == []
