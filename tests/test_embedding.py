"""embed(): logits, penultimate features, head weights and cos(theta) of any Linear-headed model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import embed
from robustreg.embedding import head_of
from robustreg.testing import tiny_batch, tiny_model


class Scaled(nn.Module):
    """Multiplies the wrapped model's logits by ``alpha`` (same decisions, rescaled logits)."""

    def __init__(self, model: nn.Module, alpha: float) -> None:
        super().__init__()
        self.model, self.alpha = model, alpha

    def forward(self, x):
        return self.alpha * self.model(x)


def test_cosine_matches_manual_computation():
    model = tiny_model().eval()
    x, _ = tiny_batch()
    emb = embed(model, x)
    head = model[-1]
    z = model[:-1](x)
    assert emb.head_name == str(len(model) - 1)
    assert emb.weight is head.weight and emb.bias is head.bias
    assert torch.allclose(emb.features, z, atol=1e-6)
    assert torch.allclose(emb.logits, model(x), atol=1e-6)
    manual = (z @ head.weight.T) / (z.norm(dim=1, keepdim=True) * head.weight.norm(dim=1)[None, :])
    cos = emb.cosine()
    assert cos.shape == (x.shape[0], 10)
    assert torch.allclose(cos, manual, atol=1e-5)
    assert float(cos.detach().abs().max()) <= 1 + 1e-6


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 1e3])
def test_logit_scaling_leaves_features_and_cosine(alpha):
    model = tiny_model().eval()
    x, _ = tiny_batch()
    base = embed(model, x)
    scaled = embed(Scaled(model, alpha), x)
    assert torch.allclose(scaled.logits, alpha * base.logits, rtol=1e-5, atol=1e-6)
    assert torch.allclose(scaled.features, base.features)
    assert torch.allclose(scaled.cosine(), base.cosine())
    assert scaled.head_name == f"model.{len(model) - 1}"


def test_embedding_is_differentiable_in_the_input():
    model = tiny_model().eval()
    x, _ = tiny_batch()
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(embed(model, x).cosine().sum(), x)
    assert grad.shape == x.shape and float(grad.abs().sum()) > 0


def test_no_hooks_left_behind():
    model = tiny_model().eval()
    x, _ = tiny_batch()
    embed(model, x)
    assert all(not m._forward_hooks for m in model.modules())


def test_model_without_linear_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    x, _ = tiny_batch()
    with pytest.raises(ValueError, match="no nn.Linear"):
        embed(model, x)
    with pytest.raises(ValueError, match="no nn.Linear"):
        head_of(model)


def test_last_linear_not_the_head_is_a_clear_error():
    # a Linear runs last but the model then pools its output: not a classification head
    class PoolsAfter(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 20)

        def forward(self, x):
            return self.fc(x.flatten(1)).view(-1, 10, 2).mean(2)

    with pytest.raises(ValueError, match="classification head"):
        embed(PoolsAfter(), tiny_batch()[0])
