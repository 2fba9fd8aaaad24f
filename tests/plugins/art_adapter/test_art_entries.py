"""The ART adapter: every entry passes the conformance kit; mappings, pitfalls and the wrapper cache."""

from __future__ import annotations

import gc
import inspect
import math
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch

from robustreg import ParamSet, Registry, ThreatModel
from robustreg.testing import check_attack, tiny_batch, tiny_model
from robustreg_plugins.art_adapter import ENTRIES
from robustreg_plugins.art_adapter import _base as art_base
from robustreg_plugins.art_adapter.black_box import ArtGeoDA, ArtHopSkipJump, ArtSquare, _dct_basis
from robustreg_plugins.art_adapter.white_box import ArtAPGDCE, ArtAutoAttack, ArtFGM, ArtPGD

EXPECTED = {
    "art:fgm": ("white-box", ("linf", "l2")),
    "art:bim": ("white-box", ("linf",)),
    "art:pgd": ("white-box", ("linf", "l2")),
    "art:apgd-ce": ("white-box", ("linf", "l2")),
    "art:apgd-dlr": ("white-box", ("linf", "l2")),
    "art:autoattack": ("white-box", ("linf", "l2")),
    "art:square": ("score", ("linf", "l2")),
    "art:simba": ("score", ("l2",)),
    "art:zoo": ("score", ("l2",)),
    "art:hopskipjump": ("decision", ("linf", "l2")),
    "art:boundary": ("decision", ("l2",)),
    "art:geoda": ("decision", ("linf", "l2")),
    "art:sign-opt": ("decision", ("l2",)),
}

# Tiny budgets: each entry runs its whole conformance kit in seconds on the 8x8 tiny model.
TINY = {
    "art:fgm": {},
    "art:bim": {"steps": 3},
    "art:pgd": {"steps": 3, "restarts": 2},
    "art:apgd-ce": {"steps": 3},
    "art:apgd-dlr": {"steps": 3},
    "art:autoattack": {"steps": 2, "restarts": 1, "n_queries": 10, "square_restarts": 1, "deepfool_steps": 3},
    "art:square": {"n_queries": 20},
    "art:simba": {"steps": 20, "attack": "px"},
    "art:zoo": {"steps": 2, "nb_parallel": 16},
    "art:hopskipjump": {"steps": 2, "max_eval": 40, "init_eval": 10, "init_size": 20},
    "art:boundary": {"steps": 3, "num_trial": 5, "sample_size": 5, "init_size": 20},
    "art:geoda": {"max_queries": 100, "sub_dim": 4},
    "art:sign-opt": {"steps": 3, "max_queries": 300, "k": 10, "num_trial": 10},
}


@pytest.fixture(scope="module")
def reg() -> Registry:
    return Registry.create()


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: threads only add contention on a 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_every_entry_is_registered_with_its_info(reg):
    names = {spec.name for spec in reg.list_attacks("art:*")}
    assert names == set(EXPECTED)
    for name, (kind, norms) in EXPECTED.items():
        spec = reg.attack(name)
        assert spec.plugin == "art"
        assert spec.info.toolkit == "art"
        assert spec.info.kind == kind, name
        assert spec.info.norms == norms, name
        assert spec.info.source.startswith("ART "), spec.info.source
        assert spec.summary
        assert spec.factory.__doc__ and "arXiv" in spec.factory.__doc__, name
    assert "not the standard" in reg.attack("art:autoattack").info.summary


def test_registering_does_not_import_art():
    code = ("import sys\nfrom robustreg import Registry\nr = Registry.create()\n"
            "assert r.attack('art:pgd')\nprint('art' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_conforms(reg, name):
    x, y = tiny_batch(6)
    norms = ["l2"] if name == "art:geoda" else None  # its capped random search is the slow part
    check_attack(reg.attack(name), tiny_model(), x, y, params=TINY[name], norms=norms)


@pytest.mark.parametrize("cls", ENTRIES, ids=lambda c: c.name)
def test_missing_toolkit_is_a_one_line_error(monkeypatch, cls):
    monkeypatch.setitem(sys.modules, "art", None)
    with pytest.raises(ImportError) as info:
        cls(ThreatModel(cls.info.norms[0], 0.1))
    message = str(info.value)
    assert "\n" not in message
    assert "pip install adversarial-robustness-toolbox" in message
    assert cls.name in message


def test_missing_multiprocess_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "multiprocess", None)
    with pytest.raises(ImportError, match="pip install multiprocess"):
        ArtAutoAttack(ThreatModel("linf", 0.1))


def test_unknown_and_conflicting_parameters(reg):
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(TypeError, match="n_iterations") as info:
        reg.build_attack("art:pgd", threat, n_iterations=3)
    assert "steps" in str(info.value) and "max_iter" in str(info.value)  # the allowed names are listed
    # another toolkit's name of steps (nb_iter) is read as ours (issue 22)
    assert reg.build_attack("art:pgd", threat, nb_iter=3).config["steps"] == 3
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        reg.build_attack("art:pgd", threat, steps=0)
    with pytest.raises(ValueError, match="restarts must be 1 when random_start=False"):
        reg.build_attack("art:pgd", threat, random_start=False, restarts=3)
    with pytest.raises(ValueError, match="attack must be one of"):
        reg.build_attack("art:simba", ThreatModel("l2", 1.0), attack="fft")
    with pytest.raises(ValueError, match="supports norm"):
        reg.build_attack("art:boundary", threat)


def _by_art_keyword(cls) -> dict[str, list]:
    """ART keyword -> the declared parameters that set it, in declaration order (``own`` ones left out)."""
    groups: dict[str, list] = {}
    for p in cls.params:
        if p.name not in cls.own:
            groups.setdefault(p.toolkit or p.name, []).append(p)
    return groups


def test_art_names_win_over_our_aliases_and_the_declared_defaults(reg):
    # Several names may set one ART keyword (steps, max_iter): only the first has a default (the others
    # default to None, "not given"), and ART's own name is declared last, so it wins.
    threat = ThreatModel("linf", 0.1)
    for name in EXPECTED:
        for keyword, members in _by_art_keyword(reg.attack(name).factory).items():
            defaults = [p.name for p in members if p.default is not None]
            assert len(defaults) <= 1 and set(defaults) <= {members[0].name}, \
                f"{name}: two default names set one ART parameter"
            if len(members) > 1 and keyword in {p.name for p in members}:
                assert members[-1].name == keyword, f"{name}: ART's {keyword} must be declared last"
    kw = reg.build_attack("art:pgd", threat, max_iter=5, num_random_init=2).art_kwargs(1)
    assert (kw["max_iter"], kw["num_random_init"]) == (5, 2)
    assert reg.build_attack("art:pgd", threat, steps=3, max_iter=4).art_kwargs(1)["max_iter"] == 4
    assert reg.build_attack("art:pgd", threat).art_kwargs(1)["max_iter"] == 20
    assert reg.build_attack("art:fgm", threat, num_random_init=1).art_kwargs(1)["num_random_init"] == 1
    assert reg.build_attack("art:square", threat, max_iter=7).art_kwargs(1)["max_iter"] == 7


def test_every_entry_declares_its_parameters_with_art_keywords_art_accepts(reg):
    """Each parameter not handled by the adapter itself goes to ART under ``toolkit`` (or its own name):
    ART's constructor must take that keyword, so a mapping cannot drift silently."""
    from art.attacks import evasion

    for spec in reg.list_attacks("art:*"):
        cls = spec.factory
        assert isinstance(spec.params, ParamSet) and len(cls.params) > 0, spec.name
        assert spec.params.names() == [*cls.params.names(), "seed", "eval_mode", "eot"], spec.name
        accepted = inspect.signature(getattr(evasion, cls.art_class).__init__).parameters
        mapped = [p for p in cls.params if p.toolkit is not None]
        assert all(p.toolkit in accepted for p in mapped), spec.name
        assert all(p.name not in cls.own for p in mapped), spec.name
        passed = set(_by_art_keyword(cls))
        assert passed <= set(accepted), f"{spec.name}: ART does not take {sorted(passed - set(accepted))}"
        assert not passed & set(cls.fixed), spec.name  # the adapter's fixed keywords are not parameters
    assert reg.attack("art:pgd").params["steps"].toolkit == "max_iter"


def test_vocabulary_maps_to_art_names():
    threat = ThreatModel("linf", 0.3)
    pgd = ArtPGD(threat, steps=40, step_size=0.01, random_start=True, restarts=3)
    kw = pgd.art_kwargs(1)
    assert (kw["max_iter"], kw["eps_step"], kw["num_random_init"], kw["eps"], kw["norm"]) == (40, 0.01, 3, 0.3, np.inf)
    assert kw["targeted"] is False and kw["verbose"] is False
    assert ArtPGD(threat, random_start=False).art_kwargs(1)["num_random_init"] == 0
    assert ArtPGD(threat).art_kwargs(1)["eps_step"] == pytest.approx(0.3 / 4)
    assert ArtPGD(ThreatModel("l2", 1.5)).art_kwargs(1)["norm"] == 2
    apgd = ArtAPGDCE(threat, restarts=2).art_kwargs(1)
    assert (apgd["nb_random_init"], apgd["eps_step"], apgd["loss_type"]) == (2, pytest.approx(0.6), "cross_entropy")
    assert ArtFGM(threat, random_start=True).art_kwargs(1)["num_random_init"] == 1
    hsj = ArtHopSkipJump(ThreatModel("l2", 1.0), steps=7).art_kwargs(1)
    assert (hsj["max_iter"], hsj["norm"], hsj["targeted"]) == (7, 2, False)


def test_art_attack_receives_the_mapped_values():
    model = tiny_model().eval()
    x, _ = tiny_batch(2)
    _, classifier = art_base.classifier_for(model, x)
    attack = ArtPGD(ThreatModel("linf", 0.2), steps=5, step_size=0.03).build_art_attack(classifier, 2)
    assert (attack.max_iter, attack.eps_step, attack.eps, attack.norm, attack.num_random_init) == (5, 0.03, 0.2,
                                                                                                   np.inf, 1)
    assert attack.targeted is False


def test_classifier_is_cached_and_does_not_keep_the_model_alive():
    model = tiny_model()
    x, y = tiny_batch(4)
    attack = ArtPGD(ThreatModel("linf", 0.1), steps=2, seed=0)
    attack(model, x, y)
    first = dict(art_base._CACHE[model])
    attack(model, x, y)
    ArtAPGDCE(ThreatModel("linf", 0.1), steps=2, seed=0)(model, x, y)
    second = art_base._CACHE[model]
    assert len(second) == 1
    key = next(iter(first))
    assert second[key][1] is first[key][1]  # the same PyTorchClassifier object: not rebuilt
    ref = weakref.ref(model)
    del model, first, second
    gc.collect()
    assert ref() is None, "the wrapper cache keeps the model alive"


def test_hopskipjump_restores_mode_grads_and_requires_grad():
    model = tiny_model()  # train mode, BatchNorm
    x, y = tiny_batch(6)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # every point correctly classified: all are attacked
    model.train()
    model[1].eval()
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.5)
        p.requires_grad_(i % 2 == 0)
    grads = [p.grad for p in params]
    buffers = [b.clone() for b in model.buffers()]
    result = ArtHopSkipJump(ThreatModel("l2", 1.0), seed=0, **TINY["art:hopskipjump"]).run(model, x, y)
    assert model.training and not model[1].training and model[0].training
    for i, (p, g) in enumerate(zip(params, grads)):
        assert p.requires_grad == (i % 2 == 0)
        assert p.grad is g and bool((g == 0.5).all())
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert result.queries is not None and result.queries.shape == (6,) and bool((result.queries > 1).all())


def test_float64_model_and_input():
    # Under NumPy 2 ART's HopSkipJump feeds float64 arrays; the adapter casts to the model's dtype.
    model = tiny_model().double().eval()
    x, y = tiny_batch(4)
    x = x.double()
    x_adv = ArtHopSkipJump(ThreatModel("linf", 0.1), seed=1, **TINY["art:hopskipjump"])(model, x, y)
    assert x_adv.dtype == torch.float64
    x_adv = ArtPGD(ThreatModel("linf", 0.1), steps=2, seed=1)(model, x, y)
    assert x_adv.dtype == torch.float64


def test_seed_gives_same_result_and_restores_python_random():
    import random

    model = tiny_model().eval()
    x, y = tiny_batch(6)
    state = random.getstate()
    a = ArtSquare(ThreatModel("l2", 0.5), n_queries=20, seed=3)(model, x, y)  # L2 Square uses Python's random
    assert random.getstate() == state
    b = ArtSquare(ThreatModel("l2", 0.5), n_queries=20, seed=3)(model, x, y)
    assert torch.equal(a, b)


def test_geoda_dct_basis_matches_the_formula():
    sub_dim, res = 3, 5
    n = max(res, sub_dim)

    def alpha(a):
        return math.sqrt((1.0 if a == 0 else 2.0) / n)

    expected = np.zeros((sub_dim * sub_dim, res * res))
    for u in range(sub_dim):
        for v in range(sub_dim):
            for yy in range(res):
                for xx in range(res):
                    expected[u * sub_dim + v, yy * res + xx] = (
                        alpha(u) * alpha(v) * math.cos((2 * xx + 1) * u * math.pi / (2 * n))
                        * math.cos((2 * yy + 1) * v * math.pi / (2 * n)))
    np.testing.assert_allclose(_dct_basis(sub_dim, res), expected.T, atol=1e-12)


def test_geoda_leaves_no_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model().eval()
    x, y = tiny_batch(3)
    ArtGeoDA(ThreatModel("l2", 1.0), seed=0, **TINY["art:geoda"])(model, x, y)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["art:pgd", "art:square", "art:hopskipjump"])
def test_cuda_model_and_input_stay_on_their_device(reg, name):
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    model = tiny_model().to(device).eval()
    x, y = tiny_batch(4)
    x, y = x.to(device), y.to(device)
    threat = ThreatModel("l2", 0.5)
    result = reg.build_attack(name, threat, seed=0, **TINY[name]).run(model, x, y)
    assert result.x_adv.device == device
    assert all(p.device == device for p in model.parameters())
    assert bool(threat.contains(result.x_adv, x).all())
