"""The training state: a run stopped at a checkpoint and resumed writes the uninterrupted run's log and weights.

Also: TrainConfig's declared parameters, the dataset's registered ``flippable``, ``--param`` typed by
the defense's declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Defense, DefenseInfo, DefenseOutput, Registry, hookimpl
from robustreg.training import TRAIN_PARAMS, TrainConfig, Trainer, TrainResult
from robustreg.training.logging import TIMING_KEYS


class _Interrupted(RuntimeError):
    pass


class _NoisyCE(Defense):
    """CE on noisy inputs (global torch RNG), a metric and a state that scales the noise; fails at ``fail_at``."""

    info = DefenseInfo(source="test")
    fail_at = -1

    def __init__(self) -> None:
        self.calls = 0

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        if step == type(self).fail_at:
            raise _Interrupted(f"stopped at step {step}")
        self.calls += 1
        x = (x + 0.05 * (1 + self.calls % 3) * torch.randn_like(x)).clamp(0, 1)
        logits = model(x)
        return DefenseOutput(F.cross_entropy(logits, y), {"noise": 0.05 * (1 + self.calls % 3)}, logits_clean=logits)

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])


class _Plugin:
    @hookimpl
    def robustreg_register_defenses(self, registrar) -> None:
        registrar.add_defense("noisy-ce", _NoisyCE)


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def _digits(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (torch.tensor(d.data[:n], dtype=torch.float32).view(-1, 1, 8, 8) / 16,
            torch.tensor(d.target[:n], dtype=torch.int64))


def _records(out: Path) -> list[dict]:
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in recs]


@pytest.mark.numerics  # bit-exact reruns: .ci/run repeats them on other kernels and threads
def test_stop_at_a_checkpoint_then_resume_gives_the_uninterrupted_log_and_weights(tmp_path: Path) -> None:
    # 8 steps an epoch, 24 in all; logs every 3 steps and checkpoints every 5, so every resume point
    # (5, 10) falls inside a log window and inside an epoch: the meters must come back with the state.
    registry = Registry.create(entry_points=False, plugins=[("test-noisy", _Plugin())])
    x, y = _digits()

    def trainer(out: Path) -> Trainer:
        cfg = TrainConfig(model="test:cnn", defense="noisy-ce", epochs=3, batch_size=64, lr=0.05, schedule="cosine",
                          flip=True, crop_padding=1, checkpoint_every=5, log_every=3, quiet=True, out=str(out))
        return Trainer(cfg, registry=registry, model=_model, data=(x, y))

    reference = trainer(tmp_path / "ref").run()
    assert isinstance(reference, TrainResult) and reference.finished and reference.steps == reference.step == 24

    out = tmp_path / "stopped"
    first = trainer(out).run(stop_at=5)  # an iteration stop: checkpoint at step 5, no final.pt
    assert first.final is None and first.step == 5 and not (out / "final.pt").exists()
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 5
    _NoisyCE.fail_at = 13  # then a failure after the step-10 checkpoint and the step-12 record
    try:
        with pytest.raises(_Interrupted):
            trainer(out).run()
    finally:
        _NoisyCE.fail_at = -1
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 10
    assert [r["step"] for r in _records(out)][-1] == 12  # dropped on resume, written again from the state
    resumed = trainer(out)
    result = resumed.run()
    assert result.finished and result.step == 24 and result.steps == 14 and result.final == out / "final.pt"
    assert resumed.defense.calls == 24

    assert _records(out) == _records(tmp_path / "ref")  # every field but seconds and images/s
    got = torch.load(out / "final.pt", weights_only=True)
    want = torch.load(tmp_path / "ref" / "final.pt", weights_only=True)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_train_config_fields_are_declared() -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for param in TRAIN_PARAMS:
        assert fields[param.name].default == param.default, param.name
    structured = set(fields) - set(TRAIN_PARAMS.names())
    # defense_schedule: the new mapping of defense parameters to [milestone, factor] pairs
    assert structured == {"defense_params", "model_params", "weights", "normalize", "milestones", "defense_schedule"}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("momentum", 1.0, "momentum must be a number in [0, 1), got 1.0"),
    ("lr", float("inf"), "lr must be a number > 0, got inf"),
    ("epochs", 2.0, "epochs must be an integer >= 1 or None, got 2.0"),
    ("schedule", "cosin", "schedule must be one of step, cosine, cyclic, constant, got 'cosin'; did you mean"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("flip", "yes", "flip must be true or false or None, got 'yes'"),
    ("milestones", [10, -1], "milestones must be a list of positive numbers, got [10, -1]"),
])
def test_train_config_errors_name_key_value_and_allowed(key: str, value: object, message: str) -> None:
    values = {"model": "m", "iterations": 10, key: value}
    if key == "epochs":
        values.pop("iterations")
    with pytest.raises(ValueError) as info:
        TrainConfig(**values)
    assert str(info.value).startswith(message)


def test_flip_follows_the_registered_dataset() -> None:
    from robustreg.data import builtin_dataset_specs

    specs = builtin_dataset_specs()
    assert {n for n, s in specs.items() if s.flippable} == {"cifar10", "cifar100", "cifar10-jpeg", "npz"}
    rgb = torch.zeros(2, 3, 8, 8)
    registry = Registry.create(entry_points=False, plugins=[("test-noisy", _Plugin())])

    def flips(data: str, x: torch.Tensor = rgb) -> bool:
        cfg = TrainConfig(model="t", data=data, iterations=1, out="unused")
        return Trainer(cfg, registry=registry, model=_model)._augmentation(x)[1]

    assert flips("cifar10:/d") and flips("cifar100:/d") and flips("npz:/f.npz")
    assert not flips("svhn:/d") and not flips("digits") and not flips("npz:/f.npz", torch.zeros(2, 1, 8, 8))
    assert not flips("my-rgb-data")  # a dataset the registry does not know is not flipped (flip=True asks)


def test_param_is_typed_by_the_defense_declaration() -> None:
    from robustreg.commands.train import config_from_args, configure_parser

    registry = Registry.create()
    parser = configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--model", "m", "--iterations", "2", "--defense", "at", "--out", "o",
                              "--param", "at.steps=3", "--param", "eps=8/255"])
    args.registry = registry
    cfg = config_from_args(args)
    assert cfg.defense_params == {"steps": 3, "eps": pytest.approx(8 / 255)}
    assert isinstance(cfg.defense_params["steps"], int)
    with pytest.raises(ValueError, match="unknown parameter 'stepz'; did you mean steps"):
        config_from_args(parser.parse_args(["--model", "m", "--iterations", "2", "--defense", "at", "--out", "o",
                                            "--param", "stepz=3"]))


def test_meter_scores_logits_against_the_labels_the_defense_gives():
    """A defense whose clean rows are not the batch's first (Kurakin's: adversarial rows first) names their
    labels; the logged acc_clean then counts them right (it read the first rows' labels before)."""
    from robustreg.defense import DefenseOutput
    from robustreg.training.logging import Meter

    y = torch.tensor([0, 1, 2, 3])
    hits = torch.nn.functional.one_hot(y, 4).float()  # logits right for every row
    out = DefenseOutput(torch.tensor(0.0), logits_clean=hits[2:], logits_adv=hits[:2], labels_clean=y[2:],
                        labels_adv=y[:2])
    meter = Meter()
    meter.add(out, y, 4)
    values = meter.values(world_size=1)
    assert values["acc_clean"] == 1.0 and values["acc_adv"] == 1.0
