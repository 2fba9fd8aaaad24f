"""robustreg.checks: each deliberately broken model or constructed cell trips the check meant for it,
and no check warns on sane models (a digits MLP trained here, the real PGD-trained LeNet-5)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustreg
from robustreg.checks import CellView, CheckContext, CheckResult, check_names, registered, traced_ascent
from robustreg.checks import run_checks as run_checks_of
from robustreg.stats import paired_noise
from robustreg.testing import tiny_model

DOCS = Path(__file__).resolve().parents[1] / "docs" / "checks.md"
# the installed checks: the core's, then the plugins' (the scale-invariant plugin's logit-scale)
INSTALLED = registered(robustreg.Registry.create().checks())
CHECKS = tuple(name for name, _, _ in INSTALLED)
MODEL_CHECKS = ("softmax-output", "randomized-model", "zero-gradients", "nan-logits", "logit-scale",
                "unbounded-attack")


def run_checks(ctx: CheckContext, **kw) -> list[CheckResult]:
    """Every installed check, as an evaluation runs them."""
    return run_checks_of(ctx, checks=INSTALLED, **kw)


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


# --- models ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained on scikit-learn's digits (train split), with the test split's first 200 points."""
    train, test = robustreg.load_data("digits", "train"), robustreg.load_data("digits", "test")
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        for idx in torch.randperm(len(train.y), generator=gen).split(128):
            opt.zero_grad()
            F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
            opt.step()
    model.eval()
    x, y = test.x[:200], test.y[:200]
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9  # it learned: a sane model
    return model, x, y


class Then(nn.Module):
    """``after(model(before(x)))``: a sane model made broken on one side or the other."""

    def __init__(self, model: nn.Module, before=None, after=None) -> None:
        super().__init__()
        self.model, self.before, self.after = model, before, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.before is None else self.before(x)
        out = self.model(x)
        return out if self.after is None else self.after(out)


def context(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cells=(), **kw) -> CheckContext:
    with torch.no_grad():
        logits = model.eval()(x)
    return CheckContext(model, x, y, logits, cells=list(cells), **kw)


def status(results: list[CheckResult], name: str) -> str:
    return next(r.status for r in results if r.name == name)


def warned(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if r.status == "warn"}


def budget_cell(n: int, eps: float) -> CellView:
    """A cell that only gives the checks their budget (nothing broken, all evaluated)."""
    return CellView("probe", eps, "white-box", False, torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool))


# --- the broken models -------------------------------------------------------------------------
def test_softmax_output(digits):
    model, x, y = digits
    results = run_checks(context(Then(model, after=nn.Softmax(dim=1)), x, y, [budget_cell(len(y), 0.1)]))
    assert status(results, "softmax-output") == "warn"
    assert status(run_checks(context(model, x, y), disabled=CHECKS[1:]), "softmax-output") == "ok"


def test_randomized_model_and_global_rng_untouched(digits):
    model, x, y = digits
    noisy = Then(model, before=lambda t: (t + 0.1 * torch.randn_like(t)).clamp(0, 1))
    ctx = context(noisy, x, y)
    before = torch.random.get_rng_state()
    results = run_checks(ctx, disabled=set(CHECKS) - {"randomized-model"})
    assert torch.equal(before, torch.random.get_rng_state())
    assert status(results, "randomized-model") == "warn"
    assert "eot" in next(r.message for r in results if r.name == "randomized-model").lower()


def test_huge_logit_scale_trips_logit_scale_and_zero_gradients(digits):
    model, x, y = digits
    scaled = Then(model, after=lambda z: 1e4 * z)  # softmax saturates: CE gradients underflow to exactly 0
    results = run_checks(context(scaled, x, y, [budget_cell(len(y), 0.1)]))
    assert warned(results) == {"logit-scale", "zero-gradients", "unbounded-attack"}, results


def test_logit_scale_falls_back_to_dlr_without_a_linear_head(digits):
    model, x, y = digits
    # an 11th, never predicted class: the head's output no longer is the logits, so no cos(theta) but DLR
    widened = Then(model, after=lambda z: 1e4 * torch.cat([z, z.new_full((len(z), 1), -1e3)], dim=1))
    results = run_checks(context(widened, x, y, [budget_cell(len(y), 0.1)]), disabled=MODEL_CHECKS[:4])
    assert status(results, "logit-scale") == "warn"
    assert "DLR" in next(r.message for r in results if r.name == "logit-scale")


def test_paired_noise_is_about_the_discordant_points():
    # as many points broken by each side alone: no difference, however many there are
    assert all(0 <= paired_noise(k, k, 64) for k in range(65))
    assert (2 - 2) / 64 < paired_noise(2, 2, 64)
    # 2 of 64 more for one side and none for the other: within noise (one point is already 1/64)
    assert 2 / 64 < paired_noise(2, 0, 64)
    # a quarter of the points broken by one side alone: far beyond
    assert 16 / 64 > paired_noise(16, 0, 64)


def test_logit_scale_is_quiet_on_the_embedded_default():
    """The model `robustreg evaluate` runs with no arguments: cross-entropy and the scale-invariant loss
    leave as many points standing, so no warning (issue 23: a warning whose two numbers are equal)."""
    model = robustreg.build_model("digits-cnn-pretrained")
    test = robustreg.load_data("digits", "test")
    results = run_checks(context(model, test.x, test.y, [budget_cell(len(test.y), 0.15)]),
                         disabled=[c for c in MODEL_CHECKS if c != "logit-scale"])
    assert status(results, "logit-scale") == "ok", message(results, "logit-scale")


def test_the_checks_attacks_go_through_the_contexts_shard_in_pieces(digits):
    """A distributed run passes ``shard`` to spread the checks' own PGD runs over its ranks: the pieces
    (32 points each, the same on any number of ranks) give exactly the messages of one process."""
    model, x, y = digits
    cells = [budget_cell(len(y), 0.1)]
    calls: list[int] = []

    def shard(count, run):  # as a rank would see them: every piece's value, in order, run out of order here
        calls.append(count)
        values = {k: run(k) for k in reversed(range(count))}
        return [values[k] for k in range(count)]

    plain = run_checks(context(model, x, y, cells))
    sharded = run_checks(context(model, x, y, cells, shard=shard))
    assert [r.to_json() for r in sharded] == [r.to_json() for r in plain]
    assert calls == [2, 2, 2]  # logit-scale's two PGD runs and unbounded-attack's, 64 points in 2 pieces


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_quantised_input_trips_zero_gradients_and_unbounded_attack(digits, norm, eps):
    model, x, y = digits
    quantised = Then(model, before=lambda t: torch.round(t * 4) / 4)  # torch.round: gradient exactly zero
    results = run_checks(context(quantised, x, y, [budget_cell(len(y), eps)], norm=norm))
    assert warned(results) == {"zero-gradients", "unbounded-attack"}, results
    sane = run_checks(context(model, x, y, [budget_cell(len(y), eps)], norm=norm), disabled=MODEL_CHECKS[:5])
    assert status(sane, "unbounded-attack") == "ok", sane


def test_nan_logits(digits):
    model, x, y = digits
    nan_some = Then(model, after=lambda z: torch.where(z[:, :1] > z.mean(), z, torch.full_like(z, float("nan"))))
    results = run_checks(context(nan_some, x, y, [budget_cell(len(y), 0.1)]))
    assert status(results, "nan-logits") == "warn"
    assert all(r.status in ("ok", "warn", "skipped") for r in results)


def test_adversarial_nan_logits_reported_by_a_cell():
    n = 10
    finite = torch.ones(n, dtype=torch.bool)
    finite[3] = False
    cell = CellView("a", 0.1, "white-box", False, torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool),
                    finite)
    ctx = CheckContext(tiny_model().eval(), torch.rand(n, 1, 8, 8), torch.zeros(n, dtype=torch.long),
                       torch.zeros(n, 10), cells=[cell])
    result = run_checks(ctx, disabled=set(CHECKS) - {"nan-logits"})
    assert status(result, "nan-logits") == "warn" and "1 adversarial points of a" in result[3].message


# --- the checks on constructed cells -------------------------------------------------------------
def mask(n: int, *on: int) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[list(on)] = True
    return m


def cell(attack: str, eps: float, broken: torch.Tensor, kind: str = "white-box", single_step: bool = False,
         evaluated: torch.Tensor | None = None, **extras) -> CellView:
    evaluated = torch.ones(len(broken), dtype=torch.bool) if evaluated is None else evaluated
    return CellView(attack, eps, kind, single_step, broken, evaluated, None, extras)


def cell_checks(cells: list[CellView], n: int) -> list[CheckResult]:
    """run_checks with the model checks disabled: only what the cells say is looked at."""
    ctx = CheckContext(tiny_model().eval(), torch.rand(n, 1, 8, 8), torch.zeros(n, dtype=torch.long),
                       torch.zeros(n, 10), cells=cells)
    return run_checks(ctx, disabled=MODEL_CHECKS)


def message(results: list[CheckResult], name: str) -> str:
    return next(r.message for r in results if r.name == name)


def test_black_box_beats_white_box():
    n = 20
    cells = [cell("pgd", 0.1, mask(n, 0, 1)), cell("fgsm", 0.1, mask(n, 0), single_step=True),
             cell("square", 0.1, mask(n, 0, 1, 5, 7), kind="score"),
             cell("square", 0.2, mask(n, 0, 1), kind="score")]  # no white-box cell at 0.2: not compared
    results = cell_checks(cells, n)
    assert status(results, "black-box-beats-white-box") == "warn"
    assert "square (score) broke 2 points at eps=0.1" in message(results, "black-box-beats-white-box")
    cells[2] = cell("square", 0.1, mask(n, 1), kind="score")
    assert status(cell_checks(cells, n), "black-box-beats-white-box") == "ok"
    assert status(cell_checks(cells[:2], n), "black-box-beats-white-box") == "skipped"


def test_black_box_in_cascade_counts_only_points_a_white_box_cell_saw():
    n = 10
    # cascade, the transfer cell ran first: what it broke the white-box cell never saw
    transfer = cell("transfer", 0.1, mask(n, 0, 1), kind="transfer")
    white = cell("pgd", 0.1, mask(n, 2), evaluated=~mask(n, 0, 1))
    assert status(cell_checks([transfer, white], n), "black-box-beats-white-box") == "ok"


def test_iterative_weaker_than_single_step():
    n = 100
    single = cell("fgsm", 0.1, mask(n, *range(40)), single_step=True)
    iterative = cell("pgd", 0.1, mask(n, *range(10)))
    results = cell_checks([single, iterative], n)
    assert status(results, "iterative-beats-single-step") == "warn"
    assert "pgd broke 10.0% and the single-step fgsm 40.0% of the same 100 points" in message(
        results, "iterative-beats-single-step")
    assert status(cell_checks([single, cell("pgd", 0.1, mask(n, *range(45)))], n),
                  "iterative-beats-single-step") == "ok"
    # cascade: the iterative attack only saw what the single step left standing, so no comparison
    cascade = cell("pgd", 0.1, mask(n, 50), evaluated=~mask(n, *range(40)))
    assert status(cell_checks([single, cascade], n), "iterative-beats-single-step") == "skipped"
    # an attack aimed at the least-likely class is set only against one aimed alike (iter_ll against step_ll, not
    # against the untargeted step_FGSM): a step toward one class breaks fewer points than a step off the label
    iter_ll = replace(cell("iter-ll", 0.1, mask(n, *range(10))), aims_at="least-likely")
    assert status(cell_checks([single, iter_ll], n), "iterative-beats-single-step") == "skipped"
    step_ll = replace(cell("step-ll", 0.1, mask(n, *range(40)), single_step=True), aims_at="least-likely")
    assert status(cell_checks([single, iter_ll, step_ll], n), "iterative-beats-single-step") == "warn"
    assert "iter-ll broke 10.0% and the single-step step-ll 40.0%" in message(
        cell_checks([single, iter_ll, step_ll], n), "iterative-beats-single-step")


def test_eps_monotonic():
    n = 100
    cells = [cell("pgd", 0.1, mask(n, *range(50))), cell("pgd", 0.2, mask(n, *range(20))),
             cell("fgsm", 0.1, mask(n, *range(30))), cell("fgsm", 0.2, mask(n, *range(29)))]  # within noise
    results = cell_checks(cells, n)
    assert status(results, "eps-monotonic") == "warn"
    assert message(results, "eps-monotonic").count("%") == 2  # pgd only, not fgsm's 1-point dip
    assert "pgd: 80.0% at eps=0.2 > 50.0% at eps=0.1" in message(results, "eps-monotonic")
    assert status(cell_checks(cells[2:], n), "eps-monotonic") == "ok"
    assert status(cell_checks(cells[:1], n), "eps-monotonic") == "skipped"


def test_incomplete_optimization():
    n, steps = 10, 50
    t = torch.arange(steps + 1, dtype=torch.float64)
    rising = cell("pgd", 0.1, mask(n), loss_trace=(0.05 * t).tolist())
    levelled = cell("pgd", 0.2, mask(n), loss_trace=1 - torch.exp(-t / 4))
    noisy_flat = cell("apgd", 0.1, mask(n), loss_trace=torch.tensor([0.0, 1.0, 0.9, 1.0, 0.95, 1.0] * 5))
    results = cell_checks([rising, levelled, noisy_flat], n)
    assert status(results, "incomplete-optimization") == "warn"
    assert message(results, "incomplete-optimization").startswith("pgd at eps=0.1: 10.0% of the loss's rise")
    assert status(cell_checks([levelled, noisy_flat], n), "incomplete-optimization") == "ok"
    assert status(cell_checks([cell("pgd", 0.1, mask(n))], n), "incomplete-optimization") == "skipped"


def test_incomplete_optimization_reads_per_sample_traces_of_the_points_left_standing():
    n, steps = 10, 20
    t = torch.arange(steps + 1, dtype=torch.float32)
    rows = torch.stack([t if i < 5 else 1 - torch.exp(-t) for i in range(n)])  # points 0-4 still rising
    standing_rise = cell("pgd", 0.1, mask(n, 5, 6, 7, 8, 9), loss_trace=rows)
    results = cell_checks([standing_rise], n)
    assert status(results, "incomplete-optimization") == "warn"
    assert "on the 5 points it left standing" in message(results, "incomplete-optimization")
    broken_rise = cell("pgd", 0.1, mask(n, 0, 1, 2, 3, 4), loss_trace=rows)  # CE of a broken point may grow on
    assert status(cell_checks([broken_rise], n), "incomplete-optimization") == "ok"
    all_broken = cell("pgd", 0.1, ~mask(n), loss_trace=rows)
    assert status(cell_checks([all_broken], n), "incomplete-optimization") == "skipped"


def test_silent_success():
    n = 10
    lost = cell("pgd", 0.1, mask(n, 0), ever_broken=mask(n, 0, 1, 2))
    kept = cell("pgd", 0.2, mask(n, 0, 1), ever_broken=mask(n, 0, 1))
    # a point the cell did not evaluate is not read
    other = cell("fgsm", 0.1, mask(n), evaluated=mask(n, 0), ever_broken=mask(n, 5))
    results = cell_checks([lost, kept, other], n)
    assert status(results, "silent-success") == "warn"
    assert message(results, "silent-success").startswith("pgd at eps=0.1: 2 points")
    assert status(cell_checks([kept, other], n), "silent-success") == "ok"
    assert status(cell_checks([cell("pgd", 0.1, mask(n))], n), "silent-success") == "skipped"


# --- run_checks itself ---------------------------------------------------------------------------
def test_results_order_json_and_doc_anchors():
    results = cell_checks([], 4)
    assert [r.name for r in results] == list(CHECKS) and len(CHECKS) == 13
    assert all(r.status == "skipped" and "--no-check" in r.message for r in results if r.name in MODEL_CHECKS)
    assert results[0].to_json() == {"name": "softmax-output", "status": "skipped", "message": results[0].message,
                                    "doc": "docs/checks.md#softmax-output"}
    headings = re.findall(r"^## (\S+)$", DOCS.read_text(), flags=re.MULTILINE)
    assert headings == list(CHECKS)


def test_unknown_check_name_has_close_matches():
    with pytest.raises(ValueError, match=r"unknown check 'zero-gradient'; did you mean 'zero-gradients'\?"):
        check_names(["zero-gradient"])
    assert check_names(["zero-gradients"]) == {"zero-gradients"}
    assert check_names("zero-gradients") == {"zero-gradients"}  # one name, not its letters
    assert check_names(["logit-scale"], CHECKS) == {"logit-scale"}  # a plugin's, among the installed ones


def test_a_check_that_raises_is_skipped_with_its_error():
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("forward exploded")

    n = 6
    ctx = CheckContext(Broken(), torch.rand(n, 1, 8, 8), torch.zeros(n, dtype=torch.long), torch.randn(n, 10),
                       cells=[cell("pgd", 0.1, mask(n))])
    results = run_checks(ctx)
    assert status(results, "softmax-output") == "ok"  # from the clean logits, no forward
    assert status(results, "randomized-model") == "skipped"
    assert "RuntimeError: forward exploded" in message(results, "randomized-model")


def test_model_state_is_restored():
    model = tiny_model()  # train mode, parameters requiring grad
    grads = [torch.ones_like(p) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    n = 8
    ctx = context(model, torch.rand(n, 1, 8, 8), torch.zeros(n, dtype=torch.long), [budget_cell(n, 0.1)])
    model.train()
    run_checks(ctx)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is g for p, g in zip(model.parameters(), grads))


def test_context_rejects_bad_inputs():
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="y must be int64"):
        CheckContext(tiny_model(), x, torch.zeros(4, dtype=torch.int32), torch.zeros(4, 10))
    with pytest.raises(ValueError, match="cells"):
        CheckContext(tiny_model(), x, torch.zeros(4, dtype=torch.long), torch.zeros(4, 10),
                     cells=[budget_cell(5, 0.1)])
    with pytest.raises(ValueError, match="kind must be one of"):
        CellView("a", 0.1, "grey-box", False, mask(4), mask(4))


def test_traced_ascent(digits):
    model, x, y = digits
    threat = robustreg.ThreatModel("linf", 0.1)
    trace = traced_ascent(model, x, y, threat, loss=ce, steps=10, step_size=0.05)
    assert trace.loss_trace.shape == (len(y), 11)
    assert trace.loss_trace[:, -1].mean() > trace.loss_trace[:, 0].mean()
    with torch.no_grad():
        assert torch.allclose(trace.loss_trace[:, 0], ce(model(x), y))
        assert torch.allclose(trace.loss_trace[:, -1], ce(model(trace.x_adv), y))
        best_broken = model(trace.x_best).argmax(1) != y
        last_broken = model(trace.x_adv).argmax(1) != y
    assert torch.equal(best_broken, trace.ever_broken) and bool((trace.ever_broken >= last_broken).all())
    assert bool(threat.contains(trace.x_best, x).all()) and bool(threat.contains(trace.x_adv, x).all())
    assert set(trace.extras()) == {"loss_trace", "ever_broken"}


# --- sane models: no check warns -----------------------------------------------------------------
def judged(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the evaluation records from an adversarial point: broken (NaN counts), finite logits."""
    with torch.no_grad():
        logits = model(x_adv)
    finite = torch.isfinite(logits).all(dim=1)
    return (logits.argmax(dim=1) != y) | ~finite, finite


def spread(correct: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-sample values of the attacked (clean-correct) points, put back in place among all N points."""
    out = values.new_zeros((len(correct), *values.shape[1:]))
    out[correct] = values
    return out


def evaluated_cells(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: tuple[float, ...],
                    steps: int) -> list[CellView]:
    """Independent cells on the clean-correct points, judged by the model like the evaluation does: PGD-CE
    (from the clean point, step 2.5 eps / steps, traced, returning its first adversarial point), FGSM, and
    a random-corner decision attack."""
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    xs, ys = x[correct], y[correct]
    gen = torch.Generator().manual_seed(1)
    cells = []
    for eps in eps_list:
        threat = robustreg.ThreatModel("linf", eps)
        trace = traced_ascent(model, xs, ys, threat, loss=ce, steps=steps, step_size=2.5 * eps / steps)
        fgsm = traced_ascent(model, xs, ys, threat, loss=ce, steps=1, step_size=eps).x_adv
        corner = (xs + eps * torch.randn(xs.shape, generator=gen).sign()).clamp(0, 1)
        for name, x_adv, single, kind, extras in (("pgd", trace.x_best, False, "white-box", trace.extras()),
                                                  ("fgsm", fgsm, True, "white-box", {}),
                                                  ("corner", corner, False, "decision", {})):
            broken, finite = judged(model, x_adv, ys)
            cells.append(CellView(name, eps, kind, single, spread(correct, broken), correct,
                                  spread(correct, finite) | ~correct,
                                  {key: spread(correct, value) for key, value in extras.items()}))
    return cells


def test_no_check_warns_on_a_sane_digits_model(digits):
    model, x, y = digits
    results = run_checks(context(model, x, y, evaluated_cells(model, x, y, (0.03, 0.06, 0.1), steps=40)))
    assert warned(results) == set(), [r for r in results if r.status == "warn"]
    assert {r.name for r in results if r.status == "skipped"} == set(), results


def test_no_check_warns_on_the_pgd_trained_lenet5(lenet_mnist):
    """The shared PGD-trained LeNet-5 and 200 MNIST test images (conftest's fixture; skips without them),
    evaluated at eps 0.1 and 0.3 with 40-step PGD as its checkpoint was."""
    model, x, y = lenet_mnist
    results = run_checks(context(model, x, y, evaluated_cells(model, x, y, (0.1, 0.3), steps=40)))
    assert warned(results) == set(), [r for r in results if r.status == "warn"]
    assert {r.name for r in results if r.status == "skipped"} == set(), results
    assert "CE(15 cos theta)" in message(results, "logit-scale")
