"""benchmarks/_common.py's ModelClock and corrected_ratio: the instrument attack_speed.py's corrected column reads."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from robustreg import Registry, ThreatModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _common import ModelClock, Timing, Whole, corrected_ratio


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 10))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(32, 1, 12, 12, generator=g), torch.randint(0, 10, (32,), generator=g)


def test_the_clock_counts_each_pass_once_also_for_an_iterate_updated_in_place():
    model, (x, y) = _model(), _batch()
    clock = ModelClock(model)
    attack = Registry.create().build_attack("pgd", ThreatModel("linf", 0.1), steps=5, seed=0)
    result = attack.run(model, x, y)  # the iterate is one tensor over the steps: its hooks must not pile up
    forward_s, backward_s, forward_n, backward_n = clock.reading()
    # what the base counted (at most 5 per point: a point an iterate broke takes no further step)
    forwards, backwards = (round(float(result.extras[k].sum())) for k in ("forwards", "backwards"))
    assert len(x) <= backwards <= 5 * len(x) and backward_n == backwards
    assert forward_n == forwards + 1  # and the base's one-sample look at the number of classes
    assert forward_s > 0 and backward_s > 0


def test_si_pgds_backward_is_seen_although_it_starts_from_the_features():
    model, (x, y) = _model(), _batch()
    clock = ModelClock(model)
    result = Registry.create().build_attack("si-pgd", ThreatModel("linf", 0.1), steps=3, seed=0).run(model, x, y)
    backwards = round(float(result.extras["backwards"].sum()))
    assert len(x) <= backwards <= 3 * len(x) and clock.reading()[3] == backwards


def test_an_nn_sequential_run_child_by_child_is_seen_through_whole():
    model, (x, _) = _model(), _batch()
    clock = ModelClock(model)
    wrapped = Whole(model)
    out = x
    for child in model.children():  # what ART does with a Sequential: the root's hooks never run
        out = child(out)
    assert clock.reading()[2] == 0
    assert torch.equal(wrapped(x), out) and clock.reading()[2] == len(x)


def test_work_outside_the_model_shows_in_the_corrected_ratio():
    """The same model passes plus as much time again outside the model: the correction keeps that second.
    (Synthetic timings: how well the correction holds on a real machine is the benchmark's job, shown by its
    "reference again" row, never a timed test.)"""
    ref = Timing(wall=1.0, cpu=1.0, faults=0, model=(0.4, 0.5, 100, 100))
    outside = Timing(wall=2.0, cpu=2.0, faults=0, model=(0.4, 0.5, 100, 100))
    assert abs(corrected_ratio(outside, ref) - 2.0) < 1e-12  # type: ignore[operator]


def test_a_slower_machine_is_corrected_for():
    """The same call at half the speed (every pass and the code around it twice as long) corrects to 1."""
    ref = Timing(wall=1.0, cpu=1.0, faults=0, model=(0.4, 0.5, 100, 100))
    slow = Timing(wall=2.0, cpu=2.0, faults=0, model=(0.8, 1.0, 100, 100))
    assert abs(corrected_ratio(slow, ref) - 1.0) < 1e-12  # type: ignore[operator]
    assert corrected_ratio(Timing(1.0, 1.0, 0, None), ref) is None
