"""Kill a training run with SIGKILL after a checkpoint, resume it, and get the uninterrupted weights bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

# The run: a small CNN with BatchNorm and dropout on scikit-learn digits, checkpoints every 14 steps (28
# steps an epoch), random crop + flip, cosine lr, and a defense that (1) draws noise from the global torch
# RNG, (2) keeps a counter in its state_dict that scales that noise, and (3) when told, stops at a given
# step (after writing a marker file) so that the test kills it at a known place.  Any state the
# checkpoint forgets changes the final weights.
SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    import torch
    import torch.nn.functional as F
    from torch import nn
    from robustreg import Defense, DefenseInfo, DefenseOutput, Registry, hookimpl
    from robustreg.training import TrainConfig, Trainer

    torch.set_num_threads(1)


    class NoisyCE(Defense):
        """CE on inputs plus global-RNG noise whose scale depends on the defense's own state."""

        info = DefenseInfo(source="test")

        def __init__(self):
            self.pause_at = int(os.environ["TEST_PAUSE_AT"])  # not in the config: the resumed run drops it
            self.calls = 0

        def loss(self, model, x, y, *, step=0):
            if step == self.pause_at:
                open(os.path.join(sys.argv[1], "paused"), "w").close()
                time.sleep(600)
            self.calls += 1
            scale = 0.05 * (1 + self.calls % 3)
            x = (x + scale * torch.randn_like(x)).clamp(0, 1)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            return DefenseOutput(loss, {"calls": float(self.calls)}, logits_clean=logits)

        def state_dict(self):
            return {"calls": self.calls}

        def load_state_dict(self, state):
            self.calls = int(state["calls"])


    class Plugin:
        @hookimpl
        def robustreg_register_defenses(self, registrar):
            registrar.add_defense("noisy-ce", NoisyCE)


    def make_model():
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
                             nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


    out = sys.argv[1]
    x, y = torch.load(sys.argv[2], weights_only=True)
    cfg = TrainConfig(model="test:small-cnn", data="digits", defense="noisy-ce",
                      epochs=2, batch_size=64, lr=0.05, schedule="cosine", flip=True, checkpoint_every=14,
                      log_every=4, quiet=True, out=out)
    registry = Registry.create(entry_points=False, plugins=[("test-noisy", Plugin())])
    trainer = Trainer(cfg, registry=registry, model=make_model, data=(x, y))
    final = trainer.fit()
    print(json.dumps({"final": str(final), "calls": trainer.defense.calls}))
''')

TOTAL_STEPS = 2 * (1797 // 64)  # 56


def _launch(script: Path, out: Path, pause_at: int = -1) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", TEST_PAUSE_AT=str(pause_at))
    cmd = [sys.executable, str(script), str(out), str(script.with_name("digits.pt"))]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def _kill_when_paused(proc: subprocess.Popen, out: Path) -> int:
    """SIGKILL the run once it sits at its pause step; return the step of the checkpoint it left."""
    marker = out / "paused"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached its pause step"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    marker.unlink()
    assert not (out / "final.pt").exists()
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)["step"]


def _steps(out: Path) -> list[int]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if r["kind"] == "step"]


def test_sigkill_then_resume_is_bit_exact(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    torch.save((torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16,
                torch.tensor(digits.target, dtype=torch.int64)), tmp_path / "digits.pt")
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT)
    ref_out, run_out = tmp_path / "reference", tmp_path / "interrupted"

    reference = _launch(script, ref_out)  # runs beside the ones we kill
    # 1st kill mid-epoch: stopped at step 17, the checkpoint is step 14's, the log already has step 16
    assert _kill_when_paused(_launch(script, run_out, pause_at=17), run_out) == 14
    assert 16 in _steps(run_out)
    # 2nd kill after resuming: the checkpoint is at the epoch boundary (step 28); the log has step 32
    assert _kill_when_paused(_launch(script, run_out, pause_at=33), run_out) == 28
    assert 32 in _steps(run_out)
    (run_out / ".last.pt.999999.tmp").write_bytes(b"half a checkpoint")  # what a kill mid-write leaves

    resumed = _finish(_launch(script, run_out))
    ref = _finish(reference)
    assert resumed["calls"] == ref["calls"] == TOTAL_STEPS  # the defense's state came back too
    assert not (run_out / ".last.pt.999999.tmp").exists()

    got = torch.load(run_out / "final.pt", map_location="cpu", weights_only=True)
    want = torch.load(ref_out / "final.pt", map_location="cpu", weights_only=True)
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), f"{key} differs after two kills and resumes"
    got_state = torch.load(run_out / "last.pt", map_location="cpu", weights_only=True)
    want_state = torch.load(ref_out / "last.pt", map_location="cpu", weights_only=True)
    for pid, buf in want_state["optimizer"]["state"].items():
        assert torch.equal(got_state["optimizer"]["state"][pid]["momentum_buffer"], buf["momentum_buffer"])

    # the log holds each step once: records past the checkpoint were dropped on resume
    assert _steps(run_out) == _steps(ref_out) == list(range(4, TOTAL_STEPS + 1, 4))
@pytest.mark.parametrize("change", ["lr", "seed"])
def test_resume_refuses_another_config(tmp_path: Path, change: str) -> None:
    from sklearn.datasets import load_digits
    from torch import nn

    from robustreg import Registry
    from robustreg.training import TrainConfig, train
    from robustreg_plugins.classic import standard

    digits = load_digits()
    x = torch.tensor(digits.data[:256], dtype=torch.float32).view(-1, 1, 8, 8) / 16
    y = torch.tensor(digits.target[:256], dtype=torch.int64)
    registry = Registry.create(entry_points=False, plugins=[("test-standard", standard)])

    def make():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    cfg = TrainConfig(model="test:linear", iterations=4, batch_size=64, lr=0.1, quiet=True, out=str(tmp_path))
    train(cfg, registry=registry, model=make, data=(x, y))
    changed = TrainConfig(**{**cfg.to_dict(), change: 0.05 if change == "lr" else 3})
    with pytest.raises(ValueError, match=rf"refusing to resume \({change}: "):
        train(changed, registry=registry, model=make, data=(x, y))
    quieter = TrainConfig(**{**cfg.to_dict(), "log_every": 1, "checkpoint_every": 1})  # runtime keys may change
    assert train(quieter, registry=registry, model=make, data=(x, y)) == tmp_path / "final.pt"
