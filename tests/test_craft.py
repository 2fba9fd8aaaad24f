"""robustreg.evaluation.craft: the engine's cells for front-ends that measure the adversarial points (the
analyses): every chosen point in the plan's batches, each batch's judged points handed to a sink."""

from __future__ import annotations

import pytest
import torch

from robustreg import ThreatModel
from robustreg.evaluation import EvalConfig, Mode, craft, make_plan
from robustreg.evaluation.craft import craft_attack
from robustreg.registry import Registry
from robustreg.testing.models import tiny_batch, tiny_model


class Kept:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int, torch.Tensor, torch.Tensor]] = []

    def add(self, e, a, k, indices, x_adv):
        self.batches.append((e, a, k, indices.clone(), x_adv.clone()))


@pytest.fixture(scope="module")
def setup():
    model = tiny_model().eval()
    x, y = tiny_batch(40)
    plan = make_plan([("pgd", {"steps": 3}), "fgsm"], [0.05, 0.1],
                     EvalConfig(seed=0, batch_size=16, mode=Mode.CASCADE, registry=Registry.create(), progress=False))
    return model, x, y, plan


def test_every_chosen_point_in_the_plans_batches_judged_as_the_engine_judges(setup):
    model, x, y, plan = setup
    chosen = torch.arange(40) % 3 != 0  # the clean mistakes are attacked too: the caller chooses
    kept = Kept()
    state, waited = craft(model, x, y, plan, torch.device("cpu"), kept, points=chosen)
    assert waited == 0.0
    for e, a in plan.cells():  # independent mode whatever the plan's: each attack on every chosen point
        mine = [b for b in kept.batches if b[:2] == (e, a)]
        assert [b[2] for b in mine] == list(range(len(mine)))
        assert torch.equal(torch.cat([b[3] for b in mine]), chosen.nonzero().flatten())
        assert all(len(b[3]) <= 16 for b in mine)
        attack = plan.build(e, a)
        for _, _, _, idx, x_adv in mine:  # the attack called on that batch gives the same points (seeded per call)
            assert torch.equal(x_adv, attack.run(model, x[idx], y[idx]).x_adv)
            with torch.no_grad():
                wrong = model(x_adv).argmax(1) != y[idx]
            assert torch.equal(state.cell(e, a).broken[idx], wrong)
            assert bool(ThreatModel("linf", plan.eps[e]).contains(x_adv, x[idx]).all())
        assert not bool(state.cell(e, a).broken[~chosen].any())


def test_points_must_be_one_flag_per_sample(setup):
    model, x, y, plan = setup
    with pytest.raises(ValueError, match=r"points must be a bool tensor of shape \(40,\), got shape \(39,\)"):
        craft(model, x, y, plan, torch.device("cpu"), points=torch.ones(39, dtype=torch.bool))


def test_a_callers_attack_as_one_cell(setup):
    model, x, y, plan = setup
    attack = plan.build(1, 0)
    out = craft_attack(attack, model, x, y, 16)
    assert out.shape == x.shape
    assert torch.equal(out[16:32], attack.run(model, x[16:32], y[16:32]).x_adv)
