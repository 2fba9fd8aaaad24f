"""ThreatModel and parse_eps: ranges, distances, projections."""

from __future__ import annotations

import pytest
import torch

from robustreg import ThreatModel, parse_eps


def test_defaults_and_describe():
    t = ThreatModel()
    assert t.norm == "linf" and t.eps == pytest.approx(8 / 255) and t.box == (0.0, 1.0)
    assert t.describe() == "linf eps=8/255"
    assert ThreatModel("l2", 0.5).describe() == "l2 eps=0.5"


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "l3"}, "norm must be one of"),
    ({"eps": -0.1}, "eps must be"),
    ({"eps": float("nan")}, "eps must be"),
    ({"eps": 8.0}, "did you mean 8/255"),
    ({"box": (1.0, 0.0)}, "box must be"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThreatModel(**kwargs)


def test_l2_eps_may_exceed_one():
    assert ThreatModel("l2", 3.0).eps == 3.0


def test_frozen():
    t = ThreatModel()
    with pytest.raises(AttributeError):
        t.eps = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("text, scale, value", [
    ("8/255", None, 8 / 255), ("0.031", None, 0.031), (0.5, None, 0.5), ("16", 255, 16 / 255),
    (" 2/255 ", None, 2 / 255),
])
def test_parse_eps(text, scale, value):
    assert parse_eps(text, scale=scale) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "1/0", "-1", "inf", ""])
def test_parse_eps_rejects(text):
    with pytest.raises(ValueError):
        parse_eps(text)


def test_parse_eps_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        parse_eps("1", scale=0)


def _batch(seed=0, n=5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 4, generator=g), torch.randn(n, 3, 4, 4, generator=g)


def test_distance_per_sample_matches_manual():
    x, d = _batch()
    for norm, ref in (("linf", d.flatten(1).abs().max(1).values), ("l2", d.flatten(1).norm(dim=1)),
                      ("l1", d.flatten(1).abs().sum(1))):
        assert torch.allclose(ThreatModel(norm, 0.1).distance(x + d, x), ref, atol=1e-5)


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 0.3), ("l1", 1.0)])
def test_project_lands_in_ball_and_box(norm, eps):
    x, d = _batch()
    t = ThreatModel(norm, eps)
    p = t.project(x + d, x)
    assert bool(t.contains(p, x).all())
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0
    assert bool((t.distance(p, x) <= eps * (1 + 1e-5)).all())


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_project_keeps_points_inside(norm):
    x, d = _batch()
    t = ThreatModel(norm, 10.0 if norm != "linf" else 1.0)
    inside = (x + 1e-3 * d).clamp(0, 1)
    assert torch.allclose(t.project(inside, x), inside, atol=1e-6)


def test_l1_projection_is_euclidean_projection():
    # The projection of v onto the l1 ball is the closest point: compare with random feasible points.
    g = torch.Generator().manual_seed(1)
    v = torch.randn(1, 1, 4, 4, generator=g)
    x = torch.full_like(v, 0.5)
    t = ThreatModel("l1", 0.7, box=(-100.0, 100.0))
    p = t.project(x + v, x)
    assert float(t.distance(p, x)) == pytest.approx(0.7, rel=1e-4)
    best = float((p - x - v).norm())
    for _ in range(200):
        r = torch.randn(1, 1, 4, 4, generator=g)
        r = r / r.abs().sum() * 0.7 * float(torch.rand(1, generator=g))
        assert float((r - v).norm()) >= best - 1e-5


def test_contains_flags_outside():
    x, _ = _batch()
    t = ThreatModel("linf", 0.1)
    far = x.clone()
    far[0] = (far[0] + 0.3).clamp(max=1.0) if float(far[0].max()) < 0.7 else (far[0] - 0.3).clamp(min=0.0)
    out_of_box = x.clone()
    out_of_box[1, 0, 0, 0] = 1.05
    assert t.contains(far, x).tolist()[0] is False
    assert t.contains(out_of_box, x).tolist()[1] is False
    assert bool(t.contains(x, x).all())


def test_l2_random_start_is_inside_ball_and_spread():
    x = torch.full((400, 1, 4, 4), 0.5)
    t = ThreatModel("l2", 0.3)
    start = t.random_point(x, torch.Generator().manual_seed(0))
    r = t.distance(start, x)
    assert float(r.max()) <= 0.3 + 1e-6
    # uniform in a 16-d ball: radius r has P(r <= 0.3 * 0.9) = 0.9 ** 16 ~ 0.185
    assert 0.1 < float((r <= 0.27).float().mean()) < 0.3


def test_linf_random_point_is_uniform_in_the_cube_and_clipped():
    x = torch.full((200, 1, 4, 4), 0.95)
    t = ThreatModel("linf", 0.1)
    start = t.random_point(x, torch.Generator().manual_seed(0))
    assert bool(t.contains(start, x).all())
    assert float(start.max()) == 1.0  # half the draws land above the box and are clipped to it
    assert abs(float(start.mean()) - 0.94375) < 0.005  # E[min(0.95 + U(-0.1, 0.1), 1)]
    with pytest.raises(ValueError, match="random_point supports linf and l2"):
        ThreatModel("l1", 1.0).random_point(x, torch.Generator())


def test_clip_bounds_are_the_ball_within_the_box():
    x = torch.tensor([[0.0, 0.05, 0.5, 0.97, 1.0]])
    lo, hi = ThreatModel("linf", 0.1).clip_bounds(x)
    assert torch.allclose(lo, torch.tensor([[0.0, 0.0, 0.4, 0.87, 0.9]]))
    assert torch.allclose(hi, torch.tensor([[0.1, 0.15, 0.6, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="linf"):
        ThreatModel("l2", 0.5).clip_bounds(x)
