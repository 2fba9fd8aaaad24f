"""fgsm, pgd, pgd-cw, pgd-dlr: formulas, restarts, targeting, and two published robust accuracies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustreg import ThreatModel
from robustreg.testing import tiny_batch, tiny_model
from robustreg_plugins.classic import FGSM, PGD, PGDCW, PGDDLR
from robustreg_plugins.classic.losses import attack_loss, cw_margin, dlr_loss


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# --- losses by hand -----------------------------------------------------------------------------
LOGITS = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 4.0, 1.0]])
LABELS = torch.tensor([0, 1])


def test_cw_margin_by_hand():
    assert cw_margin(LOGITS, LABELS).tolist() == [1.0 - 3.0, 4.0 - 2.0]
    assert cw_margin(LOGITS, LABELS, kappa=1.5).tolist() == [-2.0, 1.5]


def test_dlr_by_hand():
    # sample 0: -(3 - 1) / (3 - 0.5); sample 1: -(2 - 4) / (4 - 1)
    assert torch.allclose(dlr_loss(LOGITS, LABELS), torch.tensor([-2 / 2.5, 2 / 3]))
    # targeted (t = 3, 0): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    target = torch.tensor([3, 0])
    expected = torch.tensor([-(3 - -1) / (3 - (0.5 - 1) / 2), -(2 - 0) / (4 - (1 + 0) / 2)])
    assert torch.allclose(dlr_loss(LOGITS, LABELS, target), expected)


def test_dlr_needs_three_classes():
    with pytest.raises(ValueError, match="3 classes"):
        dlr_loss(torch.zeros(1, 2), torch.tensor([0]))


def test_ce_loss_is_summed_and_targeted_sign():
    ce = F.cross_entropy(LOGITS, LABELS, reduction="sum")
    assert torch.allclose(attack_loss("ce", LOGITS, LABELS), ce)
    assert torch.allclose(attack_loss("ce", LOGITS, LABELS, LABELS), -ce)
    with pytest.raises(ValueError, match="loss must be one of"):
        attack_loss("hinge", LOGITS, LABELS)


# --- attack mechanics ---------------------------------------------------------------------------
def test_fgsm_is_one_signed_step():
    model, (x, y) = tiny_model().eval(), tiny_batch()
    eps = 0.05
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    expected = (x + eps * g.sign()).clamp(0, 1)
    assert torch.allclose(FGSM(ThreatModel("linf", eps))(model, x, y), expected, atol=1e-6)


def test_pgd_without_random_start_first_step_is_fgsm():
    model, (x, y) = tiny_model(), tiny_batch()
    t = ThreatModel("linf", 0.05)
    one = PGD(t, steps=1, step_size=0.05, random_start=False)(model, x, y)
    assert torch.allclose(one, FGSM(t)(model, x, y), atol=1e-6)


def test_step_size_defaults_to_quarter_eps():
    assert PGD(ThreatModel("linf", 0.08)).effective_step_size == pytest.approx(0.02)
    assert PGD(ThreatModel("l2", 1.0), step_size=0.3).effective_step_size == 0.3


@pytest.mark.parametrize("cls", [PGD, PGDCW, PGDDLR])
@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_pgd_family_lowers_accuracy(cls, norm, eps):
    model, (x, y) = tiny_model().eval(), tiny_batch(32)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point starts correctly classified
    x_adv = cls(ThreatModel(norm, eps), steps=10, seed=0)(model, x, y)
    assert _acc(model, x_adv, y) < 0.5
    assert bool(ThreatModel(norm, eps).contains(x_adv, x).all())


def test_restarts_only_add_broken_samples():
    model, (x, y) = tiny_model().eval(), tiny_batch(64)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = ThreatModel("linf", 0.03)
    one = PGD(t, steps=3, seed=5)(model, x, y)
    many = PGD(t, steps=3, restarts=4, seed=5)(model, x, y)
    with torch.no_grad():
        broken_one = model(one).argmax(1) != y
        broken_many = model(many).argmax(1) != y
    # the first restart draws the same random start, so every sample broken by it stays broken
    assert bool((broken_many | ~broken_one).all())
    assert int(broken_many.sum()) >= int(broken_one.sum())


def test_targeted_pgd_reaches_target():
    model, (x, y) = tiny_model().eval(), tiny_batch(32)
    with torch.no_grad():
        target = model(x).topk(2, dim=1).indices[:, 1]  # the runner-up class
    x_adv = PGD(ThreatModel("linf", 0.3), steps=20, seed=0)(model, x, y, target=target)
    with torch.no_grad():
        hit = float((model(x_adv).argmax(1) == target).float().mean())
    assert hit > 0.8


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"step_size": 0}, "step_size"),
    ({"step_size": -1.0}, "step_size"), ({"restarts": 0}, "restarts"), ({"loss": "hinge"}, "loss"),
    ({"random_start": "yes"}, "random_start"), ({"kappa": 0}, "kappa"),
])
def test_pgd_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PGD(ThreatModel(), **kwargs)


def test_fgsm_rejects_l2_and_bad_step():
    with pytest.raises(ValueError, match="norm"):
        FGSM(ThreatModel("l2", 0.5))
    with pytest.raises(ValueError, match="step_size"):
        FGSM(ThreatModel(), step_size=-0.1)


# --- published robust accuracies on real checkpoints ----------------------------------------------
def test_pgd40_on_adversarially_trained_lenet(mnist_dir, models_dir):
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("lenet5-mnist", weights=models_dir / "mnist_lenet5_advtrained.pt")
    x, y = load_data(f"mnist:{mnist_dir}").tensors(1000)
    x_adv = PGD(ThreatModel("linf", 0.3), steps=40, step_size=0.01, random_start=True, seed=0)(model, x, y)
    robust = _acc(model, x_adv, y)
    assert abs(robust - 0.936) <= 0.02, f"PGD-40 robust accuracy {robust:.3f}, published ~0.936"


def test_pgd20_on_resnet4b(cifar_npz, models_dir):
    from robustreg.data import load_data
    from robustreg.models import build_model

    model = build_model("resnet4b", weights=models_dir / "resnet4b.pth")
    x, y = load_data(f"npz:{cifar_npz}").tensors()
    assert x.shape[0] == 932
    x_adv = PGD(ThreatModel("linf", 2 / 255), steps=20, seed=0)(model, x, y)
    robust = _acc(model, x_adv, y)
    assert abs(robust - 0.61) <= 0.02, f"PGD-20 2/255 robust accuracy {robust:.3f}, published ~0.61"
