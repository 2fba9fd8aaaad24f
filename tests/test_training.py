"""The trainer: lr schedules, config (YAML, --set, --param), checkpoints, logs, the train CLI."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustreg import Defense, DefenseInfo, DefenseOutput, Registry, hookimpl
from robustreg.cli import main
from robustreg.commands.train import apply_overrides, config_from_args, configure_parser
from robustreg.commands.train import parse_set_value as parse_value
from robustreg.schedules import LRSchedule
from robustreg.training import TrainConfig, Trainer, train
from robustreg_plugins.classic import standard


def _registry(*extra: tuple[str, object]) -> Registry:
    return Registry.create(entry_points=False, plugins=[("test-standard", standard), *extra])


def _digits(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:n], dtype=torch.float32).view(-1, 1, 8, 8) / 16
    return x, torch.tensor(d.target[:n], dtype=torch.int64)


def _linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


# --- schedules ---------------------------------------------------------------------------------

def test_step_schedule_in_iterations_paper_000() -> None:
    # paper 000, CIFAR-10: lr 0.1, /10 at 48k and 72k iterations, stop at 94k
    s = LRSchedule.create("step", lr=0.1, total_steps=94_000, steps_per_epoch=390, milestones=[48_000, 72_000],
                          milestone_unit="iterations")
    assert s(0) == pytest.approx(0.1) and s(47_999) == pytest.approx(0.1)
    assert s(48_000) == pytest.approx(0.01) and s(71_999) == pytest.approx(0.01)
    assert s(72_000) == pytest.approx(0.001) and s(93_999) == pytest.approx(0.001)


def test_step_schedule_in_epochs_paper_004() -> None:
    # paper 004, ResNet-18: lr 0.01, /10 at epochs 75, 90 and 100 of 120
    spe = 391
    s = LRSchedule.create("step", lr=0.01, total_steps=120 * spe, steps_per_epoch=spe, milestones=[75, 90, 100])
    assert s.milestone_steps() == [75 * spe, 90 * spe, 100 * spe]
    assert s(75 * spe - 1) == pytest.approx(0.01)
    assert s(75 * spe) == pytest.approx(1e-3)
    assert s(90 * spe) == pytest.approx(1e-4)
    assert s(100 * spe) == pytest.approx(1e-5)
    assert s(120 * spe - 1) == pytest.approx(1e-5)


def test_cosine_cyclic_and_constant_schedules() -> None:
    cos = LRSchedule.create("cosine", lr=0.2, total_steps=100, steps_per_epoch=10)
    assert cos(0) == pytest.approx(0.2)
    assert cos(50) == pytest.approx(0.1)
    assert cos(25) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert cos(100) == pytest.approx(0.0, abs=1e-12)
    cyc = LRSchedule.create("cyclic", lr=0.2, total_steps=100, steps_per_epoch=10, peak=0.4)
    assert cyc(39) == pytest.approx(0.2)  # (39 + 1) / 100 = the peak
    assert cyc(19) == pytest.approx(0.1)  # halfway up
    assert cyc(69) == pytest.approx(0.1)  # halfway down
    assert cyc(0) == pytest.approx(0.2 * 0.01 / 0.4) and cyc(0) > 0
    assert cyc(99) == pytest.approx(0.0, abs=1e-12)
    assert all(cyc(i) <= cyc(39) for i in range(100))
    const = LRSchedule.create("constant", lr=0.3, total_steps=10, steps_per_epoch=5)
    assert {const(i) for i in range(10)} == {0.3}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "linear"}, "schedule must be one of"),
    ({"milestones": [90, 75]}, "milestones must be increasing"),
    ({"gamma": 2.0}, "gamma must be in"),
    ({"lr": -1.0}, "lr must be a positive"),
    ({"milestone_unit": "days"}, "milestone_unit must be"),
])
def test_schedule_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    base = {"name": "step", "lr": 0.1, "total_steps": 10, "steps_per_epoch": 2}
    base.update(kwargs)
    name = base.pop("name")
    with pytest.raises(ValueError, match=message):
        LRSchedule.create(name, **base)


def test_trainer_sets_the_schedule_per_step(tmp_path: Path) -> None:
    cfg = TrainConfig(model="t", epochs=4, batch_size=64, lr=0.1, schedule="step", milestones=[2, 3], log_every=1,
                      quiet=True, augment=False, out=str(tmp_path))
    train(cfg, registry=_registry(), model=_linear, data=_digits(256))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["kind"] == "step"]
    assert lrs == pytest.approx([0.1] * 8 + [0.01] * 4 + [0.001] * 4)  # 4 steps per epoch


# --- configuration -----------------------------------------------------------------------------

def test_config_validation_names_the_key() -> None:
    with pytest.raises(ValueError, match="exactly one of epochs and iterations"):
        TrainConfig(model="m")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        TrainConfig(model="m", epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(model="m", epochs=1, schedule="warm")
    with pytest.raises(ValueError, match=r"unknown training config key\(s\) 'bach_size' \(did you mean 'batch_size'"):
        TrainConfig.from_dict({"model": "m", "epochs": 1, "bach_size": 3})


def test_parse_value_reads_yaml_scalars_and_fractions() -> None:
    assert parse_value("0.3") == 0.3 and parse_value("true") is True and parse_value("null") is None
    assert parse_value("8/255") == pytest.approx(8 / 255)
    assert parse_value("[75, 90]") == [75, 90]
    assert parse_value("pgd") == "pgd"


def test_yaml_config_with_set_and_flags(tmp_path: Path) -> None:
    yml = tmp_path / "at.yaml"
    yml.write_text("model: resnet20\ndata: cifar10:/data\ndefense: at\ndefense_params:\n  eps: 8/255\n"
                   "  steps: 10\nepochs: 120\nlr: 0.01\nmilestones: [75, 90, 100]\nout: runs/x\n")
    parser = configure_parser(__import__("argparse").ArgumentParser())
    args = parser.parse_args(["--config", str(yml), "--lr", "0.05", "--set", "defense_params.beta=0.3",
                              "--set", "weight_decay=5e-4", "--param", "at.steps=7", "--param", "eps=4/255",
                              "--iterations", "100"])
    cfg = config_from_args(args)
    assert cfg.model == "resnet20" and cfg.data == "cifar10:/data" and cfg.defense == "at"
    assert cfg.lr == 0.05 and cfg.weight_decay == 5e-4
    assert cfg.iterations == 100 and cfg.epochs is None  # the flag replaces the YAML's length
    assert cfg.milestones == [75, 90, 100]
    assert cfg.defense_params == {"eps": pytest.approx(4 / 255), "steps": 7, "beta": 0.3}
    bad = parser.parse_args(["--config", str(yml), "--param", "trades.beta=1"])
    with pytest.raises(ValueError, match=r"'trades' is not in --defense \(at\)"):
        config_from_args(bad)


def test_apply_overrides_rejects_malformed_items() -> None:
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        apply_overrides({}, ["lr"])
    with pytest.raises(ValueError, match="lr is 0.1, not a mapping"):
        apply_overrides({"lr": 0.1}, ["lr.x=1"])


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model", "digits-cnn", "--data", "digits", "--epochs", "1", "--batch-size", "-4",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "robustreg: error: batch_size must be an integer >= 1, got -4"
    assert main(["train", "--model", "digits-cnn", "--epochs", "1"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


# --- the run: checkpoints, logs, RNG hygiene ---------------------------------------------------

def test_checkpoints_are_weights_only_and_final_is_a_state_dict(tmp_path: Path) -> None:
    cfg = TrainConfig(model="t", epochs=2, batch_size=64, lr=0.1, checkpoint_every=3, log_every=2, quiet=True,
                      out=str(tmp_path))
    trainer = Trainer(cfg, registry=_registry(), model=_linear, data=_digits(256))
    final = trainer.fit()
    assert final == tmp_path / "final.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt", "last.pt", "log.csv", "log.jsonl"]
    weights = torch.load(final, weights_only=True)
    fresh = _linear()
    fresh.load_state_dict(weights)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(weights[key], value)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 8 and state["epoch"] == 2 and state["total_steps"] == 8
    assert state["config"]["lr"] == 0.1 and state["config"]["defense"] == "standard"
    assert set(state["ranks"][0]["rng"]) == {"torch", "numpy", "python", "cuda"}
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.9
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[:6] == ["kind", "step", "epoch", "lr", "loss", "acc_clean"]
    epochs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in epochs if r["kind"] == "epoch"] == [4, 8]
    assert all(0 <= r["acc_clean"] <= 1 and r["images_per_s"] > 0 for r in epochs)


@pytest.mark.numerics  # bit-exact reruns: .ci/run repeats them on other kernels and threads
def test_training_is_deterministic_and_restores_global_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(9)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    cfg = dict(model="t", epochs=2, batch_size=32, lr=0.1, quiet=True, flip=True, crop_padding=1)
    reg = _registry()
    a = train(TrainConfig(**cfg, out=str(tmp_path / "a")), registry=reg, model=_linear, data=_digits(128))
    b = train(TrainConfig(**cfg, out=str(tmp_path / "b")), registry=reg, model=_linear, data=_digits(128))
    c = train(TrainConfig(**cfg, seed=1, out=str(tmp_path / "c")), registry=reg, model=_linear, data=_digits(128))
    wa, wb, wc = (torch.load(p, weights_only=True) for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["1.weight"], wc["1.weight"])
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]


def test_augmentation_crops_windows_of_the_padded_image() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    y = torch.tensor([0, 1])
    g = torch.Generator().manual_seed(0)
    out, _ = Trainer._batch(x, y, torch.tensor([0, 1]), 1, True, g, 0, 2)
    g = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 3, (2, 2), generator=g)
    flips = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        r, c = offsets[i].tolist()
        want = padded[i, :, r:r + 4, c:c + 4]
        assert torch.equal(out[i], want.flip(2) if flips[i] else want)
    # a rank takes its slice of a batch augmented as a whole
    g = torch.Generator().manual_seed(0)
    second, _ = Trainer._batch(x, y, torch.tensor([0, 1]), 1, True, g, 1, 1)
    assert torch.equal(second[0], out[1])


class _NaNDefense(Defense):
    info = DefenseInfo(source="test")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        return DefenseOutput(model(x).sum() * float("nan"))


class _NaNPlugin:
    @hookimpl
    def robustreg_register_defenses(self, registrar) -> None:
        registrar.add_defense("nan", _NaNDefense)


def test_non_finite_loss_stops_training(tmp_path: Path) -> None:
    cfg = TrainConfig(model="t", defense="nan", iterations=3, batch_size=32, log_every=1, quiet=True,
                      out=str(tmp_path))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(cfg, registry=_registry(("nan", _NaNPlugin())), model=_linear, data=_digits(64))


def test_standard_defense_contract() -> None:
    model = _linear()
    x, y = _digits(16)
    out = standard.StandardTraining(label_smoothing=0.1).loss(model, x, y)
    assert out.loss.requires_grad and out.loss.dim() == 0
    assert out.logits_clean is not None and out.logits_clean.shape == (16, 10)
    with pytest.raises(ValueError, match="label_smoothing must be a number in"):
        standard.StandardTraining(label_smoothing=1.5)


# --- real specs: build_model / load_data, and the CLI round trip ---------------------------------

def test_final_pt_loads_with_build_model(tmp_path: Path) -> None:
    from robustreg.models import build_model

    cfg = TrainConfig(model="digits-cnn", data="digits", iterations=4, batch_size=64, lr=0.05, quiet=True,
                      out=str(tmp_path))
    trainer = Trainer(cfg, registry=_registry())
    final = trainer.fit()
    model = build_model("digits-cnn", weights=str(final))
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_train_then_evaluate_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustreg import cli
    reg = Registry.create()
    defense = "standard" if "standard" in reg.entries("defenses") else "at"
    out = tmp_path / "run"
    argv = ["train", "--model", "digits-cnn", "--data", "digits", "--defense", defense, "--iterations", "6",
            "--batch-size", "64", "--lr", "0.05", "--quiet", "--out", str(out)]
    if defense == "at":
        argv += ["--param", "steps=1", "--param", "eps=0.1"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("final.pt")
    report = tmp_path / "report"
    assert cli.main(["evaluate", "--model", "digits-cnn", "--weights", str(out / "final.pt"), "--data", "digits",
                     "--n", "32", "--attacks", "fgsm", "--eps", "0.1", "--quiet", "--out", str(report)]) == 0
    assert any(report.iterdir())


@pytest.mark.skipif(os.environ.get("CUDA_VISIBLE_DEVICES") == "" or not torch.cuda.is_available(),
                    reason="needs CUDA")
def test_amp_and_channels_last_on_cuda(tmp_path: Path) -> None:
    x, y = _digits(128)

    def conv() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10))

    cfg = TrainConfig(model="t", iterations=4, batch_size=32, amp=True, channels_last=True, device="cuda",
                      quiet=True, out=str(tmp_path))
    final = train(cfg, registry=_registry(), model=conv, data=(x, y))
    weights = torch.load(final, weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values())
