"""Evaluation sharded over torch.distributed ranks (gloo, CPU) gives the report of one process.

Each test launches torchrun on localhost and compares the report.json and the kept state (every cell's
per-sample ``ran`` / ``broken`` / ``distance``) with a single-process evaluation of the same seed,
computed in this process.  pgd with its random start is among the attacks: its draws must not depend
on the rank a batch runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import robustreg
from robustreg import Attack, AttackInfo, Registry
from robustreg.cli import main
from robustreg.evaluation import evaluate

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
N, BATCH, EPS = 60, 8, [0.1, 0.2]
ATTACKS: list[Any] = [("fgsm", {}), ("pgd", {"steps": 2, "random_start": True}), ("pgd", {"steps": 2, "loss": "cw"})]

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from torch import nn
    import robustreg
    from robustreg import Attack, AttackInfo, Registry
    from robustreg.data import load_data
    from robustreg.evaluation import evaluate
    from robustreg.models import build_model

    torch.set_num_threads(1)
    out, mode, attacks = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    stop_rank, stop_after = (int(v) for v in os.environ.get("STOP_AT", "-1:0").split(":"))

    class Stop(Attack):
        """One signed-gradient step; KeyboardInterrupt on rank stop_rank's call stop_after (a kill)."""
        info = AttackInfo(norms=("linf",), summary="test step that can stop the run")
        name = "t-stop"
        calls = 0

        def perturb(self, model, x, y, generator, target=None):
            Stop.calls += 1
            if int(os.environ["RANK"]) == stop_rank and Stop.calls == stop_after:
                raise KeyboardInterrupt
            x = x.requires_grad_(True)
            (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y, reduction="sum"), x)
            return (x + self.threat.eps * grad.sign()).clamp(0, 1)

    class Plugin:
        @robustreg.hookimpl
        def robustreg_register_attacks(self, registrar):
            registrar.add_attack("t-stop", Stop)

    registry = Registry.create(plugins=[("test-stop", Plugin())])
    report = evaluate(build_model("digits-cnn-pretrained"), load_data("digits"), [tuple(a) for a in attacks],
                      [0.1, 0.2], n=60, batch_size=8, mode=mode, out=out, keep_state=True, progress=False,
                      registry=registry, distributed=True, save_adv=os.environ.get("SAVE_ADV") or None)
    accuracies = [r["robust_accuracy"] for r in report["results"]]
    print(json.dumps({"rank": int(os.environ["RANK"]), "accuracies": accuracies}), flush=True)
''')


class _Stop(Attack):
    """The script's t-stop, here (it never stops in this process)."""

    info = AttackInfo(norms=("linf",), summary="test step that can stop the run")
    name = "t-stop"

    def perturb(self, model, x, y, generator, target=None):
        x = x.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        return (x + self.threat.eps * grad.sign()).clamp(0, 1)


class _Plugin:
    @robustreg.hookimpl
    def robustreg_register_attacks(self, registrar):
        registrar.add_attack("t-stop", _Stop)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_records(log: str) -> list[dict[str, Any]]:
    """Every ``{"rank": ...}`` JSON object the ranks printed, in order of appearance: ranks print at
    the same time, so two objects can share a line (one rank's newline after the other's object)."""
    decoder, out = json.JSONDecoder(), []
    at = log.find('{"rank"')
    while at != -1:
        record, end = decoder.raw_decode(log, at)
        out.append(record)
        at = log.find('{"rank"', end)
    return out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "STOP_AT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def _torchrun(nproc: int, args: list[str], cwd: Path, *, env: dict[str, str] | None = None,
              nodes: tuple[int, int] | None = None, port: int | None = None, **popen: Any) -> subprocess.Popen:
    port = port or _free_port()
    if nodes is None:
        launch = ["--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    else:
        launch = ["--nnodes", str(nodes[0]), "--node_rank", str(nodes[1]), "--rdzv_backend", "c10d",
                  "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "robustreg-test"]
    cmd = [TORCHRUN, "--nproc_per_node", str(nproc), *launch, *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 80) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "evaluate_sharded.py"
    path.write_text(SCRIPT)
    return path


def _one_process(out: Path, mode: str = "cascade", attacks: list[Any] = ATTACKS, **options: Any) -> dict[str, Any]:
    from robustreg.data import load_data
    from robustreg.models import build_model

    registry = Registry.create(plugins=[("test-stop", _Plugin())])
    return evaluate(build_model("digits-cnn-pretrained"), load_data("digits"), attacks, EPS, n=N, batch_size=BATCH,
                    mode=mode, out=out, keep_state=True, progress=False, registry=registry, **options)


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs from run to run (wall times, creation time, resumed, ranks)."""
    out = {k: v for k, v in report.items() if k not in ("seconds", "created", "resumed", "distributed", "environment")}
    out["results"] = [{k: v for k, v in r.items() if k != "seconds"} for r in report["results"]]
    return out


def _per_sample(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    state = torch.load(out / "state.pt", weights_only=True)
    return {key: {f: cell[f] for f in ("ran", "broken", "distance")} for key, cell in state["cells"].items()}


def _assert_same_run(out: Path, reference: Path, world_size: int) -> dict[str, Any]:
    report = json.loads((out / "report.json").read_text())
    expected = json.loads((reference / "report.json").read_text())
    got_numbers, want_numbers = _numbers(report), _numbers(expected)
    assert [k for k in want_numbers if got_numbers.get(k) != want_numbers[k]] == []
    assert got_numbers == want_numbers
    assert report["distributed"]["world_size"] == world_size
    assert len(report["distributed"]["seconds_per_rank"]) == world_size
    assert expected["distributed"]["world_size"] == 1
    got, want = _per_sample(out), _per_sample(reference)
    assert got.keys() == want.keys() and len(got) == len(EPS) * len(expected["attacks"])
    for key in want:
        for field in ("ran", "broken"):
            assert torch.equal(got[key][field], want[key][field]), (key, field)
        assert torch.equal(got[key]["distance"].nan_to_num(-1), want[key]["distance"].nan_to_num(-1)), key
    assert not list(out.glob("state.rank*.pt"))  # the batch files are gone once every cell is in the state
    return report


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "one"
    report = _one_process(out)
    assert 0 < report["worst_case"][0]["robust_accuracy"] < report["clean_accuracy"]  # something to compare
    return out


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_evaluation_matches_one_process(world_size, reference, tmp_path):
    out = tmp_path / "out"
    log = _finish(_torchrun(world_size, [str(_script(tmp_path)), str(out), "cascade", json.dumps(ATTACKS)], tmp_path))
    report = _assert_same_run(out, reference, world_size)
    lines = rank_records(log)
    # every rank returns rank 0's report
    assert sorted(line["rank"] for line in lines) == list(range(world_size))
    assert all(line["accuracies"] == [r["robust_accuracy"] for r in report["results"]] for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "results.csv",
                                                    "robust_accuracy.png", "state.pt"]


def test_sharded_run_keeps_the_adversarial_examples_of_one_process(tmp_path):
    """save_adv under torchrun: each rank writes its own batches, rank 0 the manifest; what is kept is what one
    process keeps, bit for bit (the same batches, the same per-sample seeds)."""
    from robustreg.evaluation import load_adversarial

    _one_process(tmp_path / "one", save_adv=tmp_path / "one-adv")
    env = {**_env(), "SAVE_ADV": str(tmp_path / "adv")}
    _finish(_torchrun(2, [str(_script(tmp_path)), str(tmp_path / "out"), "cascade", json.dumps(ATTACKS)], tmp_path,
                      env=env))
    mine, theirs = load_adversarial(tmp_path / "adv"), load_adversarial(tmp_path / "one-adv")
    assert [(c.label, c.eps) for c in mine] == [(c.label, c.eps) for c in theirs] and len(mine) == 6
    for got, want in zip(mine, theirs):
        assert torch.equal(got.indices, want.indices) and torch.equal(got.x_adv, want.x_adv), (got.label, got.eps)
    assert sum(c.indices.numel() for c in mine) > 0


CLI = ["evaluate", "--model", "digits-cnn-pretrained", "--data", "digits", "--n", str(N), "--attacks", "fgsm,pgd",
       "--eps", "0.1,0.2", "--param", "pgd.steps=2", "--batch-size", str(BATCH), "--quiet", "--keep-state",
       "--no-early-exit"]


def test_torchrun_module_form_matches_one_process(tmp_path, capsys):
    """``torchrun ... -m robustreg -- evaluate ...`` (the ``--`` keeps torchrun off ``--n``) gives the
    report of ``robustreg -- evaluate ...`` in one process."""
    assert main(["--", *CLI, "--out", str(tmp_path / "one")]) == 0
    assert "report:" in capsys.readouterr().out
    log = _finish(_torchrun(2, ["-m", "robustreg", "--", *CLI, "--out", str(tmp_path / "two")], tmp_path))
    assert log.count("report: ") == 1  # only rank 0 prints
    _assert_same_run(tmp_path / "two", tmp_path / "one", 2)


def test_killed_run_resumes_to_the_same_report(reference, tmp_path):
    """Rank 1 stops inside the third attack (t-stop) at the first eps; the same command resumes it (and so
    does one process from a copy of the killed run's files), each with the report of one process."""
    attacks = [*ATTACKS[:2], ["t-stop", {}]]
    want = tmp_path / "want"
    _one_process(want, attacks=[tuple(a) for a in attacks])
    out = tmp_path / "out"
    args = [str(_script(tmp_path)), str(out), "cascade", json.dumps(attacks)]
    killed = _torchrun(2, args, tmp_path, env={**_env(), "STOP_AT": "1:2"})
    log, _ = killed.communicate(timeout=80)
    assert killed.returncode != 0 and "KeyboardInterrupt" in log, log[-3000:]
    assert not (out / "report.json").exists()
    state = torch.load(out / "state.pt", weights_only=True)
    assert [key for key, cell in state["cells"].items() if cell["done"]] == ["0:0", "0:1"]
    shards = {p.name: torch.load(p, weights_only=True)["cells"] for p in out.glob("state.rank*.pt")}
    assert "0:2" in shards["state.rank1.pt"] and len(shards["state.rank1.pt"]["0:2"]) == 1
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)

    _finish(_torchrun(2, args, tmp_path))
    report = _assert_same_run(out, want, 2)
    assert report["resumed"] is True

    registry = Registry.create(plugins=[("test-stop", _Plugin())])
    from robustreg.data import load_data
    from robustreg.models import build_model

    again = evaluate(build_model("digits-cnn-pretrained"), load_data("digits"), [tuple(a) for a in attacks], EPS,
                     n=N, batch_size=BATCH, out=copy, keep_state=True, progress=False, registry=registry,
                     distributed=True)
    assert again["resumed"] is True and again["distributed"]["world_size"] == 1
    _assert_same_run(copy, want, 1)


def test_batch_file_of_another_configuration_is_refused(tmp_path):
    from robustreg.data import load_data
    from robustreg.models import build_model

    out = tmp_path / "out"
    model, data = build_model("digits-cnn-pretrained"), load_data("digits")
    evaluate(model, data, ["fgsm"], 0.1, n=16, batch_size=8, out=out, keep_state=True, progress=False)
    state = torch.load(out / "state.pt", weights_only=True)
    torch.save({"version": state["version"], "fingerprint": {**state["fingerprint"], "seed": "1"}, "cells": {}},
               out / "state.rank1.pt")
    (out / "report.json").unlink()
    with pytest.raises(ValueError, match=r"state.rank1.pt was written for a different configuration: seed"):
        evaluate(model, data, ["fgsm"], 0.1, n=16, batch_size=8, out=out, progress=False, distributed=True)


@pytest.mark.slow
def test_two_nodes_of_two_processes(reference, tmp_path):
    """Two torchrun launches (``--nnodes 2 --node_rank 0/1``, c10d rendezvous on localhost) of two ranks each."""
    out = tmp_path / "out"
    args = [str(_script(tmp_path)), str(out), "cascade", json.dumps(ATTACKS)]
    port = _free_port()
    nodes = [_torchrun(2, args, tmp_path, nodes=(2, rank), port=port, start_new_session=True) for rank in (0, 1)]
    try:
        for node in nodes:
            _finish(node, timeout=85)
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    _assert_same_run(out, reference, 4)


def test_plain_run_reports_world_size_one(reference):
    report = json.loads((reference / "report.json").read_text())
    assert report["distributed"]["world_size"] == 1
    assert report["distributed"]["seconds_per_rank"][0] >= 0
