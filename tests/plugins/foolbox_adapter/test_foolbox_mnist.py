"""Real data: foolbox's PGD agrees with native PGD on a real checkpoint (within 2 points).

The PGD-adversarially-trained LeNet-5 of /work/shared/models (eps 0.3), the first 200 MNIST test images,
PGD-40 with step 0.01 and a random start (conftest's ``native_pgd40_accuracy``): the robust accuracy of
``foolbox:pgd`` must be within 2 points of native ``pgd``'s (the README quotes ~93.6% on the first 1000).
"""

from __future__ import annotations

import torch

from robustreg import ThreatModel

PGD40 = {"steps": 40, "step_size": 0.01, "random_start": True}  # as conftest's native_pgd40_accuracy


def test_foolbox_pgd_agrees_with_native_pgd_on_the_pgd_trained_lenet(registry, lenet_mnist, native_pgd40_accuracy):
    model, x, y = lenet_mnist
    threat = ThreatModel("linf", 0.3)
    x_adv = registry.build_attack("foolbox:pgd", threat, seed=0, **PGD40)(model, x, y)
    assert float((x_adv - x).abs().max()) <= 0.3 + 1e-6
    with torch.no_grad():
        acc = 100.0 * float((model(x_adv).argmax(1) == y).float().mean())
    native = 100.0 * native_pgd40_accuracy
    # a broken adapter gives ~99% (no attack) or ~0% (labels or bounds wrong)
    assert 85.0 <= acc <= 98.0, f"foolbox:pgd robust accuracy {acc:.1f}%"
    assert abs(acc - native) <= 2.0, f"foolbox:pgd {acc:.1f}% vs native pgd {native:.1f}%"
