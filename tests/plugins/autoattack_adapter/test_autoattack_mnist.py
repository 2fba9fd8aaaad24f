"""autoattack:apgd-ce against native PGD-40 on the PGD-trained LeNet-5, first 200 MNIST test images."""

from __future__ import annotations

import pytest
import torch

from robustreg import ThreatModel


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.slow
def test_apgd_ce_no_weaker_than_native_pgd(registry, lenet_mnist, native_pgd40_accuracy):
    model, x, y = lenet_mnist
    native = native_pgd40_accuracy
    result = registry.build_attack("autoattack:apgd-ce", ThreatModel("linf", 0.3), seed=0).run(model, x, y)
    apgd = _accuracy(model, result.x_adv, y)
    assert 0.85 < native < 1.0
    assert apgd <= native + 0.02, f"autoattack:apgd-ce {apgd:.3f} vs native PGD-40 {native:.3f}"
    # the per-sample record is the final correctness of the attacked points
    assert abs(float(result.extras["robust_after:apgd-ce"].float().mean()) - apgd) < 1e-6
