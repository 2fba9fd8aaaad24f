"""The Attack base class enforces the contract: input checks, state restoration, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from robustreg import Attack, AttackError, AttackInfo, AttackResult, ModelState, ThreatModel
from robustreg.testing import tiny_batch, tiny_model


class Noise(Attack):
    """Uniform noise of the linf ball (randomised), the simplest conforming attack."""

    name = "noise"
    info = AttackInfo(norms=("linf",), randomized=True, targeted=True)

    def perturb(self, model, x, y, generator, target=None):
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + self.threat.eps * (2 * u - 1)).clamp(*self.threat.box)


class Raises(Attack):
    name = "raises"
    info = AttackInfo(norms=("linf",))

    def perturb(self, model, x, y, generator, target=None):
        model.train()
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = torch.ones_like(p)
        raise RuntimeError("boom")


class ReturnsNaN(Attack):
    name = "returns-nan"
    info = AttackInfo(norms=("linf",))

    def perturb(self, model, x, y, generator, target=None):
        return torch.full_like(x, float("nan"))


class WrongShape(Attack):
    name = "wrong-shape"
    info = AttackInfo(norms=("linf",))

    def perturb(self, model, x, y, generator, target=None):
        return x[:, :, :2]


class FarAway(Attack):
    """Returns points far outside the ball: the base must refuse them, not project them back."""

    name = "far-away"
    info = AttackInfo(norms=("linf", "l2"))

    def perturb(self, model, x, y, generator, target=None):
        return AttackResult(x + 5.0, queries=torch.ones(x.shape[0]), extras={"d": 1.0})


class Unprojected(Attack):
    """An iterative attack that forgets its projection: three eps * sign steps, never projected."""

    name = "unprojected"
    info = AttackInfo(norms=("linf",))

    def perturb(self, model, x, y, generator, target=None):
        x_adv = x.clone()
        for _ in range(3):
            x_adv.requires_grad_(True)
            (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x_adv), y), x_adv)
            x_adv = (x_adv.detach() + self.threat.eps * g.sign()).clamp(0, 1)  # box only, not the ball
        return x_adv


class Rounding(Attack):
    """Steps to the ball's corners and adds float rounding (a few ulps) outside the ball and the box."""

    name = "rounding"
    info = AttackInfo(norms=("linf", "l2"))

    def perturb(self, model, x, y, generator, target=None):
        x_adv = self.threat.project(x + 10.0 * (2 * (x > 0.5).to(x.dtype) - 1), x)
        return x_adv + 1e-7 * torch.sign(x_adv - x)


class ReturnsNumpy(Attack):
    name = "returns-numpy"
    info = AttackInfo(norms=("linf",))

    def perturb(self, model, x, y, generator, target=None):
        return x.numpy().copy()


@pytest.fixture
def setup():
    x, y = tiny_batch(4)
    return tiny_model(), x, y


@pytest.mark.parametrize("make, exc, match", [
    (lambda x, y: (x, y.float()), TypeError, "int64"),
    (lambda x, y: (x.double().to(torch.int32), y), TypeError, "floating-point"),
    (lambda x, y: (x, y[:2]), ValueError, "shape"),
    (lambda x, y: (x, y + 100), ValueError, r"class indices in \[0, 9\]"),
    (lambda x, y: (x, y - 100), ValueError, "class indices"),
    (lambda x, y: (x * 2 + 0.1, y), ValueError, "box"),
    (lambda x, y: (x - 0.5, y), ValueError, "box"),
    (lambda x, y: (x.masked_fill(x > 0.5, float("nan")), y), ValueError, "NaN"),
    (lambda x, y: (x[:0], y[:0]), ValueError, "non-empty"),
    (lambda x, y: (x.reshape(-1), y), ValueError, "N x C x H x W"),
])
def test_bad_inputs(setup, make, exc, match):
    model, x, y = setup
    bad_x, bad_y = make(x, y)
    with pytest.raises(exc, match=match):
        Noise(ThreatModel("linf", 0.1), seed=0)(model, bad_x, bad_y)


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="ThreatModel"):
        Noise(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supports norm"):
        Noise(ThreatModel("l2", 0.5))
    with pytest.raises(ValueError, match="seed"):
        Noise(ThreatModel(), seed=1.5)  # type: ignore[arg-type]


def test_bad_model_and_target(setup):
    model, x, y = setup
    with pytest.raises(TypeError, match="nn.Module"):
        Noise(ThreatModel())(lambda t: t, x, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target"):
        Noise(ThreatModel())(model, x, y, target=y.float())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="untargeted"):
        ReturnsNaN(ThreatModel())(model, x, y, target=y)


def test_model_returning_non_logits_rejected(setup):
    _, x, y = setup
    with pytest.raises(ValueError, match="N x K"):
        Noise(ThreatModel())(torch.nn.Flatten(0), x, y)


def test_mode_and_grads_restored_when_perturb_raises(setup):
    model, x, y = setup
    model.train()
    model[1].eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    sentinel = [torch.full_like(p, 0.5) for p in params]
    for p, s in zip(params, sentinel):
        p.grad = s
    with pytest.raises(RuntimeError, match="boom"):
        Raises(ThreatModel())(model, x, y)
    assert model.training and not model[1].training and model[0].training
    assert [p.requires_grad for p in params] == [False] + [True] * (len(params) - 1)
    assert all(p.grad is s for p, s in zip(params, sentinel))


def test_eval_mode_flag(setup):
    model, x, y = setup
    seen = []

    class Spy(Noise):
        def perturb(self, model, x, y, generator, target=None):
            seen.append(model.training)
            return super().perturb(model, x, y, generator, target)

    model.train()
    Spy(ThreatModel())(model, x, y)
    Spy(ThreatModel(), eval_mode=False)(model, x, y)
    assert seen == [False, True]
    assert model.training


def test_seed_determinism_and_global_rng(setup):
    model, x, y = setup
    before = torch.get_rng_state()
    a = Noise(ThreatModel("linf", 0.1), seed=3)(model, x, y)
    b = Noise(ThreatModel("linf", 0.1), seed=3)(model, x, y)
    assert torch.equal(torch.get_rng_state(), before)
    c = Noise(ThreatModel("linf", 0.1), seed=4)(model, x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # without a seed, two calls differ (one draw from the global RNG)
    unseeded = Noise(ThreatModel("linf", 0.1))
    assert not torch.equal(unseeded(model, x, y), unseeded(model, x, y))


def test_nan_output_raises_attack_error(setup):
    model, x, y = setup
    with pytest.raises(AttackError, match="NaN"):
        ReturnsNaN(ThreatModel())(model, x, y)


def test_wrong_shape_raises_attack_error(setup):
    model, x, y = setup
    with pytest.raises(AttackError, match="shape"):
        WrongShape(ThreatModel())(model, x, y)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_output_outside_the_ball_is_refused_not_projected(setup, norm, eps):
    model, x, y = setup
    t = ThreatModel(norm, eps)
    with pytest.raises(AttackError, match=r"far-away returned (values in|a point outside)") as info:
        FarAway(t).run(model, x, y)
    assert "\n" not in str(info.value) and "project" in str(info.value)


def test_iterative_attack_without_projection_is_refused(setup):
    model, x, y = setup
    with pytest.raises(AttackError, match=r"unprojected returned a point outside the linf eps=.* ball: "
                                          r"max linf distance 0\.3"):
        Unprojected(ThreatModel("linf", 0.1))(model, x, y)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5), ("linf", 1 / 255)])
def test_float_rounding_is_clamped_then_verified(setup, norm, eps):
    model, x, y = setup
    t = ThreatModel(norm, eps)
    result = Rounding(t).run(model, x, y)
    assert float(t.distance(result.x_adv, x).max()) <= eps * (1 + 1e-6)
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    assert not result.x_adv.requires_grad and result.x_adv.dtype == x.dtype


def test_rounding_slack_is_not_a_loophole(setup):
    model, x, y = setup

    class JustOutside(Attack):
        name = "just-outside"
        info = AttackInfo(norms=("linf",))

        def perturb(self, model, x, y, generator, target=None):
            return x + (self.threat.eps + 1e-5) * (2 * (x < 0.5).to(x.dtype) - 1)

    with pytest.raises(AttackError, match="exceeds eps"):
        JustOutside(ThreatModel("linf", 0.1))(model, x, y)


def test_non_tensor_result_names_its_type(setup):
    model, x, y = setup
    with pytest.raises(AttackError, match=r"returns-numpy returned a numpy\.ndarray, not a torch\.Tensor"):
        ReturnsNumpy(ThreatModel())(model, x, y)


def test_result_kept_with_queries_and_extras(setup):
    model, x, y = setup

    class WithExtras(Noise):
        def perturb(self, model, x, y, generator, target=None):
            return AttackResult(super().perturb(model, x, y, generator), queries=torch.ones(x.shape[0]),
                                extras={"d": 1.0})

    result = WithExtras(ThreatModel(), seed=0).run(model, x, y)
    assert result.queries.tolist() == [1.0] * 4 and list(result.extras) == ["d", "forwards", "backwards"]
    assert result.extras["d"] == 1.0  # the base adds the pass counts (Noise makes no forward)
    assert result.extras["forwards"].tolist() == result.extras["backwards"].tolist() == [0.0] * 4


def test_caller_tensors_untouched(setup):
    model, x, y = setup

    class InPlace(Noise):
        def perturb(self, model, x, y, generator, target=None):
            x.add_(1.0)  # its private copy: allowed
            y.zero_()
            return super().perturb(model, x.sub_(1.0), y, generator, target)

    x0, y0, vx = x.clone(), y.clone(), x._version
    InPlace(ThreatModel(), seed=0)(model, x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0) and x._version == vx


def test_model_state_snapshot_restores():
    model = tiny_model()
    state = ModelState(model)
    model.eval()
    p = next(model.parameters())
    p.requires_grad_(False)
    p.grad = torch.ones_like(p)
    state.restore()
    assert model.training and p.requires_grad and p.grad is None


def test_batchnorm_statistics_untouched(setup):
    model, x, y = setup
    model.train()
    bn = model[1]
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    Noise(ThreatModel(), seed=0)(model, x, y)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)


def test_info_validation():
    with pytest.raises(ValueError, match="norms"):
        AttackInfo(norms=())
    with pytest.raises(ValueError, match="norms"):
        AttackInfo(norms=("l5",))
    with pytest.raises(ValueError, match="kind"):
        AttackInfo(norms=("linf",), kind="grey-box")


def test_seeded_global_rngs_seeds_every_global_rng_and_restores_the_callers():
    import random

    import numpy as np

    from robustreg import draw_seed, seeded_global_rngs

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    draws = []
    for _ in range(2):
        with seeded_global_rngs(7, torch.device("cpu")):
            draws.append((float(torch.rand(1)), float(np.random.rand()), random.random()))
    assert draws[0] == draws[1]  # the same seed gives the toolkit the same streams
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]
    seeds = {draw_seed(torch.Generator().manual_seed(s)) for s in range(20)}
    assert len(seeds) == 20 and all(0 <= s < 2**31 - 1 for s in seeds)
    assert draw_seed(torch.Generator().manual_seed(3)) == draw_seed(torch.Generator().manual_seed(3))
