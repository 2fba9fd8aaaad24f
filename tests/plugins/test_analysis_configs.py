"""Every analysis entry takes its options as a config dataclass (checked once) or as its old keywords."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg_plugins.cascade.analyses.gradient_correlation import GradientCorrelationConfig, gradient_correlation
from robustreg_plugins.cascade.analyses.label_leaking import LabelLeakingConfig
from robustreg_plugins.cascade.analyses.softmax_argument import SoftmaxArgumentConfig
from robustreg_plugins.cascade.analyses.transfer import TransferConfig
from robustreg_plugins.scale_invariant.analyses.cos_histogram import CosHistogramConfig
from robustreg_plugins.scale_invariant.analyses.logit_scale import LogitScaleConfig
from robustreg_plugins.scale_invariant.analyses.loss_surface import LossSurfaceConfig
from robustreg_plugins.scale_invariant.analyses.weight_surface import WeightSurfaceConfig

CONFIGS = [GradientCorrelationConfig, SoftmaxArgumentConfig, LabelLeakingConfig, TransferConfig, CosHistogramConfig,
           LogitScaleConfig, LossSurfaceConfig, WeightSurfaceConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_bad_shared_options_fail_once_naming_the_option(cls):
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        cls(batch_size=0)
    with pytest.raises(ValueError, match="seed must be an int"):
        cls(seed="0")


def test_config_and_keywords_agree():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.rand(12, 1, 4, 4, generator=gen)
    y = torch.randint(0, 4, (12,), generator=gen)
    by_keywords = gradient_correlation(model, x, y, [0.05, 0.1], seed=3, batch_size=5)
    by_config = gradient_correlation(model, x, y, [0.05, 0.1], GradientCorrelationConfig(seed=3, batch_size=5))
    assert by_config == by_keywords
    with pytest.raises(TypeError, match=r"gradient_correlation\(\) got unexpected keyword argument\(s\): sead"):
        gradient_correlation(model, x, y, [0.05], sead=3)
