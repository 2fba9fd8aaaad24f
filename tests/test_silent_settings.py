"""Settings that used to do something else without a word (issue 20): each is now refused with one line
naming the argument, the value and what is allowed, or does what it says.

The command-line cases run ``main()`` in-process and stop before any model work (the refusals come first);
the Python API cases use digits-cnn on a few digits images, fast on any CPU.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import robustreg
from robustreg import ParamSet, Registry, ThreatModel, evaluate, parse_eps
from robustreg.cli import main
from robustreg.compare import compare
from robustreg.data import LabeledData, load_data
from robustreg.evaluation.config import eps_values
from robustreg.params import ALLOW_LARGE
from robustreg_plugins.autoattack_adapter.command import summary


@pytest.fixture(scope="module")
def registry():
    return Registry.create()


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "test").tensors(40)


@pytest.fixture(scope="module")
def model(registry):
    torch.manual_seed(0)
    return registry.model("digits-cnn").build().eval()


def _cli(registry, capsys, *argv):
    rc = main(list(argv), registry=registry)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustreg: error: "), err
    return lines[0]


EVALUATE = ("evaluate", "--model", "digits-cnn", "--data", "digits", "--attacks", "pgd", "--n", "4", "--quiet")


# --- eps that is 0 only by underflow; a non-finite --eps-scale -------------------------------------------
@pytest.mark.parametrize(("flags", "expected"), [
    (("--eps", "1e-400"), ("--eps", "'1e-400'", "rounds to 0")),
    (("--eps", "8", "--eps-scale", "inf"), ("--eps-scale", "finite number > 0", "got inf")),
    (("--eps", "8", "--eps-scale", "nan"), ("--eps-scale", "finite number > 0", "got nan")),
    (("--eps", "1e-300", "--eps-scale", "1e30"), ("--eps", "'1e-300' / 1e+30", "rounds to 0")),
])
def test_eps_zero_only_by_underflow_is_refused(registry, capsys, tmp_path, flags, expected):
    rc, _, err = _cli(registry, capsys, *EVALUATE, "--out", str(tmp_path / "o"), *flags)
    line = _one_error_line(err)
    assert rc == 2
    for part in expected:
        assert part in line, line
    assert not (tmp_path / "o" / "report.json").exists()


def test_parse_eps_reads_zero_and_tiny_budgets_as_given():
    assert parse_eps("0") == 0.0 and parse_eps("0.0e5") == 0.0  # a real 0 stays allowed
    assert parse_eps("1e-300") == 1e-300
    assert parse_eps("8", scale=255) == pytest.approx(8 / 255, rel=1e-15)
    with pytest.raises(ValueError, match="scale must be a finite number > 0, got inf"):
        parse_eps("8", scale=math.inf)


# --- int parameters in float notation; a sane maximum for iteration counts --------------------------------
def test_huge_iteration_count_is_refused_on_the_command_line(registry, capsys, tmp_path):
    rc, _, err = _cli(registry, capsys, *EVALUATE, "--eps", "0.1", "--out", str(tmp_path / "o"),
                      "--param", "pgd.steps=1e9")
    line = _one_error_line(err)
    assert rc == 2
    for part in ("--param 'pgd.steps=1e9'", "steps must be at most 100000", "got 1000000000", ALLOW_LARGE):
        assert part in line, line


@pytest.mark.parametrize(("text", "expected"), [("1e3", 1000), ("40", 40), ("100/2", 50), ("1.0", 1)])
def test_int_in_float_notation_must_be_exactly_integral(registry, text, expected):
    steps = registry.attack("pgd").params["steps"]
    assert steps.parse("pgd", text) == expected


@pytest.mark.parametrize("text", ["2.5", "1e400", "1e-400", "nan", "inf", "1.0000000000000000001"])
def test_int_that_is_not_a_whole_number_in_range_is_refused(registry, text):
    steps = registry.attack("pgd").params["steps"]
    with pytest.raises(robustreg.ParamError, match=f"pgd: steps must be an int >= 1, got '{text}'"):
        steps.parse("pgd", text)


def test_sane_maximum_is_declared_and_overridable(registry, monkeypatch):
    steps = registry.attack("pgd").params["steps"]
    assert steps.sane_high == 100_000 and steps.to_json()["sane_high"] == 100_000
    assert steps.parse("pgd", "1e5") == 100_000  # the maximum itself is allowed
    with pytest.raises(robustreg.ParamError, match="at most 100000"):
        registry.attack("pgd").build(ThreatModel("linf", 0.1), steps=10**9)  # the Python API too
    monkeypatch.setenv(ALLOW_LARGE, "1")
    assert steps.parse("pgd", "1e9") == 10**9


def test_every_iteration_count_of_the_classic_attacks_has_a_maximum(registry):
    for name in ("pgd", "apgd", "fmn", "ddn", "spsa", "si-pgd"):
        declared: ParamSet = registry.attack(name).params
        for param in declared:
            if param.name in ("steps", "restarts"):
                assert param.sane_high is not None, (name, param.name)


# --- a registered model's input_shape against the data ----------------------------------------------------
@pytest.fixture(scope="module")
def npz_31(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "rgb31.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (3, 31, 31, 3), dtype=np.uint8), y=np.array([0, 1, 2]))
    return path


def test_data_of_another_shape_than_the_registered_model_is_refused(registry, capsys, tmp_path, npz_31):
    rc, _, err = _cli(registry, capsys, "evaluate", "--model", "resnet20", "--data", f"npz:{npz_31}", "--attacks",
                      "fgsm", "--eps", "0.1", "--out", str(tmp_path / "o"), "--quiet")
    line = _one_error_line(err)
    assert rc == 2
    for part in ("--model 'resnet20'", "expects input 3x32x32", "3x31x31", "--any-input-size"):
        assert part in line, line


def test_any_input_size_runs_a_model_that_takes_any_size(registry, capsys, tmp_path, npz_31):
    rc, _, err = _cli(registry, capsys, "evaluate", "--model", "resnet20", "--data", f"npz:{npz_31}", "--attacks",
                      "fgsm", "--eps", "0.1", "--out", str(tmp_path / "o"), "--quiet", "--any-input-size")
    assert rc == 0, err
    assert (tmp_path / "o" / "report.json").is_file()


# --- the Python API: the loaders' checks on an (x, y) pair; eps as text or a tensor; one image -----------
def test_negative_label_in_a_pair_is_refused_not_scored(model, digits):
    x, y = digits
    y = y.clone()
    y[3] = -1
    with pytest.raises(ValueError, match=r"data y must hold class indices >= 0, got -1 \(first negative at index 3\)"):
        evaluate(model, (x, y), ["fgsm"], 0.1, progress=False)
    with pytest.raises(ValueError, match="class indices >= 0, got -1"):  # the loaders' check is the same one
        LabeledData(x, y)


def test_nan_pixel_in_a_pair_is_refused_not_scored(model, digits):
    x, y = digits
    x = x.clone()
    x[5, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"data x holds NaN or infinite pixels \(first in image 5\)"):
        evaluate(model, (x, y), ["fgsm"], 0.1, progress=False)
    with pytest.raises(ValueError, match="NaN or infinite pixels"):
        LabeledData(x, y)
    with pytest.raises(ValueError, match="NaN or infinite pixels"):
        compare(model, (x, y), "fgsm", eps=0.1, toolkits=["native"], progress=False)


@pytest.mark.parametrize("eps", ["8/255", torch.tensor(8 / 255), np.float64(8 / 255), [torch.tensor(8 / 255)]])
def test_eps_as_text_or_tensor(eps):
    # float32 holds 8/255 to within 2**-24 relative: the tensor forms come back as that float32 value
    assert eps_values(eps, "linf") == [pytest.approx(8 / 255, rel=1e-7)]
    single = eps[0] if isinstance(eps, list) else eps
    assert ThreatModel("linf", single).eps == pytest.approx(8 / 255, rel=1e-7)


def test_pixel_parameters_take_eps_text_and_tensors(registry):
    eps = registry.defense("at").params["eps"]
    assert eps.validate("at", "8/255") == pytest.approx(8 / 255, rel=1e-15)
    assert eps.validate("at", torch.tensor(0.25)) == 0.25  # 0.25 is exact in float32
    assert registry.attack("pgd").params["steps"].validate("pgd", np.int64(10)) == 10
    with pytest.raises(robustreg.ParamTypeError, match=r"steps must be an int >= 1, got '10' \(str\)"):
        registry.attack("pgd").params["steps"].validate("pgd", "10")  # text is for pixel budgets only


def test_eps_text_runs_an_evaluation(model, digits):
    x, y = digits
    report = evaluate(model, (x[:8], y[:8]), ["fgsm"], "8/255", progress=False)
    assert [r["eps"] for r in report["results"]] == [pytest.approx(8 / 255, rel=1e-12)]


@pytest.mark.parametrize(("eps", "shown"), [(torch.tensor([0.1, 0.2]), "Tensor of shape (2,)"), (None, "None"),
                                            (True, "True")])
def test_eps_that_is_no_single_number_is_one_line(eps, shown):
    with pytest.raises(ValueError, match=r"eps must be a number, a fraction like '8/255' or a 0-d tensor, got "
                                         + shown.replace("(", r"\(").replace(")", r"\)")):
        ThreatModel("linf", eps)


def test_one_image_dataset_is_evaluated_and_trained(registry, capsys, tmp_path):
    path = tmp_path / "one.npz"
    x = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 1), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.array([3]), x_test=x, y_test=np.array([3]), num_classes=10)
    rc, _, err = _cli(registry, capsys, "evaluate", "--model", "digits-cnn", "--data", f"npz:{path}", "--attacks",
                      "fgsm", "--eps", "0.1", "--out", str(tmp_path / "e"), "--quiet")
    assert rc == 0, err
    rc, _, err = _cli(registry, capsys, "train", "--model", "digits-cnn", "--data", f"npz:{path}", "--iterations",
                      "1", "--batch-size", "1", "--out", str(tmp_path / "t"), "--quiet")
    assert rc == 0, err


# --- compare: an unknown attack; close matches ignore case --------------------------------------------------
@pytest.mark.parametrize("name", ["pgdd", "PGD"])
def test_compare_unknown_attack_names_close_matches(registry, capsys, name):
    rc, _, err = _cli(registry, capsys, "compare", "--model", "digits-cnn", "--data", "digits", "--attack", name,
                      "--eps", "0.1", "--n", "4", "--quiet")
    line = _one_error_line(err)
    assert rc == 2
    assert f"unknown attack {name!r}; did you mean pgd" in line, line
    assert "toolkits must be" not in line


def test_close_matches_ignore_case(registry, capsys):
    rc, _, err = _cli(registry, capsys, *EVALUATE, "--eps", "0.1", "--attacks", "PGD")
    line = _one_error_line(err)
    assert rc == 2 and "unknown attack 'PGD'; did you mean 'pgd'" in line, line
    with pytest.raises(robustreg.UnknownParamError, match="did you mean steps"):
        registry.attack("pgd").params.resolve("pgd", {"STEPS": 3})


# --- autoattack: robust after each sub-attack on one basis, said in the header -----------------------------
def test_autoattack_summary_has_one_basis():
    report = {"n": 60, "clean_accuracy": 59 / 60, "norm": "linf", "results": [{
        "attacked": 59, "robust_accuracy": 29 / 60, "max_perturbation": 0.03, "seconds": 1.0,
        "extras": {"robust_after:apgd-ce": 29 / 59, "seconds:apgd-ce": 0.5}}]}
    lines = dict(line.split(":", 1) for line in summary(report).splitlines())
    assert "of the 59 attacked" in lines["robust after each sub-attack"]
    assert lines["robust after apgd-ce"].split()[0] == "49.15%"  # 29 of the 59 attacked, as the table's 0.4915
    assert lines["robust accuracy"].strip() == "48.33% (of all 60 samples)"


# --- warnings on the command line: one robustreg: warning: line ---------------------------------------------
class _Warns:
    @robustreg.hookimpl
    def robustreg_register_commands(self, registrar):
        def run(args):
            warnings.warn("the data looks\nodd", UserWarning, stacklevel=1)
            return 0

        registrar.add_command("warns", lambda p: None, run, help="warns once")


def test_warnings_are_one_robustreg_line(capsys):
    registry = Registry.create(plugins=[("warns", _Warns())], entry_points=False)
    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        rc, _, err = _cli(registry, capsys, "warns")
    assert rc == 0
    assert err == "robustreg: warning: the data looks odd\n"
    assert warnings.showwarning is shown  # the Python API keeps Python's own format
