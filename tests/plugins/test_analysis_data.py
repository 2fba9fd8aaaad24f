"""Every analysis takes data as ``evaluate`` does (issue 22): tensors, a numpy pair, a Dataset or a DataLoader
give the same report; anything else, or a missing argument, is one clear error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from robustreg import Registry, ThreatModel
from robustreg_plugins.cascade.analyses.gradient_correlation import gradient_correlation
from robustreg_plugins.cascade.analyses.label_leaking import label_leaking
from robustreg_plugins.cascade.analyses.softmax_argument import softmax_argument
from robustreg_plugins.cascade.analyses.transfer import transfer
from robustreg_plugins.scale_invariant.analyses.cos_histogram import cos_histogram
from robustreg_plugins.scale_invariant.analyses.logit_scale import logit_scale
from robustreg_plugins.scale_invariant.analyses.loss_surface import loss_surface
from robustreg_plugins.scale_invariant.analyses.weight_surface import weight_surface

N = 10  # the cnn_digits fixture's sample count


class _Items(Dataset):
    """A plain map-style dataset of ``(image, int label)`` items (not a TensorDataset: it is streamed)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i].clone(), int(self.y[i])


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


def _calls(model: torch.nn.Module, registry: Registry) -> dict[str, Callable[..., dict[str, Any]]]:
    """Each analysis, cheaply, as a function of (x, y) with ``y`` possibly None."""
    pgd = registry.build_attack("pgd", ThreatModel("linf", 0.1), seed=0, steps=2)
    small = {"seed": 0, "batch_size": 4}
    return {
        "gradient-correlation": lambda x, y=None: gradient_correlation(model, x, y, eps=[0.1], **small),
        "softmax-argument": lambda x, y=None: softmax_argument(model, x, y, eps=[0.1], **small),
        "label-leaking": lambda x, y=None: label_leaking(model, x, y, eps=[0.1], registry=registry),
        "transfer": lambda x, y=None: transfer({"a": model}, {"a": model}, x, y, attacks=["fgsm"], eps=0.1,
                                               registry=registry, **small),
        "cos-histogram": lambda x, y=None: cos_histogram({"a": model}, x, y, attacks=["fgsm"], eps=0.1,
                                                         registry=registry, **small),
        "logit-scale": lambda x, y=None: logit_scale(model, x, y, attacks=["fgsm"], eps=0.1, alphas=[1.0, 10.0],
                                                     registry=registry, **small),
        "loss-surface": lambda x, y=None: loss_surface({"a": model}, x, y, attack=pgd, grid=3, span=1.0, images=2),
        "weight-surface": lambda x, y=None: weight_surface(model, x, y, attack=pgd, steps=3),
    }


def _numbers(report: Any) -> Any:
    """The report without wall times (the only thing that may differ between two runs)."""
    if isinstance(report, dict):
        return {k: _numbers(v) for k, v in report.items() if "seconds" not in k and k != "elapsed"}
    if isinstance(report, list):
        return [_numbers(v) for v in report]
    return report


NAMES = ["gradient-correlation", "softmax-argument", "label-leaking", "transfer", "cos-histogram", "logit-scale",
         "loss-surface", "weight-surface"]


@pytest.mark.parametrize("name", NAMES)
def test_every_data_form_gives_the_tensors_report(cnn_digits, registry: Registry, name: str) -> None:
    model, x, y = cnn_digits
    run = _calls(model, registry)[name]
    want = _numbers(run(x, y))
    for form, data in (("numpy", (x.numpy(), y.numpy())), ("dataset", _Items(x, y)),
                       ("loader", DataLoader(_Items(x, y), batch_size=3)),
                       ("pair", (x, y))):
        assert _numbers(run(data)) == want, form


def test_bad_data_and_a_missing_argument_are_one_line(cnn_digits) -> None:
    model, x, y = cnn_digits
    with pytest.raises(TypeError, match=r"^gradient_correlation\(\): data must be an \(x, y\) pair"):
        gradient_correlation(model, [x, y, y], eps=[0.1])
    with pytest.raises(ValueError, match=r"^softmax_argument\(\): .*\[0, 1\]"):
        softmax_argument(model, x * 2, y, eps=[0.1])
    with pytest.raises(TypeError, match=r"^label_leaking\(\) missing required argument: 'eps'"):
        label_leaking(model, (x, y))
