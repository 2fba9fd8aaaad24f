"""logit-scale (paper 004 Fig. 1) on the pretrained digits CNN: SI-PGD invariant, PGD not; PNG, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustreg import embed
from robustreg.cli import main
from robustreg_plugins.scale_invariant.analyses.logit_scale import ScaledLogits, logit_scale

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

N, EPS, ALPHAS = 60, 0.1, (1e-3, 1.0, 1e3)
ATTACKS = [("pgd", {"steps": 5}), ("si-pgd", {"steps": 5})]


@pytest.fixture(scope="module")
def report(cnn_digits):
    model, x, y = cnn_digits
    return logit_scale(model, x, y, ATTACKS, EPS, ALPHAS, seed=0)


def test_wrapper_scales_the_output_and_keeps_the_embedding(cnn_digits):
    model, x, _ = cnn_digits
    with torch.no_grad():
        plain, scaled = embed(model, x[:8]), embed(ScaledLogits(model, 250.0), x[:8])
    assert torch.equal(scaled.features, plain.features) and torch.equal(scaled.weight, plain.weight)
    assert torch.equal(scaled.cosine(), plain.cosine())
    assert torch.allclose(scaled.logits, 250.0 * plain.logits)
    assert scaled.head_name == f"model.{plain.head_name}"


def test_numbers_and_shapes(report):
    assert [(r["attack"], r["alpha"]) for r in report["results"]] == \
        [(a, alpha) for alpha in ALPHAS for a in ("pgd", "si-pgd")]
    assert all(r["eps"] == EPS for r in report["results"])
    clean = report["clean_accuracy"]
    assert 0.9 < clean <= 1.0
    assert [c["clean_accuracy"] for c in report["clean_accuracy_by_alpha"]] == [clean] * len(ALPHAS)
    for r in report["results"]:
        assert np.isfinite(r["robust_accuracy"]) and 0.0 <= r["robust_accuracy"] <= clean
    assert [v["attack"] for v in report["verdicts"]] == ["pgd", "si-pgd"]
    json.dumps(report, allow_nan=False)


def test_si_pgd_is_invariant_and_pgd_is_not(report):
    """Paper 004 Fig. 1: the same seed at every alpha; SI-PGD sees cos(theta) only, PGD's CE saturates."""
    by = {a: [r["robust_accuracy"] for r in report["results"] if r["attack"] == a] for a in ("pgd", "si-pgd")}
    assert len(set(by["si-pgd"])) == 1  # exactly the same samples survive at every alpha
    verdict = {v["attack"]: v for v in report["verdicts"]}
    assert verdict["si-pgd"]["spread"] == 0.0 and verdict["si-pgd"]["invariant"]
    assert verdict["pgd"]["spread"] > 0.1 and not verdict["pgd"]["invariant"]
    assert by["pgd"][-1] > by["pgd"][1] + 0.1  # alpha = 1e3: the CE gradient underflows, PGD fails
    assert verdict["pgd"]["spread"] == pytest.approx(max(by["pgd"]) - min(by["pgd"]))


def test_cli_writes_report_and_plot(tmp_path):
    import matplotlib.image

    out = tmp_path / "ls"
    rc = main(["analyze", "logit-scale", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "20",
               "--attacks", "pgd,si-pgd", "--param", "pgd.steps=3", "--param", "si-pgd.steps=3",
               "--alphas", "0.01,100", "--eps", "0.1", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["results"]) == 4 and report["params"]["pgd"]["steps"] == 3
    assert set(report["results"][0]) >= {"attack", "alpha", "robust_accuracy"}
    assert "## Verdict per attack" in (out / "report.md").read_text()
    image = matplotlib.image.imread(out / "logit_scale.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 500
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20  # lines and text, not one colour


def test_bad_alpha_is_one_line_naming_the_flag(tmp_path, capsys):
    rc = main(["analyze", "logit-scale", "--model", "digits-cnn-pretrained", "--data", "digits",
               "--attacks", "pgd", "--alphas", "1,-2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--alphas" in err and "'-2'" in err and "> 0" in err
    with pytest.raises(ValueError, match="alphas must be finite numbers > 0, got 0"):
        logit_scale(torch.nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), ["pgd"], 0.1, [0])
