"""softmax-argument (paper 000 Figs. 4, 6) on the pretrained digits CNN: numbers, property, PNG, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustreg import Registry, ThreatModel
from robustreg.cli import main
from robustreg_plugins.cascade.analyses.softmax_argument import softmax_argument

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

EPS = [0.0, 0.02, 0.1, 0.25]
N = 40


@pytest.fixture(scope="module")
def report(cnn_digits):
    model, x, y = cnn_digits
    return softmax_argument(model, x, y, EPS, seed=1, batch_size=16)


def _row(report, direction: str, eps: float) -> dict:
    (row,) = [r for r in report["results"] if r["direction"] == direction and r["eps"] == eps]
    return row


def test_numbers_and_shapes(report, cnn_digits):
    model, x, y = cnn_digits
    assert len(report["results"]) == 3 * len(EPS) and report["directions"] == ["step_ll", "step_FGSM", "random sign"]
    for r in report["results"]:
        for key in ("true_mean", "true_std", "false_mean", "false_std", "margin"):
            assert r[key] is not None and np.isfinite(r[key])
        assert r["true_std"] >= 0 and r["false_std"] >= 0 and 0 <= r["accuracy"] <= 1
    with torch.no_grad():
        logits = model(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    false = (logits.sum(1) - true) / 9
    for direction in report["directions"]:  # eps = 0 is the clean image, whatever the direction
        row = _row(report, direction, 0.0)
        assert row["true_mean"] == pytest.approx(float(true.mean()), abs=1e-4)
        assert row["false_mean"] == pytest.approx(float(false.mean()), abs=1e-4)
        assert row["true_std"] == pytest.approx(float(true.std()), abs=1e-4)
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize("name, direction", [("step-fgsm", "step_FGSM"), ("step-ll", "step_ll")])
def test_directions_match_the_one_step_attacks(report, cnn_digits, name, direction):
    """The core's formulas agree with the cascade plugin's step_FGSM / step_ll at the same eps."""
    model, x, y = cnn_digits
    eps = 0.1
    x_adv = Registry.create().build_attack(name, ThreatModel("linf", eps))(model, x, y)
    with torch.no_grad():
        true = model(x_adv).gather(1, y[:, None]).squeeze(1)
    assert _row(report, direction, eps)["true_mean"] == pytest.approx(float(true.mean()), abs=1e-4)


def test_gradient_directions_hurt_more_than_random_signs(report):
    """Fig. 6: along step_ll and step_FGSM the true-class logit drops much faster than along random signs."""
    rand = _row(report, "random sign", 0.25)
    for direction in ("step_ll", "step_FGSM"):
        row = _row(report, direction, 0.25)
        assert row["margin"] < rand["margin"] - 3 and row["accuracy"] < rand["accuracy"]
    assert _row(report, "step_FGSM", 0.1)["true_mean"] < _row(report, "step_FGSM", 0.0)["true_mean"]


def test_cli_writes_report_and_plot(tmp_path):
    import matplotlib.image

    out = tmp_path / "sa"
    rc = main(["analyze", "softmax-argument", "--model", "digits-cnn-pretrained", "--data", "digits",
               "--n", "16", "--eps", "0,0.1,0.2", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["results"]) == 9 and report["data"]["spec"] == "digits"
    image = matplotlib.image.imread(out / "softmax_argument.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 900
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20  # curves and bands, not one colour


def test_bad_eps_is_one_line_naming_the_flag(tmp_path, capsys):
    rc = main(["analyze", "softmax-argument", "--model", "digits-cnn-pretrained", "--data", "digits",
               "--eps", "0,8", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--eps" in err and "8/255" in err
