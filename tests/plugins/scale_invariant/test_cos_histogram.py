"""cos-histogram (paper 004 Fig. 5) on digits CNNs: statistics, cos(theta_y) from scratch, PNG, CLI, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from robustreg import Registry, ThreatModel
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.models import build_model
from robustreg_plugins.scale_invariant.analyses.cos_histogram import QUANTILES, cos_histogram, cos_histogram_png

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

N = 60
EPS = [0.05, 0.1]
BINS = 12


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(5)
    return {"pretrained": build_model("digits-cnn-pretrained").eval(), "untrained": build_model("digits-cnn").eval()}


@pytest.fixture(scope="module")
def data():
    return load_data("digits").tensors(N)


@pytest.fixture(scope="module")
def report(models, data, registry):
    x, y = data
    return cos_histogram(models, x, y, [("pgd", {"steps": 5})], EPS, seed=0, batch_size=25, bins=BINS,
                         registry=registry)


def _cos_y(model, x, y) -> torch.Tensor:
    """cos(theta_y) by hand: the input of fc2 (relu(fc1(...))) against fc2's weight row of y."""
    feats = {}
    handle = model.fc2.register_forward_hook(lambda m, i, o: feats.update(z=i[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    z, w = feats["z"].double(), model.fc2.weight.detach().double()[y]
    return (z * w).sum(1) / (z.norm(dim=1) * w.norm(dim=1))


def test_statistics_and_shapes(report):
    assert [c["eps"] for c in report["cells"]] == EPS and report["models"] == ["pretrained", "untrained"]
    for stats_by_model in [report["clean"], *[c["models"] for c in report["cells"]]]:
        edges = {tuple(s["bins"]) for s in stats_by_model.values()}
        assert len(edges) == 1  # the models of a panel share their bins
        for s in stats_by_model.values():
            assert len(s["bins"]) == BINS + 1 and len(s["counts"]) == BINS and sum(s["counts"]) == N
            assert -1 <= s["min"] <= s["quantiles"]["0.5"] <= s["max"] <= 1 and s["std"] >= 0
            assert list(s["quantiles"]) == [f"{q:g}" for q in QUANTILES]
            assert np.isfinite([s["mean"], s["std"]]).all()
    json.dumps(report, allow_nan=False)


def test_clean_and_adversarial_cos_match_a_direct_computation(report, models, data, registry):
    x, y = data
    model = models["pretrained"]
    clean = _cos_y(model, x, y)
    assert report["clean"]["pretrained"]["mean"] == pytest.approx(float(clean.mean()), abs=1e-5)
    assert report["clean"]["pretrained"]["std"] == pytest.approx(float(clean.std(unbiased=False)), abs=1e-5)
    # the adversarial examples: the same PGD, seed and batches (25, 25, 10) as the analysis
    attack = registry.build_attack("pgd", ThreatModel("linf", 0.1), steps=5, seed=0)
    x_adv = torch.cat([attack(model, x[i:i + 25], y[i:i + 25]) for i in range(0, N, 25)])
    adv = _cos_y(model, x_adv, y)
    assert report["cells"][1]["models"]["pretrained"]["mean"] == pytest.approx(float(adv.mean()), abs=1e-5)
    # the attack pushes the true class's angle open: a lower mean cos(theta_y) than on the clean points
    assert report["cells"][1]["models"]["pretrained"]["mean"] < report["clean"]["pretrained"]["mean"]


def test_png_is_a_real_plot(report):
    import matplotlib.image as mpimg

    image = mpimg.imread(io.BytesIO(cos_histogram_png(report)), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50


def test_cli_run(tmp_path, registry):
    out = tmp_path / "out"
    rc = main(["analyze", "cos-histogram", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "30",
               "--attacks", "fgsm", "--eps", "0.1", "--bins", "10", "--out", str(out), "--quiet"], registry=registry)
    assert rc == 0
    saved = json.loads((out / "report.json").read_text())
    assert list(saved["cells"][0]["models"]) == ["digits-cnn-pretrained"]
    assert sum(saved["cells"][0]["models"]["digits-cnn-pretrained"]["counts"]) == 30
    assert (out / "cos_histogram.png").stat().st_size > 1000


def test_bad_bins_is_one_line_naming_the_flag(tmp_path, capsys, registry):
    rc = main(["analyze", "cos-histogram", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks",
               "fgsm", "--bins", "1", "--out", str(tmp_path / "bad")], registry=registry)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--bins must be >= 2, got 1" in err
