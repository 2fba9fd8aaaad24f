"""autoattack:apgd-ce against native PGD-40 on the PGD-trained LeNet-5, first 200 MNIST test images."""

from __future__ import annotations

import pytest
import torch

from robustreg import ThreatModel

N = 200
EPS = 0.3


@pytest.fixture(scope="module")
def lenet_mnist(models_dir, mnist_dir):
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("lenet5-mnist", weights=str(models_dir / "mnist_lenet5_advtrained.pt")).eval()
    x, y = load_data(f"mnist:{mnist_dir}").tensors(N)
    return model, x, y


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.slow
def test_apgd_ce_no_weaker_than_native_pgd(registry, lenet_mnist):
    model, x, y = lenet_mnist
    threat = ThreatModel("linf", EPS)
    pgd = registry.build_attack("pgd", threat, steps=40, step_size=0.01, random_start=True, seed=0)
    native = _accuracy(model, pgd(model, x, y), y)
    result = registry.build_attack("autoattack:apgd-ce", threat, seed=0).run(model, x, y)
    apgd = _accuracy(model, result.x_adv, y)
    assert 0.85 < native < 1.0
    assert apgd <= native + 0.02, f"autoattack:apgd-ce {apgd:.3f} vs native PGD-40 {native:.3f}"
    # the per-sample record is the final correctness of the attacked points
    assert abs(float(result.extras["robust_after:apgd-ce"].float().mean()) - apgd) < 1e-6
