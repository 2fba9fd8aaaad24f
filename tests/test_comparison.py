"""robustreg.compare: toolkit name resolution, agreement math, the report schema and the command."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from torch import nn

from robustreg import (
    Attack,
    AttackInfo,
    Param,
    ParamSet,
    PluginLoadError,
    Registry,
    UnknownParamError,
    UsageError,
    hookimpl,
)
from robustreg.cli_kit import param_values
from robustreg.commands.compare import add_parser
from robustreg.compare import (
    agreement,
    compare,
    disagreements,
    render_markdown,
    render_table,
    resolve,
)
from robustreg.testing import tiny_batch

ROW_KEYS = {"toolkit", "name", "robust_accuracy", "seconds", "relative_seconds", "max_perturbation", "note",
            "available"}
QUICK = ["native", "torchattacks", "art"]


@pytest.fixture(scope="module")
def reg():
    return Registry.create()


@pytest.fixture(scope="module")
def linear():
    """A linear classifier on 1 x 8 x 8 inputs: FGSM at eps 0.1 breaks some samples and not others."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model[1].weight.copy_(torch.empty(10, 64).uniform_(-0.125, 0.125, generator=gen))
        model[1].bias.zero_()
    x, _ = tiny_batch(32)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # four misclassified samples: broken for every toolkit
    return model.eval(), x, y


# --- name resolution ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "attack, toolkit, norm, name, params",
    [
        ("pgd", "native", "linf", "pgd", {}),
        ("pgd", "torchattacks", "linf", "torchattacks:pgd", {}),
        ("pgd", "torchattacks", "l2", "torchattacks:pgdl2", {}),
        ("pgd", "art", "l2", "art:pgd", {}),
        ("fgsm", "art", "linf", "art:fgm", {}),
        ("fgsm", "torchattacks", "linf", "torchattacks:fgsm", {}),
        ("apgd-ce", "torchattacks", "linf", "torchattacks:apgd", {"loss": "ce"}),
        ("apgd-dlr", "torchattacks", "linf", "torchattacks:apgd", {"loss": "dlr"}),
        ("apgd-ce", "art", "linf", "art:apgd-ce", {}),
        ("apgd-dlr", "autoattack", "linf", "autoattack:apgd-dlr", {}),
        ("square", "art", "linf", "art:square", {}),
        ("square", "autoattack", "linf", "autoattack:square", {}),
        ("spsa", "native", "linf", "spsa", {}),
        ("spsa", "torchattacks", "linf", "torchattacks:spsa", {}),
        ("autoattack", "autoattack", "linf", "autoattack:standard", {}),
        ("autoattack", "torchattacks", "linf", "torchattacks:autoattack", {}),
        ("autoattack", "art", "linf", "art:autoattack", {}),
    ],
)
def test_resolve_finds_each_toolkits_name(reg, attack, toolkit, norm, name, params):
    res = resolve(reg, attack, toolkit, norm)
    assert res.name == name
    assert res.spec is not None, res.reason
    assert res.spec.name == name
    assert dict(res.params) == params


@pytest.mark.parametrize(
    "attack, toolkit, norm, reason",
    [
        ("spsa", "art", "linf", "not registered"),
        ("pgd", "autoattack", "linf", "not registered"),
        ("autoattack", "native", "linf", "not registered"),
        ("fgsm", "torchattacks", "l2", "does not support l2"),
    ],
)
def test_resolve_reports_what_is_missing(reg, attack, toolkit, norm, reason):
    res = resolve(reg, attack, toolkit, norm)
    assert res.spec is None and reason in res.reason


def test_same_as_resolves_names_that_differ_per_toolkit(reg):
    pgd_l2 = resolve(reg, "pgd", "torchattacks", "l2")
    assert (pgd_l2.name, dict(pgd_l2.params)) == ("torchattacks:pgdl2", {})
    assert resolve(reg, "pgd", "torchattacks", "linf").name == "torchattacks:pgd"  # the default name first
    apgd = resolve(reg, "apgd-dlr", "torchattacks", "linf")
    assert (apgd.name, dict(apgd.params)) == ("torchattacks:apgd", {"loss": "dlr"})
    assert resolve(reg, "fgsm", "art", "linf").name == "art:fgm"
    assert resolve(reg, "autoattack", "autoattack", "l2").name == "autoattack:standard"


def test_a_third_party_same_as_is_found():
    class Fake(_Identity):
        info = AttackInfo(norms=("linf",), toolkit="faketk", source="tests")
        params = ParamSet([Param("steps", "int", 1, "iterations", low=1)])  # same_as selects a declared value

    class Plugin:
        @hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("faketk:my-pgd", Fake, same_as={"pgd": {"steps": 3}})

    reg = Registry.create(entry_points=False, plugins=[("fake", Plugin())])
    res = resolve(reg, "pgd", "faketk", "linf")
    assert (res.name, dict(res.params)) == ("faketk:my-pgd", {"steps": 3})
    with pytest.raises(PluginLoadError, match="same_as of attack 'faketk:x'"):
        class Bad:
            @hookimpl
            def robustreg_register_attacks(self, registrar):
                registrar.add_attack("faketk:x", Fake, same_as={"Not A Name": {}})

        Registry.create(entry_points=False, plugins=[("bad", Bad())], strict=True)


# --- agreement --------------------------------------------------------------------------------------
def test_agreement_on_constructed_flags():
    flags = {
        "a": torch.tensor([1, 1, 0, 0], dtype=torch.bool),
        "b": torch.tensor([1, 0, 0, 0], dtype=torch.bool),
        "c": torch.tensor([0, 0, 1, 1], dtype=torch.bool),
    }
    assert agreement(flags) == {"a|b": 0.75, "a|c": 0.0, "b|c": 0.25}
    assert agreement({"a": flags["a"]}) == {}
    assert agreement({"a": torch.zeros(0, dtype=torch.bool), "b": torch.zeros(0, dtype=torch.bool)}) == {"a|b": None}
    with pytest.raises(ValueError, match="different shapes"):
        agreement({"a": flags["a"], "b": flags["a"][:2]})


# --- compare -------------------------------------------------------------------------------------------
def test_compare_fgsm_across_toolkits(reg, linear, tmp_path):
    model, x, y = linear
    report = compare(model, (x, y), "fgsm", 0.1, toolkits=QUICK + ["autoattack"], registry=reg,
                     out=tmp_path, progress=False)
    assert (report["attack"], report["eps"], report["norm"], report["n"]) == ("fgsm", 0.1, "linf", 32)
    assert report["clean_accuracy"] == pytest.approx(28 / 32)
    rows = {r["toolkit"]: r for r in report["results"]}
    assert list(rows) == ["native", "torchattacks", "art", "autoattack"]
    for row in report["results"]:
        assert ROW_KEYS <= set(row)
    assert not rows["autoattack"]["available"] and "not registered" in rows["autoattack"]["note"]
    assert rows["autoattack"]["robust_accuracy"] is None
    accs = [rows[t]["robust_accuracy"] for t in QUICK]
    # FGSM on a linear model is one exact step: every toolkit breaks the same samples.
    assert 0 < accs[0] < 28 / 32 and accs == [accs[0]] * 3
    assert report["agreement"] == {"native|torchattacks": 1.0, "native|art": 1.0, "torchattacks|art": 1.0}
    assert rows["native"]["relative_seconds"] == 1.0
    for t in QUICK:
        assert rows[t]["max_perturbation"] <= 0.1 + 1e-5 and rows[t]["seconds"] > 0
        assert rows[t]["relative_seconds"] == pytest.approx(rows[t]["seconds"] / rows["native"]["seconds"])
    # report.json round-trips and report.md holds the table.
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    md = (tmp_path / "report.md").read_text()
    assert "| native | fgsm |" in md and "not available" in md and "native vs art" in md


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.1, 0.03), ("l2", 1.0, 0.3)])
def test_compare_pgd_linf_and_l2(reg, linear, norm, eps, step):
    model, x, y = linear
    report = compare(model, (x, y), "pgd", eps, norm=norm, toolkits=QUICK, registry=reg, progress=False,
                     params={"steps": 5, "step_size": step, "random_start": False})
    rows = {r["toolkit"]: r for r in report["results"]}
    assert rows["torchattacks"]["name"] == ("torchattacks:pgdl2" if norm == "l2" else "torchattacks:pgd")
    for t in QUICK:
        row = rows[t]
        assert row["available"], row
        assert row["max_perturbation"] <= eps * (1 + 1e-4)
        assert 0 <= row["robust_accuracy"] < 28 / 32  # every toolkit breaks some of the 28 clean-correct
        assert row["same_attack"] and row["missing"] == [], row
        expected = {"steps": 5, "step_size": step, "random_start": False, "restarts": 1, "loss": "ce"}
        assert row["params"] == ({**expected, "kappa": 50.0} if t == "native" else expected)
    # Five steps of deterministic PGD on a linear model: the toolkits agree on nearly every sample.
    assert all(v >= 0.8 for v in report["agreement"].values()), report["agreement"]


def test_compare_adds_alias_params(reg, linear):
    model, x, y = linear
    report = compare(model, (x, y), "apgd-dlr", 0.1, toolkits=["torchattacks"], registry=reg, progress=False,
                     params={"steps": 3})
    (row,) = report["results"]
    # the loss comes from the entry's same_as; the rest is native apgd's configuration mapped to the entry
    assert row["name"] == "torchattacks:apgd" and row["params"] == {"steps": 3, "loss": "dlr", "restarts": 1,
                                                                     "rho": 0.75}
    assert row["available"] and row["robust_accuracy"] is not None


def test_native_apgd_is_the_native_row_of_apgd_ce_and_dlr(reg, linear):
    model, x, y = linear
    for name, loss in (("apgd-ce", "ce"), ("apgd-dlr", "dlr")):
        report = compare(model, (x, y), name, 0.1, toolkits=["native"], registry=reg, progress=False,
                         params={"steps": 3})
        (row,) = report["results"]
        assert row["name"] == "apgd" and row["params"]["loss"] == loss and row["params"]["steps"] == 3
        assert row["available"] and row["robust_accuracy"] is not None


def test_compare_restores_model_and_counts_misclassified_as_broken(reg, linear):
    model, x, y = linear
    model.train()
    try:
        report = compare(model, (x, y), "fgsm", 0.0, toolkits=["native"], registry=reg, progress=False)
        assert model.training
    finally:
        model.eval()
    assert report["results"][0]["robust_accuracy"] == pytest.approx(28 / 32)  # eps 0 breaks nothing new


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attack": ""}, "attack must be"),
        ({"attack": "no-such-attack"}, "unknown attack 'no-such-attack'"),
        ({"attack": "pgd", "norm": "l1"}, "no toolkit has attack 'pgd' for the l1 norm"),
        ({"norm": "l3"}, "norm must be"),
        ({"eps": 2.0}, "eps must be in"),
        ({"n": 0}, "n must be"),
        ({"n": 1000}, "larger than the dataset"),
        ({"batch_size": 0}, "batch_size"),
        ({"toolkits": []}, "toolkits"),
    ],
)
def test_compare_rejects_bad_input(reg, linear, kwargs, match):
    model, x, y = linear
    args = {"attack": "fgsm", "eps": 0.1, **kwargs}
    with pytest.raises((ValueError, LookupError), match=match):  # an unknown name: the registry's LookupError
        compare(model, (x, y), args.pop("attack"), args.pop("eps"), registry=reg, progress=False, **args)


def test_render_markdown_marks_unavailable_rows():
    report = {"attack": "spsa", "eps": 0.3, "norm": "linf", "n": 2, "clean_accuracy": 1.0,
              "results": [{"toolkit": "art", "name": "art:spsa", "available": False, "robust_accuracy": None,
                           "seconds": None, "relative_seconds": None, "max_perturbation": None,
                           "note": "'art:spsa' is not registered"}],
              "agreement": {}}
    md = render_markdown(report)
    assert "| art | art:spsa |" + " - |" * 10 + " not available: 'art:spsa' is not registered |" in md


# --- one configuration for every toolkit --------------------------------------------------------------
def test_compare_gives_every_toolkit_the_native_defaults(reg, linear, tmp_path):
    """No params: every toolkit runs the native PGD's 20 steps of eps / 4, under its own names."""
    model, x, y = linear
    report = compare(model, (x, y), "pgd", 0.1, toolkits=QUICK, registry=reg, progress=False, out=tmp_path)
    assert report["params"] == {}
    assert report["native_params"] == {"steps": 20, "step_size": 0.025, "random_start": True, "restarts": 1,
                                       "loss": "ce", "kappa": 50.0}
    rows = {r["toolkit"]: r for r in report["results"]}
    for t in QUICK:
        assert rows[t]["same_attack"] is True and rows[t]["missing"] == []
        assert (rows[t]["params"]["steps"], rows[t]["params"]["step_size"]) == (20, 0.025)
    assert rows["torchattacks"]["toolkit_params"] == {"steps": 20, "alpha": 0.025, "random_start": True}
    assert rows["torchattacks"]["implied"] == ["restarts", "loss", "kappa"]
    art = rows["art"]["toolkit_params"]
    assert (art["max_iter"], art["eps_step"], art["batch_size"]) == (20, 0.025, 256)  # ART's own keeps its default
    assert rows["art"]["implied"] == ["loss", "kappa"]
    printed = render_table(report)
    assert "steps=20 step_size=0.025" in printed and "max_iter=20 eps_step=0.025" in printed
    assert "alpha=0.025" in (tmp_path / "report.md").read_text()


def test_a_parameter_a_toolkit_lacks_marks_its_row_not_the_same_attack(reg, linear, tmp_path):
    model, x, y = linear
    report = compare(model, (x, y), "pgd", 0.1, toolkits=QUICK, registry=reg, progress=False, out=tmp_path,
                     params={"steps": 3, "restarts": 2, "loss": "cw"})
    rows = {r["toolkit"]: r for r in report["results"]}
    assert rows["native"]["same_attack"] is True
    assert rows["torchattacks"]["same_attack"] is False and rows["torchattacks"]["missing"] == ["restarts", "loss"]
    assert rows["art"]["same_attack"] is False and rows["art"]["missing"] == ["loss"]
    assert rows["art"]["params"]["restarts"] == 2 and "loss" not in rows["art"]["params"]
    for t in QUICK:  # the toolkits still run with what they take
        assert rows[t]["available"] and rows[t]["robust_accuracy"] is not None
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["results"][1]["same_attack"] is False and on_disk["results"][1]["missing"] == ["restarts", "loss"]
    assert "NO: lacks restarts, loss" in (tmp_path / "report.md").read_text()
    assert "NO: lacks loss" in render_table(report)


def test_a_choice_the_toolkit_lacks_is_missing(reg, linear):
    model, x, y = linear
    report = compare(model, (x, y), "pgd", 0.1, toolkits=["native", "torchattacks"], registry=reg,
                     progress=False, params={"steps": 2, "loss": "dlr"})
    assert report["results"][1]["missing"] == ["loss"]


def test_an_unknown_param_is_an_error_with_close_matches(reg, linear):
    model, x, y = linear
    with pytest.raises(UnknownParamError, match="unknown parameter 'stepz'; did you mean steps"):
        compare(model, (x, y), "pgd", 0.1, toolkits=QUICK, registry=reg, progress=False, params={"stepz": 3})
    with pytest.raises(ValueError, match="seed is compare's own argument"):
        compare(model, (x, y), "pgd", 0.1, toolkits=QUICK, registry=reg, progress=False, params={"seed": 3})


def test_the_command_rejects_an_unknown_param(reg, tmp_path):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    parser.set_defaults(registry=reg)
    args = parser.parse_args(["compare", "--model", "digits-cnn", "--data", "digits", "--attack", "pgd",
                              "--eps", "8/255", "--param", "step_siz=0.01", "--quiet"])
    with pytest.raises(UsageError, match="unknown parameter 'step_siz'; did you mean step_size"):
        args.func(args)


def test_noise_and_disagreements(reg, linear):
    model, x, y = linear
    report = compare(model, (x, y), "pgd", 0.1, toolkits=QUICK, registry=reg, progress=False, params={"steps": 3})
    noise = report["noise"]
    assert noise["seeds"] == [0, 1] and 0 <= noise["fraction"] <= 1 and noise["count"] == len(noise["samples"])
    det = compare(model, (x, y), "fgsm", 0.1, toolkits=QUICK, registry=reg, progress=False)
    assert det["noise"]["seeds"] == [0] and det["noise"]["fraction"] == 0.0
    assert det["disagreements"] == []  # one exact step: nobody disagrees
    assert compare(model, (x, y), "fgsm", 0.1, toolkits=QUICK, registry=reg, progress=False,
                   noise=False)["noise"] is None


def test_disagreements_on_constructed_flags():
    a = torch.zeros(100, dtype=torch.bool)
    b = a.clone()
    b[:20] = True  # b breaks 20 samples a does not
    c = a.clone()
    c[50] = True  # one sample: within noise
    index = torch.arange(100) * 2  # positions among the n samples
    found = disagreements({"a": a, "b": b, "c": c}, index, 0.02)
    by_pair = {tuple(d["pair"]): d for d in found}
    ab = by_pair[("a", "b")]
    assert ab["count"] == 20 and ab["samples"] == list(range(0, 40, 2)) and ab["beyond_noise"] is True
    assert ab["only_broken_by"] == {"a": 0, "b": 20} and ab["fraction"] == 0.2 and ab["expected_noise"] == 0.02
    assert by_pair[("a", "c")]["beyond_noise"] is False and by_pair[("a", "c")]["samples"] == [100]
    assert disagreements({"a": a, "b": b}, index, None)[0]["beyond_noise"] is None
    assert disagreements({"a": a, "b": a.clone()}, index, 0.0) == []

    report = {"attack": "pgd", "eps": 0.3, "norm": "linf", "n": 200, "clean_accuracy": 1.0, "results": [],
              "agreement": {}, "noise": {"toolkit": "native", "seeds": [0, 1], "fraction": 0.02, "count": 2,
                                         "samples": [4, 6]}, "disagreements": found}
    text = render_table(report)
    assert "DISAGREEMENT: a vs b disagree on 20 samples (20.0%, noise 2.0%" in text and "a vs c" not in text
    assert "random-start noise: 2.0%" in text and "0, 2, 4" in render_markdown(report)


def test_disagreements_use_the_one_noise_rule():
    """Beyond noise: the differing fraction exceeds the random-start flips by robustreg.stats's margin
    (2% expected on 100 samples: noise(0.02, 100) = 0.038, so 6 differing samples are beyond, 5 are not;
    the former 3-sigma-plus-one-sample rule let up to 7 pass)."""
    a = torch.zeros(100, dtype=torch.bool)
    index = torch.arange(100)
    for count, beyond in ((5, False), (6, True)):
        b = a.clone()
        b[:count] = True
        assert disagreements({"a": a, "b": b}, index, 0.02)[0]["beyond_noise"] is beyond


# --- the command --------------------------------------------------------------------------------------
def parse_params(items):
    return param_values(items, {"pgd": None}, where="--attack").get("pgd", {})


def test_parse_params():
    assert parse_params(["steps=10", "random_start=false", "step_size=2/255", "loss=ce", "x=none"]) == {
        "steps": 10, "random_start": False, "step_size": pytest.approx(2 / 255), "loss": "ce", "x": None}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_params(["steps"])


def test_compare_command_end_to_end(reg, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    parser.set_defaults(registry=reg)
    args = parser.parse_args(["compare", "--model", "digits-cnn", "--data", "digits", "--attack", "fgsm",
                              "--eps", "8/255", "--toolkits", "native,art,autoattack", "--n", "16",
                              "--out", str(tmp_path), "--quiet", "--no-check", "zero-gradients"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "native" in printed and "art:fgm" in printed and "not available" in printed and "checks:" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    zero = next(c for c in report["checks"] if c["name"] == "zero-gradients")
    assert zero["status"] == "skipped" and "--no-check" in zero["message"]
    assert report["n"] == 16 and math.isclose(report["eps"], 8 / 255)
    assert [r["toolkit"] for r in report["results"]] == ["native", "art", "autoattack"]


class _Explode(Attack):
    """Raises inside perturb (a toolkit bug stand-in)."""

    name = "explode"
    info = AttackInfo(norms=("linf",), summary="always raises")

    def perturb(self, model, x, y, generator, target=None):
        raise RuntimeError("boom")


class _Identity(Attack):
    """Returns the clean images."""

    name = "art:explode"
    info = AttackInfo(norms=("linf",), toolkit="art", summary="returns x")

    def perturb(self, model, x, y, generator, target=None):
        return x


class _Plugin:
    @hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("explode", _Explode)
        registrar.add_attack("art:explode", _Identity)


def test_a_failing_toolkit_is_reported_and_the_others_still_run(linear):
    model, x, y = linear
    reg = Registry.create(entry_points=False, plugins=[("explode-plugin", _Plugin())])
    report = compare(model, (x, y), "explode", 0.1, toolkits=["native", "art", "torchattacks"], registry=reg,
                     progress=False)
    native, art, ta = report["results"]
    assert not native["available"] and native["error"] == "RuntimeError: boom"
    assert art["available"] and art["robust_accuracy"] == pytest.approx(28 / 32) and art["max_perturbation"] == 0
    assert art["relative_seconds"] is None  # no native time to compare with
    assert not ta["available"] and "not registered" in ta["note"]
    assert report["agreement"] == {}
    assert "RuntimeError: boom" in render_markdown(report)


class _Softmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(dim=1)


def test_compare_reports_the_automatic_checks(reg, linear, tmp_path):
    """Every compare report carries the checks (one cell per toolkit row): rendered in report.md and on the
    terminal, a softmax-output model warns, ``no_check`` turns one off, an unknown name is refused."""
    model, x, y = linear
    report = compare(model, (x, y), "pgd", 0.1, toolkits=["native", "torchattacks"], registry=reg, progress=False,
                     params={"steps": 5}, out=tmp_path)
    names = [c["name"] for c in report["checks"]]
    assert names == [spec.name for spec in reg.checks()] and "logit-scale" in names  # a plugin's check too
    # a warning also names its remedies (--adaptive)
    assert all({"name", "status", "message", "doc"} <= set(c) <= {"name", "status", "message", "doc", "remedies"}
               for c in report["checks"])
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["softmax-output"] == "ok" and statuses["silent-success"] == "ok"  # native pgd reports it
    assert "## Checks" in (tmp_path / "report.md").read_text() and "checks:" in render_table(report)
    assert json.loads((tmp_path / "report.json").read_text())["checks"] == report["checks"]

    broken = compare(_Softmax(model), (x, y), "pgd", 0.1, toolkits=["native", "torchattacks"], registry=reg,
                     progress=False, params={"steps": 5}, no_check=["logit-scale"], noise=False)
    statuses = {c["name"]: c["status"] for c in broken["checks"]}
    assert statuses["softmax-output"] == "warn" and statuses["logit-scale"] == "skipped"
    with pytest.raises(ValueError, match="unknown check 'softmax-outptu'; did you mean 'softmax-output'"):
        compare(model, (x, y), "pgd", 0.1, registry=reg, progress=False, no_check=["softmax-outptu"])


def test_default_toolkits_are_the_registered_ones():
    from robustreg.compare import registered_toolkits

    reg = Registry.create(entry_points=False, plugins=[("explode-plugin", _Plugin())])
    assert registered_toolkits(reg) == ["native", "art"]
    builtin = Registry.create()
    assert registered_toolkits(builtin, "pgd") == ["native", "advlib", "art", "foolbox", "torchattacks"]  # have pgd
    assert registered_toolkits(builtin, "apgd-ce") == ["native", "advlib", "art", "autoattack", "torchattacks"]


# --- real data ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pgd_trained_lenet_toolkits_agree_with_no_params(registry, lenet_mnist):
    """The PGD-trained LeNet-5, eps 0.3, no params: native, torchattacks and ART run the same 20 steps of
    0.075 (the native defaults) and land within 3 points (before the mapping: 88.3 / 97.0 / 90.3%)."""
    model, x, y = lenet_mnist
    report = compare(model, (x, y), "pgd", 0.3, toolkits=QUICK, registry=registry, progress=False, noise=False)
    rows = {r["toolkit"]: r for r in report["results"]}
    accs = [rows[t]["robust_accuracy"] for t in QUICK]
    assert all(a is not None for a in accs), rows
    assert max(accs) - min(accs) <= 0.03, accs
    assert 0.85 <= min(accs), accs  # a PGD-trained model: ~94% at eps 0.3
    for t in QUICK:
        assert rows[t]["same_attack"] is True, rows[t]
        assert (rows[t]["params"]["steps"], rows[t]["params"]["step_size"]) == (20, 0.075)
    ta, art = rows["torchattacks"]["toolkit_params"], rows["art"]["toolkit_params"]
    assert (ta["steps"], ta["alpha"], art["max_iter"], art["eps_step"]) == (20, 0.075, 20, 0.075)
