"""adv-lib adapter: every entry passes the conformance kit; mapping, errors, projection and the bare toolkit."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from robustreg import ParamSet, ThreatModel
from robustreg.compare import compare
from robustreg.testing import check_attack, separable_batch, tiny_batch, tiny_model, trained_tiny_model

EXPECTED = {
    "advlib:pgd": ("linf",),
    "advlib:apgd": ("linf", "l2", "l1"),
    "advlib:apgd-t": ("linf", "l2", "l1"),
    "advlib:fmn": ("linf", "l2", "l1"),
    "advlib:ddn": ("l2",),
    "advlib:cw": ("l2",),
    "advlib:cw-linf": ("linf",),
    "advlib:deepfool": ("l2", "linf"),
}
# small budgets so the whole kit runs in seconds; C&W keeps the clean input until it finds an adversarial
# point, which its default rate and weight do not within a few steps on the kit's trained model
OVERRIDES = {
    "advlib:pgd": {"steps": 3},
    "advlib:apgd": {"steps": 5},
    "advlib:apgd-t": {"steps": 5, "num_targets": 2},
    "advlib:fmn": {"steps": 10},
    "advlib:ddn": {"steps": 10},
    "advlib:cw": {"steps": 20, "binary_search_steps": 2, "lr": 0.1, "initial_const": 10.0},
    "advlib:cw-linf": {"steps": 20, "lr": 0.1, "initial_const": 1.0},
    "advlib:deepfool": {"steps": 10},
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_all_entries_registered_with_toolkit_info(registry):
    specs = registry.list_attacks("advlib:*")
    assert {s.name for s in specs} == set(EXPECTED)
    for spec in specs:
        assert spec.info.toolkit == "advlib"
        assert spec.plugin == "advlib"
        assert spec.info.norms == EXPECTED[spec.name], spec.name
        assert spec.info.source.startswith("adv-lib 0.2"), spec.info.source
        assert spec.factory.__doc__ and "arXiv" in spec.factory.__doc__, spec.name
        assert spec.summary
    for name in ("advlib:fmn", "advlib:ddn", "advlib:cw", "advlib:cw-linf", "advlib:deepfool"):
        assert registry.attack(name).factory.minimal_norm, name
        assert "projects the result into the eps ball" in registry.attack(name).factory.__doc__
    assert registry.attack("advlib:apgd").same_as == {"apgd-ce": {"loss": "ce"}, "apgd-dlr": {"loss": "dlr"}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conformance(registry, name):
    x, y = tiny_batch(6)
    check_attack(registry.attack(name), tiny_model(), x, y, params=OVERRIDES[name])


def test_listing_does_not_import_advlib():
    code = ("import sys; from robustreg import Registry; reg = Registry.create(); "
            "assert reg.list_attacks('advlib:*'); print('adv_lib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_missing_toolkit_one_line_error(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "adv_lib.attacks", None)
    attack = registry.build_attack("advlib:pgd", ThreatModel("linf", 0.1))
    x, y = tiny_batch(2)
    with pytest.raises(ImportError) as info:
        attack(tiny_model(), x, y)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("advlib:pgd needs the adv-lib package") and "pip install adv-lib" in message


def test_unknown_and_bad_parameters(registry):
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(TypeError, match=r"unknown parameter 'random_restart'.*allowed: steps, step_size"):
        registry.build_attack("advlib:pgd", threat, random_restart=False)
    # a toolkit's name of a declared parameter is read as ours (issue 22): random_init is random_start
    assert registry.build_attack("advlib:pgd", threat, random_init=False).config["random_start"] is False
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0") as info:
        registry.build_attack("advlib:pgd", threat, steps=0)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"loss must be one of ce, dlr, got 'cw'"):
        registry.build_attack("advlib:apgd", threat, loss="cw")
    with pytest.raises(ValueError, match="supports norm"):
        registry.build_attack("advlib:pgd", ThreatModel("l2", 0.5))
    with pytest.raises(ValueError, match=r"use_large_reps must be False for norm 'linf'"):
        registry.build_attack("advlib:apgd", threat, use_large_reps=True)
    registry.build_attack("advlib:apgd", ThreatModel("l1", 2.0), use_large_reps=True)  # l1: allowed


def test_other_box_is_refused(registry):
    with pytest.raises(ValueError, match=r"advlib:fmn: adv-lib attacks work in the \[0, 1\] pixel box only"):
        registry.build_attack("advlib:fmn", ThreatModel("l2", 0.5, box=(-1.0, 1.0)))


def test_declarations_name_keywords_advlib_takes(registry):
    """Every declared parameter goes to the adv-lib function under ``toolkit`` (or its own name): the
    function must take that keyword, so a mapping cannot drift silently."""
    import adv_lib.attacks as attacks

    for spec in registry.list_attacks("advlib:*"):
        cls = spec.factory
        assert isinstance(cls.params, ParamSet), spec.name
        assert cls.declaration().names() == [*cls.params.names(), "seed", "eval_mode", "eot"], spec.name
        accepted = inspect.signature(getattr(attacks, cls.spec.call)).parameters
        keywords = {p.toolkit or p.name for p in cls.params} | set(cls.spec.fixed)
        if cls.spec.eps_keyword:
            keywords.add(cls.spec.eps_keyword)
        assert keywords <= set(accepted), f"{spec.name}: {sorted(keywords - set(accepted))}"
    pgd = {p.name: p.toolkit for p in registry.attack("advlib:pgd").params if p.toolkit}
    assert pgd == {"step_size": "absolute_step_size", "random_start": "random_init", "loss": "loss_function"}
    apgd = {p.name: p.toolkit for p in registry.attack("advlib:apgd").params if p.toolkit}
    assert apgd == {"steps": "n_iter", "restarts": "n_restarts", "loss": "loss_function"}
    assert registry.attack("advlib:fmn").params["alpha_init"].toolkit == "α_init"


def test_same_result_as_the_bare_toolkit(registry):
    """Our names map to adv-lib's keywords: same seed, same x_adv as calling adv-lib directly."""
    from adv_lib.attacks import apgd, pgd_linf

    model = trained_tiny_model().eval()
    x, y = separable_batch(8, seed=1)
    attack = registry.build_attack("advlib:pgd", ThreatModel("linf", 0.3), steps=4, step_size=0.05, seed=5)
    ours = attack(model, x, y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        bare = pgd_linf(model, x, y, ε=0.3, steps=4, absolute_step_size=0.05, random_init=True)
    assert torch.equal(ours, bare)
    assert not torch.equal(ours, x)

    attack = registry.build_attack("advlib:apgd", ThreatModel("l2", 1.5), steps=5, restarts=2, loss="ce", seed=3)
    ours = attack(model, x, y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        bare = apgd(model, x, y, eps=1.5, norm=2, n_iter=5, n_restarts=2, loss_function="ce")
    assert torch.allclose(ours, bare, atol=1e-6)


def test_targeted_uses_given_labels(registry):
    """With target=, adv-lib runs targeted on the target labels: the loss towards the target falls."""
    model = trained_tiny_model().eval()
    x, y = separable_batch(8, seed=1)
    target = (y + 1) % 10
    attack = registry.build_attack("advlib:apgd", ThreatModel("linf", 0.3), steps=10, loss="ce", seed=0)
    towards = attack(model, x, y, target=target)
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy
        assert float(ce(model(towards), target)) < float(ce(model(x), target))


def test_minimal_norm_result_is_projected(registry):
    """adv-lib's FMN has no eps: points whose minimal perturbation is within eps are returned as adv-lib found
    them; the others are projected into the eps ball (and are then no longer adversarial here)."""
    from adv_lib.attacks import fmn

    model = trained_tiny_model().eval()
    x, y = separable_batch(8, seed=1)
    bare = fmn(model, x, y, norm=2, steps=20)
    norms = (bare - x).flatten(1).norm(dim=1)
    eps = float(norms.median())
    threat = ThreatModel("l2", eps)
    ours = registry.build_attack("advlib:fmn", threat, steps=20, seed=0)(model, x, y)
    assert bool(threat.contains(ours, x).all())
    within = norms <= eps
    assert 0 < int(within.sum()) < len(x)
    assert torch.allclose(ours[within], bare[within], atol=1e-6)
    assert torch.allclose(threat.distance(ours[~within], x[~within]), torch.full(((~within).sum(),), eps), rtol=1e-4)


def test_compare_maps_the_native_configuration(registry):
    """``compare`` gives advlib:pgd the native PGD's steps and step size under adv-lib's keywords, and finds
    APGD-CE as advlib:apgd with loss='ce'."""
    model = tiny_model().eval()
    x, y = tiny_batch(8)
    report = compare(model, (x, y), "pgd", 0.1, toolkits=["native", "advlib"], params={"steps": 3},
                     registry=registry, progress=False, noise=False)
    row = {r["toolkit"]: r for r in report["results"]}["advlib"]
    assert row["available"] and row["same_attack"] is True, row
    assert row["name"] == "advlib:pgd"
    assert row["implied"] == ["kappa"]
    tk = row["toolkit_params"]
    assert (tk["steps"], tk["absolute_step_size"], tk["random_init"], tk["restarts"], tk["loss_function"]) == (
        3, pytest.approx(0.025), True, 1, "ce")
    from robustreg.compare import resolve

    res = resolve(registry, "apgd-ce", "advlib", "linf")
    assert res.name == "advlib:apgd" and res.params == {"loss": "ce"}
