"""Parameters resolved once: the registry's AttackConfig and the evaluation plan that carries it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import AttackConfig, AttackSpec, ParamError, Registry, ThreatModel
from robustreg.evaluation import EvalConfig, make_plan


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


def test_config_merges_defaults_aliases_and_values_once(registry):
    cfg = registry.attack_config("pgd", {"alpha": 0.01, "steps": 5, "seed": 3})  # alpha: a toolkit's step_size
    assert isinstance(cfg, AttackConfig) and cfg.name == "pgd"
    assert cfg.values["step_size"] == 0.01 and cfg.values["steps"] == 5 and cfg.values["seed"] == 3
    assert "alpha" not in cfg.values
    full = cfg.resolved()  # every declared parameter, the declared defaults filled in
    assert set(registry.attack("pgd").params.names()) <= set(full) and full["steps"] == 5
    with pytest.raises(TypeError):
        cfg.values["steps"] = 7  # type: ignore[index]  # immutable: a plan cannot be changed behind its back
    with pytest.raises(ParamError, match="steps"):
        registry.attack_config("pgd", {"steps": 0})  # validated when resolved, before any eps is known


def test_building_for_each_eps_resolves_nothing_again(registry, monkeypatch):
    plan = make_plan([("pgd", {"steps": 3})], [0.01, 0.02, 0.03], EvalConfig(registry=registry, seed=1))
    assert [c.values["steps"] for c in plan.configs] == [3] and plan.params(0)["seed"] == 1
    calls: list[str] = []
    configure = AttackSpec.configure

    def counted(self, *args, **kwargs):  # the real method, counted
        calls.append(self.name)
        return configure(self, *args, **kwargs)

    monkeypatch.setattr(AttackSpec, "configure", counted)
    attacks = [plan.build(e, 0) for e in range(3)]
    assert calls == []  # the plan's configuration is built, not merged or validated again
    assert [a.threat.eps for a in attacks] == [0.01, 0.02, 0.03]
    assert all(a.config["steps"] == 3 and a.seed == 1 for a in attacks)


def test_built_attack_matches_direct_build(registry):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    threat = ThreatModel("linf", 0.05)
    via_config = registry.attack_config("pgd", {"steps": 4, "seed": 0}).build(threat)(model, x, y)
    direct = registry.build_attack("pgd", threat, steps=4, seed=0)(model, x, y)
    assert torch.equal(via_config, direct)  # one path: same seed, same arithmetic, bit for bit
