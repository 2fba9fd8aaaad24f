"""weight-surface (paper 004 Fig. 4): adversarial loss along a filter-normalised direction in weight space."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustreg import ThreatModel
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.models import build_model
from robustreg_plugins.scale_invariant.analyses.weight_surface import filter_normalized_direction, weight_surface

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

N, STEPS = 12, 5


@pytest.fixture(scope="module")
def digits():
    model = build_model("digits-cnn-pretrained").eval()
    x, y = load_data("digits", "test").tensors(N)
    return model, x, y


def _pgd(registry):
    return registry.build_attack("pgd", ThreatModel("linf", 0.1), seed=0, steps=5)


def test_t0_is_the_models_adversarial_loss_and_the_model_is_untouched(registry, digits):
    model, x, y = digits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    report = weight_surface({"cnn": model}, x, y, _pgd(registry), steps=STEPS)
    json.dumps(report, allow_nan=False)
    assert report["t"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    (row,) = report["models"]
    for key in ("adversarial_loss", "clean_loss", "adversarial_accuracy", "clean_accuracy"):
        assert len(row[key]) == STEPS and all(v is not None and math.isfinite(v) for v in row[key])
    with torch.no_grad():  # independently, on the model itself: the seeded attack's x_adv and the clean CE
        adv = F.cross_entropy(model(_pgd(registry)(model, x, y)), y)
        clean = F.cross_entropy(model(x), y)
    assert row["adversarial_loss"][2] == pytest.approx(float(adv), rel=1e-6)
    assert row["clean_loss"][2] == pytest.approx(float(clean), rel=1e-6)
    assert min(row["adversarial_loss"]) >= 0 and row["adversarial_loss"][2] >= row["clean_loss"][2]
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in model.parameters()] == grads and not model.training


def test_fixed_examples_agree_at_t0_and_differ_elsewhere(registry, digits):
    model, x, y = digits
    recrafted = weight_surface(model, x, y, _pgd(registry), steps=3)["models"][0]
    fixed = weight_surface(model, x, y, _pgd(registry), steps=3, recraft=False)["models"][0]
    assert fixed["adversarial_loss"][1] == recrafted["adversarial_loss"][1]
    assert fixed["clean_loss"] == recrafted["clean_loss"]
    assert fixed["adversarial_loss"][0] != recrafted["adversarial_loss"][0]


def test_direction_is_filter_normalised_and_zero_on_biases(digits):
    model, _, _ = digits
    direction = filter_normalized_direction(model, seed=3)
    params = list(model.parameters())
    assert [d.shape for d in direction] == [p.shape for p in params]
    assert any(p.dim() <= 1 for p in params) and any(p.dim() >= 2 for p in params)
    for p, d in zip(params, direction):
        if p.dim() <= 1:
            assert not d.any()
        else:
            assert torch.allclose(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5)
            assert not torch.allclose(d, p.detach())
    assert all(torch.equal(a, b) for a, b in zip(direction, filter_normalized_direction(model, seed=3)))


def test_cli_two_models_on_one_plot(tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "ws"
    rc = main(["analyze", "weight-surface", "--model", "digits-cnn-pretrained", "--model", "digits-cnn",
               "--data", "digits",
               "--attacks", "pgd", "--param", "steps=3", "--eps", "0.1", "--n", "8", "--steps", "5",
               "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert [m["label"] for m in report["models"]] == ["digits-cnn-pretrained", "digits-cnn"]
    assert report["recraft"] is True
    img = imread(out / "weight_surface.png")
    assert img.shape[0] > 300 and img.shape[1] > 800
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50  # a real plot, not one colour


@pytest.mark.parametrize("flags, needle", [
    (["--steps", "4"], "--steps 4"),
    (["--eps", "0.1,0.2"], "one budget"),
    (["--model", "digits-cnn-pretrained@/nonexistent.pt"], "/nonexistent.pt"),
    (["--model", "digits-cnn-pretrained", "--model", "digits-cnn", "--weights", "w.pt"], "--weights 'w.pt'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, flags, needle):
    argv = ["analyze", "weight-surface", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "pgd",
            "--eps", "0.1", "--n", "8", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv + flags) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "report.json").exists()
