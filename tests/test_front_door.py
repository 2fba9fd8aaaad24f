"""The front door: what `evaluate` and the attacks take from a user as they come (issue 22).

Devices (the model's own by default), non-contiguous batches, the Python data forms (pairs, numpy,
Dataset, DataLoader), norm and parameter spellings, one-call attacks, notebook hygiene and model outputs.
Every test runs real attacks on a small real model; all of it takes seconds on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robustreg
import robustreg.checks
from robustreg import Registry
from robustreg.cli import build_parser
from robustreg.evaluation import EvalConfig, evaluate
from robustreg.runtime import model_device, resolve_device

N = 24


def _net(seed: int = 0, k: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, k)).eval()


def _data(seed: int = 1, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(scope="module")
def reg() -> Registry:
    return Registry.create()


def _numbers(report: dict) -> list:
    """What a report says about the model, without timings."""
    return [report["clean_accuracy"], report["n"],
            [(r["attack"], r["eps"], r["robust_accuracy"]) for r in report["results"]]]


# --------------------------------------------------------------------------------------------
# 1. devices: the model's own device is the default
# --------------------------------------------------------------------------------------------
def test_device_resolution_rule() -> None:
    cpu_model = _net()
    assert EvalConfig().device is None
    assert resolve_device(None, cpu_model) == torch.device("cpu")
    with torch.device("meta"):  # a model that is not on the CPU: None follows it there
        meta_model = nn.Linear(2, 2)
    assert resolve_device(None, meta_model) == torch.device("meta")
    assert model_device(meta_model) == torch.device("meta")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto", cpu_model) == expected
    assert resolve_device("cpu", cpu_model) == torch.device("cpu")


def test_cli_device_defaults_to_the_model(reg: Registry) -> None:
    parser = build_parser(reg)
    for argv in (["evaluate", "--model", "m", "--data", "d", "--attacks", "fgsm", "--eps", "0.1"],
                 ["compare", "--model", "m", "--data", "d", "--attack", "pgd", "--eps", "0.1"]):
        args, _ = parser.parse_known_args(argv)
        assert args.device is None, argv


def test_evaluate_leaves_a_float64_model_where_it_is(reg: Registry) -> None:
    """A model in float64 (not torch's default tensor type) is run as it is: the same parameter storage
    before and after, still float64, and the report names the model's device."""
    model = _net().double()
    before = [(p.data_ptr(), p.dtype, p.device) for p in model.parameters()]
    x, y = _data()
    report = evaluate(model, (x.double(), y), ["fgsm"], 0.05, registry=reg, progress=False)
    assert [(p.data_ptr(), p.dtype, p.device) for p in model.parameters()] == before
    assert report["device"] == "cpu"


# --------------------------------------------------------------------------------------------
# 2. non-contiguous batches (the usual numpy NHWC -> NCHW permute) reach every toolkit contiguous
# --------------------------------------------------------------------------------------------
def _nhwc_batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _data(n=n)
    nhwc = np.ascontiguousarray((x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())  # N x H x W x C
    return torch.from_numpy(nhwc).permute(0, 3, 1, 2) / 255, y  # how numpy images usually arrive


ONE_PER_TOOLKIT = ["pgd", "autoattack:apgd-dlr", "torchattacks:pgd", "art:pgd", "advlib:pgd", "foolbox:pgd"]


@pytest.mark.parametrize("name", ONE_PER_TOOLKIT)
def test_non_contiguous_batch_through_each_toolkit(reg: Registry, name: str) -> None:
    x, y = _nhwc_batch()
    assert not x.is_contiguous()
    attack = reg.build_attack(name, robustreg.ThreatModel("linf", 8 / 255), seed=0,
                              **({"steps": 2} if name in ("pgd", "torchattacks:pgd", "advlib:pgd", "foolbox:pgd")
                                 else {}))
    x_adv = attack(_net(), x, y)
    assert x_adv.shape == x.shape
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6  # the base's own float-rounding slack


def test_non_contiguous_batch_through_evaluate(reg: Registry) -> None:
    x, y = _nhwc_batch(n=N)
    report = evaluate(_net(), (x, y), ["autoattack:apgd-dlr"], 8 / 255, registry=reg, progress=False)
    assert report["n"] == N


# --------------------------------------------------------------------------------------------
# 3. the Python data forms: pair, numpy pair, Dataset, TensorDataset, DataLoader
# --------------------------------------------------------------------------------------------
class _ItemDataset(torch.utils.data.Dataset):
    """A plain map-style dataset whose items are (numpy image, Python int) pairs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.numpy(), y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.x[i], self.y[i]


def test_data_forms_give_the_same_report(reg: Registry) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    run = {"attacks": ["fgsm", ("pgd", {"steps": 3})], "eps": 0.05, "registry": reg, "progress": False, "n": 20}
    reference = _numbers(evaluate(_net(), (x, y), **run))
    forms = {"numpy pair": (x.numpy(), y.numpy()),
             "TensorDataset": TensorDataset(x, y),
             "Dataset": _ItemDataset(x, y),
             "DataLoader": DataLoader(TensorDataset(x, y), batch_size=7)}
    for name, data in forms.items():
        assert _numbers(evaluate(_net(), data, **run)) == reference, name


@pytest.mark.parametrize("data, words", [
    ([(torch.zeros(2, 3, 8, 8), torch.zeros(2).long())] * 3, "a list of 3; a list of batches is not read"),
    ("images/", "got str"),
    ({"x": 1}, "got dict"),
])
def test_other_data_is_refused_in_one_line(reg: Registry, data: object, words: str) -> None:
    with pytest.raises(TypeError, match="data must be an \\(x, y\\) pair of tensors or numpy arrays") as info:
        evaluate(_net(), data, ["fgsm"], 0.05, registry=reg, progress=False)
    assert words in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# 4. spellings: norms and the toolkits' names of parameters
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling, canonical", [
    ("Linf", "linf"), ("LINF", "linf"), ("inf", "linf"), ("L_inf", "linf"), (np.inf, "linf"), (float("inf"), "linf"),
    ("L2", "l2"), (2, "l2"), ("L1", "l1"), (1, "l1"), ("linf", "linf"),
])
def test_norm_spellings(spelling: object, canonical: str) -> None:
    assert robustreg.ThreatModel(spelling, 0.1).norm == canonical  # type: ignore[arg-type]
    assert EvalConfig(norm=spelling).norm == canonical  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["l3", "max", 3, None, True])
def test_bad_norm_is_one_line(bad: object) -> None:
    with pytest.raises(ValueError, match=r"norm must be one of linf, l2, l1 .*got") as info:
        robustreg.ThreatModel(bad, 0.1)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_report_names_the_canonical_norm_and_parameter(reg: Registry) -> None:
    x, y = _data()
    run = {"registry": reg, "progress": False, "n": 12}
    given = evaluate(_net(), (x, y), [("pgd", {"alpha": 0.01, "steps": 3})], 0.05, norm="Linf", **run)
    ours = evaluate(_net(), (x, y), [("pgd", {"step_size": 0.01, "steps": 3})], 0.05, norm="linf", **run)
    assert given["norm"] == "linf"
    assert given["results"][0]["params"]["step_size"] == 0.01 and "alpha" not in given["results"][0]["params"]
    assert _numbers(given) == _numbers(ours)


def test_toolkit_names_are_aliases(reg: Registry) -> None:
    threat = robustreg.ThreatModel("linf", 0.1)
    assert reg.build_attack("torchattacks:pgd", threat, alpha=0.02).config["step_size"] == 0.02  # its own name
    assert reg.build_attack("pgd", threat, alpha=0.02, max_iter=4).config == \
        reg.build_attack("pgd", threat, step_size=0.02, steps=4).config  # other toolkits' names of the same
    with pytest.raises(robustreg.ParamError, match="'alpha' and 'step_size' are the same parameter"):
        reg.build_attack("pgd", threat, alpha=0.02, step_size=0.01)


def test_ambiguous_alias_names_both(reg: Registry) -> None:
    from robustreg.params import Param, ParamSet, canonical_name

    declared = ParamSet([Param("steps", "int", 10, "iterations", toolkit="max_iter"),
                         Param("n_queries", "int", 100, "query budget", toolkit="max_iter")])
    with pytest.raises(robustreg.ParamError, match="'max_iter' is ambiguous.*'n_queries' and 'steps'"):
        canonical_name(declared, "x", "max_iter")
    assert canonical_name(declared, "x", "steps") == "steps"
    assert canonical_name(declared, "x", "stepz") == "stepz"  # unknown: left for the declaration's own error


def test_cli_param_alias(reg: Registry) -> None:
    from robustreg.cli_kit import param_values

    owners = {"pgd": reg.attack("pgd").params}
    assert param_values(["pgd.alpha=2/255"], owners, where="--attacks", aliases=reg.param_aliases()) == \
        {"pgd": {"step_size": pytest.approx(2 / 255)}}
    args, _ = build_parser(reg).parse_known_args(["evaluate", "--norm", "Linf"])
    assert args.norm == "linf"


# --------------------------------------------------------------------------------------------
# 5. one-call attacks and short summaries
# --------------------------------------------------------------------------------------------
def test_one_call_attack(reg: Registry) -> None:
    from robustreg.attack import Attack  # the module still serves the contract

    x, y = _data(n=8)
    atk = robustreg.attack("pgd", eps="8/255", norm="Linf", steps=10, seed=0, registry=reg)
    assert isinstance(atk, Attack) and atk.config["steps"] == 10
    assert atk.threat == robustreg.ThreatModel("linf", 8 / 255)
    x_adv = atk(_net(), x, y)
    same = reg.build_attack("pgd", robustreg.ThreatModel("linf", 8 / 255), steps=10, seed=0)(_net(), x, y)
    assert torch.equal(x_adv, same)  # the same attack, the same seed: the same points
    with pytest.raises(robustreg.UnknownNameError, match="pgdd"):
        robustreg.attack("pgdd", eps=0.1, registry=reg)


def test_attack_result_repr_is_short(reg: Registry) -> None:
    x, y = _data(n=64)
    result = reg.build_attack("pgd", robustreg.ThreatModel("linf", 0.05), steps=2, seed=0).run(_net(), x, y)
    text = repr(result)
    assert text.startswith("AttackResult(x_adv: 64x3x8x8 float32 cpu") and "forwards" in text
    assert len(text) < 200 and "tensor(" not in text


def test_report_repr_is_a_summary(reg: Registry) -> None:
    x, y = _data()
    report = evaluate(_net(), (x, y), ["fgsm", ("pgd", {"steps": 2})], [0.02, 0.05], registry=reg, progress=False)
    text = repr(report)
    assert text.startswith(f"EvalReport(n={N}, linf, cascade, clean ") and text.count("worst") == 2
    assert len(text) < 400 and "fingerprint" not in text
    assert isinstance(report, dict) and report["results"][0]["attack"] == "fgsm"  # still the whole dict


# --------------------------------------------------------------------------------------------
# 6. notebook hygiene: the user's matplotlib backend; the report's environment
# --------------------------------------------------------------------------------------------
def test_out_leaves_the_matplotlib_backend_alone(reg: Registry, tmp_path) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend that is not Agg, as a notebook's inline one is not
    try:
        x, y = _data()
        evaluate(_net(), (x, y), ["fgsm"], 0.05, registry=reg, progress=False, out=tmp_path)
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "robust_accuracy.png").read_bytes().startswith(b"\x89PNG")
    finally:
        matplotlib.use(before)


def test_report_environment_is_recorded_outside_the_identity(reg: Registry, tmp_path) -> None:
    import json

    from robustreg.evaluation.state import report_identity

    x, y = _data()
    run = {"registry": reg, "progress": False, "n": 12}
    report = evaluate(_net(), (x, y), ["fgsm", "torchattacks:fgsm"], 0.05, out=tmp_path, **run)
    env = json.loads((tmp_path / "report.json").read_text())["environment"]
    assert env["torch"] == torch.__version__ and env["robustreg"] == robustreg.__version__
    assert list(env["toolkits"]) == ["torchattacks"] and env["toolkits"]["torchattacks"]
    assert env["device"].startswith("cpu") and env["threads"] == torch.get_num_threads() and "command" in env
    other = dict(report, environment={"command": "another machine"})
    assert report_identity(other) == report_identity(report)


# --------------------------------------------------------------------------------------------
# 7. model outputs: dict, tuple, a Hugging Face-style .logits; factory arguments
# --------------------------------------------------------------------------------------------
class _Output(dict):
    """Shaped like transformers' ModelOutput (an ordered dict whose fields are also attributes); transformers
    is not installed here, and robustreg duck-types on ``.logits``, so this stands for ImageClassifierOutput."""

    def __init__(self, logits: torch.Tensor, hidden: torch.Tensor) -> None:
        super().__init__(logits=logits, hidden_states=hidden)
        self.logits, self.hidden_states = logits, hidden


class _Returns(nn.Module):
    """The same network as :func:`_net`, its logits returned inside a dict, a tuple or a ModelOutput."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net, self.kind = _net(), kind

    def forward(self, x: torch.Tensor) -> object:
        logits = self.net(x)
        features = x.flatten(1)
        return {"features": features, "logits": logits} if self.kind == "dict" else \
            (features, logits) if self.kind == "tuple" else _Output(logits, features)


@pytest.mark.parametrize("kind, output", [("dict", "logits"), ("tuple", 1), ("tuple", "1"), ("hf", None)])
def test_outputs_reduced_to_logits(reg: Registry, kind: str, output: object) -> None:
    x, y = _data()
    run = {"registry": reg, "progress": False, "n": 12}
    reference = _numbers(evaluate(_net(), (x, y), ["fgsm", ("pgd", {"steps": 2})], 0.05, **run))
    model = _Returns(kind)
    report = evaluate(model, (x, y), ["fgsm", ("pgd", {"steps": 2})], 0.05, output=output, **run)
    assert _numbers(report) == reference
    assert report["model"]["class"] == "_Returns"
    assert report["model"]["output"] == (".logits" if output is None else int(output) if kind == "tuple" else output)


@pytest.mark.parametrize("kind, output, words", [
    ("dict", None, "got a dict (keys: features, logits); pick the logits with --output KEY|INDEX"),
    ("tuple", None, "got a tuple of 2; pick the logits with --output KEY|INDEX"),
    ("dict", "logit", "has no key 'logit'; pick another with --output KEY|INDEX"),
    ("tuple", 5, "has no index 5"),
])
def test_other_outputs_refused_naming_the_flag(reg: Registry, kind: str, output: object, words: str) -> None:
    x, y = _data()
    with pytest.raises(robustreg.UserError) as info:
        evaluate(_Returns(kind), (x, y), ["fgsm"], 0.05, output=output, registry=reg, progress=False)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_selector_is_part_of_the_model_identity() -> None:
    from robustreg.evaluation import model_fingerprint
    from robustreg.models.outputs import LogitsOf

    inner = _Returns("tuple")
    assert model_fingerprint(LogitsOf(inner, 0)) != model_fingerprint(LogitsOf(inner, 1))
    assert model_fingerprint(LogitsOf(inner, 1)) == model_fingerprint(LogitsOf(_Returns("tuple"), 1))


def test_cli_model_arg_and_output(reg: Registry, tmp_path, capsys) -> None:
    import json

    from robustreg.cli import main

    factory = tmp_path / "net.py"
    factory.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, width, classes):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, classes))\n"
        "    def forward(self, x):\n"
        "        return {'logits': self.body(x), 'width': self.body[1].out_features}\n\n"
        "def make(width=4, classes=3):\n"
        "    return Net(width, classes)\n")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", f"{factory}:make", "--model-arg", "width=16", "--model-arg", "classes=10",
            "--output", "logits", "--data", "digits", "--n", "16", "--attacks", "fgsm", "--eps", "0.1",
            "--out", str(out), "--quiet"]
    assert main(argv, registry=reg) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["args"] == {"width": 16, "classes": 10} and report["model"]["output"] == "logits"
    assert report["model"]["parameters"] == 64 * 16 + 16 + 16 * 10 + 10  # the factory got both arguments
    without = [a for a in argv if a not in ("--output", "logits")] + ["--overwrite"]
    assert main(without, registry=reg) == 2
    assert "--output KEY|INDEX" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# 8. more outputs than classes: allowed, never silent
# --------------------------------------------------------------------------------------------
def test_more_outputs_than_classes_warns_first_and_is_checked(reg: Registry) -> None:
    import warnings

    from robustreg.checks import CheckWarning
    from robustreg.data import LabeledData

    x, y = _data()
    data = LabeledData(x, y % 10, num_classes=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate(_net(k=20), data, ["fgsm"], 0.05, registry=reg, progress=False)
    first = caught[0]
    assert first.category is UserWarning and "\n" not in str(first.message)
    assert "the model has 20 outputs but the data has 10 classes" in str(first.message)
    check = next(c for c in report["checks"] if c["name"] == "more-outputs-than-classes")
    assert check["status"] == "warn" and "20 outputs" in check["message"]
    assert any(w.category is CheckWarning and "more-outputs-than-classes" in str(w.message) for w in caught[1:])


def test_as_many_outputs_as_classes_is_quiet(reg: Registry) -> None:
    import warnings

    from robustreg.data import LabeledData

    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning of any kind (CheckWarning is a UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        report = evaluate(_net(), LabeledData(x, y, num_classes=10), ["fgsm"], 0.05, registry=reg, progress=False,
                          no_check=[c for c in robustreg.checks.CHECKS if c != "more-outputs-than-classes"])
    assert next(c for c in report["checks"] if c["name"] == "more-outputs-than-classes")["status"] == "ok"
    # a bare pair does not say how many classes: its labels reaching the last output are enough, else skipped
    for labels, status in ((torch.arange(N) % 10, "ok"), (torch.arange(N) % 5, "skipped")):
        bare = evaluate(_net(), (x, labels), ["fgsm"], 0.05, registry=reg, progress=False)
        assert next(c for c in bare["checks"] if c["name"] == "more-outputs-than-classes")["status"] == status


def test_benchmark_returns_clean_and_robust_accuracy_as_robustbench_does():
    """robustreg.benchmark: RobustBench's (clean, robust) pair, the same numbers evaluate reports; the
    default attack is the registered standard AutoAttack."""
    import robustreg
    from robustreg.benchmark import STANDARD, _standard

    reg = robustreg.Registry.create()
    assert STANDARD in reg.attack(_standard(reg)).same_as
    model = robustreg.build_model("digits-cnn-pretrained")
    data = robustreg.load_data("digits")
    clean, robust = robustreg.benchmark(model, "digits", "Linf", "1/10", n_examples=40, attack="fgsm", registry=reg)
    report = robustreg.evaluate(model, data, ["fgsm"], [0.1], n=40, registry=reg, progress=False)
    assert (clean, robust) == (report["clean_accuracy"], report["worst_case"][0]["robust_accuracy"])
    assert 0 <= robust < clean <= 1


def test_report_to_pandas_and_plot_leave_the_backend_alone(tmp_path):
    import matplotlib

    import robustreg

    backend = matplotlib.get_backend()
    report = robustreg.evaluate(robustreg.build_model("digits-cnn-pretrained"), robustreg.load_data("digits"),
                                ["fgsm"], [0.05, 0.1], n=30, progress=False)
    fig = report.plot()
    assert len(fig.axes[0].lines) == 2 and matplotlib.get_backend() == backend  # fgsm and the worst case
    pd = pytest.importorskip("pandas")  # an optional package (robustbench's install brings it)
    frame = report.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame["eps"]) == [0.05, 0.1]
    assert list(frame["robust_accuracy"]) == [r["robust_accuracy"] for r in report["results"]]
