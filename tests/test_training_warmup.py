"""The trainer's schedule of defense parameters: the eps warm-up (ramp values, exact resume mid-ramp)
and multiplicative milestones (GAT's lambda x 4 at epoch 85); plus the data pipeline options
(crop_size, pixel-mean model front, MNIST un-augmented by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustreg import Registry
from robustreg.data import load_data
from robustreg.models import PixelMean, build_model
from robustreg.params import ParamError
from robustreg.schedules import DefenseParamSchedule
from robustreg.training import TrainConfig, Trainer
from robustreg.training.defense_params import build_param_schedule

EPS = 0.2


@pytest.fixture(scope="module")
def registry():
    return Registry.create()


@pytest.fixture(scope="module")
def digits():
    x, y = load_data("digits", "train").tensors()
    return x[:96], y[:96]


def _cfg(tmp: Path, **kw):
    base = dict(model="digits-cnn", defense="at", epochs=3, batch_size=32, lr=0.05, quiet=True, log_every=1,
                checkpoint_every=0, defense_params={"eps": EPS, "steps": 2}, eps_warmup_epochs=2, out=str(tmp))
    base.update(kw)
    return TrainConfig(**base)


def test_ramp_values_by_hand():
    sched = DefenseParamSchedule(base=(("eps", 0.2), ("step_size", 0.05)), warmup=("eps", "step_size"),
                                 warmup_steps=8)
    for step in range(12):
        f = min(1.0, (step + 1) / 8)
        assert sched(step) == pytest.approx({"eps": 0.2 * f, "step_size": 0.05 * f})
    assert sched(7) == {"eps": 0.2, "step_size": 0.05}


def test_warmup_reaches_every_pixel_parameter(registry, digits, tmp_path):
    trainer = Trainer(_cfg(tmp_path), registry=registry, data=digits)
    for stop, f in ((1, 1 / 6), (3, 3 / 6), (6, 1.0), (8, 1.0)):
        trainer.run(stop_at=stop)
        d = trainer.state.defense
        assert d.eps == pytest.approx(EPS * f) and d.step_size == pytest.approx(EPS / 4 * f)
        assert d.config["eps"] == EPS  # the configured value is kept


def test_exact_resume_mid_ramp(registry, digits, tmp_path):
    straight = Trainer(_cfg(tmp_path / "a"), registry=registry, data=digits)
    straight.run()
    Trainer(_cfg(tmp_path / "b"), registry=registry, data=digits).run(stop_at=4)  # mid-ramp (6 warm-up steps)
    resumed = Trainer(_cfg(tmp_path / "b"), registry=registry, data=digits)
    resumed.run()
    a, b = straight.state.model.state_dict(), resumed.state.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the warm-up changes training: without it the weights differ
    plain = Trainer(_cfg(tmp_path / "c", eps_warmup_epochs=0), registry=registry, data=digits)
    plain.run()
    assert not all(torch.equal(a[k], plain.state.model.state_dict()[k]) for k in a)


def test_warmup_needs_a_pixel_parameter(registry, digits, tmp_path):
    with pytest.raises(ParamError, match="pixel"):
        Trainer(_cfg(tmp_path, defense="standard", defense_params={}), registry=registry, data=digits).run()


def test_gat_lambda_times_four_at_epoch_85(registry):
    gat = registry.build_defense("gat")
    cfg = TrainConfig(model="m", defense="gat", epochs=100, defense_schedule={"lam": [[85, 4]]})
    sched = build_param_schedule(gat, cfg, steps_per_epoch=10)
    assert sched(0) == {"lam": 10.0} and sched(849) == {"lam": 10.0}
    assert sched(850) == {"lam": 40.0} and sched(999) == {"lam": 40.0}
    it = build_param_schedule(gat, TrainConfig(model="m", defense="gat", iterations=100, milestone_unit="iterations",
                                               defense_schedule={"lam": [[30, 4], [60, 0.5]]}), 10)
    assert (it(29), it(30), it(60)) == ({"lam": 10.0}, {"lam": 40.0}, {"lam": 20.0})
    with pytest.raises(ParamError, match="not a numeric parameter"):
        build_param_schedule(gat, TrainConfig(model="m", defense="gat", epochs=1,
                                              defense_schedule={"lamb": [[1, 2]]}), 1)
    with pytest.raises(ParamError, match="defense_schedule"):
        TrainConfig(model="m", epochs=1, defense_schedule={"lam": [[85]]})


def test_gat_schedule_through_the_trainer(registry, digits, tmp_path):
    cfg = _cfg(tmp_path, defense="gat", defense_params={"eps": 0.1}, eps_warmup_epochs=0,
               defense_schedule={"lam": [[2, 4]]})
    trainer = Trainer(cfg, registry=registry, data=digits)
    trainer.run(stop_at=6)  # steps 0..5 are epochs 0 and 1
    assert trainer.state.defense.lam == 10.0
    trainer.run(stop_at=7)
    assert trainer.state.defense.lam == 40.0


# --- the data pipeline ------------------------------------------------------------------------------
def test_random_crop_size_and_pixel_mean_front(registry, digits, tmp_path):
    cfg = _cfg(tmp_path, defense="standard", defense_params={}, eps_warmup_epochs=0, crop_size=6, augment=True,
               normalize="pixel-mean", epochs=1)
    trainer = Trainer(cfg, registry=registry, data=digits)
    assert trainer._augmentation(digits[0]) == (0, False, 6)  # no padding by default with crop_size
    trainer.run()
    front = trainer.state.model[0]
    assert isinstance(front, PixelMean) and torch.allclose(front.mean, digits[0].mean(0))
    state = trainer.state
    xb, _ = trainer._batch(digits[0], digits[1], torch.arange(4), 0, False, torch.Generator().manual_seed(0), 0, 4, 6)
    assert xb.shape == (4, 1, 6, 6)
    # an input of 6 x 6 gets the mean image's centre crop
    z = torch.zeros(1, 1, 6, 6)
    assert torch.allclose(front(z), -digits[0].mean(0)[:, 1:7, 1:7])
    # final.pt carries the mean: build_model(normalize="pixel-mean") gets it back
    loaded = build_model("digits-cnn", weights=tmp_path / "final.pt", normalize="pixel-mean")
    assert torch.allclose(loaded[0].mean, front.mean)
    x = digits[0][:5]
    assert torch.allclose(loaded(x), state.model.eval()(x), atol=1e-6)


def test_mnist_is_not_augmented_by_default(registry):
    assert registry.dataset("mnist").augment is False and registry.dataset("cifar10").augment is True
    t = Trainer(TrainConfig(model="m", data="mnist:/nowhere", epochs=1), registry=registry)
    assert t._augmentation(torch.zeros(2, 1, 28, 28)) == (0, False, 0)
    t = Trainer(TrainConfig(model="m", data="mnist:/nowhere", epochs=1, augment=True), registry=registry)
    assert t._augmentation(torch.zeros(2, 1, 28, 28)) == (4, False, 0)


# --- the lr warm-up --------------------------------------------------------------------------------
def test_lr_warmup_by_hand():
    from robustreg.schedules import LRSchedule

    step = LRSchedule.create("step", lr=0.1, total_steps=20, steps_per_epoch=4, milestones=[3], warmup_steps=4)
    assert [step(s) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert step(12) == pytest.approx(0.01)  # the milestone is the schedule's own
    cosine = LRSchedule.create("cosine", lr=0.1, total_steps=20, steps_per_epoch=4, warmup_steps=5)
    plain = LRSchedule.create("cosine", lr=0.1, total_steps=20, steps_per_epoch=4)
    assert [cosine(s) for s in range(8)] == pytest.approx([plain(s) * min(1, (s + 1) / 5) for s in range(8)])
    with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -1"):
        LRSchedule.create("step", lr=0.1, total_steps=20, steps_per_epoch=4, warmup_steps=-1)


def test_lr_warmup_unset_takes_the_defenses_declared_need(registry, digits, tmp_path):
    """HE declares a 3-epoch warm-up (its cosine head wrecks a BatchNorm-free net at lr 0.1 from the first
    step); AT declares none; a number in the config wins over the declaration."""
    assert registry.defense("he").info.lr_warmup_epochs == 3 and registry.defense("at").info.lr_warmup_epochs == 0
    lrs = {}
    for name, given in (("he", None), ("at", None), ("he", 0.0)):
        trainer = Trainer(_cfg(tmp_path / f"{name}{given}", defense=name, eps_warmup_epochs=0,
                               defense_params={"steps": 1}, lr_warmup_epochs=given), registry=registry, data=digits)
        trainer.run(stop_at=2)
        lrs[name, given] = [group["lr"] for group in trainer.state.optimizer.param_groups]
        assert trainer.config.lr_warmup_epochs == (3.0 if (name, given) == ("he", None) else 0.0)
    steps = 3 * (96 // 32)  # 3 epochs of 3 steps: step 1 (the second) runs with 2 / 9 of the lr
    assert lrs["he", None] == pytest.approx([0.05 * 2 / steps])
    assert lrs["at", None] == lrs["he", 0.0] == pytest.approx([0.05])


def test_lr_warmup_resolved_is_what_the_checkpoint_records(registry, digits, tmp_path):
    """A run with the warm-up unset resumes its own checkpoint (which records the number), and an older
    checkpoint without the key counts as no warm-up."""
    from robustreg.training.state import _config_diff, _normalised

    cfg = _cfg(tmp_path, defense="he", eps_warmup_epochs=0, defense_params={"steps": 1})
    Trainer(cfg, registry=registry, data=digits).run(stop_at=2)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["config"]
    assert saved["lr_warmup_epochs"] == 3.0
    Trainer(cfg, registry=registry, data=digits).run(stop_at=3)  # resumes without a config complaint
    now = _normalised(TrainConfig(model="digits-cnn", epochs=1, lr_warmup_epochs=0.0).to_dict())
    old = {k: v for k, v in now.items() if k != "lr_warmup_epochs"}
    assert _config_diff(old, now) == []
    warm = _normalised(TrainConfig(model="digits-cnn", epochs=1, lr_warmup_epochs=3.0).to_dict())
    assert any(d.startswith("lr_warmup_epochs: 0.0 in the checkpoint, 3.0 now") for d in _config_diff(old, warm))
