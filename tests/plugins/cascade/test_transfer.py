"""transfer (paper 000 Tables 4, 7-10) between two digits CNNs: numbers, the white-box property, PNG, CLI, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustreg import Registry, ThreatModel
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.evaluation import evaluate
from robustreg.models import build_model
from robustreg.training import TrainConfig, Trainer
from robustreg_plugins.cascade.analyses.transfer import transfer, transfer_png

# an analysis's numbers from float32 gradients and losses: .ci/run reruns them on other kernels
pytestmark = pytest.mark.numerics

N = 90
BATCH = 32  # several uneven batches, so that the property also checks the batching
EPS = [0.05, 0.1]
ATTACKS = [("pgd", {"steps": 5}), ("fgsm", {})]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


@pytest.fixture(scope="module")
def second_weights(tmp_path_factory, registry) -> Path:
    """A second digits CNN, trained here for 2 epochs from another seed (~70-90% clean)."""
    out = tmp_path_factory.mktemp("plain")
    cfg = TrainConfig(model="digits-cnn", data="digits", defense="standard", epochs=2, batch_size=64, lr=0.05,
                      schedule="constant", augment=False, checkpoint_every=0, quiet=True, seed=3, out=str(out))
    return Trainer(cfg, registry=registry).fit()


@pytest.fixture(scope="module")
def models(second_weights):
    return {"pretrained": build_model("digits-cnn-pretrained").eval(),
            "plain": build_model("digits-cnn", weights=second_weights).eval()}


@pytest.fixture(scope="module")
def data():
    return load_data("digits").tensors(N)


@pytest.fixture(scope="module")
def report(models, data, registry):
    x, y = data
    return transfer(models, models, x, y, ATTACKS, EPS, seed=0, batch_size=BATCH, registry=registry)


def test_numbers_and_shapes(report):
    assert len(report["matrices"]) == len(ATTACKS) * len(EPS)
    for block in report["matrices"]:
        acc = np.array(block["accuracy"])
        assert acc.shape == (2, 2) and np.isfinite(acc).all() and ((0 <= acc) & (acc <= 1)).all()
        assert block["white_box"] == [[True, False], [False, True]]
        assert block["sources"] == block["targets"] == ["pretrained", "plain"]
        # the worst black-box case of a target is the one other source here
        assert block["worst_case"]["pretrained"] == {"accuracy": acc[1, 0], "source": "plain"}
        assert block["worst_case"]["plain"] == {"accuracy": acc[0, 1], "source": "pretrained"}
        for j, t in enumerate(block["targets"]):  # never above the target's clean accuracy
            assert (acc[:, j] <= report["clean_accuracy"]["targets"][t] + 1e-12).all()
    json.dumps(report, allow_nan=False)


def test_white_box_diagonal_equals_evaluate(report, models, data, registry):
    """The property: the diagonal is evaluate's independent-mode robust accuracy, same attack, eps, seed."""
    x, y = data
    for i, (name, model) in enumerate(models.items()):
        ev = evaluate(model, (x, y), ATTACKS, EPS, mode="independent", seed=0, batch_size=BATCH, registry=registry,
                      progress=False, no_check=["incomplete-optimization"])
        for res in ev["results"]:
            (block,) = [b for b in report["matrices"] if b["label"] == res["label"] and b["eps"] == res["eps"]]
            assert block["accuracy"][i][i] == res["robust_accuracy"], (name, res["label"], res["eps"])
        assert report["clean_accuracy"]["targets"][name] == ev["clean_accuracy"]


def test_black_box_entry_computed_directly(report, models, data, registry):
    """An off-diagonal cell from scratch: FGSM (deterministic) on the whole source batch, target scored on all n."""
    x, y = data
    source, target = models["pretrained"], models["plain"]
    x_adv = registry.build_attack("fgsm", ThreatModel("linf", 0.1), seed=0)(source, x, y)
    with torch.no_grad():
        right = (target(x).argmax(1) == y) & (target(x_adv).argmax(1) == y)
    (block,) = [b for b in report["matrices"] if b["label"] == "fgsm" and b["eps"] == 0.1]
    assert block["accuracy"][0][1] == pytest.approx(float(right.float().mean()), abs=1.5 / N)


def test_per_sample_terms_sum_to_the_entries(report, models, data, registry):
    """per_sample=True adds each entry's terms per point; they sum to the entry, and the matrices are the same."""
    x, y = data
    with_terms = transfer(models, models, x, y, ATTACKS, EPS, seed=0, batch_size=BATCH, registry=registry,
                          per_sample=True)
    assert [b["accuracy"] for b in with_terms["matrices"]] == [b["accuracy"] for b in report["matrices"]]
    assert all("samples" not in b for b in report["matrices"])
    for block in with_terms["matrices"]:
        for i, s in enumerate(block["sources"]):
            for j, t in enumerate(block["targets"]):
                terms = block["samples"][s][t]
                assert len(terms) == N and set(terms) <= {"0", "1"}
                assert terms.count("1") / N == block["accuracy"][i][j]
    (block,) = [b for b in with_terms["matrices"] if b["label"] == "fgsm" and b["eps"] == 0.1]
    x_adv = registry.build_attack("fgsm", ThreatModel("linf", 0.1), seed=0)(models["pretrained"], x, y)
    with torch.no_grad():  # the white-box term of each point, from scratch (FGSM is deterministic)
        right = (models["pretrained"](x).argmax(1) == y) & (models["pretrained"](x_adv).argmax(1) == y)
    mismatched = sum(a != ("1" if b else "0") for a, b in zip(block["samples"]["pretrained"]["pretrained"], right))
    assert mismatched <= 1  # batched crafting vs one call: a tie can flip at most a point


def test_png_is_a_real_plot(report):
    import matplotlib.image as mpimg

    image = mpimg.imread(io.BytesIO(transfer_png(report)), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50  # not one colour


def test_cli_run(tmp_path, second_weights, registry):
    out = tmp_path / "out"
    rc = main(["analyze", "transfer", "--source", "digits-cnn-pretrained", "--source", f"digits-cnn@{second_weights}",
               "--target", "digits-cnn-pretrained", "--data", "digits", "--n", "40", "--attacks", "fgsm",
               "--eps", "0.05,0.1", "--out", str(out), "--quiet"], registry=registry)
    assert rc == 0
    saved = json.loads((out / "report.json").read_text())
    assert [b["eps"] for b in saved["matrices"]] == [0.05, 0.1]
    assert saved["sources"] == ["digits-cnn-pretrained", "final"] and saved["targets"] == ["digits-cnn-pretrained"]
    assert saved["matrices"][0]["white_box"] == [[True], [False]]
    assert (out / "transfer.png").stat().st_size > 1000 and "worst case" in (out / "report.md").read_text()


def test_bad_source_is_one_line_naming_the_flag(tmp_path, capsys, registry):
    rc = main(["analyze", "transfer", "--source", "digits-cnn@/no/such/weights.pt", "--data", "digits",
               "--attacks", "fgsm", "--out", str(tmp_path / "bad")], registry=registry)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "--source 'digits-cnn@/no/such/weights.pt'" in err and "does not exist" in err
