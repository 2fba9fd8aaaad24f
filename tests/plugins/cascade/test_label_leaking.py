"""label-leaking (paper 000 section 4.2): flagged on a step_FGSM-trained model, not on the plain digits CNN.

The leaking model is trained here, briefly, with the registered FGSM adversarial training that crafts
its examples with the true labels; the plain one is ``digits-cnn-pretrained``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustreg import Registry
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.models import build_model
from robustreg.training import TrainConfig, Trainer
from robustreg_plugins.cascade.analyses.label_leaking import label_leaking, label_leaking_png, step_fgsm

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

EPS = [0.05, 0.1, 0.2, 0.3]
# FGSM adversarial training with true labels, no random start, one fixed eps (label leaking's recipe)
LEAK_MODEL, LEAK_DATA = "lenet5-mnist", "digits28"
LEAK_TRAIN = {"defense": "rfgsm-at", "defense_params": {"eps": 0.3, "step_size": 0.3, "random_start": False},
              "epochs": 4, "batch_size": 32, "lr": 0.05}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


@pytest.fixture(scope="module")
def leaking_weights(tmp_path_factory, registry) -> Path:
    out = tmp_path_factory.mktemp("fgsm-at")
    cfg = TrainConfig(model=LEAK_MODEL, data=LEAK_DATA, schedule="cosine", augment=False,
                      checkpoint_every=0, quiet=True, seed=0, out=str(out), **LEAK_TRAIN)
    return Trainer(cfg, registry=registry).fit()


@pytest.fixture(scope="module")
def plain():
    model = build_model("digits-cnn-pretrained").eval()
    x, y = load_data("digits").tensors()
    return model, x, y


@pytest.fixture(scope="module")
def plain_report(plain, registry):
    model, x, y = plain
    return label_leaking(model, x, y, EPS, attacks=["fgsm"], registry=registry)


def test_not_flagged_on_the_plain_model(plain_report):
    assert plain_report["label_leaking"] is False and plain_report["leaking_eps"] == []
    for row in plain_report["rows"]:
        assert np.isfinite([row["clean_accuracy"], row["adversarial_accuracy"]]).all()
        assert 0 <= row["adversarial_accuracy"] <= row["clean_accuracy"] <= 1 and not row["label_leaking"]
    assert [r["eps"] for r in plain_report["rows"]] == EPS
    json.dumps(plain_report, allow_nan=False)


def test_step_fgsm_is_the_formula_and_the_registered_fgsm(plain, plain_report):
    """step_FGSM from scratch (one batch, autograd) gives the report's numbers; FGSM's registered attack agrees."""
    model, x, y = plain
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    for row, fgsm_row in zip(plain_report["rows"], plain_report["attack_rows"]["fgsm"]):
        x_adv = (x + row["eps"] * grad.sign()).clamp(0, 1)
        assert torch.allclose(step_fgsm(model, x, y, row["eps"]), x_adv)
        with torch.no_grad():
            expected = float((model(x_adv).argmax(1) == y).float().mean())
        assert row["adversarial_accuracy"] == pytest.approx(expected, abs=1.5 / len(y))
        assert fgsm_row["adversarial_accuracy"] == pytest.approx(row["adversarial_accuracy"], abs=2.5 / len(y))
    assert all(p.grad is None for p in model.parameters())  # nothing left behind on the model


def test_flagged_on_a_step_fgsm_trained_model(leaking_weights, registry):
    model = build_model(LEAK_MODEL, weights=leaking_weights).eval()
    x, y = load_data(LEAK_DATA).tensors()
    report = label_leaking(model, x, y, EPS, registry=registry)
    assert report["label_leaking"] is True, report["rows"]
    for row in report["rows"]:
        assert row["label_leaking"] == (row["adversarial_accuracy"] > row["clean_accuracy"])
    assert report["leaking_eps"] and 0.3 in report["leaking_eps"]


def test_png_is_a_real_plot(plain_report):
    import matplotlib.image as mpimg

    image = mpimg.imread(io.BytesIO(label_leaking_png(plain_report, "digits-cnn-pretrained")), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_cli_run(tmp_path, leaking_weights, registry):
    out = tmp_path / "out"
    rc = main(["analyze", "label-leaking", "--model", LEAK_MODEL, "--weights", str(leaking_weights), "--data",
               LEAK_DATA, "--n", "200", "--eps", "0.1,0.3", "--out", str(out), "--quiet"], registry=registry)
    assert rc == 0
    saved = json.loads((out / "report.json").read_text())
    assert [r["eps"] for r in saved["rows"]] == [0.1, 0.3] and saved["n"] == 200
    assert (out / "label_leaking.png").stat().st_size > 1000 and "Label leaking" in (out / "report.md").read_text()


def test_bad_param_is_one_line_naming_the_flag(tmp_path, capsys, registry):
    rc = main(["analyze", "label-leaking", "--model", "digits-cnn-pretrained", "--data", "digits", "--param",
               "steps=3", "--out", str(tmp_path / "bad")], registry=registry)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--param 'steps=3'" in err and "--attacks" in err
