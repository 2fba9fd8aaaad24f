"""loss-surface (paper 004 Fig. 3): CE(x + d1 v + d2 r) on a grid, v = x_adv - x of the user's attack."""

from __future__ import annotations

import io
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
from robustreg_plugins.scale_invariant.analyses.loss_surface import _pngs, loss_surface, random_sign_direction

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

N, GRID, SPAN = 12, 5, 2.0  # d1, d2 in {-2, -1, 0, 1, 2}: the clean point and the attack's point are on it


@pytest.fixture(scope="module")
def digits():
    model = build_model("digits-cnn-pretrained").eval()
    x, y = load_data("digits", "test").tensors(N)
    return model, x, y


def _pgd(registry):
    return registry.build_attack("pgd", ThreatModel("linf", 0.1), seed=0, steps=5)


def _finite(rows):
    return all(v is not None and math.isfinite(v) for row in rows for v in row)


def test_surface_holds_the_clean_and_the_attack_point(registry, digits):
    model, x, y = digits
    report = loss_surface({"cnn": model}, x, y, _pgd(registry), grid=GRID, span=SPAN, images=2)
    json.dumps(report, allow_nan=False)
    assert report["delta1"] == report["delta2"] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    (row,) = report["models"]
    assert np.array(row["mean_surface"]).shape == (GRID, GRID) and _finite(row["mean_surface"])
    assert len(row["images"]) == 2
    assert all(np.array(img["surface"]).shape == (GRID, GRID) and _finite(img["surface"]) for img in row["images"])
    with torch.no_grad():  # independently: the clean CE and the CE at the (seeded, so identical) attack's x_adv
        clean = F.cross_entropy(model(x), y, reduction="none")
        adv = F.cross_entropy(model(_pgd(registry)(model, x, y)), y, reduction="none")
    mid, one = 2, 3
    assert row["mean_surface"][mid][mid] == pytest.approx(float(clean.mean()), rel=1e-6)
    assert row["mean_surface"][one][mid] == pytest.approx(float(adv.mean()), rel=1e-4)
    for img in row["images"]:
        assert img["surface"][mid][mid] == pytest.approx(float(clean[img["index"]]), rel=1e-5, abs=1e-7)
        assert img["surface"][one][mid] == pytest.approx(float(adv[img["index"]]), rel=1e-4, abs=1e-6)
    assert row["ce_attack"] > row["ce_clean"]
    pngs = _pngs(report)  # the per-image figure (the CLI test below renders the mean one)
    assert sorted(pngs) == ["loss_surface.png", "loss_surface_images_cnn.png"]
    _check_png(pngs["loss_surface_images_cnn.png"], rows=2)


def _check_png(data, rows):
    from matplotlib.image import imread

    img = imread(io.BytesIO(data), format="png")
    assert img.shape[0] > 400 * rows and img.shape[1] > 800
    assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50  # a real plot, not one colour


def test_random_direction_is_a_seeded_sign_vector_on_the_eps_sphere():
    x = torch.rand(3, 1, 4, 4)
    r = random_sign_direction(x, ThreatModel("linf", 0.25), seed=1)
    assert set(r.unique().tolist()) == {-0.25, 0.25}
    assert torch.equal(r, random_sign_direction(x, ThreatModel("linf", 0.25), seed=1))
    r2 = random_sign_direction(x, ThreatModel("l2", 0.5), seed=1)
    assert torch.allclose(r2.flatten(1).norm(dim=1), torch.full((3,), 0.5))


def test_cli_two_models_side_by_side(tmp_path):
    out = tmp_path / "ls"
    rc = main(["analyze", "loss-surface", "--model", "digits-cnn-pretrained", "--model", "digits-cnn",
               "--data", "digits",
               "--attacks", "pgd", "--param", "steps=3", "--eps", "0.1", "--n", "8", "--grid", "5", "--images", "0",
               "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert [m["label"] for m in report["models"]] == ["digits-cnn-pretrained", "digits-cnn"]
    assert "loss-surface" in (out / "report.md").read_text()
    assert [p.name for p in out.glob("*.png")] == ["loss_surface.png"]  # --images 0: no per-image figures
    _check_png((out / "loss_surface.png").read_bytes(), rows=2)


@pytest.mark.parametrize("flags, needle", [
    (["--grid", "4"], "--grid 4"),
    (["--attacks", "pgd,fgsm"], "one attack"),
    (["--images", "9"], "--images 9"),
])
def test_bad_input_is_one_line(tmp_path, capsys, flags, needle):
    argv = ["analyze", "loss-surface", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "pgd",
            "--eps", "0.1", "--n", "8", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv + flags) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "report.json").exists()
