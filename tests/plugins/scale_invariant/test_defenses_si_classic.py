"""The SI mechanism on every classic defense (the ``*-si`` entries): each formula by hand.

Moved from the classic plugin's tests when the SI mechanism moved here: the classic defenses no
longer take ``si=True``; the ``<defense>-si`` entries compose :class:`SIMechanism` onto them.  The
formulas are recomputed with plain torch (z = model[:-1](x), W = model[-1].weight), never through
the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreg_plugins.scale_invariant.mechanism import si_margin_ce

S, M, BETA = 15.0, 0.2, 0.2
EPS = 8 / 255
CLASSIC = ["at", "trades", "alp", "mart", "free-at", "rfgsm-at", "gat", "grad-align"]


def tiny_model(seed: int = 0, bn: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, 32)]
    if bn:
        layers += [nn.BatchNorm1d(32), nn.Dropout(0.1)]
    layers += [nn.Tanh(), nn.Linear(32, 10)]
    return nn.Sequential(*layers).train()


@pytest.fixture
def model() -> nn.Sequential:
    return tiny_model()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 8, 8, generator=gen)
    y = torch.tensor([0, 3, 5, 7, 9, 2])
    return x, y


# --- the formulas, by hand -------------------------------------------------------------------------
def features(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return model[:-1](x)


def hand_cos(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    z = features(model, x)
    w = model[-1].weight
    return (z @ w.T) / (z.norm(dim=1, keepdim=True) * w.norm(dim=1)[None, :])


def hand_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (torch.logsumexp(logits, dim=1) - logits.gather(1, y[:, None]).squeeze(1)).mean()


def hand_si_term(model: nn.Sequential, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Paper 004 eq. 25: -log S(s * (cos(theta_y) - m)) with the margin on the true class only."""
    return hand_ce(S * (hand_cos(model, x_adv) - M * F.one_hot(y, 10).float()), y)


def hand_si_ce(model: nn.Sequential, y: torch.Tensor):
    """SI-PGD's loss CE(s * cos(theta(x')), y), summed, as a function of x'."""
    return lambda xa: F.cross_entropy(S * hand_cos(model, xa), y, reduction="sum")


def hand_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    p, q = F.softmax(logits_p, dim=1), F.softmax(logits_q, dim=1)
    return (p * (p.log() - q.log())).sum(dim=1)


def hand_pgd(loss_fn, x, start, eps, steps, step_size):
    x_adv = start.clone()
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
        x_adv = x_adv.detach() + step_size * g.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return torch.allclose(a, b, atol=tol, rtol=tol)


# --- multi-step ------------------------------------------------------------------------------------
def test_at_si_objective_is_madry_plus_si_term(registry, model, batch):
    x, y = batch
    d = registry.build_defense("at-si", seed=0)
    x_adv = d.adversarial(model, x, y, step=3)
    out = d.objective(model, x, x_adv, y)
    expected = hand_ce(model(x_adv), y) + BETA * hand_si_term(model, x_adv, y)
    assert close(out.loss, expected)
    assert out.metrics["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert out.metrics["loss_si"] == pytest.approx(hand_si_term(model, x_adv, y).item(), rel=1e-5)


def test_at_si_adversarial_is_pgd_on_si_ce(registry, model, batch):
    x, y = batch
    d = registry.build_defense("at-si", steps=4, random_start=False)
    model.eval()
    expected = hand_pgd(hand_si_ce(model, y), x, x, EPS, 4, EPS / 4)
    model.train()
    assert close(d.adversarial(model, x, y), expected, 1e-6)


# --- the ablation switches (issue 24, claim 5): each part of SI alone -----------------------------------
def test_at_si_inner_base_attacks_the_plain_ce_and_keeps_the_margin_term(registry, model, batch):
    x, y = batch
    d = registry.build_defense("at-si", inner="base", steps=4, random_start=False)
    model.eval()
    plain_ce = hand_pgd(lambda xa: F.cross_entropy(model(xa), y, reduction="sum"), x, x, EPS, 4, EPS / 4)
    si_ce = hand_pgd(hand_si_ce(model, y), x, x, EPS, 4, EPS / 4)
    model.train()
    x_adv = d.adversarial(model, x, y)
    assert close(x_adv, plain_ce, 1e-6) and not close(x_adv, si_ce, 1e-6)
    out = d.objective(model, x, x_adv, y)
    assert close(out.loss, hand_ce(model(x_adv), y) + BETA * hand_si_term(model, x_adv, y))


def test_at_si_term_logits_adds_beta_times_the_plain_ce_on_si_pgd_examples(registry, model, batch):
    x, y = batch
    d = registry.build_defense("at-si", term="logits", steps=4, random_start=False)
    model.eval()
    expected_adv = hand_pgd(hand_si_ce(model, y), x, x, EPS, 4, EPS / 4)
    model.train()
    x_adv = d.adversarial(model, x, y)
    assert close(x_adv, expected_adv, 1e-6)
    out = d.objective(model, x, x_adv, y)
    ce = hand_ce(model(x_adv), y)
    assert close(out.loss, (1 + BETA) * ce)
    assert out.metrics["loss_si"] == pytest.approx(ce.item(), rel=1e-5)


def test_at_si_beta_zero_is_at_on_si_pgd_examples(registry, model, batch):
    x, y = batch
    d = registry.build_defense("at-si", beta=0.0, steps=4, random_start=False)
    x_adv = d.adversarial(model, x, y)
    assert close(d.objective(model, x, x_adv, y).loss, hand_ce(model(x_adv), y))


def test_trades_si_objective(registry, model, batch):
    x, y = batch
    d = registry.build_defense("trades-si", seed=0)
    x_adv = d.adversarial(model, x, y)
    out = d.objective(model, x, x_adv, y)
    expected = hand_ce(model(x), y) + 6.0 * hand_kl(model(x), model(x_adv)).mean() + BETA * hand_si_term(
        model, x_adv, y)
    assert close(out.loss, expected)
    assert d.lam == 6.0


def test_alp_si_objective(registry, model, batch):
    x, y = batch
    d = registry.build_defense("alp-si", seed=0)
    assert (d.alpha, d.lam) == (0.5, 3.0)
    x_adv = d.adversarial(model, x, y)
    out = d.objective(model, x, x_adv, y)
    pairing = ((features(model, x) - features(model, x_adv)) @ model[-1].weight.T).norm(dim=1).mean()
    expected = (0.5 * hand_ce(model(x), y) + 0.5 * hand_ce(model(x_adv), y) + 3.0 * pairing
                + BETA * hand_si_term(model, x_adv, y))
    assert close(out.loss, expected)


def hand_mart(model, x, x_adv, y, lam=6.0):
    p_adv = F.softmax(model(x_adv), dim=1)
    p_nat = F.softmax(model(x), dim=1)
    p_true_adv = p_adv.gather(1, y[:, None]).squeeze(1)
    others = p_adv.masked_fill(F.one_hot(y, 10).bool(), -1.0)
    bce = -p_true_adv.log() - (1 - others.max(dim=1).values).log()
    kl = hand_kl(model(x), model(x_adv))
    return (bce + lam * kl * (1 - p_nat.gather(1, y[:, None]).squeeze(1))).mean()


def test_mart_si_objective(registry, model, batch):
    x, y = batch
    d = registry.build_defense("mart-si", seed=0)
    x_adv = d.adversarial(model, x, y)
    out = d.objective(model, x, x_adv, y)
    assert close(out.loss, hand_mart(model, x, x_adv, y) + BETA * hand_si_term(model, x_adv, y))


# --- single-step -----------------------------------------------------------------------------------
def test_rfgsm_at_si_steps_on_si_ce(registry, model, batch):
    x, y = batch
    d = registry.build_defense("rfgsm-at-si", seed=4)
    assert d.step_size == pytest.approx(1.25 * EPS)
    start = d.start_point(x, 7)
    model.eval()
    expected = hand_pgd(hand_si_ce(model, y), x, start, EPS, 1, 1.25 * EPS)
    model.train()
    x_adv = d.adversarial(model, x, y, step=7)
    assert close(x_adv, expected, 1e-6)
    out = d.objective(model, x, x_adv, y)
    assert close(out.loss, hand_ce(model(x_adv), y) + BETA * hand_si_term(model, x_adv, y))


@pytest.mark.parametrize("step", [0, 1])
def test_gat_si_guided_attack_uses_si_ce_and_objective_adds_the_term(registry, model, batch, step):
    x, y = batch
    d = registry.build_defense("gat-si", seed=2)
    assert (d.lam, d.attack_lam, d.step_size, d.noise) == (10.0, 10.0, EPS, EPS / 2)
    start = d.start_point(x, step)
    model.eval()
    p_nat = F.softmax(model(x), dim=1).detach()
    guidance = float(step % 2)

    def loss_fn(xa):
        return (F.cross_entropy(S * hand_cos(model, xa), y, reduction="sum")
                + guidance * 10.0 * ((F.softmax(model(xa), dim=1) - p_nat) ** 2).sum())

    expected = hand_pgd(loss_fn, x, start, EPS, 1, EPS)
    model.train()
    x_adv = d.adversarial(model, x, y, step=step)
    assert close(x_adv, expected, 1e-6)
    out = d.objective(model, x, x_adv, y)
    relax = ((F.softmax(model(x_adv), dim=1) - F.softmax(model(x), dim=1)) ** 2).sum(dim=1).mean()
    assert close(out.loss, hand_ce(model(x), y) + 10.0 * relax + BETA * hand_si_term(model, x_adv, y))


def test_grad_align_si_objective(registry, model, batch):
    x, y = batch
    # the former GradAlign defaults (eval-mode crafting, clamped noise point); the authors' are the
    # defaults now (tests/plugins/classic/test_fidelity_*.py)
    d = registry.build_defense("grad-align-si", craft_mode="eval", clamp_noise=True)
    assert (d.lam, d.step_size, d.random_start) == (0.2, EPS, False)
    noise = EPS * (torch.rand(x.shape, generator=torch.Generator().manual_seed(9)) * 2 - 1)
    x_adv = d.adversarial(model, x, y)
    model.eval()
    fgsm = hand_pgd(hand_si_ce(model, y), x, x, EPS, 1, EPS)
    model.train()
    assert close(x_adv, fgsm, 1e-6)
    out = d.objective(model, x, x_adv, y, noise=noise)
    x0 = x.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(F.cross_entropy(model(x0), y), x0)
    x1 = (x + noise).clamp(0, 1).requires_grad_(True)
    (g2,) = torch.autograd.grad(F.cross_entropy(model(x1), y), x1, create_graph=True)
    g1, g2 = g1.flatten(1), g2.flatten(1)
    cos = (g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))
    want = hand_ce(model(x_adv), y) + 0.2 * (1 - cos.mean()) + BETA * hand_si_term(model, x_adv, y)
    assert close(out.loss, want)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(want, params)):
        assert close(a, b, 1e-5)


def test_free_at_si_adds_the_si_term(registry, model, batch):
    x, y = batch
    d = registry.build_defense("free-at-si")
    out = d.loss(model, x, y)
    assert close(out.loss, hand_ce(model(x), y) + BETA * hand_si_term(model, x, y))


# --- the SI term: bounded, scale invariant, finite ---------------------------------------------------
def test_si_term_is_bounded_as_paper_004_argues():
    """|cos| <= 1, so 0 < CE(s (cos - m onehot), y) <= log(1 + (K-1) e^{s(2+m)}) <= log K + s (2 + m)."""
    gen = torch.Generator().manual_seed(0)
    k = 10
    for s, m in [(15.0, 0.2), (64.0, 0.5), (1.0, 0.0)]:
        cos = torch.rand(512, k, generator=gen) * 2 - 1
        y = torch.randint(0, k, (512,), generator=gen)
        value = si_margin_ce(cos, y, s, m, reduction="none")
        assert (value > 0).all() and (value <= math.log(k) + s * (2 + m)).all()
        # the worst case: cos_y = -1 and every other cos = 1 reaches log(1 + (K-1) e^{s(2+m)})
        worst = torch.ones(1, k)
        worst[0, 0] = -1.0
        top = si_margin_ce(worst, torch.tensor([0]), s, m)
        assert top.item() == pytest.approx(math.log(1 + (k - 1) * math.exp(s * (2 + m))), rel=1e-5)
        assert top.item() <= math.log(k) + s * (2 + m)


@pytest.mark.parametrize("name", CLASSIC)
def test_losses_are_finite_and_si_term_unchanged_when_logits_scale_by_1e3(registry, batch, name):
    x, y = batch
    small, big = tiny_model(4), tiny_model(4)
    with torch.no_grad():
        big[-1].weight.mul_(1e3)
        big[-1].bias.mul_(1e3)
    kwargs = {"seed": 0} if name != "free-at" else {}
    out_big = registry.build_defense(f"{name}-si", **kwargs).loss(big, x, y, step=1)
    out_big.loss.backward()
    assert torch.isfinite(out_big.loss)
    assert all(torch.isfinite(p.grad).all() for p in big.parameters() if p.grad is not None)
    # cos(theta) ignores the head's scale, so the SI term of the same x_adv is identical
    x_adv = torch.rand_like(x)
    assert close(si_margin_ce(hand_cos(small, x_adv), y, S, M), si_margin_ce(hand_cos(big, x_adv), y, S, M), 1e-4)
    assert F.cross_entropy(big(x_adv), y) > 100 * F.cross_entropy(small(x_adv), y)


# --- the contract: modes, flags, grads and the caller's tensors restored -----------------------------
@pytest.mark.parametrize("name", CLASSIC)
def test_modes_flags_grads_and_inputs_are_restored(registry, batch, name):
    x, y = batch
    model = tiny_model(5, bn=True)
    model[1].bias.requires_grad_(False)  # a frozen parameter stays frozen
    marker = torch.full_like(model[-1].weight, 7.0)
    model[-1].weight.grad = marker
    x_copy, y_copy = x.clone(), y.clone()
    stats = model[2].running_mean.clone()
    # rfgsm-at and grad-align craft in train mode by default (their authors' code); eval mode leaves
    # BatchNorm's running statistics alone
    spec = registry.defense(f"{name}-si")
    d = registry.build_defense(f"{name}-si", **({"craft_mode": "eval"} if "craft_mode" in spec.params else {}))
    x_adv = d.adversarial(model, x, y, step=1)
    assert model.training and all(mod.training for mod in model.modules())
    assert torch.equal(model[2].running_mean, stats)  # crafting ran in eval mode
    assert model[-1].weight.grad is marker and torch.equal(marker, torch.full_like(marker, 7.0))
    assert not model[1].bias.requires_grad and model[1].weight.requires_grad
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    out = d.loss(model, x, y, step=1)
    assert out.loss.requires_grad and out.loss.dim() == 0
    assert all(isinstance(v, float) for v in out.metrics.values())
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert model.training


# --- argument checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"si": "yes"}, "si"), ({"s": 0}, "s must"), ({"beta": -0.1}, "beta"), ({"m": float("nan")}, "m must"),
     ({"eps": 8}, "eps"), ({"inner": "pgd"}, "inner"), ({"term": "cos"}, "term")],
)
def test_bad_si_arguments_name_themselves(registry, kwargs, word):
    with pytest.raises(ValueError, match=word):
        registry.build_defense("at-si", **kwargs)


@pytest.mark.parametrize("name", CLASSIC)
def test_registered_and_buildable(registry, name, batch):
    defense = registry.build_defense(f"{name}-si", eps=0.1)
    assert defense.si and defense.eps == 0.1 and defense.config["si"] is True
    out = defense.loss(tiny_model(), *batch, step=0)
    assert torch.isfinite(out.loss) and "loss_si" in out.metrics
