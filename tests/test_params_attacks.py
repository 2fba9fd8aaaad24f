"""The native attacks' declared parameters: one-line errors naming the attack, built directly or by name."""

from __future__ import annotations

import math

import pytest

from robustreg import ParamError, ParamTypeError, ThreatModel, UnknownParamError
from robustreg_plugins.blackbox import SPSA, RayS
from robustreg_plugins.cascade import IterFGSM
from robustreg_plugins.classic import PGD, PGDCW, PGDDLR
from robustreg_plugins.scale_invariant import SIPGD

THREAT = ThreatModel("linf", 8 / 255)
CLASSES = {"pgd": PGD, "spsa": SPSA, "rays": RayS, "iter-fgsm": IterFGSM, "si-pgd": SIPGD}
DEMO = {"fgsm", "pgd", "pgd-cw", "si-pgd"}  # the CLI's former DEFAULT_ATTACKS


def _build(how: str, registry, name: str, **params):
    if how == "direct":
        return CLASSES[name](THREAT, **params)
    return registry.build_attack(name, THREAT, **params)


def _message(exc: pytest.ExceptionInfo, name: str, key: str) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    assert text.startswith(f"{name}: "), text
    assert key in text, text
    return text


# (attack, parameter, declared type, a value outside the declaration, a value of the wrong type)
CASES = [
    pytest.param("pgd", "steps", "int", 0, "20", id="int-pgd.steps"),
    pytest.param("spsa", "samples", "int", 0, 2.5, id="int-spsa.samples"),
    pytest.param("pgd", "step_size", "float", 0.0, "big", id="optional-float-pgd.step_size"),
    pytest.param("pgd", "kappa", "float", -1.0, "inf", id="float-pgd.kappa"),
    pytest.param("spsa", "delta", "float", math.inf, "small", id="float-spsa.delta"),
    pytest.param("rays", "tol", "float", 2.0, True, id="optional-float-rays.tol"),
    pytest.param("si-pgd", "s", "float", 0, [15], id="float-si-pgd.s"),
    pytest.param("iter-fgsm", "steps", "int", 0, 1.5, id="optional-int-iter-fgsm.steps"),
    pytest.param("pgd", "loss", "choice", "hinge", 3, id="choice-pgd.loss"),
    pytest.param("pgd", "random_start", "bool", None, "yes", id="bool-pgd.random_start"),
]


@pytest.mark.parametrize("how", ["direct", "registry"])
@pytest.mark.parametrize(("name", "key", "kind", "outside", "wrong_type"), CASES)
def test_bad_values_are_one_line_errors_naming_the_attack(registry, how, name, key, kind, outside, wrong_type):
    assert CLASSES[name].params[key].type == kind
    with pytest.raises(ParamError) as exc:
        _build(how, registry, name, **{key: outside})
    assert repr(outside) in _message(exc, name, key)
    error = ParamError if kind == "choice" else ParamTypeError  # a choice has no type of its own
    with pytest.raises(error) as exc:
        _build(how, registry, name, **{key: wrong_type})
    assert repr(wrong_type) in _message(exc, name, key)


@pytest.mark.parametrize("how", ["direct", "registry"])
@pytest.mark.parametrize(("name", "typo", "meant"), [("pgd", "stepz", "steps"), ("spsa", "sample", "samples"),
                                                      ("rays", "max_query", "max_queries")])
def test_misspelt_names_suggest_the_declared_one(registry, how, name, typo, meant):
    with pytest.raises(UnknownParamError) as exc:
        _build(how, registry, name, **{typo: 1})
    assert isinstance(exc.value, TypeError)
    assert f"did you mean {meant}" in _message(exc, name, repr(typo))


@pytest.mark.parametrize("how", ["direct", "registry"])
def test_values_the_declarations_allow(registry, how):
    pgd = _build(how, registry, "pgd", steps=3, step_size=None, kappa=math.inf, loss="cw", random_start=False)
    assert (pgd.steps, pgd.step_size, pgd.kappa, pgd.loss, pgd.random_start) == (3, None, math.inf, "cw", False)
    assert pgd.effective_step_size == pytest.approx(THREAT.eps / 4)
    assert isinstance(_build(how, registry, "pgd", step_size=1).step_size, float)
    assert _build(how, registry, "iter-fgsm", steps=None).iterations == 10  # min(8 + 4, 1.25 * 8)
    assert _build(how, registry, "rays", tol=None).tol is None
    assert _build(how, registry, "spsa", steps=0, samples=2).steps == 0


def test_cross_parameter_check_in_setup():
    with pytest.raises(ParamError) as exc:
        SPSA(THREAT, samples=7)
    assert "samples must be even" in _message(exc, "spsa", "7")


def test_pgd_variants_fix_their_loss():
    assert PGDCW(THREAT).loss == "cw" and PGDDLR(THREAT).loss == "dlr"
    assert "loss" not in PGDCW.params and "kappa" in PGDCW.params
    assert "loss" not in PGDDLR.params and "kappa" not in PGDDLR.params
    for cls in (PGDCW, PGDDLR):
        with pytest.raises(UnknownParamError) as exc:
            cls(THREAT, loss="ce")
        _message(exc, cls.name, "'loss'")


def _natives(registry):
    return {name: spec for name, spec in registry.entries("attacks").items() if spec.info.toolkit == "native"}


def test_every_native_attack_declares_its_parameters(registry):
    natives = _natives(registry)
    assert {"fgsm", "pgd", "pgd-cw", "pgd-dlr", "step-ll", "step-fgsm", "iter-fgsm", "iter-ll", "si-pgd", "spsa",
            "rays", "apgd", "fmn", "ddn"} <= set(natives)
    for name, spec in natives.items():
        declaration = spec.factory.declaration()
        assert len(declaration) > 0, name
        for p in declaration:
            assert p.name and p.type and p.doc and "\n" not in p.doc, (name, p)
            assert hasattr(p, "default"), (name, p)
        threat = THREAT if THREAT.norm in spec.info.norms else ThreatModel(spec.info.norms[0], THREAT.eps)
        attack = spec.factory(threat)  # the declared defaults build, and become the attributes
        for p in spec.factory.params:
            assert getattr(attack, p.name) == p.default, (name, p.name)
        assert attack.config == spec.factory.params.defaults(), name


@pytest.mark.parametrize("name", [
    "fgsm", "pgd", "pgd-cw", "pgd-dlr", "iter-fgsm", "iter-ll", "si-pgd", "spsa", "rays", "step-ll", "step-fgsm",
])
def test_registry_reads_the_native_declarations(registry, name):
    spec = registry.attack(name)
    assert len(spec.params) > 0
    assert spec.params == spec.factory.declaration()


def test_demo_attack_set(registry):
    assert {name for name, spec in registry.entries("attacks").items() if spec.demo} == DEMO


# --- the same for defenses: errors name the defense -----------------------------------------------
@pytest.mark.parametrize(("name", "key", "out_of_range", "wrong_type"), [
    ("at", "steps", -1, "3"),                   # int
    ("at", "eps", 8, "eight"),                  # float (pixel units; "8/255" text is read, as eps everywhere)
    ("at", "step_size", -0.1, "big"),           # optional float
    ("at", "random_start", None, 1),            # bool
    ("bidirectional", "embedding", "pixels", 2),  # choice
])
def test_defense_parameters_give_one_line_errors_naming_the_defense(registry, name, key, out_of_range, wrong_type):
    for value in (out_of_range, wrong_type):
        with pytest.raises(ParamError) as info:
            registry.build_defense(name, **{key: value})
        text = str(info.value)
        assert "\n" not in text and text.startswith(f"{name}: ") and key in text, text
    with pytest.raises(UnknownParamError) as info:
        registry.build_defense(name, **{key + "z": 1})
    assert f"did you mean {key}" in str(info.value) and str(info.value).startswith(f"{name}: ")
