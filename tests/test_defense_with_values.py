"""Defense schedules are handed over as copies (Defense.with_values), never set on a live defense."""

from __future__ import annotations

import pytest

from robustreg import ParamError, Registry, UnknownParamError
from robustreg.data import load_data
from robustreg.training import TrainConfig, Trainer

EPS = 0.2


@pytest.fixture(scope="module")
def registry():
    return Registry.create()


def test_with_values_copies_and_leaves_the_defense(registry):
    live = registry.build_defense("at", eps=EPS, steps=2)
    copy = live.with_values(eps=EPS / 4, step_size=EPS / 16)
    assert (copy.eps, copy.step_size) == (EPS / 4, EPS / 16)
    assert (live.eps, live.step_size) == (EPS, EPS / 4)  # unchanged
    assert copy.config["eps"] == EPS and copy is not live  # config: the values it was built with
    with pytest.raises(UnknownParamError, match="'epz'"):
        live.with_values(epz=0.1)
    with pytest.raises(ParamError, match="steps"):
        live.with_values(steps=2.5)  # checked by the declaration, as at construction


def test_a_mechanisms_value_reaches_a_copy_of_the_mechanism(registry):
    live = registry.build_defense("at-si")
    (mech,) = live.mechanisms
    name = "beta"
    value = float(getattr(mech, name)) * 2 + 1
    copy = live.with_values(**{name: value})
    assert getattr(copy, name) == value and getattr(copy.mechanisms[0], name) == value
    assert getattr(mech, name) != value and live.mechanisms[0] is mech  # the live mechanism is untouched


def test_trainer_hands_each_step_a_copy(registry, tmp_path):
    x, y = load_data("digits", "train").tensors()
    cfg = TrainConfig(model="digits-cnn", defense="at", epochs=2, batch_size=32, lr=0.05, quiet=True, log_every=1,
                      checkpoint_every=0, defense_params={"eps": EPS, "steps": 1}, eps_warmup_epochs=2,
                      out=str(tmp_path))
    trainer = Trainer(cfg, registry=registry, data=(x[:64], y[:64]))  # 2 steps per epoch: a 4-step ramp
    trainer.run(stop_at=1)
    first = trainer.defense
    assert first is not None and first.eps == pytest.approx(EPS / 4)
    trainer.run(stop_at=2)
    assert first.eps == pytest.approx(EPS / 4)  # step 1's value went to a new copy, not into step 0's defense
    assert trainer.defense is not None and trainer.defense.eps == pytest.approx(EPS / 2)
