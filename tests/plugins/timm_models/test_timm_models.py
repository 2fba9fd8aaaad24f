"""timm:NAME — a real timm model (random weights, never downloaded) built and evaluated from the CLI."""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest
import torch

from robustreg import Registry, UserError
from robustreg.cli import main
from robustreg.models import build_model
from robustreg_plugins import timm_models

timm = pytest.importorskip("timm")  # an optional extra: skipped only where it is not installed


def _registry() -> Registry:
    """The installed plugins, plus this one where its entry point is not installed yet."""
    installed = {ep.name for ep in metadata.entry_points(group="robustreg")}
    extra = [] if "timm_models" in installed else [("timm_models", timm_models)]
    return Registry.create(plugins=extra)


def test_cli_evaluates_a_timm_model_with_local_weights(tmp_path, capsys):
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=1000).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 32, 32, generator=gen)
    with torch.no_grad():
        pred = net(x).argmax(1)
    # labels: the model's own predictions for the first four, others for the last two: clean accuracy 4/6
    y = torch.cat([pred[:4], (pred[4:] + 1) % 1000])
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    registry = _registry()
    status = main(["evaluate", "--model", "timm:resnet10t", "--weights", str(tmp_path / "w.pt"),
                   "--data", f"npz:{tmp_path / 'd.npz'}", "--attacks", "fgsm", "--eps", "8/255",
                   "--out", str(tmp_path / "out"), "--quiet"], registry=registry)
    assert status == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["clean_accuracy"] == pytest.approx(4 / 6)


def test_random_weights_without_weights_file():
    model = build_model("timm:resnet10t", registry=_registry())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1000)


def test_unknown_name_lists_close_matches():
    with pytest.raises(UserError, match=r"timm:resnet1Ot: timm has no model 'resnet1Ot'; did you mean [^?]*resnet10t"):
        build_model("timm:resnet1Ot", registry=_registry())


def test_pretrained_is_refused():
    with pytest.raises(UserError, match=r"pretrained=True would download weights; robustreg never does"):
        timm_models.build("resnet10t", pretrained=True)
