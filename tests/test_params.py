"""The core's declared parameters: validation, text coercion, close matches, JSON."""

from __future__ import annotations

import math

import pytest

from robustreg import Param, ParamError, ParamSet, ParamTypeError, UnknownParamError
from robustreg.params import parse_assignment, parse_value

DECL = ParamSet([
    Param("steps", "int", 20, "gradient steps", low=1),
    Param("step_size", "float", None, "absolute step", low=0, low_open=True, optional=True, unit="pixels [0, 1]"),
    Param("loss", "choice", "ce", "the loss", choices=("ce", "cw", "dlr")),
    Param("random_start", "bool", True, "start in the ball"),
    Param("kappa", "float", 50.0, "margin cap", low=0, low_open=True, unit="logits", toolkit="confidence"),
])


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(("key", "bad_value", "bad_type"), [
    ("steps", 0, "20"),
    ("step_size", -0.1, "big"),
    ("loss", "hinge", 3),
    ("random_start", None, "yes"),
])
def test_out_of_range_wrong_type_and_misspelt_name(key, bad_value, bad_type):
    with pytest.raises(ParamError) as info:
        DECL.resolve("pgd", {key: bad_value})
    text = one_line(info)
    assert text.startswith("pgd: ") and key in text and repr(bad_value) in text
    with pytest.raises(ParamError) as info:
        DECL.resolve("pgd", {key: bad_type})
    assert key in one_line(info)
    with pytest.raises(UnknownParamError) as info:
        DECL.resolve("pgd", {key + "z": 1})
    assert f"did you mean {key}" in one_line(info)


def test_type_errors_are_type_errors_and_unknown_names_too():
    with pytest.raises(TypeError):
        DECL.resolve("pgd", {"steps": 2.5})
    with pytest.raises(ParamTypeError):
        DECL.resolve("pgd", {"random_start": 1})
    with pytest.raises(TypeError):
        DECL.resolve("pgd", {"stepz": 1})


def test_resolve_fills_defaults_and_normalises():
    values = DECL.resolve("pgd", {"steps": 40.0, "step_size": 1, "loss": "cw"})
    assert values == {"steps": 40, "step_size": 1.0, "loss": "cw", "random_start": True, "kappa": 50.0}
    assert type(values["steps"]) is int and type(values["step_size"]) is float
    assert DECL.resolve("pgd", {"kappa": math.inf})["kappa"] == math.inf


def test_bool_is_not_an_int_choice():
    flags = ParamSet([Param("k", "choice", 1, "k", choices=(1, 2))])
    with pytest.raises(ParamError):
        flags.resolve("x", {"k": True})
    assert flags.resolve("x", {"k": 2.0})["k"] == 2


def test_parse_from_text():
    assert DECL.parse("pgd", {"steps": "40", "step_size": "2/255", "loss": "CW", "random_start": "no"}) == {
        "steps": 40, "step_size": pytest.approx(2 / 255), "loss": "cw", "random_start": False}
    assert DECL["step_size"].parse("pgd", "none") is None
    with pytest.raises(ParamTypeError, match="steps must be an int >= 1, got 'ten'"):
        DECL["steps"].parse("pgd", "ten")
    with pytest.raises(ParamError, match="did you mean 'dlr'"):
        DECL["loss"].parse("pgd", "dl")


def test_pixel_unit_hint_for_255_scale():
    eps = Param("eps", "float", 0.03, "radius", low=0, high=1, unit="pixels [0, 1]")
    with pytest.raises(ParamError, match="did you mean 8/255"):
        eps.validate("at", 8)


def test_derived_declarations():
    assert DECL.with_defaults(steps=10)["steps"].default == 10
    assert "loss" not in DECL.without("loss")
    with pytest.raises(ParamError):
        DECL.with_defaults(steps=0)
    with pytest.raises(UnknownParamError, match="did you mean steps"):
        DECL.with_defaults(stepz=3)
    with pytest.raises(ValueError, match="declared twice"):
        DECL + [Param("steps", "int", 1, "again")]


def test_declaration_is_checked():
    with pytest.raises(ValueError, match="type must be one of"):
        Param("x", "list", [], "a list")
    with pytest.raises(ValueError, match="doc"):
        Param("x", "int", 1, "")
    with pytest.raises(ParamError):
        Param("x", "int", 0, "positive", low=1)


def test_toolkit_names_and_json():
    assert DECL.toolkit_kwargs({"kappa": 3.0, "steps": 5}) == {"confidence": 3.0, "steps": 5}
    rows = DECL.to_json()
    assert [r["name"] for r in rows] == DECL.names()
    assert rows[1] == {"name": "step_size", "type": "float", "default": None, "doc": "absolute step",
                       "allowed": "a number > 0 or None", "low": 0, "unit": "pixels [0, 1]", "low_open": True,
                       "optional": True}
    assert rows[2]["choices"] == ["ce", "cw", "dlr"]


@pytest.mark.parametrize(("text", "expected"), [
    ("pgd.steps=40", ("pgd", "steps", "40")),
    ("autoattack:apgd-ce.n_iter=10", ("autoattack:apgd-ce", "n_iter", "10")),
    ("steps=40", (None, "steps", "40")),
    ("eps=8/255", (None, "eps", "8/255")),
])
def test_one_assignment_grammar(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["steps", "=3", ".steps=3", "pgd.=3"])
def test_bad_assignments(text):
    with pytest.raises(ParamError, match=r"--param must be \[NAME.\]KEY=VALUE"):
        parse_assignment(text)


def test_parse_value():
    assert [parse_value(t) for t in ("true", "None", "3", "0.5", "8/255", "ce")] == [
        True, None, 3, 0.5, pytest.approx(8 / 255), "ce"]
