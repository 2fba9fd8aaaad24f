"""``robustreg export robustbench REPORT.json FILE``: RobustBench's model-info JSON from a real evaluation report."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import torch
from torch import nn

from robustreg import Registry, UsageError
from robustreg.cli import main
from robustreg.evaluation import evaluate
from robustreg_plugins import robustbench_models
from robustreg_plugins.robustbench_models.export import FIELDS, model_info


def _registry() -> Registry:
    installed = {ep.name for ep in metadata.entry_points(group="robustreg")}
    extra = [] if "robustbench_models" in installed else [("robustbench_models", robustbench_models)]
    return Registry.create(plugins=extra)


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 10)).eval()
    x = torch.rand(16, 3, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 10  # clean accuracy 75%
    return model, x, y


def _report(tmp_path, attacks, eps, name="report.json", **options):
    model, x, y = _problem()
    registry = _registry()
    every = [spec.name for spec in registry.checks()]  # the export reads the numbers, not the checks
    report = evaluate(model, (x, y), attacks, eps, progress=False, registry=registry, no_check=every,
                      data_info={"spec": "cifar10:/data/cifar10"}, **options)
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return report, path


def test_standard_autoattack_fills_autoattack_acc(tmp_path):
    if "autoattack:standard" not in _registry().entries("attacks"):
        pytest.skip("AutoAttack is not installed (pip install pyautoattack)")
    # a large eps: APGD-CE breaks every point, so the suite ends after its first sub-attack (fast)
    report, path = _report(tmp_path, ["autoattack:standard"], "64/255", batch_size=8)
    out = tmp_path / "model_info" / "cifar10" / "Linf" / "Mine.json"
    assert main(["export", "robustbench", str(path), str(out), "--set", "name=Mine", "--set",
                 "additional_data=false"]) == 0
    info = json.loads(out.read_text())
    assert set(info) <= set(FIELDS)
    assert info["clean_acc"] == str(round(100 * report["clean_accuracy"], 2)) == "75.0"
    assert info["autoattack_acc"] == str(round(100 * report["worst_case"][0]["robust_accuracy"], 2))
    assert info["eps"] == "64/255" and info["dataset"] == "cifar10" and info["architecture"] == "Sequential"
    assert info["name"] == "Mine" and info["additional_data"] is False and info["link"] is None
    assert info["footnote"] == "evaluated on the first 16 of 10000 test points"


def test_other_attacks_leave_autoattack_acc_null(tmp_path, capsys):
    report, path = _report(tmp_path, ["fgsm", ("pgd", {"steps": 3})], [4 / 255, 8 / 255])
    with pytest.raises(UsageError, match=r"the report holds 2 eps \(0.0156863, 0.0313725\); pass --eps"):
        model_info(report, _registry())
    out = tmp_path / "info.json"
    assert main(["export", "robustbench", str(path), str(out), "--eps", "8/255"]) == 0
    assert "warning: autoattack_acc left null: the report is 2 attacks (fgsm, pgd)" in capsys.readouterr().err
    info = json.loads(out.read_text())
    robust = str(round(100 * report["worst_case"][1]["robust_accuracy"], 2))
    assert info["autoattack_acc"] is None and info["eps"] == "8/255"
    assert info["footnote"].startswith(f"robustreg measured {robust}% robust accuracy (worst case of fgsm, pgd)")


def test_refusals(tmp_path):
    report, _ = _report(tmp_path, [("apgd", {"steps": 2})], 0.5, norm="l1")
    with pytest.raises(UsageError, match="RobustBench has Linf and L2 tables, the report is l1"):
        model_info(report, _registry())
    report, path = _report(tmp_path, ["fgsm"], 0.1)
    with pytest.raises(UsageError, match=r"--eps 0.2 is not in the report \(eps: 0.1\)"):
        model_info(report, _registry(), eps=0.2)
    report["data"]["spec"] = "imagefolder:/data/val"
    with pytest.raises(UsageError, match="give it with --set dataset=NAME"):
        model_info(report, _registry())
    info, _ = model_info(report, _registry(), values={"dataset": "imagenet"})
    assert info["footnote"].endswith("evaluated on the first 16 of 5000 test points")
    assert main(["export", "robustbench", str(path), str(tmp_path / "x.json"), "--set", "clean_acc=99"]) == 2
    assert not (tmp_path / "x.json").exists()
