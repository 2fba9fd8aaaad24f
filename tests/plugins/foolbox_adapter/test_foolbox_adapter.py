"""foolbox adapter: every entry passes the conformance kit; mapping, errors, clipping and the bare toolkit."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import pytest
import torch

from robustreg import ParamSet, ThreatModel
from robustreg.compare import compare
from robustreg.testing import check_attack, separable_batch, tiny_batch, tiny_model, trained_tiny_model

EXPECTED = {
    "foolbox:pgd": ("linf", "l2"),
    "foolbox:fgsm": ("linf", "l2"),
    "foolbox:fmn": ("linf", "l2", "l1"),
    "foolbox:ddn": ("l2",),
    "foolbox:cw": ("l2",),
    "foolbox:deepfool": ("linf", "l2"),
}
# small budgets so the whole kit runs in seconds (C&W: a larger rate and weight find adversarial points in
# a few steps on the kit's trained model)
OVERRIDES = {
    "foolbox:pgd": {"steps": 3},
    "foolbox:fgsm": {},
    "foolbox:fmn": {"steps": 10},
    "foolbox:ddn": {"steps": 10},
    "foolbox:cw": {"steps": 20, "binary_search_steps": 2, "lr": 0.1, "initial_const": 10.0},
    "foolbox:deepfool": {"steps": 10},
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
    specs = registry.list_attacks("foolbox:*")
    assert {s.name for s in specs} == set(EXPECTED)
    for spec in specs:
        assert spec.info.toolkit == "foolbox"
        assert spec.plugin == "foolbox"
        assert spec.info.norms == EXPECTED[spec.name], spec.name
        assert spec.info.source.startswith("foolbox 3."), spec.info.source
        assert spec.factory.__doc__ and "arXiv" in spec.factory.__doc__, spec.name
        assert spec.summary
    for name in ("foolbox:fmn", "foolbox:ddn", "foolbox:cw", "foolbox:deepfool"):
        assert registry.attack(name).factory.minimal_norm, name
        assert "clips it to eps" in registry.attack(name).factory.__doc__
    assert registry.attack("foolbox:fgsm").info.single_step


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conformance(registry, name):
    x, y = tiny_batch(6)
    check_attack(registry.attack(name), tiny_model(), x, y, params=OVERRIDES[name])


def test_listing_does_not_import_foolbox():
    code = ("import sys; from robustreg import Registry; reg = Registry.create(); "
            "assert reg.list_attacks('foolbox:*'); print('foolbox' in sys.modules, 'eagerpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False False", out.stderr


def test_missing_toolkit_one_line_error(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "foolbox", None)
    attack = registry.build_attack("foolbox:pgd", ThreatModel("linf", 0.1))
    x, y = tiny_batch(2)
    with pytest.raises(ImportError) as info:
        attack(tiny_model(), x, y)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("foolbox:pgd needs the foolbox package") and message.endswith("pip install foolbox")


def test_unknown_and_bad_parameters(registry):
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(TypeError, match=r"unknown parameter 'abs_step'.*allowed: steps, step_size"):
        registry.build_attack("foolbox:pgd", threat, abs_step=0.01)
    # foolbox's own name of step_size is read as ours (issue 22)
    assert registry.build_attack("foolbox:pgd", threat, abs_stepsize=0.01).config["step_size"] == 0.01
    with pytest.raises(ValueError, match="steps must be an int >= 1 or None, got 0") as info:
        registry.build_attack("foolbox:pgd", threat, steps=0)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"loss must be one of logits, crossentropy, got 'ce'"):
        registry.build_attack("foolbox:deepfool", ThreatModel("l2", 0.5), loss="ce")
    with pytest.raises(ValueError, match="supports norm"):
        registry.build_attack("foolbox:ddn", threat)


def test_declarations_name_keywords_foolbox_takes(registry):
    """Every declared parameter goes to each foolbox class under ``toolkit`` (or its own name): every class
    of the entry must take that keyword, so a mapping cannot drift silently."""
    import foolbox

    for spec in registry.list_attacks("foolbox:*"):
        cls = spec.factory
        assert isinstance(cls.params, ParamSet), spec.name
        assert cls.declaration().names() == [*cls.params.names(), "seed", "eval_mode", "eot"], spec.name
        keywords = {p.toolkit or p.name for p in cls.params}
        for norm, class_name in cls.spec.calls().items():
            accepted = set(inspect.signature(getattr(foolbox.attacks, class_name).__init__).parameters)
            assert keywords <= accepted, f"{spec.name} ({norm}): {sorted(keywords - accepted)}"
    pgd = {p.name: p.toolkit for p in registry.attack("foolbox:pgd").params if p.toolkit}
    assert pgd == {"step_size": "abs_stepsize"}
    fmn = {p.name: p.toolkit for p in registry.attack("foolbox:fmn").params if p.toolkit}
    assert fmn == {"alpha_init": "max_stepsize", "alpha_final": "min_stepsize", "gamma_init": "gamma"}


def test_foolbox_defaults_per_norm_are_kept(registry):
    """steps / rel_stepsize None leave foolbox's own per-norm defaults (LinfPGD 40, L2PGD 50 steps)."""
    linf = registry.build_attack("foolbox:pgd", ThreatModel("linf", 0.1))
    assert linf.toolkit_call() == "LinfProjectedGradientDescentAttack"
    assert linf.toolkit_kwargs() == {"abs_stepsize": None, "random_start": True}
    l2 = registry.build_attack("foolbox:pgd", ThreatModel("l2", 0.5), steps=7, step_size=0.1)
    assert l2.toolkit_call() == "L2ProjectedGradientDescentAttack"
    assert l2.toolkit_kwargs() == {"steps": 7, "abs_stepsize": 0.1, "random_start": True}


def test_same_result_as_the_bare_toolkit(registry):
    """Same seed, same x_adv as calling foolbox directly (its ``clipped`` output)."""
    import foolbox

    model = trained_tiny_model().eval()
    x, y = separable_batch(8, seed=1)
    attack = registry.build_attack("foolbox:pgd", ThreatModel("linf", 0.3), steps=4, step_size=0.05, seed=5)
    ours = attack(model, x, y)
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        _, bare, _ = foolbox.attacks.LinfPGD(steps=4, abs_stepsize=0.05)(fmodel, x, y, epsilons=0.3)
    assert torch.allclose(ours, bare, atol=1e-7)
    assert not torch.equal(ours, x)


def test_minimal_norm_result_is_foolboxs_clip(registry):
    """foolbox's FMN minimises the norm; the entry returns foolbox's clip of it to eps: points within eps as
    found, the others on the sphere of radius eps."""
    import foolbox

    model = trained_tiny_model().eval()
    x, y = separable_batch(8, seed=1)
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x.device)
    raw, _, _ = foolbox.attacks.L2FMNAttack(steps=20)(fmodel, x, y, epsilons=None)
    norms = (raw - x).flatten(1).norm(dim=1)
    eps = float(norms.median())
    threat = ThreatModel("l2", eps)
    ours = registry.build_attack("foolbox:fmn", threat, steps=20, seed=0)(model, x, y)
    assert bool(threat.contains(ours, x).all())
    within = norms <= eps
    assert 0 < int(within.sum()) < len(x)
    assert torch.allclose(ours[within], raw[within], atol=1e-6)
    assert torch.allclose(threat.distance(ours[~within], x[~within]), torch.full(((~within).sum(),), eps), rtol=1e-4)


def test_model_stays_on_its_device_and_train_mode_warning_is_silenced(registry):
    """foolbox's PyTorchModel would move the model to cuda:0 when CUDA exists and warns on train mode: the
    wrapper is built on the model's own device, and the caller's eval_mode=False is not warned about."""
    model = tiny_model().train()
    x, y = tiny_batch(4)
    seen = []
    handle = model[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    try:
        with warnings.catch_warnings(record=True) as caught:  # foolbox forces its warning on: record it
            warnings.simplefilter("always")
            registry.build_attack("foolbox:fgsm", ThreatModel("linf", 0.1), eval_mode=False)(model, x, y)
    finally:
        handle.remove()
    assert not [w for w in caught if "training mode" in str(w.message)], [str(w.message) for w in caught]
    assert seen[-1] is True  # the attack itself ran in train mode, as asked
    assert next(model.parameters()).device == x.device
    assert model.training


def test_compare_maps_the_native_configuration(registry):
    """``compare`` gives foolbox:pgd the native PGD's steps and step size under foolbox's keywords."""
    model = tiny_model().eval()
    x, y = tiny_batch(8)
    report = compare(model, (x, y), "pgd", 0.1, toolkits=["native", "foolbox"], params={"steps": 3},
                     registry=registry, progress=False, noise=False)
    row = {r["toolkit"]: r for r in report["results"]}["foolbox"]
    assert row["available"] and row["same_attack"] is True, row
    assert row["name"] == "foolbox:pgd"
    assert sorted(row["implied"]) == ["kappa", "loss", "restarts"]
    tk = row["toolkit_params"]
    assert (tk["steps"], tk["abs_stepsize"], tk["random_start"]) == (3, pytest.approx(0.025), True)
