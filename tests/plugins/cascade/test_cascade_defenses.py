"""Paper 000's defenses: each loss against the paper's formula by hand, batch composition, the eps
distribution, pivot's gradient, the cascade store and its command."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F

from robustreg.testing import tiny_batch, tiny_model
from robustreg_plugins.cascade import (
    Bidirectional,
    Cascade,
    CascadeStore,
    Kurakin,
    Pivot,
    build_cascade_store,
    load_cascade_store,
)
from robustreg_plugins.cascade.defenses import craft_one_step, draw_eps, similarity_loss
from robustreg_plugins.cascade.store import STORE_FILE, stored_eps_law, weights_hash

MAX_E = 16 / 255


def _batch(n=8, seed=0):
    x, y = tiny_batch(n, seed=seed)
    return (x * 255).round() / 255, y  # on the 1/255 grid, like real uint8 images


def _replay_eps(seed: int, n: int) -> torch.Tensor:
    return draw_eps(n, MAX_E, torch.Generator().manual_seed(seed))


# --- eps distribution ------------------------------------------------------------------------------
def test_eps_are_clipped_half_normal():
    """|N(0, max_e/2)| clipped to [0, max_e]: range, point mass at max_e, mean, and the CDF (KS)."""
    n, sigma = 40_000, MAX_E / 2
    # "clipped" is the default again (issue 24: the authors' released code clips); checked explicitly
    eps = draw_eps(n, MAX_E, torch.Generator().manual_seed(0), "clipped").double()
    top = float(torch.tensor(MAX_E))  # max_e as float32
    assert float(eps.min()) >= 0 and float(eps.max()) <= top
    p_clip = math.erfc(2 / math.sqrt(2))  # P(|Z| > 2) = 0.0455
    assert abs(float((eps == top).double().mean()) - p_clip) < 0.006
    # E[min(|Z|, 2)] * sigma = sigma * (sqrt(2/pi) * (1 - exp(-2)) + 2 * P(|Z| > 2))
    mean = sigma * (math.sqrt(2 / math.pi) * (1 - math.exp(-2)) + 2 * p_clip)
    assert abs(float(eps.mean()) - mean) < 0.02 * sigma
    # Kolmogorov-Smirnov distance to the CDF erf(e / (sigma sqrt 2)) below max_e; 1.95 / sqrt(n) is
    # the 0.1% critical value
    below = eps[eps < top].sort().values
    cdf = torch.erf(below / (sigma * math.sqrt(2)))
    empirical = torch.arange(1, below.numel() + 1, dtype=torch.float64) / n
    assert float((cdf - empirical).abs().max()) < 1.95 / math.sqrt(n)


# --- crafting --------------------------------------------------------------------------------------
def _grad(model, x, labels):
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), labels, reduction="sum"), xr)
    return g


@pytest.mark.parametrize("method", ["step_ll", "step_fgsm", "step_both"])
def test_one_step_crafting_by_hand(method):
    model, (x, y) = tiny_model(), _batch()
    eps = torch.linspace(0, MAX_E, 8)
    model.eval()
    with torch.no_grad():
        y_ll = model(x).argmin(1)
    g_ll, g_fgsm = _grad(model, x, y_ll), _grad(model, x, y)
    ll = (x - eps.view(-1, 1, 1, 1) * g_ll.sign()).clamp(0, 1)
    fg = (x + eps.view(-1, 1, 1, 1) * g_fgsm.sign()).clamp(0, 1)
    expected = {"step_ll": ll, "step_fgsm": fg, "step_both": torch.cat([ll[:4], fg[4:]])}[method]
    model.train()
    got = craft_one_step(model, x, y, eps, method)
    assert torch.allclose(got, expected, atol=1e-6)
    assert model.training  # crafted in eval mode, mode restored


# --- losses against the paper's formula ------------------------------------------------------------
def test_kurakin_loss_by_hand():
    model, (x, y) = tiny_model(), _batch(8)
    ref = copy.deepcopy(model)  # the defense's train-mode forward moves BatchNorm statistics
    out = Kurakin(seed=3).loss(model, x, y)
    model = ref
    k, m, lam = 4, 8, 0.3
    x_adv = craft_one_step(model, x[:k], y[:k], _replay_eps(3, k), "step_ll")
    logits = model(torch.cat([x_adv, x[k:]]))  # train mode, one forward of B'
    ce = F.cross_entropy(logits, torch.cat([y[:k], y[k:]]), reduction="none")
    expected = (ce[k:].sum() + lam * ce[:k].sum()) / ((m - k) + lam * k)
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert out.logits_adv.shape[0] == k and out.logits_clean.shape[0] == m - k
    assert out.loss.requires_grad


@pytest.mark.parametrize("cls, pivot", [(Bidirectional, False), (Pivot, True)])
@pytest.mark.parametrize("power, embedding", [(2, "logits"), (1, "logits"), (2, "features")])
def test_similarity_losses_by_hand(cls, pivot, power, embedding):
    model, (x, y) = tiny_model(), _batch(6)
    lam, lam2 = 0.3, 0.01
    ref = copy.deepcopy(model)
    # "added": the former default, B = 6 clean + 6 copies ("split" is checked in test_fidelity_*.py)
    out = cls(seed=1, lam2=lam2, power=power, embedding=embedding, composition="added").loss(model, x, y)
    model = ref
    k = 6  # every clean image gets an adversarial copy
    x_adv = craft_one_step(model, x, y, _replay_eps(1, k), "step_ll")
    batch = torch.cat([x_adv, x])
    logits = model(batch)
    e = logits if embedding == "logits" else model[:-1](batch)
    ce = F.cross_entropy(logits, torch.cat([y, y]), reduction="none")
    # L_dist as the authors' code computes it: tf.nn.l2_loss = 1/2 sum of squares (N = 2), sum |.| (N = 1)
    dist = (e[:k] - e[k:]).abs().sum() if power == 1 else 0.5 * ((e[:k] - e[k:]) ** 2).sum()
    expected = (ce[k:].sum() + lam * ce[:k].sum()) / (k + lam * k) + lam2 * dist
    assert torch.allclose(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert out.metrics["distance"] == pytest.approx(float(dist.detach()), rel=1e-4)
    assert out.logits_adv.shape[0] == k and out.logits_clean.shape[0] == 6


def test_pivot_passes_no_gradient_to_the_clean_embedding():
    g = torch.Generator().manual_seed(0)
    e_adv = torch.randn(4, 10, generator=g, requires_grad=True)
    e_clean = torch.randn(4, 10, generator=g, requires_grad=True)
    grads = torch.autograd.grad(similarity_loss(e_adv, e_clean, 2, pivot=True), [e_adv, e_clean], allow_unused=True)
    assert grads[1] is None and torch.allclose(grads[0], (e_adv - e_clean).detach())  # d/dE of 1/2 |E - c|^2
    gb = torch.autograd.grad(similarity_loss(e_adv, e_clean, 2, pivot=False), [e_adv, e_clean])
    assert torch.allclose(gb[1], -gb[0])


def test_detached_pivot_gradient_reaches_parameters_only_through_adversarial_branch():
    """With lam = 0 the loss is CE_clean / B + 1/2 |E(x_adv) - E(x)|^2; with ``detach_pivot`` pivot's
    parameter gradient equals the one computed by hand with E(x) held constant in the distance; the
    default pivot's (the authors' released code: no stop-gradient) is bidirectional's, which differs."""
    model, (x, y) = tiny_model().eval(), _batch(4)  # eval: BatchNorm statistics stay put between calls
    head = model[-1].weight

    def grad_of(cls, **kw):
        # "added": every image of the batch stays clean (the default "split" would use only half of it)
        out = cls(seed=0, lam=0.0, lam2=1.0, adv_fraction=1.0, composition="added", **kw).loss(model, x, y)
        return torch.autograd.grad(out.loss, head)[0]

    x_adv = craft_one_step(model, x, y, _replay_eps(0, 4), "step_ll")
    both = model(torch.cat([x_adv, x]))
    ce = F.cross_entropy(both[4:], y, reduction="sum") / 4
    manual = torch.autograd.grad(ce + 0.5 * ((both[:4] - both[4:].detach()) ** 2).sum(), head, retain_graph=True)[0]
    through = torch.autograd.grad(ce + 0.5 * ((both[:4] - both[4:]) ** 2).sum(), head)[0]
    assert torch.allclose(grad_of(Pivot, detach_pivot=True), manual, atol=1e-5)
    assert torch.allclose(grad_of(Bidirectional), through, atol=1e-5)
    assert torch.allclose(grad_of(Pivot), through, atol=1e-5)
    assert not torch.allclose(through, manual, atol=1e-5)


@pytest.mark.slow
def test_pivot_trains_on_the_claim3_recipe_where_the_detached_pivot_blows_up(tmp_path):
    """Regression (issue 11): LeNet-5 on digits28 at lr 0.05, momentum 0.9 (benchmarks/reproduce claim 3).
    The former pivot (clean logits detached, L_dist = sum of squares) went to NaN at step ~75: the
    detached pivot runs away from the adversarial logits and both grow geometrically.  The default
    pivot (the authors' released code) stays finite with logits of the same size as bidirectional's."""
    from robustreg import TrainConfig, build_model, load_data, train

    def run(name, **params):
        cfg = TrainConfig(model="lenet5-mnist", data="digits28", defense="pivot",
                          defense_params={"method": "step_ll", "max_eps": 32 / 255, "seed": 0, **params},
                          iterations=90, lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=64, augment=False,
                          schedule="constant", seed=0, out=str(tmp_path / name), quiet=True, device="cpu",
                          checkpoint_every=0)
        return train(cfg)

    torch.set_num_threads(1)
    final = run("default")
    model = build_model("lenet5-mnist", weights=str(final)).eval()
    x, y = load_data("digits28", "train").tensors(256)
    with torch.no_grad():
        logits = model(x)
    assert torch.isfinite(logits).all()
    assert float(logits.norm(dim=1).mean()) < 100  # the detached run had passed 2000 before NaN
    assert float((logits.argmax(1) == y).float().mean()) > 0.5  # far above chance (0.1)
    with pytest.raises(FloatingPointError):  # the former behaviour, kept as detach_pivot=True (lam2 doubled:
        run("detached", detach_pivot=True, lam2=2e-4)  # the old sum of squares), still diverges


@pytest.mark.parametrize("m, frac, k", [(8, 0.5, 4), (128, 0.5, 64), (10, 0.25, 2), (6, 0.0, 0)])
def test_kurakin_batch_composition(m, frac, k):
    model, (x, y) = tiny_model(), _batch(m)
    out = Kurakin(k_fraction=frac).loss(model, x, y)
    assert out.logits_adv.shape[0] == k and out.logits_clean.shape[0] == m - k


def test_state_dict_makes_eps_draws_resumable():
    model, (x, y) = tiny_model(), _batch(8)
    a = Kurakin(seed=5)
    a.loss(model, x, y)
    state = a.state_dict()
    first = a.loss(model, x, y).metrics["mean_eps"]
    b = Kurakin(seed=99)
    b.load_state_dict(state)
    assert b.loss(model, x, y).metrics["mean_eps"] == first
    with pytest.raises(ValueError, match="generator"):
        b.load_state_dict({"other": 1})


@pytest.mark.parametrize("cls, kwargs, match", [
    (Kurakin, {"method": "iter_ll"}, "method"), (Kurakin, {"max_eps": 16}, "max_eps"),
    (Kurakin, {"k_fraction": 1.5}, "k_fraction"), (Kurakin, {"lam": -1}, "lam"),
    (Pivot, {"power": 3}, "power"), (Pivot, {"embedding": "cos"}, "embedding"), (Pivot, {"lam2": -1}, "lam2"),
    (Bidirectional, {"adv_fraction": 2}, "adv_fraction"),
])
def test_bad_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# --- cascade store and cascade training ------------------------------------------------------------
@pytest.fixture
def store_dir(tmp_path):
    source = tiny_model(seed=7).eval()
    x, y = _batch(24, seed=2)
    build_cascade_store(source, (x, y), tmp_path / "s", source_id="tiny-7", seed=0)
    return tmp_path / "s", source, x, y


def test_store_round_trip(store_dir):
    path, source, x, y = store_dir
    assert (path / STORE_FILE).is_file() and not list(path.glob(".cascade_store.*"))  # atomic: no temp left
    store = load_cascade_store(path)
    # eps_mode="all" (the released code's one dataset per eps): every image at every eps 1..16, eps-major
    assert len(store) == 24 * 16 and store.source_id == "tiny-7" and store.source_hash == weights_hash(source)
    assert store.x_adv.dtype == torch.uint8  # on the 1/255 grid: stored exactly
    clean, adv, labels = store.get(torch.arange(24 * 16))
    assert torch.equal(clean, x.repeat(16, 1, 1, 1)) and torch.equal(labels, y.repeat(16))
    eps255 = (store.eps * 255).round()
    assert torch.equal(eps255, torch.arange(1, 17).repeat_interleave(24).float())
    assert bool(((adv - clean).abs().amax(dim=(1, 2, 3)) <= store.eps + 1e-6).all())
    assert bool(((adv - clean).abs().amax(dim=(1, 2, 3)) > 0).all())


def test_store_images_are_iter_fgsm_of_the_source(store_dir):
    from robustreg import ThreatModel
    from robustreg_plugins.cascade import IterFGSM

    path, source, x, y = store_dir
    store = load_cascade_store(path)
    i = 11 * 24 + 5  # image 5 at eps 12/255
    e = float(store.eps[i])
    assert round(e * 255) == 12
    expected = IterFGSM(ThreatModel("linf", e))(source, x[5:6], y[5:6])
    assert torch.allclose(store.get(torch.tensor([i]))[1], expected, atol=1 / 510)


def test_stored_eps_follow_the_released_code_law():
    """P(eps = e) = P(e - 1 <= |N(0, 8)| < e) for e < 16, the rest (|N(0, 8)| >= 15) at 16; mean 6.73."""
    n = 40_000
    eps = stored_eps_law(n, 16, torch.Generator().manual_seed(0))
    assert int(eps.min()) >= 1 and int(eps.max()) <= 16

    def half_normal_cdf(v):
        return math.erf(v / (8 * math.sqrt(2)))

    p = [half_normal_cdf(e) - half_normal_cdf(e - 1) for e in range(1, 16)] + [1 - half_normal_cdf(15)]
    mean = sum(e * q for e, q in zip(range(1, 17), p))
    assert 6.7 < mean < 6.76  # 6.73 (the issue said ~6.9), against 8.5 for uniform 1..16
    # 4 standard errors of a mean of n draws of sd < 4.5
    assert abs(float(eps.double().mean()) - mean) < 4 * 4.5 / math.sqrt(n)
    for e in (1, 8, 16):
        share = float((eps == e).double().mean())
        assert abs(share - p[e - 1]) < 4 * math.sqrt(p[e - 1] * (1 - p[e - 1]) / n)


def test_store_draw_laws_and_a_store_missing_an_eps(store_dir, tmp_path):
    path, source, x, y = store_dir
    store = load_cascade_store(path)
    index = store.draw(4000, torch.Generator().manual_seed(1))
    eps255 = (store.eps[index] * 255).round()
    assert 6.5 < float(eps255.mean()) < 7.3  # the released code's law, not uniform's 8.5
    uniform = store.draw(4000, torch.Generator().manual_seed(1), law="uniform")
    assert 8.1 < float((store.eps[uniform] * 255).round().mean()) < 8.9
    build_cascade_store(source, (x[:4], y[:4]), tmp_path / "one", source_id="tiny-7", eps_mode="uniform")
    one = load_cascade_store(tmp_path / "one")
    assert len(one) == 4 and one.meta["eps_mode"] == "uniform"
    with pytest.raises(ValueError, match="eps_mode='all'"):
        one.draw(64, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="law"):
        store.draw(4, torch.Generator(), law="beta")
    with pytest.raises(ValueError, match="eps_mode"):
        build_cascade_store(source, (x, y), tmp_path / "bad", source_id="tiny-7", eps_mode="some")


def test_refuses_mixed_sources(store_dir, tmp_path):
    path, _, x, y = store_dir
    build_cascade_store(tiny_model(seed=8).eval(), (x, y), tmp_path / "other", source_id="tiny-8")
    build_cascade_store(tiny_model(seed=7).eval(), (x[:4], y[:4]), tmp_path / "same", source_id="tiny-7")
    assert len(load_cascade_store([path, tmp_path / "same"])) == (24 + 4) * 16
    with pytest.raises(ValueError, match="different sources"):
        load_cascade_store([path, tmp_path / "other"])
    with pytest.raises(ValueError, match="expected"):
        load_cascade_store(path, expect_source_hash="0" * 64)
    with pytest.raises(FileNotFoundError):
        load_cascade_store(tmp_path / "missing")


def test_cascade_batch_composition_and_loss(store_dir):
    path, _, _, _ = store_dir
    model, (x, y) = tiny_model(), _batch(8, seed=4)
    ref = copy.deepcopy(model)
    # "added" (the former default; "split", paper 000's m = k + (m - k), is tested in test_fidelity_*.py)
    defense = Cascade(store=path, seed=2, composition="added")
    out = defense.loss(model, x, y)
    model = ref
    # B = 8 clean: 4 fresh step_ll + 4 stored adversarial; the stored clean images replace x[4:]
    assert out.logits_adv.shape[0] == 8 and out.logits_clean.shape[0] == 8
    gen = torch.Generator().manual_seed(2)
    # the released code's law, written out: eps = clip(floor(clip(|N(0, 8)|, 0, 16)), 0, 15) + 1, then image
    # floor(u * 24) at that eps (entry (eps - 1) * 24 + image in the eps-major store)
    eps255 = ((torch.randn(4, generator=gen, dtype=torch.float64) * 8).abs().clamp(0, 16).floor().clamp(0, 15) + 1)
    image = (torch.rand(4, generator=gen, dtype=torch.float64) * 24).floor()
    index = ((eps255 - 1) * 24 + image).long()
    eps = draw_eps(4, MAX_E, gen)
    store = load_cascade_store(path)
    s_clean, s_adv, s_y = store.get(index)
    x_fresh = craft_one_step(model, x[:4], y[:4], eps, "step_ll")
    x_clean, y_clean = torch.cat([x[:4], s_clean]), torch.cat([y[:4], s_y])
    x_adv, y_adv = torch.cat([x_fresh, s_adv]), torch.cat([y[:4], s_y])
    logits = model(torch.cat([x_adv, x_clean]))
    ce = F.cross_entropy(logits, torch.cat([y_adv, y_clean]), reduction="none")
    dist = ((logits[:8] - logits[8:]) ** 2).sum()  # pairs: fresh i -> clean i, stored j -> clean 4 + j
    expected = (ce[8:].sum() + 0.3 * ce[:8].sum()) / (8 + 0.3 * 8) + 1e-4 * dist
    assert torch.allclose(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_cascade_without_similarity_and_bad_store(store_dir):
    path, _, _, _ = store_dir
    model, (x, y) = tiny_model(), _batch(8)
    out = Cascade(store=load_cascade_store(path), distance=None).loss(model, x, y)
    assert "distance" not in out.metrics
    with pytest.raises(TypeError, match="store"):
        Cascade(store=3)
    with pytest.raises(ValueError, match="fresh_fraction"):
        Cascade(store=path, fresh_fraction=0.8, stored_fraction=0.5)
    with pytest.raises(ValueError):
        CascadeStore(torch.zeros(2, 1, 2, 2), torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long),
                     torch.zeros(2), "s", "h")


def test_cascade_store_argument_forms(store_dir, registry):
    """A directory, a list of them (config: joined with os.pathsep, which builds the same), a CascadeStore."""
    path, _, _, _ = store_dir
    single = Cascade(store=path)
    assert single.config["store"] == str(path) and len(single.store) == 24 * 16
    double = Cascade(store=[path, str(path)])
    assert double.config["store"] == os.pathsep.join([str(path)] * 2) and len(double.store) == 2 * 24 * 16
    assert len(registry.build_defense("cascade", store=double.config["store"]).store) == 2 * 24 * 16
    assert Cascade(store=load_cascade_store(path)).config["store"].startswith("<CascadeStore of 'tiny-7'")
    with pytest.raises(TypeError, match="store is required"):
        Cascade()
    with pytest.raises(TypeError, match="store"):
        Cascade(store=[path, 3])
    with pytest.raises(ValueError, match="expected"):
        Cascade(store=load_cascade_store(path), expect_source_hash="0" * 64)


def test_registered(registry):
    for name in ("kurakin", "bidirectional", "pivot", "cascade"):
        assert registry.defense(name).info.paper == "000"
    assert "cascade-store" in registry.entries("commands")


def test_cascade_store_command(tmp_path, registry):
    from robustreg.cli import main

    out = tmp_path / "cmd"
    status = main(["cascade-store", "--source", "digits-cnn", "--data", "digits", "--split", "test", "--out", str(out),
                   "--n", "12", "--seed", "1", "--eps-max", "4"], registry=registry)
    assert status == 0
    store = load_cascade_store(out)
    assert len(store) == 12 * 4 and store.source_id == "digits-cnn" and store.meta["eps_mode"] == "all"
    status = main(["cascade-store", "--source", "digits-cnn", "--data", "digits", "--split", "test", "--out",
                   str(tmp_path / "uni"), "--n", "12", "--seed", "1", "--eps-mode", "uniform"], registry=registry)
    assert status == 0 and len(load_cascade_store(tmp_path / "uni")) == 12


def test_trainer_runs_every_paper_defense(tmp_path, registry):
    from robustreg.models import build_model
    from robustreg.training import TrainConfig, train

    build_cascade_store(build_model("digits-cnn"), _digits(16), tmp_path / "store", source_id="digits-cnn-init")
    cases = [("kurakin", {"method": "step_both"}), ("bidirectional", {}),
             ("pivot", {"embedding": "features", "power": 1}), ("cascade", {"store": str(tmp_path / "store")})]
    for name, params in cases:
        final = train(TrainConfig(model="digits-cnn", data="digits", defense=name, defense_params=params, iterations=2,
                                  batch_size=16, out=str(tmp_path / name), device="cpu", quiet=True), registry=registry)
        assert final.is_file()


def _digits(n):
    from robustreg.data import load_data

    return load_data("digits", "train").tensors(n)
