"""EoT, BPDA and pass counting (robustreg.adaptive): EoT-PGD breaks clearly more of a randomised model than
PGD, BPDA-PGD breaks an input quantiser PGD cannot move through, PGD-k costs k forwards and k backwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import Registry, ThreatModel
from robustreg.adaptive import BPDA, EoT, PassCounter
from robustreg.data import load_data
from robustreg.models import build_model
from robustreg.testing.breaks import Noisy, Quantise


@pytest.fixture(scope="module")
def reg():
    return Registry.create()


@pytest.fixture(scope="module")
def digits():
    """The pretrained digits CNN and 200 digits it classifies correctly."""
    model = build_model("digits-cnn-pretrained").eval()
    x, y = load_data("digits").tensors(200)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok], y[ok]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int = 5) -> float:
    torch.manual_seed(1)
    with torch.no_grad():
        return float(torch.stack([(model(x).argmax(1) == y).float() for _ in range(draws)]).mean())


def test_eot_pgd_breaks_clearly_more_of_a_randomised_model(reg, digits):
    model, x, y = digits
    noisy = Noisy(model, 0.2).eval()
    torch.manual_seed(0)
    pgd = reg.build_attack("pgd", ThreatModel("linf", 0.1), seed=0, steps=10)
    plain = _accuracy(noisy, pgd(noisy, x, y), y)
    torch.manual_seed(0)
    eot = _accuracy(noisy, reg.build_attack("pgd", ThreatModel("linf", 0.1), seed=0, steps=10, eot=16)(noisy, x, y), y)
    assert eot < plain - 0.08, (plain, eot)  # measured: 74.7% -> 57.8%


def test_eot_is_the_log_of_the_mean_softmax(digits):
    model, x, _ = digits
    torch.manual_seed(0)
    noisy = Noisy(model, 0.1)
    got = EoT(noisy, 4)(x[:8])
    torch.manual_seed(0)
    draws = noisy(x[:8].repeat(4, 1, 1, 1)).softmax(dim=1).view(4, 8, -1)
    assert torch.allclose(got, draws.mean(dim=0).log(), atol=1e-5)
    assert torch.equal(EoT(model, 1)(x[:8]).argmax(1), model(x[:8]).argmax(1))
    with pytest.raises(ValueError, match="EoT n must be an int >= 1, got 0"):
        EoT(model, 0)


def test_bpda_pgd_breaks_the_quantiser_plain_pgd_cannot(reg, digits):
    model, x, y = digits
    quantised = nn.Sequential(Quantise(), model).eval()
    marked = nn.Sequential(BPDA(Quantise()), model).eval()
    with torch.no_grad():
        assert torch.equal(marked(x), quantised(x))  # BPDA changes the gradient only
    pgd = reg.build_attack("pgd", ThreatModel("linf", 0.15), seed=0, steps=10)
    plain = _accuracy(quantised, pgd(quantised, x, y), y, draws=1)
    bpda = _accuracy(quantised, pgd(marked, x, y), y, draws=1)
    assert plain > 0.9 and bpda < 0.2, (plain, bpda)  # measured: 98.5% and 0.5%


def test_bpda_backward_as_and_shape_check():
    xs = torch.rand(3, 1, 4, 4, requires_grad=True)
    BPDA(Quantise(), backward_as=lambda t: 2 * t)(xs).sum().backward()
    assert torch.equal(xs.grad, torch.full_like(xs, 2.0))
    with pytest.raises(ValueError, match=r"BPDA: backward_as returned shape \(3, 16\), the module \(3, 1, 4, 4\)"):
        BPDA(Quantise(), backward_as=lambda t: t.flatten(1))(xs)


@pytest.mark.parametrize("name, steps", [("pgd", 1), ("pgd", 7), ("si-pgd", 7)])  # si-pgd: its gradient starts
def test_pass_counter_counts_pgd_k_as_k_forwards_and_k_backwards(reg, digits, name, steps):  # at the features
    model, x, y = digits  # all correctly classified: at eps 1e-4 none breaks, so each takes every step
    attack = reg.build_attack(name, ThreatModel("linf", 1e-4), seed=0, steps=steps)
    with PassCounter(model) as passes:
        attack.perturb(model, x, y, torch.Generator().manual_seed(0))
    assert (passes.forwards, passes.backwards) == (steps * len(x), steps * len(x))
    with PassCounter(model) as fewer:  # at eps 0.3 most break, and a broken point takes no further step
        reg.build_attack(name, ThreatModel("linf", 0.3), seed=0, steps=steps).perturb(
            model, x, y, torch.Generator().manual_seed(0))
    assert fewer.forwards == fewer.backwards and len(x) <= fewer.forwards <= steps * len(x)
    assert fewer.forwards < steps * len(x) or steps == 1
    with PassCounter(model) as none:
        with torch.no_grad():
            model(x)
    assert (none.forwards, none.backwards) == (len(x), 0)


def test_the_base_reports_passes_per_sample_in_evaluate_and_compare(reg, digits, tmp_path):
    """PGD-k costs k forwards and k backwards per attacked sample (native pgd fewer: a point it broke takes no
    further step), FGSM one of each, counted by the base for native and toolkit attacks alike; report.json, the
    table and compare show them."""
    from robustreg.compare import compare
    from robustreg.evaluation import evaluate
    from robustreg.report import render_table

    model, x, y = digits
    report = evaluate(model, (x[:40], y[:40]), [("pgd", {"steps": 5}), "fgsm"], 0.05, registry=reg, progress=False,
                      mode="independent", no_check=["logit-scale", "unbounded-attack", "zero-gradients"])
    by = {r["attack"]: r for r in report["results"]}
    assert 1.0 <= by["pgd"]["forwards"] == by["pgd"]["backwards"] <= 5.0  # fewer on the points it broke on the way
    assert (by["fgsm"]["forwards"], by["fgsm"]["backwards"]) == (1.0, 1.0)
    assert "fwd/sample" in render_table(report)
    rows = compare(model, (x[:40], y[:40]), "pgd", 0.05, toolkits=["native", "torchattacks"], params={"steps": 4},
                   registry=reg, progress=False, noise=False, no_check=["logit-scale", "unbounded-attack"])["results"]
    native, theirs = ((r["forwards"], r["backwards"]) for r in rows)
    assert theirs == (4.0, 4.0) and native[0] == native[1] and 1.0 <= native[0] <= 4.0


def test_eot_on_the_command_line(tmp_path):
    import json

    from robustreg.cli import main

    out = tmp_path / "eot"
    assert main(["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "16", "--attacks",
                 "fgsm,pgd", "--param", "pgd.steps=2", "--eps", "0.05", "--eot", "3", "--out", str(out),
                 "--quiet"]) == 0
    results = json.loads((out / "report.json").read_text())["results"]
    assert all(r["params"]["eot"] == 3 for r in results)
    assert results[1]["forwards"] == 6.0  # 2 steps x 3 draws
    assert main(["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "pgd", "--eps",
                 "0.05", "--eot", "0", "--out", str(tmp_path / "bad")]) == 2
