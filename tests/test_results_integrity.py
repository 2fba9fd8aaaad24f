"""Results are never lost or silently reused: through the CLI, on the digits data and digits-cnn.

- a finished report in --out is refused for another configuration (unless --overwrite) and not
  recomputed for the same one;
- the state's data fingerprint covers every image (a state written for other data is refused);
- stale .NAME.PID.tmp files are removed by the next run;
- a truncated state.pt / last.pt is one line naming the file;
- an unwritable --out is found before any work, and a failed run leaves no empty --out behind;
- a kill between the renames of the report set leaves report.json intact, and the rerun repairs the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import robustreg
from robustreg import Attack, AttackInfo, AttackResult, Registry
from robustreg.cli import main
from robustreg.evaluation import data_fingerprint
from robustreg.report import render_csv, render_markdown

N = 48


class _Shift(Attack):
    """Deterministic and cheap: every pixel moved by eps towards the far side of 0.5."""

    info = AttackInfo(norms=("linf",), kind="white-box", source="tests", summary="shift")
    name = "t-shift"
    params = robustreg.ParamSet([robustreg.Param("scale", "float", 1.0, "fraction of eps", low=0.0, high=1.0)])

    def perturb(self, model, x, y, generator, target=None):
        step = torch.where(x > 0.5, -1.0, 1.0) * self.threat.eps * self.scale
        return AttackResult(self.threat.project(x + step, x))


class _Plugin:
    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-shift", _Shift)


@pytest.fixture()
def reg() -> Registry:
    return Registry.create(plugins=[("t-integrity", _Plugin())], entry_points=False)


_WEIGHTS: list[Path] = []  # digits-cnn's initialisation is random: one fixed set of weights for every run


@pytest.fixture(scope="module", autouse=True)
def _fixed_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "digits-cnn.pt"
    torch.save(robustreg.models.build_model("digits-cnn").state_dict(), path)
    _WEIGHTS[:] = [path]
    yield
    _WEIGHTS.clear()


def _evaluate(out: Path, *extra: str, data: str = "digits", n: int = N) -> list[str]:
    return ["evaluate", "--model", "digits-cnn", "--weights", str(_WEIGHTS[0]), "--data", data, "--attacks",
            "t-shift", "--eps", "0.1", "--n", str(n), "--batch-size", "16", "--quiet", "--out", str(out), *extra]


def _error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("robustreg: warning:")]
    assert len(err) == 1, err
    assert err[0].startswith("robustreg: error: ") and "Traceback" not in err[0]
    return err[0]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


@pytest.fixture()
def finished(reg, tmp_path, capsys) -> Path:
    """A folder holding the finished report of ``_evaluate(out)``."""
    out = tmp_path / "out"
    assert main(_evaluate(out), registry=reg) == 0
    capsys.readouterr()
    return out


def _npz(path: Path, flip_after: int | None = None, n: int = 100) -> Path:
    """The first n digits test images as an npz; ``flip_after``: images from there on inverted."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data[:n].reshape(-1, 1, 8, 8) / 16).astype(np.float32)
    if flip_after is not None:
        x[flip_after:] = 1 - x[flip_after:]
    np.savez(path, x=x, y=digits.target[:n].astype(np.int64))
    return path


# --- a finished report is never replaced, never recomputed ---------------------------------------------
def test_same_configuration_is_a_no_op(reg, finished, capsys, monkeypatch):
    before = (finished / "report.json").read_bytes()

    def no_evaluation(*args, **kwargs):
        raise AssertionError("recomputed a finished report")

    monkeypatch.setattr("robustreg.evaluation.evaluate", no_evaluation)
    assert main(_evaluate(finished), registry=reg) == 0
    out = capsys.readouterr().out
    assert f"report already there: {finished / 'report.json'}" in out and "robust acc" in out
    assert (finished / "report.json").read_bytes() == before


@pytest.mark.parametrize(("extra", "differs"), [
    (["--eps", "0.2"], "eps"),
    (["--seed", "1"], "seed"),
    ([], "n (report 48, now 40)"),
    (["--param", "scale=0.5"], "attacks/params"),
    (["--no-early-exit"], "mode"),
    (["--split", "train"], "data fingerprint"),
])
def test_another_configuration_is_refused(reg, finished, capsys, extra, differs):
    before = (finished / "report.json").read_bytes()
    argv = _evaluate(finished, *extra, n=N if extra else 40)
    assert main(argv, registry=reg) == 2
    line = _error(capsys)
    assert str(finished) in line and differs in line and "--overwrite" in line
    assert (finished / "report.json").read_bytes() == before


def test_model_fingerprint_differs_and_overwrite_replaces(reg, finished, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    model = robustreg.models.build_model("digits-cnn")
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    torch.save(model.state_dict(), weights)
    argv = _evaluate(finished, "--weights", str(weights))
    assert main(argv, registry=reg) == 2
    assert "model fingerprint" in _error(capsys)
    assert main(argv + ["--overwrite"], registry=reg) == 0
    assert "report already there" not in capsys.readouterr().out
    report = json.loads((finished / "report.json").read_text())
    assert report["model"]["weights"] == str(weights)
    assert main(argv, registry=reg) == 0  # now the same configuration
    assert "report already there" in capsys.readouterr().out


def test_unreadable_report_is_refused(reg, finished, capsys):
    (finished / "report.json").write_text('{"half": ')
    assert main(_evaluate(finished), registry=reg) == 2
    assert "cannot be read" in _error(capsys)
    assert main(_evaluate(finished, "--overwrite"), registry=reg) == 0
    assert json.loads((finished / "report.json").read_text())["n"] == N


def test_compare_out_follows_the_same_rules(reg, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "digits-cnn", "--weights", str(_WEIGHTS[0]), "--data", "digits", "--attack",
            "t-shift", "--eps", "0.1", "--toolkits", "native", "--n", str(N), "--quiet", "--out", str(out)]
    out.mkdir()
    stale = out / f".report.json.{_dead_pid()}.tmp"
    stale.write_text("{")
    assert main(argv, registry=reg) == 0
    assert not stale.exists()
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["fingerprint"] and report["model"]["fingerprint"]
    capsys.readouterr()
    assert main(argv, registry=reg) == 0
    assert "report already there" in capsys.readouterr().out
    assert main(argv[:-2] + ["--seed", "3", "--out", str(out)], registry=reg) == 2
    assert "seed" in _error(capsys)
    assert main(argv + ["--seed", "3", "--overwrite"], registry=reg) == 0
    assert json.loads((out / "report.json").read_text())["seed"] == 3


# --- the data fingerprint covers every image --------------------------------------------------------
def test_data_fingerprint_covers_every_image(reg, tmp_path, capsys):
    a, b = _npz(tmp_path / "a.npz"), _npz(tmp_path / "b.npz", flip_after=64)  # equal in the first 64 images
    (xa, ya), (xb, yb) = ((torch.from_numpy(np.load(p)["x"]), torch.from_numpy(np.load(p)["y"])) for p in (a, b))
    assert torch.equal(xa[:64], xb[:64]) and not torch.equal(xa, xb) and torch.equal(ya, yb)

    def first64(x, y):  # the fingerprint of STATE_VERSION 1
        h = hashlib.sha256(str(tuple(x.shape)).encode())
        h.update(y.numpy().tobytes())
        h.update(x[:64].numpy().tobytes())
        return h.hexdigest()[:16]

    assert first64(xa, ya) == first64(xb, yb)  # the old fingerprint could not tell them apart
    assert data_fingerprint(xa, ya) != data_fingerprint(xb, yb)

    state = tmp_path / "keep" / "state.pt"
    assert main(_evaluate(tmp_path / "o1", "--state", str(state), "--keep-state", data=f"npz:{a}", n=100),
                registry=reg) == 0
    assert state.is_file()
    capsys.readouterr()
    assert main(_evaluate(tmp_path / "o2", "--state", str(state), data=f"npz:{b}", n=100), registry=reg) == 2
    line = _error(capsys)
    assert str(state) in line and "data differs" in line
    assert not (tmp_path / "o2").exists()  # created by the failed run, still empty: removed


def test_state_of_the_older_format_is_refused(reg, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"version": 1, "fingerprint": {}, "clean_correct": torch.ones(N, dtype=torch.bool), "cells": {}},
               out / "state.pt")
    assert main(_evaluate(out), registry=reg) == 2
    line = _error(capsys)
    assert str(out / "state.pt") in line and "first 64 images" in line


# --- stale temporaries --------------------------------------------------------------------------------
def test_stale_temporaries_are_removed(reg, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    elsewhere.mkdir()
    pid = _dead_pid()
    stale = [out / f".report.json.{pid}.tmp", out / f".robust_accuracy.png.{pid}.tmp",
             elsewhere / f".state.pt.{pid}.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    live = out / f".notes.txt.{os.getpid()}.tmp"  # a writer that is still running (this process)
    live.write_bytes(b"busy")
    assert main(_evaluate(out, "--state", str(elsewhere / "state.pt")), registry=reg) == 0
    assert not any(path.exists() for path in stale)
    assert live.exists()


# --- corrupted state / checkpoint ---------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_state_is_one_line(reg, tmp_path, capsys, damage):
    out = tmp_path / "out"
    assert main(_evaluate(out, "--keep-state"), registry=reg) == 0
    state = out / "state.pt"
    data = state.read_bytes()
    state.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a zip" * 3, "empty": b""}[damage])
    (out / "report.json").unlink()  # the run was interrupted: only the state is left
    capsys.readouterr()
    assert main(_evaluate(out), registry=reg) == 2
    line = _error(capsys)
    assert str(state) in line and "delete it" in line and "--out" in line


def test_corrupted_last_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "digits-cnn", "--data", "digits", "--defense", "standard", "--iterations", "2",
            "--batch-size", "64", "--quiet", "--out", str(out)]
    assert "standard" in Registry.create().entries("defenses")  # a built-in: its absence is a failure, not a skip
    assert main(argv) == 0
    last = out / "last.pt"
    assert last.is_file()
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    assert main(argv) == 2
    line = _error(capsys)
    assert str(last) in line and "delete it" in line


# --- an unwritable --out is found before any work; no empty --out left ---------------------------------
def test_out_under_a_file_fails_before_the_model_loads(reg, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder")
    loaded = []
    real = robustreg.models.build_model
    monkeypatch.setattr("robustreg.models.build_model", lambda *a, **k: loaded.append(1) or real(*a, **k))
    state = tmp_path / "states" / "state.pt"
    started = time.perf_counter()
    assert main(_evaluate(blocker / "sub", "--state", str(state)), registry=reg) == 2
    assert time.perf_counter() - started < 5
    line = _error(capsys)
    assert "--out" in line and "cannot be written" in line and str(blocker / "sub") in line
    assert not loaded and not state.exists() and not (tmp_path / "states").exists()
    # the state's folder is probed too
    assert main(_evaluate(tmp_path / "out", "--state", str(blocker / "state.pt")), registry=reg) == 2
    assert "--state" in _error(capsys)
    assert not loaded and not (tmp_path / "out").exists()


def test_read_only_out_fails_before_the_model_loads(reg, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip() or mounted.returncode}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remount.stderr.decode().strip()}")
        assert main(_evaluate(ro), registry=reg) == 2
        line = _error(capsys)
        assert "cannot be written" in line and "Read-only" in line
        assert main(_evaluate(ro / "sub"), registry=reg) == 2
        assert "cannot be written" in _error(capsys)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_failed_run_leaves_no_empty_out(reg, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    argv = _evaluate(out)
    argv[argv.index("digits-cnn")] = "digits-cnx"
    assert main(argv, registry=reg) == 2
    assert "digits-cnx" in _error(capsys)
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    argv[argv.index(str(out))] = str(existing)
    assert main(argv, registry=reg) == 2
    assert existing.is_dir()  # not this run's to remove


# --- the report set after a kill between renames ------------------------------------------------------
@pytest.mark.parametrize("killed_at", ["report.md", "results.csv", "robust_accuracy.png", "report.json"])
def test_report_set_after_a_kill_between_renames(reg, finished, capsys, monkeypatch, killed_at):
    old = json.loads((finished / "report.json").read_text())
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == killed_at:
            raise KeyboardInterrupt  # the kill
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert main(_evaluate(finished, "--eps", "0.2", "--overwrite"), registry=reg) == 130
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads((finished / "report.json").read_text()) == old  # the source of truth is intact
    assert not [p for p in finished.iterdir() if p.name.endswith(".tmp")]
    capsys.readouterr()
    assert main(_evaluate(finished), registry=reg) == 0  # the old configuration: a no-op that repairs the set
    assert "report already there" in capsys.readouterr().out
    report = json.loads((finished / "report.json").read_text())
    assert report == old
    assert (finished / "report.md").read_text() == render_markdown(report)
    assert (finished / "results.csv").read_text() == render_csv(report)
    assert (finished / "robust_accuracy.png").stat().st_size > 0


def test_write_report_renames_report_json_last(tmp_path, monkeypatch):
    from robustreg.report import write_report

    report = {"clean_accuracy": 1.0, "n": 1, "norm": "linf", "mode": "cascade", "eps": [0.1], "results": [],
              "worst_case": []}
    order: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (order.append(Path(d).name), real_replace(s, d))[1])
    write_report(report, tmp_path)
    assert order[-1] == "report.json" and sorted(order) == sorted(
        ["report.md", "results.csv", "robust_accuracy.png", "report.json"])
    shutil.rmtree(tmp_path)


def test_autoattack_out_follows_the_same_rules(tmp_path, capsys):
    registry = Registry.create()
    assert "autoattack:rand" in registry.entries("attacks")  # pyautoattack is a requirement: never skipped
    out = tmp_path / "aa"
    argv = ["autoattack", "--model", "digits-cnn", "--weights", str(_WEIGHTS[0]), "--data", "digits", "--eps", "0.1",
            "--version", "rand", "--n", "16", "--quiet", "--out", str(out)]
    assert main(argv, registry=registry) == 0
    capsys.readouterr()
    assert main(argv, registry=registry) == 0
    printed = capsys.readouterr().out
    assert "report already there" in printed and "robust accuracy" in printed  # the summary, from the report
    assert main(argv[:-2] + ["--version", "standard", "--out", str(out)], registry=registry) == 2
    assert "attacks/params" in _error(capsys)
