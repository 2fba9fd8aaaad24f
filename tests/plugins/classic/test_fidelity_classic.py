"""Fidelity options of the classic defenses, each against its formula by hand: train-mode crafting
(rfgsm-at, grad-align), GradAlign's unclamped noise point and zero-norm exclusion, ALP's Kannan form,
MART's normal start."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreg_plugins.classic.defense_single_step import RFGSMAT, GradAlign
from robustreg_plugins.classic.defenses import ALP, MART

EPS = 8 / 255


def bn_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 10)).train()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(8, 1, 8, 8, generator=gen), torch.tensor([0, 3, 5, 7, 9, 2, 1, 4])


def hand_forward(model: nn.Sequential, x: torch.Tensor, *, batch_stats: bool) -> torch.Tensor:
    """The BatchNorm model's logits with BN on the batch's statistics (train) or its running ones (eval)."""
    lin1, bn, lin2 = model[1], model[2], model[4]
    h = lin1(x.flatten(1))
    if batch_stats:
        mean, var = h.mean(0), h.var(0, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    h = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    return lin2(torch.tanh(h))


def hand_fgsm(model, x, y, start, step, *, batch_stats):
    xr = start.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(hand_forward(model, xr, batch_stats=batch_stats), y, reduction="sum"),
                               xr)
    return torch.min(torch.max(start + step * g.sign(), x - EPS), x + EPS).clamp(0, 1)


@pytest.mark.parametrize("cls", [RFGSMAT, GradAlign])
def test_train_mode_crafting_uses_batch_statistics(cls, batch):
    x, y = batch
    model = bn_model()
    with torch.no_grad():  # running statistics far from this batch's, so the two modes differ
        model[2].running_mean.fill_(3.0)
        model[2].running_var.fill_(9.0)
    d = cls(random_start=False)
    assert d.craft_mode == "train"
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    got = d.adversarial(model, x, y)
    model.load_state_dict(ref)
    want = hand_fgsm(model, x, y, x, d.step_size, batch_stats=True)
    other = hand_fgsm(model, x, y, x, d.step_size, batch_stats=False)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, other, atol=1e-6)
    model.load_state_dict(ref)
    got_eval = cls(random_start=False, craft_mode="eval").adversarial(model, x, y)
    assert torch.allclose(got_eval, other, atol=1e-6)


def test_train_mode_crafting_restores_the_mode_and_updates_running_stats_like_the_authors(batch):
    x, y = batch
    model = bn_model().eval()
    before = model[2].running_mean.clone()
    RFGSMAT(seed=0).adversarial(model, x, y)
    assert not model.training and not model[2].training  # the caller's mode comes back
    assert not torch.equal(model[2].running_mean, before)  # the crafting forward ran in train mode


# --- GradAlign --------------------------------------------------------------------------------------
def test_grad_align_noise_point_is_not_clamped(batch):
    x, y = batch
    x = x.clone()
    x[:, :, :2] = 0.0  # pixels at the box edge: x + eta leaves [0, 1] there
    model = bn_model()
    # a large eta (any noise may be passed in) so that clipping x + eta changes the cosine visibly
    noise = 0.5 * (torch.rand(x.shape, generator=torch.Generator().manual_seed(9)) * 2 - 1)
    d = GradAlign(craft_mode="eval")
    x_adv = d.adversarial(model, x, y)
    out = d.objective(model, x, x_adv, y, noise=noise)

    def cos_at(point):
        x0 = x.clone().requires_grad_(True)
        (g1,) = torch.autograd.grad(F.cross_entropy(model(x0), y), x0)
        x1 = point.clone().requires_grad_(True)
        (g2,) = torch.autograd.grad(F.cross_entropy(model(x1), y), x1, create_graph=True)
        g1, g2 = g1.flatten(1), g2.flatten(1)
        return ((g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))).mean()

    ce = F.cross_entropy(model(x_adv), y)
    assert torch.allclose(out.loss, ce + 0.2 * (1 - cos_at(x + noise)), atol=1e-6)
    clamped = GradAlign(craft_mode="eval", clamp_noise=True).objective(model, x, x_adv, y, noise=noise)
    assert torch.allclose(clamped.loss, ce + 0.2 * (1 - cos_at((x + noise).clamp(0, 1))), atol=1e-6)
    assert abs(out.metrics["grad_cosine"] - clamped.metrics["grad_cosine"]) > 1e-4


def test_grad_align_excludes_zero_norm_gradients():
    g1 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    g2 = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    # only row 0 has two nonzero gradients: cos = 1 / sqrt(2)
    assert float(GradAlign().mean_cosine(g1, g2)) == pytest.approx(2 ** -0.5)
    # counted: rows 1 and 2 give cos = 0
    assert float(GradAlign(zero_gradients="count").mean_cosine(g1, g2)) == pytest.approx(2 ** -0.5 / 3)
    # nothing to align: 1 - cos = 0
    assert float(GradAlign().mean_cosine(torch.zeros(2, 3), torch.ones(2, 3))) == 1.0


# --- ALP ----------------------------------------------------------------------------------------------
def test_alp_kannan_form_is_mean_squared_logit_difference_on_one_mixed_batch(batch):
    x, y = batch
    model = bn_model()
    x_adv = (x + EPS * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))).clamp(0, 1)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    out = ALP(form="kannan").objective(model, x, x_adv, y)
    model.load_state_dict(ref)
    logits = hand_forward(model, torch.cat([x, x_adv]), batch_stats=True)  # ONE batch: shared BN statistics
    lc, la = logits[:8], logits[8:]
    pairing = ((lc - la) ** 2).sum() / (8 * 10)
    want = 0.5 * F.cross_entropy(lc, y) + 0.5 * F.cross_entropy(la, y) + 3.0 * pairing
    assert torch.allclose(out.loss, want, atol=1e-6)
    assert out.metrics["loss_pairing"] == pytest.approx(float(pairing.detach()), rel=1e-5)


def test_alp_default_is_paper004_form(batch):
    x, y = batch
    model = bn_model().eval()
    x_adv = (x + 0.02).clamp(0, 1)
    out = ALP().objective(model, x, x_adv, y)
    z, za, w = model[:-1](x), model[:-1](x_adv), model[-1].weight
    pairing = ((z - za) @ w.T).norm(dim=1).mean()  # L2, not squared
    want = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(x_adv), y) + 3.0 * pairing
    assert ALP().form == "paper004" and torch.allclose(out.loss, want, atol=1e-6)


# --- MART's start -----------------------------------------------------------------------------------
def test_mart_starts_from_normal_noise_by_default(batch):
    x, _ = batch
    d = MART(seed=4)
    assert d.init == "normal"
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(4 * 1_000_003 + 2))
    assert torch.allclose(d.start_point(x, 2), (x + 0.001 * noise).clamp(0, 1))
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(4 * 1_000_003 + 2)) * 2 - 1
    assert torch.allclose(MART(seed=4, init="uniform").start_point(x, 2), (x + EPS * uniform).clamp(0, 1))
    assert torch.equal(MART(seed=4, random_start=False).start_point(x, 2), x)
