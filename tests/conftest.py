"""Shared fixtures: where the real data and checkpoints are, and a small CPU budget."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

# One thread by default: tests use tiny batches, where a second OpenMP thread only adds synchronisation,
# and under any other load (the DDP test's second process, a parallel job) two threads spin-wait badly.
# `--torch-threads N` runs them with N threads instead: a result that depends on how a reduction is split
# between threads then shows (.ci/run reruns the numerics-marked tests on the scalar kernels with 2).
torch.set_num_threads(1)


def _thread_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--torch-threads must be an integer >= 1, got {text!r}")
    return int(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--torch-threads", type=_thread_count, default=1, metavar="N",
                     help="torch's intra-op threads for the tests (default 1)")


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(config.getoption("--torch-threads"))

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


# The real-data agreement tests of the three toolkit adapters share one model, one batch and one
# native PGD-40 run: the PGD-trained LeNet-5 at eps 0.3 on the first 200 MNIST test images.
MNIST_N = 200
PGD40 = {"steps": 40, "step_size": 0.01, "random_start": True}


@pytest.fixture(scope="session")
def lenet_mnist(models_dir, mnist_dir):
    """(model in eval mode, x, y): ``mnist_lenet5_advtrained.pt`` and the first 200 MNIST test images."""
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("lenet5-mnist", weights=models_dir / "mnist_lenet5_advtrained.pt").eval()
    x, y = load_data(f"mnist:{mnist_dir}").tensors(MNIST_N)
    return model, x, y


@pytest.fixture(scope="session")
def native_pgd40_accuracy(registry, lenet_mnist) -> float:
    """Robust accuracy (fraction) of native ``pgd``, 40 steps of 0.01 with a random start, eps 0.3, seed 0."""
    from robustreg import ThreatModel

    model, x, y = lenet_mnist
    x_adv = registry.build_attack("pgd", ThreatModel("linf", 0.3), seed=0, **PGD40)(model, x, y)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())
