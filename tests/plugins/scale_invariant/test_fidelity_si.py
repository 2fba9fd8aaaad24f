"""HE fidelity options: the inner attack's normal start (Pang et al.'s code) and the head's weights
renormalised in place (Pang et al.'s code) instead of differentiated through W / |W|."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Head
from robustreg_plugins.scale_invariant.defense_he import HEAT, TRADESHE, he_head


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))


@pytest.mark.parametrize("cls", [HEAT, TRADESHE])
def test_he_starts_from_normal_noise(cls):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    d = cls(seed=3)
    assert d.init == "normal"
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3 * 1_000_003 + 5))
    assert torch.allclose(d.start_point(x, 5), (x + 0.001 * noise).clamp(0, 1))
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(3 * 1_000_003 + 5)) * 2 - 1
    assert torch.allclose(cls(seed=3, init="uniform").start_point(x, 5), (x + 8 / 255 * uniform).clamp(0, 1))


def test_in_place_head_gradient_is_unprojected_and_unscaled():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, 16, generator=gen)
    w0 = 3.0 * torch.randn(10, 16, generator=gen)  # rows far from unit norm
    y = torch.arange(6)
    s = 15.0
    w = w0.clone().requires_grad_(True)
    logits = he_head(s, "in-place").logits(z, w, None)
    assert torch.allclose(w.detach().norm(dim=1), torch.ones(10), atol=1e-6)  # renormalised in place
    wn = F.normalize(w0, dim=1)
    zn = F.normalize(z, dim=1)
    assert torch.allclose(logits, s * zn @ wn.T, atol=1e-5)
    (g,) = torch.autograd.grad(F.cross_entropy(logits, y), w)
    dl = (F.softmax(s * zn @ wn.T, dim=1) - F.one_hot(y, 10)) / 6  # dL/dlogits
    assert torch.allclose(g, s * dl.T @ zn, atol=1e-5)  # d/dW of s * zn . W with W used as it is
    # differentiating through W / |W| instead: projected orthogonally to W_k and divided by |W_k|
    w2 = w0.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(F.cross_entropy(he_head(s, "differentiable").logits(z, w2, None), y), w2)
    raw = s * dl.T @ zn
    projected = (raw - (raw * wn).sum(1, keepdim=True) * wn) / w0.norm(dim=1, keepdim=True)
    assert torch.allclose(g2, projected, atol=1e-5)
    assert Head.from_dict(he_head(s, "in-place").to_dict()) == he_head(s, "in-place")
    assert "renormalize_weights" not in he_head(s).to_dict()  # the default head's record is unchanged


def test_he_defense_declares_the_in_place_head_and_trains_through_it():
    model, x, y = _model(), torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    assert HEAT().weight_norm == "differentiable"  # the default (see the defense's docstring)
    d = HEAT(steps=1, seed=0, weight_norm="in-place")
    assert d.head() == he_head(15.0, "in-place")
    out = d.loss(model, x, y)
    out.loss.backward()
    assert torch.allclose(model[-1].weight.detach().norm(dim=1), torch.ones(10), atol=1e-6)
    assert model[-1].weight.grad is not None and torch.isfinite(model[-1].weight.grad).all()
    # two forwards through the renormalised W
    TRADESHE(steps=1, seed=0, weight_norm="in-place").loss(model, x, y).loss.backward()
