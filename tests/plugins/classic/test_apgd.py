"""apgd: conformance, the schedule and the l1 projection by hand, AutoAttack's own APGD (same start: the
same iterates; same samples: the same robust accuracy), the SI loss's scale invariance, bad parameters."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import nn

from robustreg import ParamError, ThreatModel
from robustreg.testing import check_attack, separable_batch, tiny_model, trained_tiny_model
from robustreg_plugins.classic import apgd
from robustreg_plugins.classic.apgd import APGD, checkpoints, project_l1_box


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _toolkit_apgd():
    """AutoAttack's APGD module: the official package if installed, else pyautoattack (skip if neither)."""
    for name in ("autoattack.autopgd_base", "pyautoattack.autopgd_base"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("neither autoattack nor pyautoattack is installed")


# --- the conformance kit ----------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["ce", "dlr", "cw", "si"])
def test_conforms_for_every_loss_and_norm(registry, loss):
    check_attack(registry.attack("apgd"), params={"steps": 4, "loss": loss})  # linf, l2 and l1


def test_conforms_as_apgd_t(registry):
    check_attack(registry.attack("apgd"), params={"steps": 4, "loss": "dlr", "targeted": True,
                                                  "n_target_classes": 3, "restarts": 2})


# --- the schedule and the projection by hand --------------------------------------------------------------
def test_checkpoints_follow_the_paper_for_100_steps():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), as fractions of 100 steps
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    paper = [round(100 * q) for q in p[1:]]
    assert paper == [22, 41, 57, 70, 80, 87, 93, 99]
    assert [w for w, _ in checkpoints(100)] == paper
    assert [k for _, k in checkpoints(100)] == [22, 19, 16, 13, 10, 7, 6, 6]


def test_checkpoints_integer_form_for_few_steps():
    # int(0.22 * 10) = 2 steps first, then intervals of max(2 - int(0.3), 1) = 1 (every interval >= 1)
    assert [w for w, _ in checkpoints(10)] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [(1, 1)]
    assert [w for w, _ in checkpoints(50)] == [11, 21, 30, 38, 45]  # 11, then -1 each: 10, 9, 8, 7 (>= 3)


def _project_by_bisection(v: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """d_i = sign(v_i) min(max(|v_i| - lam, 0), room_i), lam found by bisection (float64, one sample)."""
    a, room = v.abs().double(), torch.where(v > 0, 1 - x, x).double()
    mass = lambda lam: float(torch.minimum((a - lam).clamp_min(0), room).sum())  # noqa: E731
    lo, hi = 0.0, float(a.max()) if mass(0.0) > eps else 0.0  # lam = 0 where the box alone fits the ball
    if hi > 0:
        for _ in range(200):
            lo, hi = ((lo + hi) / 2, hi) if mass((lo + hi) / 2) > eps else (lo, (lo + hi) / 2)
    return (v.sign().double() * torch.minimum((a - hi).clamp_min(0), room)).float()


@pytest.mark.parametrize("eps", [0.5, 3.0, 40.0])  # 40: the box binds before the ball
def test_l1_box_projection_against_bisection(eps):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(6, 1, 5, 5, generator=gen)
    v = torch.randn(6, 1, 5, 5, generator=gen) * 2
    d = project_l1_box(v, x, eps, (0.0, 1.0))
    for i in range(len(x)):
        assert torch.allclose(d[i].flatten(), _project_by_bisection(v[i].flatten(), x[i].flatten(), eps),
                              atol=1e-5)
    assert bool((d.flatten(1).abs().sum(1) <= eps + 1e-4).all())
    assert bool(((x + d) >= 0).all() and ((x + d) <= 1).all())


def test_l1_projection_keeps_a_point_already_inside():
    x = torch.full((1, 1, 2, 2), 0.5)
    v = torch.tensor([[[[0.1, -0.2], [0.0, 0.05]]]])
    assert torch.equal(project_l1_box(v, x, 1.0, (0.0, 1.0)), v)


# --- AutoAttack's APGD ------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_same_iterates_as_autoattack_from_the_same_start(lenet_mnist, monkeypatch, norm, eps):
    """From one start, AutoAttack's ``attack_single_run`` and ours return the same points bit for bit.

    One documented difference: at the first checkpoint AutoAttack compares the first step's loss with
    0 (the unset last row of its ``loss_steps``), where the paper (and apgd) compares it with the loss
    at the start; the samples where the two comparisons agree must agree exactly.
    """
    toolkit = _toolkit_apgd()
    model, x, y = lenet_mnist
    with torch.no_grad():
        keep = (model(x[:60]).argmax(1) == y[:60]).nonzero().squeeze(1)
    x, y = x[keep], y[keep]
    threat, steps = ThreatModel(norm, eps), 30
    start = (x + 0.8 * eps * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).sign()
             / (1 if norm == "linf" else math.sqrt(x[0].numel()))).clamp(0, 1)
    monkeypatch.setattr(apgd._Run, "_start", lambda self, generator: start.clone())
    ours = APGD(threat, steps=steps, seed=0).run(model, x, y)

    theirs = toolkit.APGDAttack(model, n_iter=steps, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps,
                                loss="ce", device=x.device)
    theirs.init_hyperparam(x)
    x_best, standing, _, x_adv_found = theirs.attack_single_run(x, y, x_init=start.clone())
    expected = torch.where((~standing).view(-1, 1, 1, 1), x_adv_found, x_best)

    trace = ours.extras["loss_trace"]
    same_first_count = (trace[:, 1] > trace[:, 0]) == (trace[:, 1] > 0)
    assert int(same_first_count.sum()) >= len(x) // 2
    # float rounding only: the Attack base's final projection x + (x_adv - x) may move a pixel by an ulp
    diff = (ours.x_adv - expected.detach()).abs().flatten(1).amax(1)
    assert float(diff[same_first_count].max()) < 1e-6, diff


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_robust_accuracy_within_one_point_of_autoattack(registry, lenet_mnist, loss):
    """eps 0.3, the PGD-trained LeNet-5 and the fixture's 200 images: native ``apgd`` at AutoAttack's
    standard settings (100 steps, 1 restart) within 1 point of the ``autoattack:apgd-<loss>`` entry
    (AutoAttack's own APGD through the adapter), both seed 0.  About 20 s a run on one thread."""
    model, x, y = lenet_mnist
    threat = ThreatModel("linf", 0.3)
    ours = _accuracy(model, registry.build_attack("apgd", threat, loss=loss, seed=0)(model, x, y), y)
    theirs = _accuracy(model, registry.build_attack(f"autoattack:apgd-{loss}", threat, seed=0)(model, x, y), y)
    assert 0.8 < theirs < 1.0
    assert abs(ours - theirs) <= 0.01 + 1e-9, f"apgd ({loss}) {ours:.3f} vs autoattack:apgd-{loss} {theirs:.3f}"


# --- behaviour ----------------------------------------------------------------------------------------------
class _Scaled(nn.Module):
    """``model``'s logits times ``factor``: a temperature after the head, which embed() does not see."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


def test_si_loss_is_invariant_to_the_logit_scale():
    model = trained_tiny_model()
    x, y = separable_batch(16, seed=4)
    threat = ThreatModel("linf", 0.3)
    plain = APGD(threat, loss="si", steps=20, seed=1).run(model, x, y)
    scaled = APGD(threat, loss="si", steps=20, seed=1).run(_Scaled(model, 1000.0), x, y)
    assert torch.allclose(plain.x_adv, scaled.x_adv, atol=1e-6)
    assert torch.allclose(plain.extras["loss_trace"], scaled.extras["loss_trace"], atol=1e-5)
    assert _accuracy(model, plain.x_adv, y) < 1.0  # it attacks at all
    # the cross-entropy of the scaled logits is not invariant: its trace is in other units
    ce_plain = APGD(threat, loss="ce", steps=20, seed=1).run(model, x, y)
    ce_scaled = APGD(threat, loss="ce", steps=20, seed=1).run(_Scaled(model, 1000.0), x, y)
    assert not torch.allclose(ce_plain.extras["loss_trace"], ce_scaled.extras["loss_trace"], rtol=0.1)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5), ("l1", 2.0)])
def test_extras_and_returned_points(norm, eps):
    model = trained_tiny_model()
    x, y = separable_batch(24, seed=2)
    result = APGD(ThreatModel(norm, eps), steps=12, seed=0).run(model, x, y)
    trace, ever = result.extras["loss_trace"], result.extras["ever_broken"]
    assert trace.shape == (24, 13) and ever.shape == (24,)
    with torch.no_grad():
        broken = model(result.x_adv).argmax(1) != y
    assert torch.equal(broken, ever)  # a point broken on the way is returned broken (no silent success)
    assert 0 < int(broken.sum()) < 24


@pytest.mark.parametrize("norm, eps", [("linf", 0.01), ("l1", 0.5)])
def test_later_restarts_only_add_broken_points(norm, eps):
    model = tiny_model().eval()  # untrained: a bumpy loss, where the start matters
    x, _ = separable_batch(40, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)

    def broken(restarts: int) -> torch.Tensor:
        attack = APGD(ThreatModel(norm, eps), steps=3, restarts=restarts, seed=3)
        with torch.no_grad():
            return model(attack(model, x, y)).argmax(1) != y

    one, five = broken(1), broken(5)
    assert bool((five | ~one).all()) and int(five.sum()) > int(one.sum())


def test_targeted_call_and_apgd_t():
    model = trained_tiny_model()
    x, y = separable_batch(20, seed=6)
    with torch.no_grad():
        target = model(x).topk(2, dim=1).indices[:, 1]
    threat = ThreatModel("linf", 0.3)
    x_adv = APGD(threat, loss="dlr", steps=20, seed=0)(model, x, y, target=target)
    with torch.no_grad():
        assert float((model(x_adv).argmax(1) == target).float().mean()) > 0.8
    small = ThreatModel("linf", 0.1)

    def apgd_t(n_target_classes: int) -> float:
        attack = APGD(small, loss="dlr", targeted=True, n_target_classes=n_target_classes, steps=10, seed=0)
        return _accuracy(model, attack(model, x, y), y)

    assert apgd_t(5) <= apgd_t(1) < 1.0


def test_too_many_target_classes_for_the_model():
    model = trained_tiny_model(num_classes=4)
    x, y = separable_batch(4, num_classes=4)
    with pytest.raises(ValueError, match="n_target_classes=9 needs a model with at least 10 classes, got 4"):
        APGD(ThreatModel("linf", 0.1), targeted=True, loss="dlr", steps=2)(model, x, y)


@pytest.mark.parametrize("kwargs, match", [
    ({"rho": 1.5}, "rho"), ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"), ({"loss": "hinge"}, "loss"),
    ({"momentum": 0.0}, "momentum"), ({"n_target_classes": 0}, "n_target_classes"), ({"s": -1.0}, "s"),
    ({"stepz": 10}, "did you mean steps"),
])
def test_bad_parameter_is_a_one_line_error(kwargs, match):
    with pytest.raises((ParamError, TypeError), match=match) as info:
        APGD(ThreatModel(), **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith("apgd")
