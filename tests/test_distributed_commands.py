"""``autoattack``, ``compare`` and ``analyze transfer`` sharded over torchrun ranks (gloo, CPU) give the
report of one process.

Each test runs the command once in this process (the reference) and once under
``python -m torch.distributed.run --standalone --nproc-per-node K -m robustreg -- ...`` (one test: two
launches as two nodes of a c10d rendezvous on localhost), then compares
the two report.json files with the wall times left out, and the per-sample results: the kept state's
cells (autoattack), each row's broken samples, the noise and the disagreements (compare), the transfer
matrices (transfer).  Every command here runs a randomised attack (AutoAttack's APGD, PGD's random
start), whose draws must not depend on the rank a batch runs on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from test_distributed_evaluation import _env, _free_port, rank_records

from robustreg.cli import main

TIMING = ("seconds", "relative_seconds", "created", "resumed", "distributed", "environment")


def _launch(nproc: int, args: list[str], cwd: Path, *, script: Path | None = None,
            node: tuple[int, int, int] | None = None) -> subprocess.Popen:
    """``python -m torch.distributed.run --standalone --nproc-per-node nproc -m robustreg -- args`` (or
    ``script args``); ``node``: (node rank, number of nodes, port) of a c10d rendezvous on localhost instead."""
    program = [str(script)] if script is not None else ["-m", "robustreg", "--"]
    launch = ["--standalone"] if node is None else [
        "--nnodes", str(node[1]), "--node-rank", str(node[0]), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{node[2]}", "--rdzv-id", "robustreg-commands"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "--nproc-per-node", str(nproc), *program, *args]
    return subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait(procs: list[subprocess.Popen], timeout: float = 120) -> list[str]:
    """Every launch's log once all have exited 0 (a launch still running after ``timeout`` is killed)."""
    logs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, out[-4000:]
            logs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return logs


def _torchrun(nproc: int, args: list[str], cwd: Path, *, script: Path | None = None) -> str:
    return _wait([_launch(nproc, args, cwd, script=script)])[0]


def _numbers(value: Any) -> Any:
    """A report without what differs from run to run: wall times (``seconds``, AutoAttack's
    ``seconds:<sub>``), creation time, resumed, the ranks' layout, the environment (command line, threads)."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if k not in TIMING and not str(k).startswith("seconds:")}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def _assert_same_report(out: Path, reference: Path, world_size: int) -> dict[str, Any]:
    got, want = _report(out), _report(reference)
    assert [k for k in _numbers(want) if _numbers(got).get(k) != _numbers(want)[k]] == []
    assert _numbers(got) == _numbers(want)
    assert want["distributed"]["world_size"] == 1 and len(want["distributed"]["seconds_per_rank"]) == 1
    assert got["distributed"]["world_size"] == world_size
    assert len(got["distributed"]["seconds_per_rank"]) == world_size
    assert all(s >= 0 for s in got["distributed"]["seconds_per_rank"])
    return got


# --- the shared helper ---------------------------------------------------------------------------------
SHARD_SCRIPT = textwrap.dedent('''
    import json
    import torch
    from robustreg.evaluation.distributed import process_group, shard_batches

    def run(k, failing):
        if k in failing:
            raise ValueError(f"batch {k} failed")
        return {"k": k, "rank": group.rank}

    with process_group(torch.device("cpu")) as group:
        outcomes = []
        for failing in ((), (5, 4)):
            try:
                values, waited = shard_batches(group, 7, lambda k: run(k, failing))
                outcomes.append({"values": values, "waited": waited >= 0})
            except ValueError as exc:
                outcomes.append({"error": str(exc)})
        print(json.dumps({"rank": group.rank, "outcomes": outcomes}), flush=True)
''')


def test_shard_batches_gathers_in_batch_order_and_raises_the_first_failure(tmp_path):
    """Batch k runs on rank k % 3 and every rank gets every value in batch order; when batches 5 (rank 2)
    and 4 (rank 1) fail, every rank raises batch 4's error, the one a single process meets first."""
    from robustreg.evaluation.distributed import SINGLE, shard_batches

    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    log = _torchrun(3, [], tmp_path, script=script)
    lines = sorted(rank_records(log), key=lambda line: line["rank"])
    assert [line["rank"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["outcomes"] == [{"values": [{"k": k, "rank": k % 3} for k in range(7)], "waited": True},
                                    {"error": "batch 4 failed"}]
    values, waited = shard_batches(SINGLE, 3, lambda k: k * k)
    assert values == [0, 1, 4] and waited == 0.0
    with pytest.raises(ValueError, match="batch 1"):
        shard_batches(SINGLE, 3, lambda k: k if k != 1 else int("batch 1"))


# --- autoattack ---------------------------------------------------------------------------------------
# The standard suite (APGD-CE, APGD-T, FAB-T, Square at their full budgets) at eps 0.13 on 24 of the first
# 26 digits test images, in 3 batches of 8.  Images 0 and 8 are left out: they survive the whole suite,
# and a survivor costs FAB-T's and Square's full budgets (~10 s a rank here, too slow for this test).  On
# the 24, APGD-CE leaves one point standing and APGD-T breaks it; FAB-T and Square get no point.
AUTOATTACK = ["autoattack", "--model", "digits-cnn-pretrained", "--eps", "0.13", "--batch-size", "8", "--quiet",
              "--keep-state"]
LEFT_OUT = (0, 8)


@pytest.fixture(scope="module")
def digits24(tmp_path_factory) -> str:
    """``npz:PATH`` of the first 26 digits test images without images 0 and 8."""
    import numpy as np

    from robustreg.data import load_data

    x, y = load_data("digits").tensors(26)
    keep = [i for i in range(26) if i not in LEFT_OUT]
    path = tmp_path_factory.mktemp("digits24") / "digits24.npz"
    np.savez(path, x=x[keep].numpy(), y=y[keep].numpy())
    return f"npz:{path}"


def _cells(out: Path) -> dict[str, dict[str, Any]]:
    """Every cell's per-sample records in the kept state: ran, broken, distance and the per-sample extras
    (AutoAttack's ``robust_after:<sub>``, the pass counts)."""
    state = torch.load(out / "state.pt", weights_only=True)
    return {key: {"ran": cell["ran"], "broken": cell["broken"], "distance": cell["distance"].nan_to_num(-1),
                  **{f"extra {k}": v.nan_to_num(-1) for k, v in cell["extras"].items()}}
            for key, cell in state["cells"].items()}


def _assert_same_cells(out: Path, reference: Path) -> None:
    got, want = _cells(out), _cells(reference)
    assert got.keys() == want.keys() and want
    for key in want:
        assert got[key].keys() == want[key].keys()
        for field in want[key]:
            assert torch.equal(got[key][field], want[key][field]), (key, field)


@pytest.fixture(scope="module")
def autoattack_reference(tmp_path_factory, digits24) -> Path:
    out = tmp_path_factory.mktemp("aa") / "one"
    assert main(["--", *AUTOATTACK, "--data", digits24, "--out", str(out)]) == 0
    extras = _report(out)["results"][0]["extras"]
    assert [k for k in extras if k.startswith("robust_after:")] == [
        "robust_after:apgd-ce", "robust_after:apgd-t", "robust_after:fab-t", "robust_after:square"]
    # something to compare: APGD-CE broke points and left some, APGD-T broke points APGD-CE left
    assert extras["robust_after:apgd-t"] < extras["robust_after:apgd-ce"] < 1
    return out


@pytest.mark.parametrize("world_size", [2, 3])
def test_autoattack_sharded_matches_one_process(world_size, autoattack_reference, digits24, tmp_path):
    out = tmp_path / "out"
    log = _torchrun(world_size, [*AUTOATTACK, "--data", digits24, "--out", str(out)], tmp_path)
    _assert_same_report(out, autoattack_reference, world_size)
    _assert_same_cells(out, autoattack_reference)
    assert not list(out.glob("state.rank*.pt"))
    assert log.count("robust after square:") == 1 and log.count("report: ") == 1  # rank 0 alone prints


@pytest.mark.slow
def test_autoattack_on_two_nodes_with_their_own_folders(autoattack_reference, digits24, tmp_path):
    """Two torchrun launches of one rank each (``--nnodes 2 --node-rank 0/1``, c10d rendezvous on localhost),
    each node with its own ``--out`` as on machines without a shared disk: node 0's folder holds the report
    and the state, node 1's keeps only its batch file while the run lasts (gone at the end)."""
    port = _free_port()
    outs = [tmp_path / f"node{rank}" for rank in (0, 1)]
    logs = _wait([_launch(1, [*AUTOATTACK, "--data", digits24, "--out", str(outs[rank])], tmp_path,
                          node=(rank, 2, port)) for rank in (0, 1)])
    _assert_same_report(outs[0], autoattack_reference, 2)
    _assert_same_cells(outs[0], autoattack_reference)
    assert sorted(p.name for p in outs[0].iterdir()) == ["report.json", "report.md", "results.csv",
                                                        "robust_accuracy.png", "state.pt"]
    assert list(outs[1].iterdir()) == []
    assert "report: " in logs[0] and "report: " not in logs[1]


# --- compare ------------------------------------------------------------------------------------------
# native PGD (random start) and torchattacks' PGD on 60 digits in batches of 8; with the noise run
# (native PGD again with seed + 1), which is sharded as well.
COMPARE = ["compare", "--model", "digits-cnn-pretrained", "--data", "digits", "--attack", "pgd", "--eps", "0.1",
           "--toolkits", "native,torchattacks", "--param", "steps=3", "--n", "60", "--batch-size", "8", "--quiet"]


def test_compare_sharded_matches_one_process(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["--", *COMPARE, "--out", str(one)]) == 0
    capsys.readouterr()
    want = _report(one)
    rows = {r["toolkit"]: r for r in want["results"]}
    assert rows.keys() == {"native", "torchattacks"} and all(r["available"] for r in rows.values())
    assert all(0 < len(r["broken_samples"]) < 60 for r in rows.values())  # something to compare
    assert want["noise"]["seeds"] == [0, 1]

    log = _torchrun(2, [*COMPARE, "--out", str(two)], tmp_path)
    got = _assert_same_report(two, one, 2)
    for row, expected in zip(got["results"], want["results"]):
        assert row["broken_samples"] == expected["broken_samples"], row["toolkit"]
    assert got["noise"]["samples"] == want["noise"]["samples"]
    assert got["disagreements"] == want["disagreements"]
    assert sorted(p.name for p in two.iterdir()) == ["report.json", "report.md"]  # compare keeps no state
    assert log.count("report: ") == 1  # rank 0 alone prints


# --- analyze transfer ---------------------------------------------------------------------------------
def _transfer_args(models_dir: Path, mnist_dir: Path) -> list[str]:
    adv, clean = models_dir / "mnist_lenet5_advtrained.pt", models_dir / "mnist_lenet5_clntrained.pt"
    return ["analyze", "transfer", "--source", f"lenet5-mnist@{adv}", "--source", f"lenet5-mnist@{clean}",
            "--data", f"mnist:{mnist_dir}", "--n", "40", "--attacks", "fgsm,pgd", "--param", "pgd.steps=3",
            "--eps", "0.2,0.3", "--batch-size", "8", "--quiet"]


def test_transfer_sharded_matches_one_process(models_dir, mnist_dir, tmp_path, capsys):
    """The PGD-trained and the clean LeNet-5 on 40 MNIST test images, each the other's source."""
    args = _transfer_args(models_dir, mnist_dir)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["--", *args, "--out", str(one)]) == 0
    capsys.readouterr()
    want = _report(one)
    values = [v for block in want["matrices"] for row in block["accuracy"] for v in row]
    assert len(set(values)) > 2  # something to compare: black-box, white-box, eps all differ

    log = _torchrun(2, [*args, "--out", str(two)], tmp_path)
    got = _assert_same_report(two, one, 2)
    assert got["matrices"] == want["matrices"] and got["clean_accuracy"] == want["clean_accuracy"]
    assert log.count("report: ") == 1  # rank 0 alone writes and prints


def test_other_analyses_refuse_several_ranks(monkeypatch, tmp_path, capsys):
    """Only transfer shares its work: another analysis under a torchrun of 2 ranks is one clear error."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["--", "analyze", "logit-scale", "--model", "digits-cnn-pretrained", "--data", "digits",
                 "--attacks", "fgsm", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        "robustreg: error: analyze logit-scale runs in one process (under torchrun only analyze transfer shares "
        "its work over the ranks); got WORLD_SIZE=2")
    assert not (tmp_path / "out").exists()
