"""RayS' ADBD modes: "fast" (today's: early stop at eps, mean over clean-correct images) and "full"
(paper 004 Table 9: the whole query budget on every image, mean over all evaluated images)."""

from __future__ import annotations

import torch

from robustreg import ThreatModel
from robustreg.testing import tiny_batch, tiny_model
from robustreg_plugins.blackbox.rays import RayS


def test_full_mode_spends_the_budget_and_averages_over_all_images():
    model, (x, y) = tiny_model().eval(), tiny_batch(12)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    y = torch.where(torch.arange(12) < 2, (model(x).argmax(1) + 1) % 10, y)  # two misclassified for sure
    correct = correct & (torch.arange(12) >= 2)
    threat = ThreatModel("linf", 0.3)
    full = RayS(threat, max_queries=80, adbd_mode="full").run(model, x, y)
    dist = full.extras["boundary_distance"]
    assert bool((full.queries[correct] == 80).all())  # no early stop, even for images broken within eps
    assert full.extras["adbd"] == float(dist.mean())  # every evaluated image, misclassified ones at 0
    assert bool((dist[:2] == 0).all())
    fast = RayS(threat, max_queries=80).run(model, x, y)
    assert RayS(threat).adbd_mode == "fast"
    broken = fast.extras["success"].bool() & correct
    assert bool((fast.queries[broken] <= 80).all())
    assert fast.extras["adbd"] == float(fast.extras["boundary_distance"][correct].mean())
    # the full budget only tightens the distance
    assert bool((dist[correct] <= fast.extras["boundary_distance"][correct] + 1e-6).all())
