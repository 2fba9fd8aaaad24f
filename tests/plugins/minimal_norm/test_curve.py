"""``robustreg curve``: one minimal-norm run -> robust accuracy at every eps, verified by a fixed-budget attack."""

from __future__ import annotations

import json

import pytest

from robustreg.cli import main

ARGS = ["curve", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "60", "--attack", "fmn",
        "--norm", "linf", "--param", "fmn.steps=20", "--verify", "pgd", "--at", "0.05,0.1", "--param",
        "pgd.steps=10", "--quiet"]


def test_curve_command_writes_a_verified_curve(tmp_path, registry, capsys):
    out = tmp_path / "curve"
    assert main([*ARGS, "--out", str(out)], registry=registry) == 0
    report = json.loads((out / "report.json").read_text())
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "robustness_curve.png"}
    curve = report["curve"]
    assert curve[0] == {"eps": 0.0, "robust_accuracy": report["clean_accuracy"]}
    accuracies = [p["robust_accuracy"] for p in curve]
    assert accuracies == sorted(accuracies, reverse=True)  # a curve read from minimal norms cannot rise
    norms = [v for v in report["norms"] if v is not None]
    every = sorted(float("inf") if v is None else v for v in report["norms"])
    assert len(every) == 60 and report["median_norm"] == every[29]  # the lower median
    for p in curve:  # the curve is the fraction of norms beyond eps, every point of it
        assert p["robust_accuracy"] == pytest.approx(
            (sum(v > p["eps"] + 1e-6 for v in norms) + report["not_found"]) / 60, abs=1e-9)
    rows = report["verification"]
    assert [(r["attack"], r["eps"]) for r in rows] == [("pgd", 0.05), ("pgd", 0.1)]
    for r in rows:
        assert r["curve_accuracy"] == next(p["robust_accuracy"] for p in curve if p["eps"] == r["eps"])
        assert r["flagged"] == (r["count"] > 0 or r["gap"] > r["noise"]) and isinstance(r["count"], int)
    assert "## Verification: pgd" in (out / "report.md").read_text()
    assert "Robust accuracy by eps" in capsys.readouterr().out
    # the same configuration is not recomputed; another one is refused
    assert main([*ARGS, "--out", str(out)], registry=registry) == 0
    assert "report already there" in capsys.readouterr().out
    assert main([*ARGS[:-1], "--seed", "1", "--out", str(out), "--quiet"], registry=registry) == 2
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--attack", "pgd"], "not a minimal-norm attack"),
    (["--attack", "fmn", "--verify", "ddn", "--at", "0.5", "--norm", "l2"], "is a minimal-norm attack"),
    (["--attack", "fmn", "--verify", "pgd"], "--verify and --at go together"),
    (["--attack", "ddn", "--norm", "linf"], "supports norm(s) l2"),
    (["--attack", "fmn", "--eps", "8"], "did you mean 8/255"),
    (["--attack", "fmn", "--param", "fmn.stepz=3"], "did you mean steps"),
])
def test_bad_input_is_one_line_usage_error(tmp_path, registry, capsys, extra, message):
    argv = ["curve", "--model", "digits-cnn-pretrained", "--data", "digits", *extra, "--out", str(tmp_path / "o")]
    assert main(argv, registry=registry) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any folder is made
