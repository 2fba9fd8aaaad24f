"""Progress inside one attack call (robustreg.progress): SPSA's steps, RayS' queries, AutoAttack's sub-attacks,
reported to the caller's callback and shown on the evaluation's bar; an attack that never reports is unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg import Registry, ThreatModel
from robustreg.evaluation import evaluate
from robustreg.progress import Progress, progress_to, report_progress


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.create()


def _problem(n: int = 6) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10)).eval()
    x = torch.rand(n, 3, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _run(registry, name, eps, **params):
    model, x, y = _problem()
    seen: list[Progress] = []
    attack = registry.build_attack(name, ThreatModel("linf", eps), seed=0, **params)
    with_progress = attack.run(model, x, y, progress=seen.append)
    without = attack.run(model, x, y)  # reporting changes nothing the attack computes
    assert torch.equal(with_progress.x_adv, without.x_adv)
    return seen


def test_spsa_reports_each_step(registry):
    seen = _run(registry, "spsa", 0.01, steps=4, samples=8, early_stop=False)
    assert [(p.stage, p.done, p.total) for p in seen] == [("spsa step", t, 4) for t in (1, 2, 3, 4)]
    assert str(seen[1]) == "spsa step 50%"


def test_rays_reports_queries_spent(registry):
    seen = _run(registry, "rays", 0.05, max_queries=60)
    done = [p.done for p in seen]
    assert len(done) > 3 and all(p.stage == "rays queries" and p.total == 6 * 60 for p in seen)
    assert all(a < b for a, b in zip(done, done[1:])) and done[-1] <= 6 * 60  # each round spends queries


def test_autoattack_reports_each_sub_attack(registry):
    if "autoattack:standard" not in registry.entries("attacks"):
        pytest.skip("AutoAttack is not installed (pip install pyautoattack)")
    # a large eps: APGD-CE breaks every point, the later sub-attacks find none standing (fast), and report so
    seen = _run(registry, "autoattack:standard", 0.25)
    assert [p.stage for p in seen][0] == "apgd-ce" and seen[-1].done == seen[-1].total == 4
    assert [p.stage for p in seen if p.done == int(p.done) and p.done > 0] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:]))


def test_an_attack_that_never_reports_runs_as_before(registry):
    seen = _run(registry, "fgsm", 0.05)
    assert seen == []


def test_reports_go_to_the_innermost_caller_only():
    outer: list[Progress] = []
    inner: list[Progress] = []
    report_progress("nobody asked", 1, 2)  # no callback: nothing happens
    with progress_to(outer.append):
        report_progress("a", 1, 2)
        with progress_to(inner.append):
            report_progress("b", 1, 2)
        report_progress("c", 2, 2)
    assert [p.stage for p in outer] == ["a", "c"] and [p.stage for p in inner] == ["b"]


def test_evaluation_bar_shows_the_attacks_progress(capsys):
    model, x, y = _problem(8)
    evaluate(model, (x, y), [("spsa", {"steps": 3, "samples": 8, "early_stop": False})], 0.01, progress=True,
             batch_size=8, no_check=["zero-gradients", "randomized-model", "black-box-beats-white-box"])
    assert "spsa step" in capsys.readouterr().err
