"""Atomic writes: a failed write keeps the old file and leaves no temporary behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustreg import save_atomic, write_atomic


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
