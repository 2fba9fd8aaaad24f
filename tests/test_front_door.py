"""The front door: what `evaluate` and the attacks take from a user as they come (issue 22).

Devices (the model's own by default), non-contiguous batches, the Python data forms (pairs, numpy,
Dataset, DataLoader), norm and parameter spellings, one-call attacks, notebook hygiene and model outputs.
Every test runs real attacks on a small real model; all of it takes seconds on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robustreg
from robustreg import Registry
from robustreg.cli import build_parser
from robustreg.evaluation import EvalConfig, evaluate
from robustreg.runtime import model_device, resolve_device

N = 24


def _net(seed: int = 0, k: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, k)).eval()


def _data(seed: int = 1, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(scope="module")
def reg() -> Registry:
    return Registry.create()


def _numbers(report: dict) -> list:
    """What a report says about the model, without timings."""
    return [report["clean_accuracy"], report["n"],
            [(r["attack"], r["eps"], r["robust_accuracy"]) for r in report["results"]]]


# --------------------------------------------------------------------------------------------
# 1. devices: the model's own device is the default
# --------------------------------------------------------------------------------------------
def test_device_resolution_rule() -> None:
    cpu_model = _net()
    assert EvalConfig().device is None
    assert resolve_device(None, cpu_model) == torch.device("cpu")
    with torch.device("meta"):  # a model that is not on the CPU: None follows it there
        meta_model = nn.Linear(2, 2)
    assert resolve_device(None, meta_model) == torch.device("meta")
    assert model_device(meta_model) == torch.device("meta")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto", cpu_model) == expected
    assert resolve_device("cpu", cpu_model) == torch.device("cpu")


def test_cli_device_defaults_to_the_model(reg: Registry) -> None:
    parser = build_parser(reg)
    for argv in (["evaluate", "--model", "m", "--data", "d", "--attacks", "fgsm", "--eps", "0.1"],
                 ["compare", "--model", "m", "--data", "d", "--attack", "pgd", "--eps", "0.1"]):
        args, _ = parser.parse_known_args(argv)
        assert args.device is None, argv


def test_evaluate_leaves_a_float64_model_where_it_is(reg: Registry) -> None:
    """A model in float64 (not torch's default tensor type) is run as it is: the same parameter storage
    before and after, still float64, and the report names the model's device."""
    model = _net().double()
    before = [(p.data_ptr(), p.dtype, p.device) for p in model.parameters()]
    x, y = _data()
    report = evaluate(model, (x.double(), y), ["fgsm"], 0.05, registry=reg, progress=False)
    assert [(p.data_ptr(), p.dtype, p.device) for p in model.parameters()] == before
    assert report["device"] == "cpu"


# --------------------------------------------------------------------------------------------
# 2. non-contiguous batches (the usual numpy NHWC -> NCHW permute) reach every toolkit contiguous
# --------------------------------------------------------------------------------------------
def _nhwc_batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _data(n=n)
    nhwc = np.ascontiguousarray((x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())  # N x H x W x C
    return torch.from_numpy(nhwc).permute(0, 3, 1, 2) / 255, y  # how numpy images usually arrive


ONE_PER_TOOLKIT = ["pgd", "autoattack:apgd-dlr", "torchattacks:pgd", "art:pgd", "advlib:pgd", "foolbox:pgd"]


@pytest.mark.parametrize("name", ONE_PER_TOOLKIT)
def test_non_contiguous_batch_through_each_toolkit(reg: Registry, name: str) -> None:
    x, y = _nhwc_batch()
    assert not x.is_contiguous()
    attack = reg.build_attack(name, robustreg.ThreatModel("linf", 8 / 255), seed=0,
                              **({"steps": 2} if name in ("pgd", "torchattacks:pgd", "advlib:pgd", "foolbox:pgd")
                                 else {}))
    x_adv = attack(_net(), x, y)
    assert x_adv.shape == x.shape
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6  # the base's own float-rounding slack


def test_non_contiguous_batch_through_evaluate(reg: Registry) -> None:
    x, y = _nhwc_batch(n=N)
    report = evaluate(_net(), (x, y), ["autoattack:apgd-dlr"], 8 / 255, registry=reg, progress=False)
    assert report["n"] == N


# --------------------------------------------------------------------------------------------
# 3. the Python data forms: pair, numpy pair, Dataset, TensorDataset, DataLoader
# --------------------------------------------------------------------------------------------
class _ItemDataset(torch.utils.data.Dataset):
    """A plain map-style dataset whose items are (numpy image, Python int) pairs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.numpy(), y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.x[i], self.y[i]


def test_data_forms_give_the_same_report(reg: Registry) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    run = {"attacks": ["fgsm", ("pgd", {"steps": 3})], "eps": 0.05, "registry": reg, "progress": False, "n": 20}
    reference = _numbers(evaluate(_net(), (x, y), **run))
    forms = {"numpy pair": (x.numpy(), y.numpy()),
             "TensorDataset": TensorDataset(x, y),
             "Dataset": _ItemDataset(x, y),
             "DataLoader": DataLoader(TensorDataset(x, y), batch_size=7)}
    for name, data in forms.items():
        assert _numbers(evaluate(_net(), data, **run)) == reference, name


@pytest.mark.parametrize("data, words", [
    ([(torch.zeros(2, 3, 8, 8), torch.zeros(2).long())] * 3, "a list of 3; a list of batches is not read"),
    ("images/", "got str"),
    ({"x": 1}, "got dict"),
])
def test_other_data_is_refused_in_one_line(reg: Registry, data: object, words: str) -> None:
    with pytest.raises(TypeError, match="data must be an \\(x, y\\) pair of tensors or numpy arrays") as info:
        evaluate(_net(), data, ["fgsm"], 0.05, registry=reg, progress=False)
    assert words in str(info.value) and "\n" not in str(info.value)
