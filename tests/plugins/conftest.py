"""Fixtures the plugins' analysis tests share."""

from __future__ import annotations

import pytest

from robustreg.data import load_data
from robustreg.models import build_model


@pytest.fixture(scope="module")
def cnn_digits(request):
    """The pretrained digits CNN (eval mode) and the first ``N`` digits, ``N`` from the test module."""
    model = build_model("digits-cnn-pretrained").eval()
    x, y = load_data("digits").tensors(request.module.N)
    return model, x, y
