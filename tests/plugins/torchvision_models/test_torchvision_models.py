"""torchvision:NAME — torchvision.models.get_model with weights=None, never downloaded."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

from robustreg import Registry, UserError
from robustreg.models import build_model
from robustreg_plugins import torchvision_models


def _registry() -> Registry:
    installed = {ep.name for ep in metadata.entry_points(group="robustreg")}
    extra = [] if "torchvision_models" in installed else [("torchvision_models", torchvision_models)]
    return Registry.create(plugins=extra)


def test_builds_with_parameters_and_local_weights(tmp_path):
    torch.manual_seed(0)
    reference = torchvision_models.build("resnet18", num_classes=10).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    model = build_model("torchvision:resnet18", weights=str(tmp_path / "w.pt"), registry=_registry(), num_classes=10)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        # the same weights, ops and input in one process: equal up to float32 rounding of a reordered sum
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_unknown_name_and_weights_are_refused():
    with pytest.raises(UserError, match=r"torchvision has no model 'resnet81'; did you mean [^?]*resnet18"):
        torchvision_models.build("resnet81")
    with pytest.raises(UserError, match=r"weights='DEFAULT' would download weights"):
        torchvision_models.build("resnet18", weights="DEFAULT")
