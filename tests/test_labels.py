"""least_likely: the class of the lowest logit, per sample."""

from __future__ import annotations

import pytest
import torch

from robustreg import least_likely


def test_lowest_logit_per_row():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -4.0], [-0.2, 1.0, 7.0]])
    assert least_likely(logits).tolist() == [1, 2, 0]
    assert least_likely(logits).dtype == torch.int64


def test_same_as_lowest_softmax_probability():
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(least_likely(logits), logits.softmax(dim=1).argmin(dim=1))


def test_not_a_batch_of_logits():
    with pytest.raises(ValueError, match=r"logits must be N x K .*, got shape \(10,\)"):
        least_likely(torch.zeros(10))
