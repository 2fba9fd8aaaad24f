"""--adaptive: each remedy on a small real model with the break it answers, a plugin's own check and remedy,
and no remedy (an identical report) where no check warns."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustreg
from robustreg.cli import main
from robustreg.evaluation import evaluate
from robustreg.evaluation.report_check import check_report
from robustreg.remedies import ARGMAX, Budget, RemedyContext
from robustreg.testing.breaks import Noisy, Quantise, Scaled, Softmaxed
from robustreg_plugins.classic.remedies import masking_modules, warm_start

EPS = 0.1
N = 96


@pytest.fixture(scope="module")
def digits():
    model = robustreg.build_model("digits-cnn-pretrained")
    test = robustreg.load_data("digits", "test")
    return model, (test.x[:N], test.y[:N])


def run(model: nn.Module, data, attacks=(("pgd", {"steps": 10}),), eps=(EPS,), **kw):
    return evaluate(model, data, list(attacks), list(eps), progress=False, **kw)


def worst(report) -> float:
    return report["worst_case"][-1]["robust_accuracy"]


def ran(report) -> set[str]:
    return {r["remedy"] for r in report["adaptive"]["runs"]}


def warned(report) -> set[str]:
    return {c["name"] for c in report["checks"] if c["status"] == "warn"}


def test_scaled_logits_get_the_unbroken_models_robustness(digits):
    base, data = digits
    honest = worst(run(base, data))
    broken = Scaled(base, 1e4)
    plain = run(broken, data)
    assert {"logit-scale", "zero-gradients"} <= warned(plain)
    assert worst(plain) > honest + 0.3  # the overestimate: cross-entropy PGD is blind
    adaptive = run(broken, data, adaptive=True)
    assert {"temperature", "si-pgd", "margin-loss"} <= ran(adaptive)
    assert worst(adaptive) <= honest + 0.04  # within 4 points of the unbroken model (96 points, 10-step PGD)
    entry = adaptive["worst_case"][-1]
    assert entry["robust_accuracy_before_adaptive"] == worst(plain)
    assert sum(v for k, v in entry["broken_only_by"].items() if k.startswith("remedy:")) > 0
    for r in adaptive["adaptive"]["runs"]:
        assert r["after"] <= r["before"] and r["passes"] > 0 and r["verdict"] == ARGMAX
    # the per-sample worst case holds the remedies' points too, and agrees with the accuracy (the report check)
    check_report(json.loads(json.dumps(adaptive)))
    assert int(adaptive.samples().robust[-1].sum()) == round(worst(adaptive) * N) < round(worst(plain) * N)


def test_saturated_logits_get_margin_losses_from_zero_gradients_alone(digits):
    """A saturated softmax that only the zero-gradients check sees (logit-scale off) still gets the margin losses:
    zero gradients with decisive logits are saturation; a quantiser's (not decisive) does not get them."""
    base, data = digits
    honest = worst(run(base, data))
    adaptive = run(Scaled(base, 1e4), data, adaptive=True, no_check=["logit-scale"])
    assert "zero-gradients" in warned(run(Scaled(base, 1e4), data, no_check=["logit-scale"]))
    assert "margin-loss" in ran(adaptive)
    assert {r["label"] for r in adaptive["adaptive"]["runs"] if r["remedy"] == "margin-loss"} >= {"apgd-t-100x9"}
    assert worst(adaptive) <= honest + 0.04
    quantised = run(nn.Sequential(Quantise(), base), data, adaptive=True)
    assert "zero-gradients" in warned(quantised) and "margin-loss" not in ran(quantised)


def test_softmax_outputs_are_attacked_through_their_log(digits):
    base, data = digits
    adaptive = run(Softmaxed(base), data, adaptive=True)
    assert "softmax-output" in warned(adaptive)
    assert {"margin-loss", "log-outputs"} <= ran(adaptive)
    assert worst(adaptive) <= worst(run(base, data)) + 0.04


def test_a_quantiser_is_found_and_attacked_through_bpda(digits):
    base, data = digits
    broken = nn.Sequential(Quantise(), base)
    x, _ = data
    assert masking_modules(broken, x[:8]) == [broken[0]]
    assert masking_modules(base, x[:8]) == []
    plain = run(broken, data)
    assert "zero-gradients" in warned(plain)
    adaptive = run(broken, data, adaptive=True)
    assert "bpda" in ran(adaptive)
    bpda = [r for r in adaptive["adaptive"]["runs"] if r["remedy"] == "bpda"]
    assert any("Quantise" in r["label"] for r in bpda)
    assert sum(len(r["broken"]) for r in bpda) > 0
    # as good as BPDA written by hand (the same forward, so the same verdicts), within 4 points
    by_hand = nn.Sequential(robustreg.BPDA(Quantise()), base)
    assert worst(adaptive) <= worst(run(by_hand, data, [("apgd", {"steps": 100})])) + 0.04 < worst(plain)


def test_a_randomised_model_gets_eot_and_a_majority_verdict(digits):
    base, data = digits
    torch.manual_seed(0)
    adaptive = run(Noisy(base, 0.1), data, adaptive=True)
    assert "randomized-model" in warned(adaptive)
    eot = [r for r in adaptive["adaptive"]["runs"] if r["remedy"] == "eot"]
    assert eot and "majority of 9" in eot[0]["verdict"] and "EoT over" in eot[0]["label"]
    draws = int(eot[0]["label"].split("EoT over ")[1].split()[0])
    assert 2 <= draws <= 64


def test_single_step_beating_a_bad_pgd_runs_the_step_size_sweep(digits):
    base, data = digits
    attacks = [("fgsm", {}), ("pgd", {"steps": 2, "step_size": EPS / 50, "random_start": False})]
    adaptive = run(base, data, attacks, mode="independent", adaptive=True)
    assert "iterative-beats-single-step" in warned(adaptive)
    assert "step-size-sweep" in ran(adaptive)


def test_a_loss_still_rising_gets_more_steps(digits):
    base, data = digits
    attacks = [("pgd", {"steps": 5, "step_size": EPS / 40, "random_start": False})]
    adaptive = run(base, data, attacks, adaptive=True)
    assert "incomplete-optimization" in warned(adaptive)
    steps = [r for r in adaptive["adaptive"]["runs"] if r["remedy"] == "more-steps"]
    assert steps and steps[0]["label"].startswith("apgd-ce")
    assert worst(adaptive) < adaptive["worst_case"][-1]["robust_accuracy_before_adaptive"]


def test_warm_start_credits_a_larger_eps_with_a_smaller_eps_adversarial_point(digits):
    """The eps-monotonic remedy, on a context built by hand: 5 points broken at eps 0.1 but left standing at
    0.2 are attacked at 0.1 again, and what breaks there counts at 0.2 too."""
    base, (x, y) = digits
    registry = robustreg.Registry.create()
    with torch.no_grad():
        correct = base(x).argmax(1) == y
    small = correct.clone()
    idx = correct.nonzero().flatten()[:5]
    small[idx] = False  # "broken" at 0.1 by the evaluation
    large = correct.clone()  # ... but standing at 0.2
    ctx = RemedyContext(base, x, y, [0.1, 0.2], "linf", [small, large], registry, torch.device("cpu"), 0, 64,
                        Budget(1e9, [0.0, 0.0]), "eps-monotonic", "", "warm-start", [], [("pgd", {"steps": 10})])
    warm_start(ctx)
    assert ctx.attempts and all(a.eps == 0.1 for a in ctx.attempts)
    broken = {i for a in ctx.attempts for i in a.broken}
    assert broken <= set(idx.tolist()) and broken
    assert not ctx.standing[1][sorted(broken)].any()


def test_no_break_no_remedy_and_the_same_report(digits):
    base, data = digits
    plain, adaptive = run(base, data), run(base, data, adaptive=True)
    assert warned(plain) == set() and adaptive["adaptive"]["runs"] == []
    for key in ("results", "worst_case", "checks", "clean_accuracy"):
        if key == "worst_case":
            for p, a in zip(plain[key], adaptive[key]):
                assert a.pop("robust_accuracy_before_adaptive") == p["robust_accuracy"]
        strip = (lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]) if key == "results" else None
        assert (strip(plain[key]) if strip else plain[key]) == (strip(adaptive[key]) if strip else adaptive[key])


def test_compare_runs_the_remedies_on_the_points_no_toolkit_broke(digits):
    base, data = digits
    report = robustreg.compare.compare(Scaled(base, 1e4), data, "pgd", EPS, toolkits=["native"],
                                          params={"steps": 10}, noise=False, progress=False, adaptive=True)
    entry = report["adaptive"]["robust_accuracy"][0]
    assert "temperature" in ran(report)
    assert entry["after"] < entry["before"] - 0.3  # the saturated logits hid most of the breaks


CHECKPOINTS = {  # file -> (model, data, eps, PGD steps, step size): the attack its card reports (fewer steps
    # leave a loss still rising, which incomplete-optimization rightly reports)
    "mnist_lenet5_advtrained.pt": ("lenet5-mnist", "mnist", 0.3, 40, 0.01),
    "mnist_lenet5_clntrained.pt": ("lenet5-mnist", "mnist", 0.3, 40, 0.01),
    "resnet4b.pth": ("resnet4b", "cifar", 2 / 255, 20, 0.5 / 255),
    "cifar_marabou_large.pth": ("cifar-marabou-large", "cifar", 8 / 255, 20, 2 / 255),
}


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", sorted(CHECKPOINTS))
def test_no_false_alarm_on_the_real_checkpoints(checkpoint, models_dir, mnist_dir, cifar_npz):
    """On the four real checkpoints no check raises a false alarm: a check that warns has a remedy that
    breaks points the evaluation left standing (on the PGD-trained LeNet-5 at 64 points, PGD-40's loss is
    still rising and APGD breaks 2 more), and where none warns no remedy runs."""
    spec, data, eps, steps, step = CHECKPOINTS[checkpoint]
    model = robustreg.build_model(spec, weights=models_dir / checkpoint)
    source = f"mnist:{mnist_dir}" if data == "mnist" else f"npz:{cifar_npz}"
    x, y = robustreg.load_data(source).tensors(64)
    report = evaluate(model, (x, y), [("pgd", {"steps": steps, "step_size": step})], [eps], progress=False,
                      adaptive=True)
    runs = report["adaptive"]["runs"]
    for check in warned(report):
        assert sum(len(r["broken"]) for r in runs if r["check"] == check) > 0, (check, report["checks"])
    if not warned(report):
        assert runs == []


# --- a plugin's own check and remedy ---------------------------------------------------------------
class _Plugin:
    """Registers a check that warns while fgsm at the largest eps left points standing, and its remedy (pgd)."""

    @robustreg.hookimpl
    def robustreg_register_checks(self, registrar) -> None:
        def standing(ctx):
            left = [c for c in ctx.cells if c.eps == max(x.eps for x in ctx.cells) and not c.broken.all()]
            return ("warn", "points still standing") if left else ("ok", "every point broken")

        registrar.add_check("my-check", standing, doc="https://example.org/my-check")

    @robustreg.hookimpl
    def robustreg_register_remedies(self, registrar) -> None:
        registrar.add_remedy("my-remedy", lambda ctx: ctx.attack("pgd", {"steps": 5}), answers=("my-check",),
                             summary="pgd-5 on what is left")


def test_a_plugin_registers_a_check_and_its_remedy(digits, tmp_path, capsys):
    base, data = digits
    registry = robustreg.Registry.create(plugins=[("mine", _Plugin())])
    assert [c.name for c in registry.checks()][-1] == "my-check"
    assert [r.name for r in registry.remedies_for("my-check")] == ["my-remedy"]
    plain = run(base, data, [("fgsm", {})], registry=registry, no_check=["logit-scale"])
    mine = next(c for c in plain["checks"] if c["name"] == "my-check")
    assert mine["status"] == "warn" and mine["remedies"] == ["my-remedy"] and mine["doc"].endswith("my-check")
    adaptive = run(base, data, [("fgsm", {})], registry=registry, adaptive=True, out=tmp_path / "out")
    assert ran(adaptive) == {"my-remedy"}
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["adaptive"]["runs"][0]["check"] == "my-check"
    assert "## Diagnosed and fixed" in (tmp_path / "out" / "report.md").read_text()
    assert main(["list", "remedies"], registry=registry) == 0
    assert "my-remedy" in capsys.readouterr().out


def test_cli_adaptive_prints_before_and_after_and_a_plain_run_names_the_remedy(tmp_path, capsys):
    common = ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "48", "--attacks", "pgd",
              "--param", "pgd.steps=5", "--param", "pgd.step_size=0.0025", "--param", "pgd.random_start=false",
              "--eps", "0.1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    out = capsys.readouterr().out
    assert "WARN incomplete-optimization" in out and "--adaptive" in out and "more-steps" in out
    assert main([*common, "--out", str(tmp_path / "adaptive"), "--adaptive", "--adaptive-budget", "1000"]) == 0
    out = capsys.readouterr().out
    assert "diagnosed and fixed (--adaptive):" in out and "more-steps (incomplete-optimization): apgd-ce" in out
    report = json.loads((tmp_path / "adaptive" / "report.json").read_text())
    assert report["adaptive"]["budget"] == 1000 and max(report["adaptive"]["budget_used"]) > 0
    # a plain report in the folder is not taken for the adaptive run's
    assert main([*common, "--out", str(tmp_path / "plain"), "--adaptive"]) == 2
    assert "adaptive" in capsys.readouterr().err


class Unreachable(nn.Module):
    """``model`` whose class ``k`` is never predicted (its logit is -1e9): a target no attack can reach."""

    def __init__(self, model: nn.Module, k: int = 9) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x).clone()
        logits[:, self.k] = -1e9
        return logits


def test_targeted_adaptive_aims_at_the_evaluations_targets(digits):
    """With --targeted the remedies attack toward the evaluation's targets and count a point only when its target
    is reached: least-likely targets are the class no input reaches, so nothing falls, while the same remedies
    untargeted break points; APGD-T, which picks its own targets, does not run."""
    base, data = digits
    model = Softmaxed(Unreachable(base))
    untargeted = run(model, data, adaptive=True)
    assert "softmax-output" in warned(untargeted) and worst(untargeted) < untargeted["clean_accuracy"] - 0.3
    targeted = run(model, data, adaptive=True, targeted="least-likely", seed=0)
    assert "softmax-output" in warned(targeted) and {"log-outputs", "margin-loss"} <= ran(targeted)
    assert worst(targeted) == targeted["clean_accuracy"]
    assert all(not r["broken"] for r in targeted["adaptive"]["runs"])
    assert not [r for r in targeted["adaptive"]["runs"] if r["label"].startswith("apgd-t")]
    check_report(json.loads(json.dumps(targeted)))
    # reachable targets (eps 0.2): plain targeted PGD through the softmax overestimates; the targeted remedies
    # come back to the unbroken model's targeted robustness
    honest = worst(run(base, data, eps=(0.2,), targeted="random", seed=0))
    plain = worst(run(Softmaxed(base), data, eps=(0.2,), targeted="random", seed=0))
    remedied = worst(run(Softmaxed(base), data, eps=(0.2,), adaptive=True, targeted="random", seed=0))
    assert remedied < plain - 0.2 and abs(remedied - honest) <= 0.04


def test_a_targeted_context_runs_each_target_and_skips_attacks_that_take_none(digits):
    """RemedyContext with targets: all-classes-like rounds run the second target only on points the first missed
    (the first is unreachable here); an attack that takes no target is recorded as skipped, not run."""
    base, (x, y) = digits
    model = Unreachable(base).eval()
    y = y[:16]
    standing = [model(x[:16]).argmax(1) == y]

    registry = robustreg.Registry.create()

    def context(targets):
        return RemedyContext(model, x[:16], y, [EPS], "linf", [s.clone() for s in standing], registry,
                             torch.device("cpu"), 0, 16, Budget(1e6, [0.0]), "softmax-output", "", "test",
                             targets=targets)

    never = context(lambda idx: [torch.full((len(idx),), 9)])
    assert never.targeted and never.attack("pgd", {"steps": 20}) == 0
    both = context(lambda idx: [torch.full((len(idx),), 9), (y[idx] + 1) % 10])
    hit = both.attack("pgd", {"steps": 20, "step_size": EPS / 4})
    assert hit > 0 and both.standing[0].sum() == standing[0].sum() - hit
    assert both.attack("spsa") == 0 and both.skipped == [
        {"remedy": "test", "check": "softmax-output",
         "reason": "spsa: takes no target class, and the evaluation is targeted"}]
    assert not both.attempts[1:]  # the skipped attack left no attempt
