"""AutoAttack adapter: conformance, the toolkit's own numbers, per-sub-attack records, errors."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys

import pytest
import torch

from robustreg import ParamSet, ThreatModel
from robustreg.testing import CHECKS, check_attack, tiny_batch, tiny_model

EXPECTED = {"standard", "plus", "rand", "apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"}
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


def _model_and_batch(n: int = 12):
    """tiny_model in eval mode, and labels it predicts, so every point starts correctly classified."""
    model = tiny_model().eval()
    x, _ = tiny_batch(n, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_all_entries_registered(registry):
    specs = registry.list_attacks("autoattack:*")
    assert {s.name.split(":", 1)[1] for s in specs} == EXPECTED
    for spec in specs:
        assert spec.info.toolkit == "autoattack"
        assert spec.info.norms == ("linf", "l2", "l1")
        assert "autoattack" in spec.info.source and "arXiv:2003.01690" in spec.info.source
        assert "batch_size (default 250)" in spec.factory.__doc__
    assert registry.attack("autoattack:square").info.kind == "score"
    assert registry.attack("autoattack:standard").info.kind == "white-box"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conformance(registry, name):
    # rand runs 20 EOT samples per step: check it on linf only
    # Labels the model predicts, so the cascade has points to attack (random labels leave none).
    norms = ("linf",) if name in ("rand", "plus", "fab-t") else None
    _, x, y = _model_and_batch(8)
    # Square spends its 5000 queries on every point it cannot break: give it a budget that breaks all.
    threat = ThreatModel("linf", 0.3) if name == "square" else None
    # FAB's randomness is in its later restarts, which only replace the result by a smaller perturbation:
    # on the kit's trained tiny model every seed gives the same x_adv (checked for seeds 0-2).
    checks = [c for c in CHECKS if not (name in ("fab", "fab-t") and c == "randomized_seeds_differ")]
    check_attack(registry.attack(f"autoattack:{name}"), tiny_model(), x, y, norms=norms, threat=threat,
                 checks=checks)


def test_standard_equals_the_toolkit_run(registry):
    """Same seed: the adapter's x_adv and robust accuracy equal AutoAttack's run_standard_evaluation."""
    import pyautoattack

    model, x, y = _model_and_batch()
    eps = 0.06  # apgd-ce leaves 3 of 12 points, apgd-t 2: fab-t and square run too
    result = registry.build_attack("autoattack:standard", ThreatModel("linf", eps), seed=0).run(model, x, y)
    adversary = pyautoattack.AutoAttack(model, eps=eps, norm="Linf", seed=0, version="standard")
    logger = logging.getLogger("auto-attack")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        x_toolkit, _ = adversary.run_standard_evaluation(x, y, batch_size=250)
    finally:
        logger.setLevel(level)
    assert torch.allclose(result.x_adv, x_toolkit, atol=1e-6)
    with torch.no_grad():
        ours = model(result.x_adv).argmax(1) == y
        theirs = model(x_toolkit).argmax(1) == y
    assert torch.equal(ours, theirs)
    # records: one per sub-attack, in order, non-increasing, the last equal to the final correctness
    assert [k for k in result.extras if k.startswith("robust_after:")] == [f"robust_after:{s}" for s in STANDARD]
    assert [k for k in result.extras if k.startswith("seconds:")] == [f"seconds:{s}" for s in STANDARD]
    previous = torch.ones_like(ours)
    for sub in STANDARD:
        flags = result.extras[f"robust_after:{sub}"]
        assert flags.dtype == torch.bool and flags.shape == y.shape
        assert bool((flags <= previous).all())
        previous = flags
        assert isinstance(result.extras[f"seconds:{sub}"], float) and result.extras[f"seconds:{sub}"] >= 0
    assert torch.equal(previous, ours)
    # the cascade did something at this eps: apgd-ce broke some points and not all
    first = result.extras["robust_after:apgd-ce"]
    assert 0 < int(first.sum()) < len(y)


def test_individual_entry_is_the_first_step_of_standard(registry):
    model, x, y = _model_and_batch()
    threat = ThreatModel("linf", 0.02)
    single = registry.build_attack("autoattack:apgd-ce", threat, seed=0).run(model, x, y)
    with torch.no_grad():
        standing = model(single.x_adv).argmax(1) == y
    assert torch.equal(standing, single.extras["robust_after:apgd-ce"])
    assert list(single.extras) == ["robust_after:apgd-ce", "seconds:apgd-ce", "forwards", "backwards"]


def test_listing_does_not_import_autoattack():
    code = (
        "import sys; from robustreg import Registry; reg = Registry.create(); "
        "assert reg.list_attacks('autoattack:*'); print('pyautoattack' in sys.modules or 'autoattack' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_toolkit_one_line_error(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "autoattack", None)
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    attack = registry.build_attack("autoattack:standard", ThreatModel("linf", 0.1))
    x, y = tiny_batch(2)
    with pytest.raises(ImportError) as info:
        attack(tiny_model(), x, y)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("autoattack:standard needs AutoAttack: pip install pyautoattack")


def test_bad_parameters(registry):
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        registry.build_attack("autoattack:standard", threat, batch_size=0)
    with pytest.raises(TypeError):
        registry.build_attack("autoattack:standard", threat, n_iter=10)


def test_declarations_name_keywords_autoattack_takes(registry):
    """Every entry declares its parameters; one mapped to a toolkit keyword must be one AutoAttack takes."""
    from robustreg_plugins.autoattack_adapter.compat import load_toolkit

    accepted = inspect.signature(load_toolkit("test").autoattack_class.__init__).parameters
    for spec in registry.list_attacks("autoattack:*"):
        assert isinstance(spec.params, ParamSet) and len(spec.factory.params) > 0, spec.name
        assert spec.params.names() == [*spec.factory.params.names(), "seed", "eval_mode", "eot"], spec.name
        assert all(p.toolkit in accepted for p in spec.params if p.toolkit is not None), spec.name
        assert spec.params["batch_size"].default == 250 and spec.params["verbose"].default is False


def test_too_few_classes_for_dlr(registry):
    model = tiny_model(num_classes=3)
    x, y = tiny_batch(2, num_classes=3)
    with pytest.raises(ValueError, match="apgd-t needs a model with >= 4 classes, got 3"):
        registry.build_attack("autoattack:apgd-t", ThreatModel("linf", 0.1))(model, x, y)
