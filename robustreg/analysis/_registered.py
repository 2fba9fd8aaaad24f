"""Imports every analysis module so that each registers its :class:`~robustreg.analysis.Analysis`."""

from __future__ import annotations

from . import (  # noqa: F401
    cos_histogram,
    gradient_correlation,
    label_leaking,
    logit_scale,
    loss_surface,
    softmax_argument,
    transfer,
    weight_surface,
)
