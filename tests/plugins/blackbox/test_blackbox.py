"""SPSA and RayS: conformance, real-model effect on MNIST LeNet, queries, early stop, ADBD."""

from __future__ import annotations

import math

import pytest
import torch

from robustreg import ThreatModel
from robustreg.testing import check_attack, tiny_batch, tiny_model
from robustreg_plugins.blackbox import SPSA, RayS
from robustreg_plugins.blackbox.spsa import margin_loss

N_MNIST = 100
THREAT = ThreatModel("linf", 0.3)
SPSA_QUICK = {"samples": 8, "steps": 3, "learning_rate": 0.05}
RAYS_QUICK = {"max_queries": 60}


# --- registration and conformance -------------------------------------------------------------
def test_registered_with_paper_and_kind(registry):
    spsa, rays = registry.attack("spsa"), registry.attack("rays")
    assert spsa.factory is SPSA and rays.factory is RayS
    assert (spsa.info.kind, rays.info.kind) == ("score", "decision")
    assert spsa.info.paper == rays.info.paper == "004"
    assert spsa.info.norms == rays.info.norms == ("linf",)
    assert "1802.05666" in spsa.info.source and "2006.12792" in rays.info.source
    assert spsa.info.randomized and not rays.info.randomized


@pytest.mark.parametrize("name, params", [("spsa", SPSA_QUICK), ("rays", RAYS_QUICK)])
def test_conformance(registry, name, params):
    check_attack(registry.attack(name), params=params)


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        (SPSA, {"samples": 7}, "samples must be even"),
        (SPSA, {"samples": 0}, "samples must be an int >= 2"),
        (SPSA, {"delta": 0.0}, "delta must be"),
        (SPSA, {"learning_rate": -1.0}, "learning_rate must be"),
        (SPSA, {"steps": 1.5}, "steps must be an int"),
        (SPSA, {"max_batch": 1}, "max_batch must be an int >= 2"),
        (SPSA, {"early_stop": "yes"}, "early_stop must be True or False"),
        (RayS, {"max_queries": 0}, "max_queries must be an int >= 1"),
        (RayS, {"tol": 2.0}, r"tol must be a number in \(0, 1\) or None, got 2.0"),
        (RayS, {"early_stop": 1}, "early_stop must be True or False"),
    ],
)
def test_bad_parameters_rejected(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(THREAT, **kwargs)


def test_l2_threat_rejected():
    for factory in (SPSA, RayS):
        with pytest.raises(ValueError, match="supports norm"):
            factory(ThreatModel("l2", 0.5))


# --- SPSA internals on the tiny model -------------------------------------------------------------
def test_margin_loss_values():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 2])
    assert torch.allclose(margin_loss(logits, y), torch.tensor([1.0, -4.0]))


@pytest.mark.parametrize("max_batch", [4096, 100])
def test_spsa_gradient_estimate_matches_true_gradient(max_batch):
    """With many samples the SPSA estimate points the way of the true input gradient of the margin,
    whether the probes go in one forward pass or in many small chunks."""
    model = tiny_model().eval()
    x, y = tiny_batch(4)
    attack = SPSA(THREAT, samples=4000, delta=1e-3, max_batch=max_batch)
    with torch.no_grad():
        est = attack._gradient(model, x, y, torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)
    (true,) = torch.autograd.grad(margin_loss(model(xg), y).sum(), xg)
    cos = torch.nn.functional.cosine_similarity(est.flatten(1), true.flatten(1), dim=1)
    assert bool((cos > 0.6).all()), cos


def test_spsa_queries_without_early_stop():
    model = tiny_model()
    x, y = tiny_batch(6)
    result = SPSA(THREAT, samples=10, steps=4, early_stop=False, seed=0).run(model, x, y)
    assert result.queries.tolist() == [40] * 6


def test_spsa_misclassified_images_cost_one_query():
    model = tiny_model().eval()
    x, y = tiny_batch(8)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = torch.where(torch.arange(8) % 2 == 0, (pred + 1) % 10, pred)  # even rows misclassified
    result = SPSA(THREAT, samples=10, steps=4, random_start=False, seed=0).run(model, x, wrong)
    assert result.queries[0::2].tolist() == [1] * 4
    assert torch.equal(result.x_adv[0::2], x[0::2])  # untouched: already adversarial
    assert bool((result.queries[1::2] > 1).all())


# --- real models --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_batch(mnist_dir):
    from robustreg.data import load_data

    return load_data(f"mnist:{mnist_dir}").tensors(N_MNIST)


def _lenet(models_dir, kind):
    from robustreg.models import build_model

    return build_model("lenet5-mnist", weights=models_dir / f"mnist_lenet5_{kind}.pt")


def _accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.slow
def test_spsa_breaks_standard_lenet(models_dir, mnist_batch):
    x, y = mnist_batch
    model = _lenet(models_dir, "clntrained")
    clean = _accuracy(model, x, y)
    assert clean > 0.95
    steps, samples = 20, 32
    result = SPSA(THREAT, samples=samples, steps=steps, learning_rate=0.05, seed=0).run(model, x, y)
    robust = _accuracy(model, result.x_adv, y)
    assert robust < 0.3, f"SPSA left {robust:.0%} (clean {clean:.0%})"
    # Early stop: broken images stop spending; none exceeds the full budget.
    assert int(result.queries.max()) <= 1 + steps * (samples + 1)
    assert float(result.queries.float().mean()) < 0.8 * (1 + steps * (samples + 1))
    # Each image's query count is consistent with early stop: 1 + k (samples + 1) for some k.
    assert bool(((result.queries - 1) % (samples + 1) == 0).all())


@pytest.mark.slow
def test_rays_breaks_standard_lenet_and_adbd_orders_models(models_dir, mnist_batch):
    x, y = mnist_batch
    out = {}
    for kind in ("clntrained", "advtrained"):
        model = _lenet(models_dir, kind)
        result = RayS(THREAT, max_queries=200).run(model, x, y)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        d = result.extras["boundary_distance"]
        assert d.shape == (N_MNIST,) and bool((d >= 0).all()) and bool((d <= 1).all())
        assert bool((d[~correct] == 0).all())
        assert math.isclose(result.extras["adbd"], float(d[correct].mean()), rel_tol=1e-6)
        assert bool((result.queries <= 200).all())
        # success <=> broken by the projected x_adv
        with torch.no_grad():
            broken = model(result.x_adv).argmax(1) != y
        assert torch.equal(broken, result.extras["success"].bool())
        out[kind] = (_accuracy(model, x, y), _accuracy(model, result.x_adv, y), result)
    clean, robust, std = out["clntrained"]
    assert robust < 0.2 < clean, f"RayS left {robust:.0%} of the standard LeNet (clean {clean:.0%})"
    # Early stop: the standard model falls quickly, far below the budget.
    assert float(std.queries.float().mean()) < 150
    assert std.extras["adbd"] < out["advtrained"][2].extras["adbd"]
    assert out["advtrained"][1] > 0.5


def test_rays_misclassified_and_budget_on_tiny_model():
    model = tiny_model()
    x, y = tiny_batch(6)
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    labels = torch.where(torch.arange(6) < 2, (pred + 1) % 10, pred)  # first two misclassified
    result = RayS(ThreatModel("linf", 0.001), max_queries=30).run(model, x, labels)
    assert result.queries[:2].tolist() == [1, 1]
    assert result.extras["boundary_distance"][:2].tolist() == [0.0, 0.0]
    assert bool((result.queries <= 30).all()) and bool((result.queries[2:] == 30).all())
    assert torch.equal(result.x_adv[:2], x[:2])


def test_evaluate_reports_queries_and_adbd_for_rays():
    """report.json's result entry for RayS carries the mean queries and the ADBD at its top level."""
    from robustreg import Registry, evaluate

    model = tiny_model()
    x, y = tiny_batch(n=12)
    report = evaluate(model, (x, y), [("rays", {"max_queries": 60, "early_stop": False})], [0.5],
                      registry=Registry.create(), progress=False)
    entry = report["results"][0]
    assert entry["queries"] <= 60
    distances = entry["extras"]["boundary_distance"]
    assert entry["adbd"] == pytest.approx(distances, rel=1e-6)  # all attacked points are clean-correct
