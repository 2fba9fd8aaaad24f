"""Paper 000 fidelity options: the released code's clipped eps draw and Kurakin et al.'s truncated one, and
Algorithm 1's batch composition (m images in B', k of them adversarial) for bidirectional, pivot and cascade."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from robustreg.testing import tiny_batch, tiny_model
from robustreg_plugins.cascade import Bidirectional, Cascade, Kurakin, Pivot, build_cascade_store, load_cascade_store
from robustreg_plugins.cascade.defenses import craft_one_step, draw_eps

MAX_E = 16 / 255


def _batch(n=8, seed=0):
    x, y = tiny_batch(n, seed=seed)
    return (x * 255).round() / 255, y


# --- eps distribution ------------------------------------------------------------------------------
def test_truncated_eps_never_hit_max_and_match_the_truncated_half_normal():
    n, sigma = 40_000, MAX_E / 2
    eps = draw_eps(n, MAX_E, torch.Generator().manual_seed(0), "truncated").double()
    top = float(torch.tensor(MAX_E))
    assert float(eps.min()) >= 0 and float(eps.max()) < top
    assert int((eps == top).sum()) == 0
    # half-normal truncated at a = 2 sigma: E = sigma sqrt(2/pi) (1 - exp(-2)) / P(|Z| < 2)
    mean = sigma * math.sqrt(2 / math.pi) * (1 - math.exp(-2)) / math.erf(2 / math.sqrt(2))
    assert abs(float(eps.mean()) - mean) < 0.01 * sigma
    # KS against the truncated CDF erf(e / (sigma sqrt 2)) / erf(sqrt 2)
    cdf = torch.erf(eps.sort().values / (sigma * math.sqrt(2))) / math.erf(math.sqrt(2))
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert float((cdf - empirical).abs().max()) < 1.95 / math.sqrt(n)


def test_clipped_eps_put_455_percent_on_max():
    eps = draw_eps(40_000, MAX_E, torch.Generator().manual_seed(1), "clipped")
    share = float((eps == torch.tensor(MAX_E)).double().mean())
    assert abs(share - math.erfc(math.sqrt(2))) < 0.006  # P(|Z| > 2) = 0.0455


def test_defaults_follow_the_released_code_and_the_option_reaches_the_draw():
    # the default changed from "truncated" to "clipped" (issue 24): the released code's get_intensity clips
    assert Kurakin().eps_distribution == "clipped" and Pivot().eps_distribution == "clipped"
    model, (x, y) = tiny_model(), _batch(8)
    out = Kurakin(seed=3, eps_distribution="truncated").loss(model, x, y)
    expected = draw_eps(4, MAX_E, torch.Generator().manual_seed(3), "truncated").mean()
    assert out.metrics["mean_eps"] == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="eps_distribution"):
        Kurakin(eps_distribution="uniform")


# --- batch composition -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Bidirectional, Pivot])
@pytest.mark.parametrize("m, frac, k", [(128, 1.0, 64), (8, 1.0, 4), (9, 0.5, 3), (6, 0.0, 0)])
def test_split_gives_m_images_with_k_adversarial(cls, m, frac, k):
    model, (x, y) = tiny_model(), _batch(m)
    out = cls(adv_fraction=frac).loss(model, x, y)  # "split" is the default
    assert out.logits_adv.shape[0] == k and out.logits_clean.shape[0] == m - k


@pytest.mark.parametrize("cls", [Bidirectional, Pivot])
def test_added_keeps_the_whole_batch_and_adds_k(cls):
    model, (x, y) = tiny_model(), _batch(8)
    out = cls(composition="added").loss(model, x, y)
    assert out.logits_adv.shape[0] == 8 and out.logits_clean.shape[0] == 8


def test_split_loss_by_hand():
    """m = 8: B' = 4 step_ll copies of x[:4] + x[:4] clean; lambda_2 sums over the 4 pairs only."""
    model, (x, y) = tiny_model().eval(), _batch(8)
    ref = copy.deepcopy(model)
    out = Bidirectional(seed=0).loss(model, x, y)
    eps = draw_eps(4, MAX_E, torch.Generator().manual_seed(0))
    x_adv = craft_one_step(ref, x[:4], y[:4], eps, "step_ll")
    logits = ref(torch.cat([x_adv, x[:4]]))
    ce = F.cross_entropy(logits, torch.cat([y[:4], y[:4]]), reduction="none")
    expected = (ce[4:].sum() + 0.3 * ce[:4].sum()) / (4 + 0.3 * 4) + 1e-4 * ((logits[:4] - logits[4:]) ** 2).sum()
    assert torch.allclose(out.loss, expected, rtol=1e-5, atol=1e-7)


@pytest.fixture
def store(tmp_path):
    x, y = _batch(24, seed=2)
    build_cascade_store(tiny_model(seed=7).eval(), (x, y), tmp_path / "s", source_id="tiny-7", seed=0)
    return load_cascade_store(tmp_path / "s")


@pytest.mark.parametrize("m, fresh, stored, clean", [(128, 32, 32, 64), (8, 2, 2, 4), (12, 3, 3, 6)])
def test_cascade_split_is_paper_table5(store, m, fresh, stored, clean):
    defense = Cascade(store=store)
    assert defense.counts(m) == (fresh, stored, clean)
    model, (x, y) = tiny_model(), _batch(m)
    out = defense.loss(model, x, y)
    assert out.logits_adv.shape[0] == fresh + stored and out.logits_clean.shape[0] == clean
    assert out.logits_adv.shape[0] + out.logits_clean.shape[0] == m


def test_cascade_added_is_the_former_composition(store):
    assert Cascade(store=store, composition="added").counts(8) == (4, 4, 8)
