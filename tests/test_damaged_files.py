"""Damaged files are refused with one line, never trusted, crashed on or replaced.

One real run (the embedded digits, digits-cnn-pretrained, fgsm at two eps, 60 points) leaves a state.pt
and a report.json whose version and fingerprints are right; each case copies the folder, damages one
field as a hand edit or a cut-short tool would, and runs the same command again: exit status 2, one
line naming the file and what is wrong, and the damaged file left as it was (nothing overwritten).
The same for the report.json of one real ``compare`` and one real ``curve`` run, the last.pt of one
real training run, an npz whose ``num_classes`` is an array, and a distributed run's per-rank batch file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustreg import AttackResult
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.evaluation import evaluate
from robustreg.evaluation.distributed import plain_record
from robustreg.models import build_model

N = 60
EPS = "0.05,0.1"


def _evaluate(out: Path, data: str = "digits") -> list[str]:
    return ["evaluate", "--model", "digits-cnn-pretrained", "--data", data, "--attacks", "fgsm", "--eps", EPS,
            "--n", str(N), "--batch-size", "32", "--quiet", "--keep-state", "--out", str(out)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one real finished run: report.json and the kept state.pt."""
    out = tmp_path_factory.mktemp("finished") / "out"
    assert main(_evaluate(out)) == 0
    assert (out / "report.json").is_file() and (out / "state.pt").is_file()
    return out


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("robustreg: warning:")]
    assert len(err) == 1, err
    assert err[0].startswith("robustreg: error: ") and "internal error" not in err[0]
    return err[0]


def _refused(argv: list[str], damaged: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``argv``: exit status 2 with one line naming ``damaged``, which is left byte for byte as it was."""
    before = damaged.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    line = _error(capsys)
    assert str(damaged.parent) in line
    assert damaged.read_bytes() == before
    return line


# --- state.pt (an interrupted run: the report is not there yet) ------------------------------------
def _cut(tensor: torch.Tensor) -> torch.Tensor:
    return tensor[:40].clone()


STATE_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "cells missing": (lambda s: s.pop("cells"), "cells is missing"),
    "cell tensor cut": (lambda s: s["cells"]["1:0"].update(broken=_cut(s["cells"]["1:0"]["broken"])),
                        "cell 'fgsm@0.1': broken holds 40 per-sample values, expected 60"),
    "extra cut": (lambda s: s["cells"]["0:0"]["extras"].update(forwards=_cut(s["cells"]["0:0"]["extras"]["forwards"])),
                  "cell 'fgsm@0.05': extras['forwards'] holds 40 per-sample values, expected 60"),
    "clean-correct short": (lambda s: s.update(clean_correct=_cut(s["clean_correct"])),
                            "clean_correct holds 40 per-sample values, expected 60"),
    "clean-correct as floats": (lambda s: s.update(clean_correct=s["clean_correct"].float()),
                                "clean_correct holds torch.float32 values, expected bool"),
    "fingerprint null": (lambda s: s.update(fingerprint=None), "fingerprint is None, not a mapping"),
    "cell not of the plan": (lambda s: s["cells"].update({"2:0": s["cells"]["0:0"]}),
                             "cells holds '2:0', which is not a cell of this run (fgsm@0.05, fgsm@0.1)"),
    "done as text": (lambda s: s["cells"]["0:0"].update(done="yes"),
                     "cell 'fgsm@0.05': done is a str ('yes'), not a bool"),
    "earlier cell lost": (lambda s: s["cells"].pop("0:0"),
                          "cell 'fgsm@0.1' is recorded but the earlier cell 'fgsm@0.05' is not finished"),
}


@pytest.mark.parametrize("case", list(STATE_DAMAGE))
def test_damaged_state_is_refused(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  case: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    (out / "report.json").unlink()  # the run was interrupted: only the state is left
    state_file = out / "state.pt"
    state = torch.load(state_file, weights_only=True)
    damage, what = STATE_DAMAGE[case]
    damage(state)
    torch.save(state, state_file)
    line = _refused(_evaluate(out), state_file, capsys)
    assert f"state file {state_file}: {what}; delete it or use another --out" in line


def test_intact_state_copy_resumes(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The check refuses damage, not a state as a run leaves it: the undamaged copy resumes to the same rows."""
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    (out / "report.json").unlink()
    assert main(_evaluate(out)) == 0
    report, want = (json.loads((folder / "report.json").read_text()) for folder in (out, finished))
    assert report["resumed"] is True
    assert [r["robust_accuracy"] for r in report["results"]] == [r["robust_accuracy"] for r in want["results"]]


# --- report.json (a finished run) -----------------------------------------------------------------------
REPORT_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "model as a name": (lambda r: r.update(model="lenet"), "model is a str ('lenet'), not a mapping"),
    "attacks null": (lambda r: r.update(attacks=None), "attacks is None, not a list"),
    "results deleted": (lambda r: r.pop("results"), "results is missing"),
    "a results row deleted": (lambda r: r["results"].pop(),
                              "results holds 1 row, expected 2: one per eps and attack (2 x 1)"),
    "rows swapped": (lambda r: r["results"].reverse(), "results[0] is 'fgsm' at eps 0.1, expected 'fgsm' at eps 0.05"),
    "robust accuracy as text": (lambda r: r["results"][0].update(robust_accuracy="88%"),
                                "results[0]: robust_accuracy is a str ('88%'), not a number"),
    "worst case deleted": (lambda r: r.pop("worst_case"), "worst_case is missing"),
    "n as text": (lambda r: r.update(n="60"), "n is a str ('60'), not an integer"),
}


@pytest.mark.parametrize("case", list(REPORT_DAMAGE))
def test_damaged_report_is_refused(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   case: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    path = out / "report.json"
    report = json.loads(path.read_text())
    damage, what = REPORT_DAMAGE[case]
    damage(report)
    path.write_text(json.dumps(report, indent=2))
    rendered = {name: (out / name).read_bytes() for name in ("report.md", "results.csv")}
    line = _refused(_evaluate(out), path, capsys)
    assert f"holds a damaged report.json: {what}" in line and "; delete it, pass --overwrite" in line
    assert {name: (out / name).read_bytes() for name in rendered} == rendered  # not re-rendered either


def test_intact_report_is_already_there(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    capsys.readouterr()
    assert main(_evaluate(out)) == 0
    assert "report already there" in capsys.readouterr().out


# --- the report.json of compare and of curve (the same rule, their own fields) ----------------------------
COMPARE = ["compare", "--model", "digits-cnn-pretrained", "--data", "digits", "--attack", "fgsm", "--eps", "0.1",
           "--toolkits", "native", "--n", str(N), "--quiet"]
CURVE = ["curve", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", str(N), "--attack", "fmn",
         "--param", "fmn.steps=5", "--verify", "fgsm", "--at", "0.1", "--quiet"]


def _duplicate_row(report: dict[str, Any]) -> None:
    report["results"].append(dict(report["results"][0]))


OTHER_DAMAGE: dict[str, tuple[list[str], Callable[[dict[str, Any]], None], str]] = {
    "compare: results deleted": (COMPARE, lambda r: r.pop("results"), "results is missing"),
    "compare: model as a name": (COMPARE, lambda r: r.update(model="lenet"), "model is a str ('lenet'), not a mapping"),
    "compare: a toolkit's row twice": (COMPARE, _duplicate_row,
                                       "results[1] repeats the toolkit 'native' (one row per toolkit)"),
    "compare: available as text": (COMPARE, lambda r: r["results"][0].update(available="yes"),
                                   "results[0]: available is 'yes', not true or false"),
    "curve: identity null": (CURVE, lambda r: r.update(identity=None), "identity is None, not a mapping"),
    "curve: norms cut": (CURVE, lambda r: r.update(norms=r["norms"][:40]),
                         "norms holds 40 per-sample values, expected 60"),
    "curve: curve deleted": (CURVE, lambda r: r.pop("curve"), "curve is missing"),
    "curve: verification count as text": (CURVE, lambda r: r["verification"][0].update(count="6"),
                                          "verification[0]: count is a str ('6'), not an integer"),
}


@pytest.fixture(scope="module")
def other_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The folders of one real compare run and one real curve run."""
    folders = {}
    for name, argv in (("compare", COMPARE), ("curve", CURVE)):
        folders[name] = tmp_path_factory.mktemp(name) / "out"
        assert main([*argv, "--out", str(folders[name])]) == 0
    return folders


@pytest.mark.parametrize("case", list(OTHER_DAMAGE))
def test_damaged_compare_and_curve_reports_are_refused(other_reports: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str], case: str) -> None:
    argv, damage, what = OTHER_DAMAGE[case]
    out = tmp_path / "out"
    shutil.copytree(other_reports[argv[0]], out)
    path = out / "report.json"
    report = json.loads(path.read_text())
    damage(report)
    path.write_text(json.dumps(report, indent=2))
    line = _refused([*argv, "--out", str(out)], path, capsys)
    assert f"holds a damaged report.json: {what}; delete it, pass --overwrite" in line


# --- an npz whose num_classes is an array ------------------------------------------------------------
def test_npz_num_classes_array_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = load_data("digits").tensors(N)
    path = tmp_path / "digits.npz"
    np.savez(path, x=x.numpy(), y=y.numpy(), num_classes=np.array([10, 10]))
    line = _refused(_evaluate(tmp_path / "out", data=f"npz:{path}"), path, capsys)
    assert "num_classes must be one integer >= 1, got an array of shape (2,) (int64)" in line
    assert "--data" in line


@pytest.mark.parametrize("argv", [COMPARE, CURVE], ids=["compare", "curve"])
def test_intact_other_reports_are_already_there(other_reports: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(other_reports[argv[0]], out)
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 0
    assert "report already there" in capsys.readouterr().out


# --- a training checkpoint (last.pt) ------------------------------------------------------------------
TRAIN = ["train", "--model", "digits-cnn", "--data", "digits", "--defense", "standard", "--iterations", "2",
         "--batch-size", "64", "--quiet"]


def _cut_weight(c: dict[str, Any]) -> None:
    c["model"]["conv1.weight"] = c["model"]["conv1.weight"][:2].clone()


CHECKPOINT_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "config missing": (lambda c: c.pop("config"), "config is missing"),
    "a weight cut": (_cut_weight,
                     "model['conv1.weight'] is a {cut} torch.float32 tensor, expected {shape} torch.float32"),
    "a weight missing": (lambda c: c["model"].pop("conv2.bias"), "model lacks conv2.bias"),
    "optimizer groups emptied": (lambda c: c["optimizer"].update(param_groups=[]),
                                 "optimizer: param_groups holds 0 groups, expected 1"),
    "ranks emptied": (lambda c: c.update(ranks=[]), "ranks holds 0 entries, expected 1 (one per process)"),
    "step as text": (lambda c: c.update(step="2"), "step is a str ('2'), not an integer"),
    "python rng cut": (lambda c: c["ranks"][0]["rng"]["python"].update(state=[1] * 9),
                       "ranks[0]: rng: python: state holds 9 values, expected 625 integers"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one real (two-step) training run, its last.pt among the files."""
    out = tmp_path_factory.mktemp("trained") / "out"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("case", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_is_refused(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       case: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    last = out / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    shape = tuple(checkpoint["model"]["conv1.weight"].shape)  # the architecture's, whatever it is
    damage, what = CHECKPOINT_DAMAGE[case]
    what = what.format(shape=shape, cut=(2, *shape[1:]))
    damage(checkpoint)
    torch.save(checkpoint, last)
    line = _refused([*TRAIN, "--out", str(out)], last, capsys)
    assert f"checkpoint {last}: {what}; delete it to start over or use another --out" in line


def test_intact_checkpoint_resumes(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    assert main([*TRAIN, "--out", str(out)]) == 0  # every step done: nothing to train, the checkpoint accepted


# --- a per-rank batch file of a distributed run ----------------------------------------------------------
def test_damaged_batch_file_is_refused(tmp_path: Path) -> None:
    """state.rank1.pt (the batches of an unfinished cell) holding a batch whose broken flags were cut."""
    model, data = build_model("digits-cnn-pretrained"), load_data("digits")
    out = tmp_path / "out"
    evaluate(model, data, ["fgsm"], 0.1, n=16, batch_size=8, out=out, keep_state=True, progress=False)
    state = torch.load(out / "state.pt", weights_only=True)
    idx = torch.arange(8)
    record = plain_record(idx, torch.zeros(8, dtype=torch.bool), torch.zeros(8), torch.zeros(8, dtype=torch.bool),
                          AttackResult(torch.empty(0)), 0.1)
    record["broken"] = record["broken"][:5]
    batch_file = out / "state.rank1.pt"
    torch.save({"version": state["version"], "fingerprint": state["fingerprint"], "cells": {"0:0": {0: record}}},
               batch_file)
    state["cells"].pop("0:0")  # the cell is unfinished: its batches are in the per-rank files
    torch.save(state, out / "state.pt")
    (out / "report.json").unlink()
    before = batch_file.read_bytes()
    with pytest.raises(ValueError, match=r"state.rank1.pt: cell 'fgsm@0.1', batch 0: broken holds 5 per-sample "
                                         r"values, expected 8; delete it"):
        evaluate(model, data, ["fgsm"], 0.1, n=16, batch_size=8, out=out, progress=False, distributed=True)
    assert batch_file.read_bytes() == before
