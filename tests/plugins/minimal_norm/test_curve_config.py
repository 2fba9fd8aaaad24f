"""curve_report takes its options as a CurveConfig (checked once) or as the keywords it always took."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import Registry
from robustreg_plugins.minimal_norm.curve import CurveConfig, curve_report


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.empty(10, 64).uniform_(-0.125, 0.125, generator=gen))
        model[1].bias.zero_()
    x = torch.rand(16, 1, 8, 8, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, Registry.create()


def test_config_keywords_and_the_positional_norm_agree(problem):
    model, x, y, reg = problem
    options = dict(params={"steps": 5}, verifier="pgd", at=[0.05], verify_params={"steps": 3}, seed=2)
    by_keywords = curve_report(model, x, y, reg, "fmn", norm="linf", **options)
    by_config = curve_report(model, x, y, reg, "fmn", CurveConfig(norm="linf", **options))
    positional = curve_report(model, x, y, reg, "fmn", "linf", **options)  # the older call
    for report in (by_config, positional):
        for key in ("norms", "curve", "params", "seed", "norm"):
            assert report[key] == by_keywords[key]
        assert report["verification"] == by_keywords["verification"]
    assert by_keywords["verification"][0]["attack"] == "pgd" and by_keywords["params"] == {"steps": 5}


@pytest.mark.parametrize(("options", "match"), [
    ({"verifier": "pgd"}, "verifier and at go together"),
    ({"at": [0.1]}, "verifier and at go together"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"eps": [2.0]}, "eps: eps must be in"),
    ({"params": [("steps", 3)]}, "params must be a mapping"),
])
def test_bad_options_fail_once_naming_the_option(options, match):
    with pytest.raises(ValueError, match=match):
        CurveConfig(**options)


def test_unknown_option_is_a_type_error(problem):
    model, x, y, reg = problem
    with pytest.raises(TypeError, match=r"curve_report\(\) got unexpected keyword argument\(s\): step "):
        curve_report(model, x, y, reg, "fmn", step=3)
