"""One run at a time in a folder (:mod:`robustreg.lock`): a second run is refused with one line naming the
folder and the holder, a lock left by a killed run is taken over with a notice, and a report of another
configuration written meanwhile is refused instead of replaced.

The holders are real processes: a ``robustreg evaluate`` stopped (SIGSTOP) while it holds its ``--out``, then
killed (SIGKILL), and a small Python process holding the folders of every command that writes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from robustreg import FolderInUse, UserError, evaluate, folder_lock
from robustreg.cli import main
from robustreg.data import load_data
from robustreg.lock import LOCK_FILE, Holder, ReportGuard
from robustreg.models import build_model
from robustreg.training import TrainConfig, Trainer

HOST = socket.gethostname()
EVALUATE = ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", "20", "--quiet"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def _robustreg(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "robustreg", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)


def _holder_of(folder: Path) -> Holder | None:
    try:
        return Holder.parse((folder / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None


def _wait_for_lock(proc: subprocess.Popen[str], folder: Path, timeout: float = 120) -> Holder:
    """The lock file of ``folder`` once it names ``proc``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = _holder_of(folder)
        if holder is not None and holder.pid == proc.pid:
            return holder
        if proc.poll() is not None:
            pytest.fail(f"the first run ended before it was seen holding {folder}: {proc.communicate()}")
        time.sleep(0.005)
    pytest.fail(f"the first run did not lock {folder} within {timeout} s")


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("robustreg: error:")]


def test_a_second_evaluate_is_refused_while_the_first_runs_and_a_killed_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "OUT"
    # the first run: long enough (1000 PGD steps) that it is still running when it is stopped
    first = subprocess.Popen([sys.executable, "-m", "robustreg", *EVALUATE, "--attacks", "pgd", "--param",
                              "steps=1000", "--eps", "0.05", "--out", str(out)], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        holder = _wait_for_lock(first, out)
        os.kill(first.pid, signal.SIGSTOP)  # holds its lock, uses no CPU meanwhile
        assert holder.host == HOST and "robustreg evaluate" in holder.command and "--eps 0.05" in holder.command

        second = _robustreg([*EVALUATE, "--attacks", "fgsm", "--eps", "0.1", "--out", str(out)], tmp_path)
        assert second.returncode == 2, second.stderr
        assert _error_lines(second.stderr) == [
            f"robustreg: error: --out {str(out)!r} is in use by another robustreg run ({holder.describe()}); "
            f"wait for it to finish or choose another --out"]
        assert second.stdout == ""
        assert not (out / "report.json").exists() and _holder_of(out) == holder  # the holder's lock untouched

        os.kill(first.pid, signal.SIGKILL)  # killed while holding the lock: the kernel drops the flock
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
    assert _holder_of(out) == holder  # the file the killed run could not remove

    third = _robustreg([*EVALUATE, "--attacks", "fgsm", "--eps", "0.1", "--out", str(out)], tmp_path)
    assert third.returncode == 0, third.stderr
    assert f"robustreg: warning: taking over the lock of {out} left by pid {first.pid} on {HOST} (no longer " \
           f"running)" in third.stderr.splitlines()
    assert json.loads((out / "report.json").read_text())["eps"] == [0.1]
    assert not (out / LOCK_FILE).exists()  # a finished run leaves no lock behind


HELD = ["evaluate", "autoattack", "compare", "curve", "analyze", "cascade-store", "train", "state", "trainer"]


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A folder of :data:`HELD` folders whose locks another process (its pid) holds (one process: one start)."""
    root = tmp_path_factory.mktemp("held")
    code = ("import sys\nfrom contextlib import ExitStack\nfrom robustreg.lock import folder_lock\n"
            "with ExitStack() as locks:\n"
            "    for folder in sys.argv[1:]:\n        locks.enter_context(folder_lock(folder, command='holder'))\n"
            "    print('held', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, *(str(root / name) for name in HELD)], env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield root, proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


MODEL_DATA = ["--model", "digits-cnn-pretrained", "--data", "digits"]
COMMANDS = {
    "evaluate": [*EVALUATE, "--attacks", "fgsm", "--eps", "0.1"],
    "autoattack": ["autoattack", *MODEL_DATA, "--eps", "0.1", "--n", "20"],
    "compare": ["compare", *MODEL_DATA, "--attack", "fgsm", "--eps", "0.1", "--toolkits", "native", "--n", "20"],
    "curve": ["curve", *MODEL_DATA, "--attack", "fmn", "--n", "20"],
    "analyze": ["analyze", "logit-scale", *MODEL_DATA, "--attacks", "fgsm", "--n", "20"],
    "cascade-store": ["cascade-store", "--source", "digits-cnn-pretrained", "--data", "digits", "--n", "20"],
    "train": ["train", "--model", "digits-cnn", "--data", "digits", "--iterations", "2", "--batch-size", "16"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_that_writes_refuses_a_folder_another_run_holds(command, holder, registry, capsys):
    folder, pid = holder[0] / command, holder[1]
    if command == "autoattack" and "autoattack:standard" not in registry.entries("attacks"):
        pytest.skip("the AutoAttack package (pyautoattack) is not installed")
    assert main([*COMMANDS[command], "--out", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"robustreg: error: --out {str(folder)!r} is in use by another robustreg run (pid {pid} "
                          f"on {HOST}, since ")
    assert err.endswith(": holder); wait for it to finish or choose another --out")
    assert "\n" not in err
    assert _holder_of(folder) == Holder(pid, HOST, "holder", _holder_of(folder).started)  # left as it was


def test_a_state_file_in_a_held_folder_is_refused_and_the_new_out_removed(holder, tmp_path, capsys):
    folder, pid = holder[0] / "state", holder[1]
    out = tmp_path / "new" / "out"
    assert main([*COMMANDS["evaluate"], "--out", str(out), "--state", str(folder / "state.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"robustreg: error: --state {str(folder / 'state.pt')!r}: its folder {str(folder)!r} is in "
                          f"use by another robustreg run (pid {pid} on {HOST}")
    assert err.endswith("choose another --state")
    assert not (tmp_path / "new").exists()  # the folders this run created are gone with its lock


def _digits_train(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return load_data("digits", split="train").tensors(n)


def test_training_into_a_held_out_is_refused_and_a_rerun_writes_no_row_twice(holder, tmp_path):
    folder, pid = holder[0] / "trainer", holder[1]
    config = dict(model="digits-cnn", data="digits", iterations=6, batch_size=16, log_every=1, quiet=True)
    with pytest.raises(FolderInUse, match=rf"--out '{folder}' is in use by another robustreg run \(pid {pid} "):
        Trainer(TrainConfig(**config, out=str(folder)), data=_digits_train()).run()
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing written

    out = tmp_path / "train"
    Trainer(TrainConfig(**config, out=str(out)), data=_digits_train()).fit()
    rows = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows if json.loads(r)["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    result = Trainer(TrainConfig(**config, out=str(out)), data=_digits_train()).run()  # the same run again
    assert result.finished and result.steps == 0
    assert (out / "log.jsonl").read_text().splitlines() == rows
    assert sorted(p.name for p in out.iterdir()) == ["final.pt", "last.pt", "log.csv", "log.jsonl"]


def test_a_report_of_another_configuration_written_meanwhile_is_refused_not_replaced(tmp_path):
    """A writer that takes no lock (here the model itself, during the run) puts another configuration's
    report.json into --out: the run refuses to replace it and keeps its state to finish elsewhere."""
    model, data = build_model("digits-cnn-pretrained"), load_data("digits")
    other = evaluate(model, data, ["fgsm"], [0.05], n=20, out=tmp_path / "other", progress=False)
    out = tmp_path / "out"
    calls = []

    def write_other(_module: object, args: tuple, _out: object) -> None:
        if not calls and args[0].shape[0] > 1:  # during the run: evaluate() probes the output on 1 image first
            calls.append(1)
            out.mkdir(exist_ok=True)
            (out / "report.json").write_text((tmp_path / "other" / "report.json").read_text())

    hook = model.register_forward_hook(write_other)
    try:
        with pytest.raises(UserError, match=r"another run wrote a report of another configuration while this one "
                                            r"ran \(eps \(there \[0.05\], this run \[0.1\]\)\); this run's report is "
                                            r"not written \(its state is kept in .*state.pt\)"):
            evaluate(model, data, ["fgsm"], [0.1], n=20, out=out, progress=False)
    finally:
        hook.remove()
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(other))  # still the other one
    assert (out / "state.pt").is_file()
    # a report of the same configuration written meanwhile, or none at all, lets the run write its own
    again = evaluate(model, data, ["fgsm"], [0.05], n=20, out=tmp_path / "other", progress=False)
    assert json.loads((tmp_path / "other" / "report.json").read_text())["created"] == again["created"]


def test_report_guard_compares_with_what_the_run_found_at_its_start(tmp_path):
    def identity(report):
        return {"eps": str(report.get("eps"))}

    guard = ReportGuard.take(tmp_path, identity)  # no report at the start
    guard.check({"eps": 1})
    (tmp_path / "report.json").write_text(json.dumps({"eps": 2}))
    guard.check({"eps": 2})  # the same configuration's
    with pytest.raises(UserError, match=r"eps \(there 2, this run 1\)"):
        guard.check({"eps": 1})
    ReportGuard.take(tmp_path, identity).check({"eps": 1})  # there at the start: --overwrite's case
    (tmp_path / "report.json").write_text("{cut")
    with pytest.raises(UserError, match=r"report.json \(there not JSON, this run None\)"):
        guard.check({"eps": 2})


def test_folder_lock_within_one_process(tmp_path, capsys):
    folder = tmp_path / "a" / "b"
    with folder_lock(folder, command="first") as path:
        assert path == folder / LOCK_FILE
        assert _holder_of(folder) == Holder(os.getpid(), HOST, "first", _holder_of(folder).started)
        with pytest.raises(FolderInUse, match=r"^--out '.*b' is in use by another robustreg run \(pid \d+ on .*: "
                                              r"first\); wait for it to finish or choose another --out$"):
            with folder_lock(folder):  # a second open file: flock refuses it even in the same process
                pass
        assert path.exists()
    assert not path.exists() and folder.is_dir()
    # a lock file whose holder is gone (a pid that has exited) is taken over with one notice line
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "host": HOST, "command": "robustreg train", "started": "x"}))
    with folder_lock(folder, command="second"):
        assert _holder_of(folder).command == "second"
    assert capsys.readouterr().err == (f"robustreg: warning: taking over the lock of {folder} left by pid {dead.pid} "
                                       f"on {HOST} (no longer running)\n")
    # an empty lock file (a run killed between creating and filling it) is taken over silently
    path.write_text("")
    with folder_lock(folder):
        pass
    assert capsys.readouterr().err == "" and not path.exists()
