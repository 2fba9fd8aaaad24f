"""Shared fixtures: where the real data and checkpoints are, and a small CPU budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread: tests use tiny batches, where a second OpenMP thread only adds synchronisation, and
# under any other load (the DDP test's second process, a parallel job) two threads spin-wait badly.
torch.set_num_threads(1)

SHARED = Path(os.environ.get("ROBUSTREG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set ROBUSTREG_SHARED to the folder holding data/ and models/)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED, "the shared data folder")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _need(SHARED / "data" / "mnist", "the MNIST test files")


@pytest.fixture(scope="session")
def cifar_npz() -> Path:
    return _need(SHARED / "data" / "cifar10" / "cifar10_test_first932.npz", "the 932 exact CIFAR-10 test images")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _need(SHARED / "models", "the shared checkpoints")


@pytest.fixture(scope="session")
def registry():
    from robustreg import Registry

    return Registry.create()
