"""Paper 000's attacks: iteration count, least-likely target, clipping, and the update rules by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustreg import ThreatModel
from robustreg.testing import tiny_batch, tiny_model
from robustreg_plugins.cascade import IterFGSM, IterLL, StepFGSM, StepLL
from robustreg_plugins.cascade.attacks import default_iterations


@pytest.mark.parametrize("eps255, steps", [
    (0, 1), (1, 1), (2, 2), (4, 5), (8, 10), (10, 12), (16, 20), (32, 36), (64, 68),
])
def test_iteration_count_formula(eps255, steps):
    # int(min(eps + 4, 1.25 eps)) on the 255 scale, at least 1
    assert default_iterations(eps255 / 255) == steps
    assert IterFGSM(ThreatModel("linf", eps255 / 255)).iterations == steps


def test_explicit_steps_override_formula():
    assert IterLL(ThreatModel("linf", 16 / 255), steps=3).iterations == 3


def _grad(model, x, labels):
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), labels, reduction="sum"), xr)
    return g


def test_step_ll_targets_argmin_of_logits():
    model, (x, y) = tiny_model().eval(), tiny_batch()
    eps = 8 / 255
    with torch.no_grad():
        y_ll = model(x).argmin(1)
    assert not torch.equal(y_ll, y)
    expected = (x - eps * _grad(model, x, y_ll).sign()).clamp(0, 1)
    assert torch.allclose(StepLL(ThreatModel("linf", eps))(model, x, y), expected, atol=1e-6)


def test_step_fgsm_by_hand():
    model, (x, y) = tiny_model().eval(), tiny_batch()
    eps = 8 / 255
    expected = (x + eps * _grad(model, x, y).sign()).clamp(0, 1)
    assert torch.allclose(StepFGSM(ThreatModel("linf", eps))(model, x, y), expected, atol=1e-6)


def _clip(v, x, eps):
    return torch.minimum(torch.maximum(v, (x - eps).clamp(min=0)), (x + eps).clamp(max=1))


def test_iter_fgsm_by_hand():
    model, (x, y) = tiny_model().eval(), tiny_batch()
    eps, alpha = 4 / 255, 1 / 255
    xa = x.clone()
    for _ in range(default_iterations(eps)):
        xa = _clip(xa + alpha * _grad(model, xa, y).sign(), x, eps)
    assert torch.allclose(IterFGSM(ThreatModel("linf", eps))(model, x, y), xa, atol=1e-6)


def _iter_ll_by_hand(model, x, eps, alpha, steps, *, repick):
    """iter_ll written out: the targets used at each step and the final iterate."""
    xa, targets = x.clone(), []
    with torch.no_grad():
        y_clean_ll = model(x).argmin(1)
    for _ in range(steps):
        with torch.no_grad():
            y_ll = model(xa).argmin(1) if repick else y_clean_ll
        targets.append(y_ll)
        xa = _clip(xa - alpha * _grad(model, xa, y_ll).sign(), x, eps)
    return xa, targets


def test_iter_ll_default_target_is_the_clean_least_likely_class_at_every_step():
    """The authors' released code (utils.py, get_adver_image) fixes y_LL at the clean image."""
    model, (x, y) = tiny_model().eval(), tiny_batch(16)
    eps, alpha, steps = 0.3, 0.05, 6
    fixed, targets = _iter_ll_by_hand(model, x, eps, alpha, steps, repick=False)
    with torch.no_grad():
        clean_ll = model(x).argmin(1)
    assert all(torch.equal(t, clean_ll) for t in targets)
    repicked, moving = _iter_ll_by_hand(model, x, eps, alpha, steps, repick=True)
    # the fixture must tell the two rules apart, or this test could not fail
    assert any(not torch.equal(t, clean_ll) for t in moving[1:]), "the re-picked target never changed: weak test"
    assert not torch.allclose(fixed, repicked, atol=1e-3)
    attack = IterLL(ThreatModel("linf", eps), alpha=alpha, steps=steps)
    assert attack.target == "clean"
    # atol 1e-6: the same float32 ops in the same order; sign() only flips on exact zeros
    assert torch.allclose(attack(model, x, y), fixed, atol=1e-6)


def test_iter_ll_every_step_option_rechooses_target_each_iteration():
    """Paper 000's text ("we change the target every iteration"), kept as target="every-step"."""
    model, (x, y) = tiny_model().eval(), tiny_batch(16)
    eps, alpha = 0.3, 0.05
    xa, targets = _iter_ll_by_hand(model, x, eps, alpha, 6, repick=True)
    assert any(not torch.equal(t, targets[0]) for t in targets[1:]), "the target never changed: weak test"
    got = IterLL(ThreatModel("linf", eps), alpha=alpha, steps=6, target="every-step")(model, x, y)
    assert torch.allclose(got, xa, atol=1e-6)
    with pytest.raises(ValueError, match="target"):
        IterLL(ThreatModel("linf", eps), target="moving")


@pytest.mark.parametrize("cls", [IterFGSM, IterLL])
def test_clipping_to_eps_cube_and_box(cls):
    model, (x, y) = tiny_model().eval(), tiny_batch()
    eps = 3 / 255
    x_adv = cls(ThreatModel("linf", eps), alpha=2 / 255, steps=10)(model, x, y)
    delta = x_adv - x
    assert float(delta.abs().max()) <= eps + 1e-7
    # many coordinates reach the cube's face, and the box holds where x sits at 0 or 1
    assert float((delta.abs() > eps - 1e-6).float().mean()) > 0.3
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert bool((x_adv[:, :, 0, :] >= 0).all()) and bool((x_adv[:, :, -1, :] <= 1).all())


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"alpha": -1 / 255}, {"steps": 0}, {"steps": 1.5}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        IterFGSM(ThreatModel("linf", 8 / 255), **kwargs)


def test_paper_tag_and_registry(registry):
    names = [s.name for s in registry.list_attacks(paper="000")]
    assert names == ["iter-fgsm", "iter-ll", "step-fgsm", "step-ll"]
