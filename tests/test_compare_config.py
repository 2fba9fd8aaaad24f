"""compare() takes its options as a CompareConfig (validated once) or as the keywords it always took."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import Registry
from robustreg.compare import CompareConfig, compare


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.copy_(torch.empty(10, 64).uniform_(-0.125, 0.125, generator=gen))
        model[1].bias.zero_()
    x = torch.rand(24, 1, 8, 8, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model.eval(), x, y, Registry.create()


def test_config_and_keywords_give_one_report(problem):
    model, x, y, reg = problem
    keywords = dict(toolkits=["native"], registry=reg, progress=False, noise=False, params={"steps": 3}, seed=1)
    by_keywords = compare(model, (x, y), "pgd", 0.1, **keywords)
    config = CompareConfig(**keywords)
    by_config = compare(model, (x, y), "pgd", 0.1, config)
    overridden = compare(model, (x, y), "pgd", 0.1, CompareConfig(registry=reg, progress=False), toolkits=["native"],
                         noise=False, params={"steps": 3}, seed=1)
    for report in (by_config, overridden):
        for key in ("clean_accuracy", "params", "native_params", "seed", "agreement"):
            assert report[key] == by_keywords[key]
        assert [r["broken_samples"] for r in report["results"]] == [r["broken_samples"] for r in by_keywords["results"]]
    assert config.toolkits == ("native",) and config.params == {"steps": 3}


@pytest.mark.parametrize(("options", "match"), [
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"seed": None}, "seed must be an int, got None"),
    ({"noise": "yes"}, "noise must be True or False, got 'yes'"),
    ({"adaptive_budget": float("inf")}, "adaptive_budget must be a positive finite number"),
    ({"norm": "l3"}, "norm must be"),
])
def test_bad_options_fail_once_naming_the_option(options, match):
    with pytest.raises(ValueError, match=match):
        CompareConfig(**options)


def test_unknown_option_and_wrong_config_are_type_errors(problem):
    model, x, y, reg = problem
    with pytest.raises(TypeError, match=r"compare\(\) got unexpected keyword argument\(s\): toolkit "):
        compare(model, (x, y), "pgd", 0.1, registry=reg, toolkit=["native"])
    with pytest.raises(TypeError, match="config must be a CompareConfig"):
        compare(model, (x, y), "pgd", 0.1, {"toolkits": ["native"]})  # type: ignore[arg-type]
