"""Two gloo processes under torchrun train the same weights as one process with the same global batch.

The model has no BatchNorm (and no dropout), so averaging the two half-batch gradients is exactly the
gradient of the whole batch's mean loss; what remains is float rounding, hence a tolerance.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    import torch.distributed as dist
    from torch import nn
    from robustreg import Registry
    from robustreg.training import TrainConfig, Trainer
    from robustreg_plugins.classic import standard

    torch.set_num_threads(1)
    out, defenses = sys.argv[1], sys.argv[2].split(",")
    x, y = torch.load(sys.argv[3], weights_only=True)

    def make_model():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 32), nn.ReLU(),
                             nn.Linear(32, 10))

    registry = Registry.create()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")  # the trainer uses a group that already exists (here: for two runs)
    for defense in defenses:
        params = {"steps": 2, "eps": 0.1, "random_start": False} if defense == "at" else {}
        cfg = TrainConfig(model="test:cnn", data="digits", defense=defense, defense_params=params, epochs=2,
                          batch_size=64, lr=0.05, schedule="cosine", flip=True, checkpoint_every=5, log_every=2,
                          quiet=True, out=os.path.join(out, defense))
        final = Trainer(cfg, registry=registry, model=make_model, data=(x, y)).fit()
        print(json.dumps({"rank": int(os.environ.get("RANK", "0")), "final": str(final)}), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()
''')


def _run(cmd: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    """Plain training, and PGD-AT (deterministic start) whose attack runs inside the defense on each rank."""
    from sklearn.datasets import load_digits

    from robustreg import Registry

    defenses = ["standard"] + (["at"] if "at" in Registry.create().entries("defenses") else [])
    digits = load_digits()
    data = tmp_path / "digits.pt"
    torch.save((torch.tensor(digits.data[:512], dtype=torch.float32).view(-1, 1, 8, 8) / 16,
                torch.tensor(digits.target[:512], dtype=torch.int64)), data)
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(script), str(tmp_path / "ddp"), ",".join(defenses), str(data)], tmp_path)
    single = _run([sys.executable, str(script), str(tmp_path / "single"), ",".join(defenses), str(data)], tmp_path)
    out, err = ddp.communicate(timeout=300)
    assert ddp.returncode == 0, err[-4000:]
    ranks = sorted(int(r) for r in re.findall(r'"rank": (\d+)', out))  # the two ranks' lines may interleave
    assert ranks == sorted([0, 1] * len(defenses))
    s_out, s_err = single.communicate(timeout=300)
    assert single.returncode == 0, s_err[-4000:]

    for defense in defenses:
        got = torch.load(tmp_path / "ddp" / defense / "final.pt", weights_only=True)
        want = torch.load(tmp_path / "single" / defense / "final.pt", weights_only=True)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5,
                                       msg=lambda m, k=key, d=defense: f"{d} {k}: {m}")
        state = torch.load(tmp_path / "ddp" / defense / "last.pt", weights_only=True)
        assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["step"] == 16
        assert torch.load(tmp_path / "single" / defense / "last.pt", weights_only=True)["world_size"] == 1
        # only rank 0 wrote the logs: each record once; the losses (averaged over ranks) match the single run's
        ddp_log = [json.loads(line) for line in (tmp_path / "ddp" / defense / "log.jsonl").read_text().splitlines()]
        one_log = [json.loads(line) for line in (tmp_path / "single" / defense / "log.jsonl").read_text().splitlines()]
        assert [(r["kind"], r["step"]) for r in ddp_log] == [(r["kind"], r["step"]) for r in one_log]
        for a, b in zip(ddp_log, one_log):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
