"""robustreg.report: rendering a report dict and writing files atomically."""

from __future__ import annotations

import csv
import io
import json

import pytest

from robustreg.report import (
    load_report,
    render_csv,
    render_markdown,
    render_table,
    write_report,
)


def _report() -> dict:
    def result(attack, eps, acc, **more):
        base = {"attack": attack, "label": attack, "eps": eps, "norm": "linf", "params": {"steps": 10, "seed": 0},
                "robust_accuracy": acc, "attacked": 9, "broken": 2, "seconds": 1.25, "max_perturbation": eps,
                "mean_perturbation": eps, "nan_detected": False, "plugin": "classic", "toolkit": "native",
                "kind": "white-box", "paper": None, "randomized": False}
        base.update(more)
        return base

    return {
        "schema_version": 1, "clean_accuracy": 0.9, "n": 10, "norm": "linf", "mode": "cascade",
        "eps": [8 / 255, 0.1],
        "results": [
            result("fgsm", 8 / 255, 0.7),
            result("rays", 8 / 255, 0.6, queries=812.5, extras={"boundary_distance": 0.04}),
            result("fgsm", 0.1, 0.3),
            result("rays", 0.1, 0.2, queries=400.0, extras={"boundary_distance": 0.05}),
        ],
        "worst_case": [{"eps": 8 / 255, "robust_accuracy": 0.6, "broken_only_by": {"fgsm": 2, "rays": 1}},
                       {"eps": 0.1, "robust_accuracy": 0.2, "broken_only_by": {"fgsm": 6, "rays": 1}}],
        "model": {"class": "Net", "spec": "digits-cnn", "fingerprint": "abc"},
        "data": {"name": "digits", "spec": "digits"},
        "created": "2026-01-01T00:00:00+00:00", "robustreg_version": "0.1.0",
    }


def test_markdown_has_summary_results_and_worst_case():
    md = render_markdown(_report())
    assert "clean accuracy: **90.00%**" in md
    assert "cumulative" in md  # cascade mode is explained
    assert "| eps | attack | robust acc |" in md
    assert "queries" in md and "boundary_distance" in md
    assert "8/255" in md
    assert "| 0.1 | 20.00% | fgsm: 6, rays: 1 |" in md
    assert md.count("\n| ") == 2 + 4 + 2  # two header rows, 4 results, 2 worst-case rows


def test_markdown_without_queries_has_no_queries_column():
    report = _report()
    report["results"] = [r for r in report["results"] if r["attack"] == "fgsm"]
    assert "queries" not in render_markdown(report)


def test_csv_one_row_per_result():
    rows = list(csv.DictReader(io.StringIO(render_csv(_report()))))
    assert len(rows) == 4
    assert rows[1]["attack"] == "rays" and float(rows[1]["queries"]) == 812.5
    assert float(rows[1]["extra:boundary_distance"]) == 0.04
    assert rows[0]["queries"] == "" and rows[0]["extra:boundary_distance"] == ""
    assert json.loads(rows[0]["params"]) == {"seed": 0, "steps": 10}
    assert rows[0]["norm"] == "linf"


def test_terminal_table():
    text = render_table(_report())
    assert text.splitlines()[0].startswith("clean accuracy: 90.00%")
    assert "worst-case robust acc" in text and "rays" in text


def test_write_report_and_load(tmp_path):
    paths = write_report(_report(), tmp_path / "out")
    assert set(paths) == {"json", "markdown", "csv", "plot"}
    assert (tmp_path / "out" / "robust_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_report(tmp_path / "out") == _report()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.json", "report.md", "results.csv", "robust_accuracy.png"]


def test_write_report_refuses_nan(tmp_path):
    report = _report()
    report["clean_accuracy"] = float("nan")
    with pytest.raises(ValueError):
        write_report(report, tmp_path, plot=False)
    assert not (tmp_path / "report.json").exists()
