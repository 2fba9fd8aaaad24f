"""SI-PGD: its loss by hand, and its defining property (paper 004 Fig. 1): invariance to logit scaling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreg import ThreatModel, embed
from robustreg.testing import tiny_batch, tiny_model
from robustreg_plugins.scale_invariant import SIPGD


class Scaled(nn.Module):
    """alpha * model(x): the same decisions with rescaled logits."""

    def __init__(self, model: nn.Module, alpha: float) -> None:
        super().__init__()
        self.model, self.alpha = model, alpha

    def forward(self, x):
        return self.alpha * self.model(x)


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_one_step_follows_scaled_cosine_ce():
    model, (x, y) = tiny_model().eval(), tiny_batch()
    eps, s = 0.05, 15.0
    xr = x.clone().requires_grad_(True)
    loss = F.cross_entropy(s * embed(model, xr).cosine(), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    expected = (x + eps * g.sign()).clamp(0, 1)
    got = SIPGD(ThreatModel("linf", eps), s=s, steps=1, step_size=eps, random_start=False)(model, x, y)
    assert torch.allclose(got, expected, atol=1e-6)


def test_output_identical_under_logit_scaling_tiny():
    model, (x, y) = tiny_model().eval(), tiny_batch()
    attack = SIPGD(ThreatModel("linf", 0.1), steps=5, seed=0)
    ref = attack(model, x, y)
    for alpha in (1e-3, 1e3):
        assert torch.equal(attack(Scaled(model, alpha), x, y), ref)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_lowers_accuracy(norm, eps):
    model, (x, y) = tiny_model().eval(), tiny_batch(32)
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv = SIPGD(ThreatModel(norm, eps), steps=10, restarts=2, seed=0)(model, x, y)
    assert _acc(model, x_adv, y) < 0.5


@pytest.mark.parametrize("kwargs, match", [({"s": 0}, "s must"), ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"),
                                           ({"step_size": 0.0}, "step_size"), ({"random_start": 1}, "random_start")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SIPGD(ThreatModel(), **kwargs)


def test_model_without_linear_head_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    x, y = tiny_batch()
    with pytest.raises(ValueError, match="nn.Linear"):
        SIPGD(ThreatModel(), steps=1)(model, x, y)


def test_scale_invariance_on_real_model(mnist_dir, models_dir):
    """Paper 004 Fig. 1: PGD's robust accuracy moves with the logit scale; SI-PGD's does not.

    On the standard-trained LeNet, alpha = 1e3 saturates float32 softmax for confident points, so
    PGD's CE gradient is exactly zero there and PGD stalls; SI-PGD only sees cos(theta).
    """
    from robustreg.data import load_data
    from robustreg.models import build_model
    from robustreg_plugins.classic import PGD  # a test may use two plugins; the plugins never do

    model = build_model("lenet5-mnist", weights=models_dir / "mnist_lenet5_clntrained.pt")
    x, y = load_data(f"mnist:{mnist_dir}").tensors(200)
    threat = ThreatModel("linf", 0.2)
    pgd_acc, si_acc = {}, {}
    for alpha in (1e-3, 1.0, 1e3):
        scaled = Scaled(model, alpha).eval()
        pgd_acc[alpha] = _acc(scaled, PGD(threat, steps=10, seed=0)(scaled, x, y), y)
        si_acc[alpha] = _acc(scaled, SIPGD(threat, steps=10, seed=0)(scaled, x, y), y)
    assert si_acc[1e-3] == si_acc[1.0] == si_acc[1e3], si_acc
    assert si_acc[1.0] < 0.2, si_acc
    assert pgd_acc[1.0] < 0.2, pgd_acc
    assert pgd_acc[1e3] > pgd_acc[1.0] + 0.3, pgd_acc
