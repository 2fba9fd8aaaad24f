"""A third-party distribution adds an analysis and a check: both reach ``robustreg analyze --help`` and an
evaluation's report.json, exactly as the built-in plugins' do (the core registers no analysis of its own).

The plugin is installed as a temporary distribution (a dist-info with its entry point in ``tmp_path``, the
module beside it on ``sys.path``), as pip would install it, so the registry finds it by its entry point.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from robustreg.cli import main
from robustreg.data import load_data
from robustreg.models import build_model
from robustreg.registry import DISABLE_ENV, Registry

PLUGIN = textwrap.dedent(
    '''
    """robustreg-fakeextras: the clean accuracy per class (an analysis) and a check on the sample size."""

    import torch

    import robustreg
    from robustreg.analysis import (
        AnalysisOutput, add_analysis_args, figure, figure_png, load_model_and_data, markdown_table, record_inputs,
    )

    def configure(parser):
        add_analysis_args(parser, attacks=None, n=40)

    def run(args):
        model, x, y = load_model_and_data(args)
        with torch.no_grad():
            correct = (model(x).argmax(dim=1) == y)
        classes = sorted(int(c) for c in y.unique())
        per_class = {str(c): float(correct[y == c].float().mean()) for c in classes}
        report = {"analysis": "class-accuracy", "n": len(y), "per_class": per_class}
        record_inputs(args, report)
        fig = figure()
        fig.add_subplot(1, 1, 1).bar(list(per_class), list(per_class.values()))
        table = markdown_table(["class", "accuracy"], [[c, a] for c, a in per_class.items()])
        return AnalysisOutput(report, "# class-accuracy\\n\\n" + table + "\\n", {"classes.png": figure_png(fig)})

    def few_points(ctx):
        n = len(ctx.y)
        if n < 50:
            return "warn", f"only {n} points evaluated: the robust accuracy is +-{100 / n ** 0.5:.0f} points"
        return "ok", f"{n} points evaluated"

    @robustreg.hookimpl
    def robustreg_register_analyses(registrar):
        registrar.add_analysis("class-accuracy", configure, run, summary="clean accuracy of each class (fake extras)")

    @robustreg.hookimpl
    def robustreg_register_checks(registrar):
        registrar.add_check("few-points", few_points, doc="https://example.org/few-points")
    '''
)


@pytest.fixture
def extras_site(tmp_path, monkeypatch) -> Path:
    """``robustreg-fakeextras`` installed in ``tmp_path/site`` (entry point ``fakeextras``)."""
    site = tmp_path / "site"
    info = site / "robustreg_fakeextras-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robustreg-fakeextras\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[robustreg]\nfakeextras = fake_extras\n")
    (site / "fake_extras.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return tmp_path


def test_the_registry_holds_the_plugins_analysis_and_check(extras_site):
    reg = Registry.create()
    assert reg.analysis("class-accuracy").plugin == "fakeextras"
    checks = [spec.name for spec in reg.checks()]
    assert checks.index("few-points") > checks.index("attack-flags")  # after the core's checks (its last)
    with pytest.raises(LookupError, match="unknown analysis 'class-acuracy'; did you mean 'class-accuracy'"):
        reg.analysis("class-acuracy")


def test_the_analysis_is_in_analyze_help_and_runs(extras_site, capsys):
    assert main(["analyze", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "class-accuracy" in help_text and "clean accuracy of each class (fake extras)" in help_text
    assert "logit-scale" in help_text and "transfer" in help_text  # the built-in plugins' beside it

    out = extras_site / "report"
    assert main(["analyze", "class-accuracy", "--model", "digits-cnn-pretrained", "--data", "digits",
                 "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "classes.png").read_bytes().startswith(b"\x89PNG") and (out / "report.md").is_file()
    data = load_data("digits", "test")
    x, y = data.tensors(40)
    with torch.no_grad():
        correct = build_model("digits-cnn-pretrained").eval()(x).argmax(dim=1) == y
    expected = {str(int(c)): float(correct[y == c].float().mean()) for c in y.unique()}
    assert report["n"] == 40 and report["model"]["spec"] == "digits-cnn-pretrained"
    # the same model on the same 40 images in the same (float32) forward: the same per-class fractions
    assert report["per_class"] == pytest.approx(expected, abs=1e-6)


def test_the_check_runs_in_every_evaluation_and_reaches_report_json(extras_site, capsys):
    out = extras_site / "eval"
    assert main(["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--attacks", "fgsm",
                 "--eps", "0.1", "--n", "30", "--out", str(out), "--quiet"]) == 0
    checks = json.loads((out / "report.json").read_text())["checks"]
    names = [c["name"] for c in checks]
    assert names == [spec.name for spec in Registry.create().checks()]  # every registered check, in order
    few = next(c for c in checks if c["name"] == "few-points")
    assert few == {"name": "few-points", "status": "warn", "doc": "https://example.org/few-points",
                   "message": "only 30 points evaluated: the robust accuracy is +-18 points"}
    assert next(c for c in checks if c["name"] == "logit-scale")["status"] in ("ok", "warn")  # a plugin's, too
    assert "few-points" in capsys.readouterr().out  # the terminal summary names it, as it names the core's


BROKEN = textwrap.dedent(
    '''
    import robustreg

    @robustreg.hookimpl
    def robustreg_register_checks(registrar):
        registrar.add_check("half-done", lambda ctx: ("ok", "a check of a plugin that fails elsewhere"))

    @robustreg.hookimpl
    def robustreg_register_analyses(registrar):
        registrar.add_analysis("not-runnable", configure=print, run="not a function")
    '''
)


def test_a_plugin_whose_analysis_is_wrong_is_reported_and_leaves_nothing(extras_site, capsys):
    site = extras_site / "site"
    (site / "fake_broken_extras.py").write_text(BROKEN)
    info = site / "robustreg_fakebrokenextras-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: robustreg-fakebrokenextras\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[robustreg]\nfakebroken = fake_broken_extras\n")
    reg = Registry.create()
    errors = dict(reg.load_errors)
    assert "analysis 'not-runnable' of plugin 'fakebroken': run must be callable" in errors["fakebroken"]
    assert "half-done" not in [spec.name for spec in reg.checks()]  # none of its entries, its check neither
    assert reg.analysis("class-accuracy").plugin == "fakeextras"  # the other plugin is untouched
    assert main(["list", "analyses"]) == 0
    listed = capsys.readouterr().out
    assert "class-accuracy" in listed and "not-runnable" not in listed
