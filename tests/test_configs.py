"""The papers' ready configurations (configs/): each loads as written, and trains two iterations on
substitute data (random images of the config's shape, a small batch, fewer pixels for ResNet-18)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustreg import Registry, UsageError
from robustreg.commands.train import expand_variables, load_config
from robustreg.training import TrainConfig, Trainer

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.fixture(scope="module")
def registry():
    return Registry.create()


def _images(n: int, channels: int, side: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, channels, side, side, generator=gen) * 255).round() / 255
    return x, torch.arange(n) % 10


def test_there_are_configs_for_both_papers():
    names = {p.stem for p in CONFIGS}
    assert {"mnist-resnet20-pivot", "cifar10-resnet20-cascade", "cifar10-resnet110-cascade"} <= names
    for d in ("at", "trades", "alp", "mart", "free-at", "gat"):
        assert {f"cifar10-resnet18-{d}", f"cifar10-resnet18-{d}-si"} <= names
    for d in ("rfgsm-at", "grad-align"):  # paper 004 Table 8 trains these two on PreActResNet-18
        assert {f"cifar10-preact-resnet18-{d}", f"cifar10-preact-resnet18-{d}-si"} <= names
        assert load_config(next(p for p in CONFIGS if p.stem == f"cifar10-preact-resnet18-{d}"))["model"] == (
            "preact-resnet18")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid_as_written(path, registry):
    values = load_config(path)
    cfg = TrainConfig.from_dict(values)
    assert cfg.data.split(":")[0] in ("mnist", "cifar10") and "${" not in cfg.data
    spec = registry.defense(cfg.defense)
    unknown = set(cfg.defense_params) - set(spec.params.names())
    assert not unknown, unknown
    if cfg.defense != "cascade":  # cascade needs its store on disk
        registry.build_defense(cfg.defense, **cfg.defense_params)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from robustreg.models import resnet20
    from robustreg_plugins.cascade import build_cascade_store

    torch.manual_seed(0)
    source = resnet20().eval()
    x, y = _images(8, 3, 24, seed=1)  # the paper's store holds 24 x 24 centre crops
    path = tmp_path_factory.mktemp("store") / "p2"
    build_cascade_store(source, (x, y), path, source_id="substitute-p2", seed=0)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_two_iterations(path, registry, store, tmp_path):
    values = load_config(path)
    paper004 = path.parent.name == "paper004"
    channels = int(values.get("model_params", {}).get("in_channels", 3))
    side = 16 if paper004 else (28 if channels == 1 else 32)  # ResNet-18 on fewer pixels: faster
    values.update(iterations=2, epochs=None, batch_size=4, out=str(tmp_path / "run"), quiet=True, device="cpu",
                  checkpoint_every=0, log_every=1)
    values["milestones"] = [m for m in values.get("milestones", []) if m < 2] if values.get(
        "milestone_unit") == "iterations" else values.get("milestones", [])
    if values["defense"] == "cascade":
        values["defense_params"] = {**values["defense_params"], "store": str(store)}
    result = Trainer(TrainConfig.from_dict(values), registry=registry, data=_images(8, channels, side)).run()
    assert result.finished and result.step == 2 and result.final.is_file()


def test_variables_expand_from_the_environment():
    assert expand_variables({"data": "cifar10:${D:-data}/c", "n": [1, "${X}"]}, {"X": "y"}) == {
        "data": "cifar10:data/c", "n": [1, "y"]}
    assert expand_variables("a${D}b", {"D": "/x"}) == "a/xb"
    with pytest.raises(UsageError, match="NOPE"):
        expand_variables("${NOPE}", {})
