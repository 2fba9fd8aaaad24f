"""The automatic checks wired into the evaluation: every report carries them, each deliberately broken model
trips the check meant for it in report.json, the real PGD-trained LeNet-5 trips none, ``--no-check`` works."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustreg import Registry, ThreatModel
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.evaluation import evaluate
from robustreg.evaluation.cells import Cell
from robustreg.evaluation.checking import clean_correct, single_step
from robustreg.models import build_model
from robustreg.report import checks_block, render_markdown

N, EPS = 100, 0.1
# the installed checks, in the order a report lists them: the core's, then the plugins' (logit-scale)
CHECKS = tuple(spec.name for spec in Registry.create().checks())
PGD = ("pgd", {"steps": 10})


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    return build_model("digits-cnn-pretrained").eval()


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


class Then(nn.Module):
    """``after(model(before(x)))``: a sane model broken on one side or the other."""

    def __init__(self, model: nn.Module, before=None, after=None) -> None:
        super().__init__()
        self.model, self.before, self.after = model, before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x if self.before is None else self.before(x))
        return out if self.after is None else self.after(out)


def statuses(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def warned(report: dict) -> set[str]:
    return {name for name, status in statuses(report).items() if status == "warn"}


def run(model: nn.Module, data, attacks=(PGD,), eps=EPS, **options) -> dict:
    options.setdefault("progress", False)
    return evaluate(model, data, list(attacks), eps, n=options.pop("n", N), **options)


# --- broken models: the right check warns in the report ---------------------------------------------
def test_softmax_output(cnn, digits):
    report = run(Then(cnn, after=nn.Softmax(dim=1)), digits)
    assert statuses(report)["softmax-output"] == "warn"


def test_input_noise_per_call(cnn, digits):
    noisy = Then(cnn, before=lambda t: (t + 0.1 * torch.randn_like(t)).clamp(0, 1))
    assert statuses(run(noisy, digits))["randomized-model"] == "warn"


def test_saturated_logits(cnn, digits):
    report = run(Then(cnn, after=lambda z: 1e4 * z), digits)
    assert {"logit-scale", "zero-gradients"} <= warned(report), report["checks"]


def test_non_differentiable_quantiser(cnn, digits):
    report = run(Then(cnn, before=lambda t: torch.round(t * 4) / 4), digits)
    assert {"zero-gradients", "unbounded-attack"} <= warned(report), report["checks"]


def test_nan_on_some_inputs_is_never_correct(cnn, digits):
    def nan_some(z: torch.Tensor) -> torch.Tensor:  # NaN rows where the model predicts class 0
        return torch.where((z.argmax(dim=1) == 0)[:, None], torch.full_like(z, float("nan")), z)

    model = Then(cnn, after=nan_some)
    x, y = digits.tensors(N)
    with torch.no_grad():
        logits = model(x)
    nan = ~torch.isfinite(logits).all(dim=1)
    assert int(nan.sum()) > 0 and bool((logits[nan].argmax(dim=1) == 0).all())  # argmax alone would say "0"
    report = run(model, digits)
    assert report["nan_clean"] == int(nan.sum())
    assert report["clean_accuracy"] == pytest.approx(float(((logits.argmax(1) == y) & ~nan).float().mean()))
    assert statuses(report)["nan-logits"] == "warn"
    assert not bool(clean_correct(logits, y)[nan].any())


# --- a sane model and the report's form -------------------------------------------------------------
@pytest.mark.numerics  # bit-exact reruns: .ci/run repeats them on other kernels and threads
def test_every_report_has_checks_deterministic_and_rendered(cnn, digits, tmp_path):
    first = run(cnn, digits, ["fgsm", PGD], out=tmp_path / "a", mode="independent")
    second = run(cnn, digits, ["fgsm", PGD], out=tmp_path / "b", mode="independent")
    assert [c["name"] for c in first["checks"]] == list(CHECKS) and "logit-scale" in CHECKS
    assert all(set(c) == {"name", "status", "message", "doc"} for c in first["checks"])
    assert first["checks"] == second["checks"]  # same seed, same list
    assert json.loads((tmp_path / "a" / "report.json").read_text())["checks"] == first["checks"]
    assert "## Checks" in (tmp_path / "a" / "report.md").read_text() and "## Checks" in render_markdown(first)
    assert statuses(first)["iterative-beats-single-step"] == "ok"  # fgsm single-step, pgd iterative
    pgd = next(r for r in first["results"] if r["attack"] == "pgd")
    assert "extras" not in pgd  # ever_broken and loss_trace feed the checks; they are not numbers to report
    # per point: 10 steps, fewer for the points an iterate broke (no further step on them)
    assert 1.0 < pgd["forwards"] == pgd["backwards"] < 10.0
    block = checks_block(first)
    assert block.startswith("checks:") and "ok (" in block


@pytest.mark.numerics  # bit-exact reruns: .ci/run repeats them on other kernels and threads
def test_resumed_run_recomputes_the_checks(cnn, digits, tmp_path):
    state = tmp_path / "state.pt"
    whole = run(cnn, digits, [PGD], state_path=state, keep_state=True, batch_size=40)
    again = run(cnn, digits, [PGD], state_path=state, keep_state=True, batch_size=40)
    assert again["resumed"] and again["checks"] == whole["checks"]
    saved = torch.load(state, weights_only=True)
    cell = Cell.from_state(saved["cells"]["0:0"])
    assert len(cell.trace) == 10 and cell.trace_count > 0  # one mean curve per cell, not N x T


def test_warnings_come_first_on_the_terminal():
    report = {"checks": [{"name": "a", "status": "ok", "message": "fine", "doc": "d#a"},
                         {"name": "b", "status": "skipped", "message": "-", "doc": "d#b"},
                         {"name": "c", "status": "warn", "message": "bad " * 40, "doc": "d#c"}]}
    lines = checks_block(report).splitlines()
    assert lines[1].strip().startswith("WARN c: bad") and any(line.strip() == "ok (1): a" for line in lines)
    assert render_markdown({**report, "results": [], "worst_case": []}).index("WARN") > 0


# --- --no-check --------------------------------------------------------------------------------------
def test_no_check_in_the_api(cnn, digits):
    report = run(cnn, digits, no_check=["logit-scale", "unbounded-attack"])
    assert statuses(report)["logit-scale"] == "skipped" and statuses(report)["unbounded-attack"] == "skipped"
    assert "--no-check" in next(c["message"] for c in report["checks"] if c["name"] == "logit-scale")
    # checked against the registry's checks (a plugin may add some) when the run is planned, before any work
    with pytest.raises(ValueError, match=r"unknown check 'logit-scal'; did you mean 'logit-scale'"):
        run(cnn, digits, no_check=["logit-scal"])


def test_no_check_on_the_command_line(tmp_path, capsys):
    common = ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "pgd", "--eps", "0.1",
              "--n", "30", "--param", "pgd.steps=3", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "x"), "--no-check", "zero-gradient"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "did you mean 'zero-gradients'?" in err[0]
    assert main(common + ["--out", str(tmp_path / "y"), "--no-check", "zero-gradients",
                          "--no-check", "logit-scale"]) == 0
    out = capsys.readouterr().out
    assert "checks:" in out
    report = json.loads((tmp_path / "y" / "report.json").read_text())
    assert statuses(report)["zero-gradients"] == "skipped" and statuses(report)["logit-scale"] == "skipped"


# --- what the attacks report ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, restarts", [("pgd", 1), ("pgd", 3), ("pgd-cw", 1), ("pgd-dlr", 1), ("si-pgd", 2)])
def test_pgd_family_reports_loss_trace_and_ever_broken(registry, cnn, digits, name, restarts):
    x, y = digits.tensors(40)
    attack = registry.build_attack(name, ThreatModel("linf", EPS), steps=6, restarts=restarts, seed=0)
    result = attack.run(cnn, x, y)
    trace, ever = result.extras["loss_trace"], result.extras["ever_broken"]
    assert trace.shape == (40, 6) and bool(torch.isfinite(trace).all())
    assert ever.dtype == torch.bool and ever.shape == (40,)
    with torch.no_grad():
        at_start = cnn(x).argmax(1) != y
    assert bool((ever >= at_start).all()) or name == "pgd"  # pgd starts at a random point, not at x
    plain = registry.build_attack(name, ThreatModel("linf", EPS), steps=6, restarts=restarts, seed=0)(cnn, x, y)
    assert torch.equal(plain, result.x_adv)  # recording changes nothing


class Coupled(nn.Module):
    """``model`` behind a module left in training mode (``model`` is no submodule of it, so it stays in eval mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.__dict__["inner"] = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


@pytest.mark.parametrize("name, restarts", [("pgd", 1), ("pgd", 3), ("pgd-cw", 1), ("pgd-dlr", 2)])
def test_pgd_family_stops_working_on_broken_points(registry, cnn, digits, name, restarts):
    """A point whose iterate succeeded takes no further step: the same points, hits and standing points' traces
    as when every point takes every step (a module in training mode turns the shortcut off), in fewer passes."""
    x, y = digits.tensors(60)

    def attack():
        return registry.build_attack(name, ThreatModel("linf", EPS), steps=8, restarts=restarts, seed=0,
                                     eval_mode=False)

    early, full = attack().run(cnn, x, y), attack().run(Coupled(cnn), x, y)
    assert torch.equal(early.x_adv, full.x_adv)
    ever = full.extras["ever_broken"]
    assert 0 < int(ever.sum()) < len(y) and torch.equal(early.extras["ever_broken"], ever)
    assert torch.equal(early.extras["loss_trace"][~ever], full.extras["loss_trace"][~ever])
    assert bool(torch.isfinite(early.extras["loss_trace"]).all())
    assert float(early.extras["forwards"].sum()) < float(full.extras["forwards"].sum())
    assert float(full.extras["forwards"].sum()) >= 8 * len(y)


def test_single_step_derivation(registry):
    params = {"fgsm": {}, "step-ll": {}, "pgd": {"steps": 20}, "autoattack:standard": {}}
    known = registry.entries("attacks")
    got = {name: single_step(registry.attack(name), p) for name, p in params.items() if name in known}
    assert got.get("fgsm") is True and got.get("step-ll", True) is True and got["pgd"] is False
    assert got.get("autoattack:standard", False) is False
    assert single_step(registry.attack("pgd"), {"steps": 1}) is True
    declared = {name for name, spec in known.items() if spec.info.single_step}
    assert declared == {"fgsm", "step-ll", "step-fgsm", "art:fgm", "torchattacks:fgsm", "foolbox:fgsm"}


# --- AutoAttack's own flags --------------------------------------------------------------------------
def test_autoattack_flags_reach_the_report(cnn, digits):
    pytest.importorskip("pyautoattack")
    noisy = Then(cnn, before=lambda t: (t + 0.05 * torch.randn_like(t)).clamp(0, 1))
    report = run(noisy, digits, ["autoattack:apgd-ce"], n=20)
    assert statuses(report)["attack-flags"] == "warn"
    assert "randomized defense" in next(c["message"] for c in report["checks"] if c["name"] == "attack-flags")
    assert statuses(run(cnn, digits, ["autoattack:apgd-ce"], n=20))["attack-flags"] == "ok"


def test_autoattack_square_flag():
    pytest.importorskip("pyautoattack")
    from robustreg_plugins.autoattack_adapter.attacks import CascadeResult, FlagRecorder, square_check
    from robustreg_plugins.autoattack_adapter.compat import load_toolkit

    n = 100
    clean = torch.ones(n, dtype=torch.bool)
    after_apgd = clean.clone()
    after_apgd[:40] = False
    after_square = after_apgd.clone()
    after_square[40:45] = False  # Square broke 5% more than the gradient attacks
    result = CascadeResult(torch.zeros(n, 1), clean, {"apgd-ce": after_apgd, "apgd-t": after_apgd,
                                                      "square": after_square})
    recorder = FlagRecorder()
    square_check(load_toolkit("autoattack:standard"), result, recorder)
    assert len(recorder.messages) == 1 and recorder.messages[0].startswith(
        "Square Attack has decreased the robust accuracy of 5.00%")


# --- the real checkpoints ------------------------------------------------------------------------
def test_no_check_warns_on_the_pgd_trained_lenet5_under_pgd(lenet_mnist):
    """200 MNIST test images, native pgd with its defaults (20 steps of eps/4) at eps 0.1 and 0.3: no warning.

    Before the core's loop kept each sample's first adversarial iterate, silent-success warned here at
    eps 0.3 (docs/checks.md#silent-success).
    """
    model, x, y = lenet_mnist
    report = evaluate(model, (x, y), ["pgd"], [0.1, 0.3], progress=False)
    assert not warned(report), [c for c in report["checks"] if c["status"] == "warn"]
    assert statuses(report)["incomplete-optimization"] == statuses(report)["silent-success"] == "ok"
    assert report["nan_clean"] == 0


@pytest.mark.parametrize("checkpoint, arch, data, eps", [
    ("mnist_lenet5_clntrained.pt", "lenet5-mnist", "mnist", [0.1, 0.3]),
    ("resnet4b.pth", "resnet4b", "cifar", [2 / 255, 8 / 255]),
    ("cifar_marabou_large.pth", "cifar-marabou-large", "cifar", [2 / 255, 8 / 255]),
])
def test_no_check_warns_on_the_other_real_checkpoints_under_pgd(request, models_dir, checkpoint, arch, data, eps):
    """The three other checkpoints of ../shared/models, 200 real test images each, native pgd defaults."""
    source = (f"mnist:{request.getfixturevalue('mnist_dir')}" if data == "mnist"
              else f"npz:{request.getfixturevalue('cifar_npz')}")
    model = build_model(arch, weights=models_dir / checkpoint).eval()
    report = evaluate(model, load_data(source).tensors(200), ["pgd"], eps, progress=False)
    assert not warned(report), [c for c in report["checks"] if c["status"] == "warn"]
    assert statuses(report)["silent-success"] == "ok"
