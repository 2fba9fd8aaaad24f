"""Real short training on scikit-learn digits: PGD-AT buys PGD robustness that plain training lacks.

"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustreg import Registry, ThreatModel
from robustreg.training import TrainConfig, Trainer

EPS = 0.12  # linf, [0, 1] units, on 8x8 digits


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


def _need(registry: Registry, *names: str) -> None:
    missing = [n for n in names if n not in registry.entries("defenses")]
    assert not missing, f"built-in defense(s) {', '.join(missing)} failed to register: {registry.load_errors}"


def _fit(registry: Registry, out: Path, defense: str, params: dict, epochs: int) -> tuple[Trainer, Path]:
    cfg = TrainConfig(model="digits-cnn", data="digits", defense=defense, defense_params=params, epochs=epochs,
                      batch_size=64, lr=0.05, schedule="cosine", augment=False, checkpoint_every=0, quiet=True,
                      out=str(out / defense))
    trainer = Trainer(cfg, registry=registry)
    return trainer, trainer.fit()


def _accuracies(registry: Registry, model: torch.nn.Module) -> tuple[float, float]:
    from robustreg.data import load_data

    x, y = load_data("digits", "test").tensors()
    model.eval()
    attack = registry.build_attack("pgd", ThreatModel("linf", EPS), steps=10, seed=0)
    x_adv = attack(model, x, y)
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item(), (model(x_adv).argmax(1) == y).float().mean().item()


def test_pgd_at_is_far_more_robust_than_plain_training(registry: Registry, tmp_path: Path) -> None:
    _need(registry, "at")
    plain, _ = _fit(registry, tmp_path, "standard", {}, 8)
    at, final = _fit(registry, tmp_path, "at", {"eps": EPS, "steps": 5, "step_size": EPS / 3}, 8)
    plain_clean, plain_robust = _accuracies(registry, plain.model)
    at_clean, at_robust = _accuracies(registry, at.model)
    assert plain_clean > 0.9 and at_clean > 0.85
    assert at_robust > plain_robust + 0.15, (plain_robust, at_robust)
    assert at_robust > 0.45
    # the saved weights are the trained ones
    weights = torch.load(final, weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in at.model.state_dict().items())


def test_trades_si_trains_without_nan(registry: Registry, tmp_path: Path) -> None:
    _need(registry, "trades-si")
    trainer, final = _fit(registry, tmp_path, "trades-si", {"eps": EPS, "steps": 3}, 2)
    log = (tmp_path / "trades-si" / "log.jsonl").read_text()
    assert "NaN" not in log and "Infinity" not in log
    weights = torch.load(final, weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    clean, robust = _accuracies(registry, trainer.model)
    assert clean > 0.5 and robust > 0.2
