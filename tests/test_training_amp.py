"""The trainer's mixed precision: bfloat16 autocast on the CPU (no gradient scaler), float16 on CUDA only,
and checkpoints written before ``amp_dtype`` existed resuming as its default."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from robustreg import Registry
from robustreg.data import load_data
from robustreg.training import TrainConfig, Trainer
from robustreg.training.state import _config_diff, _normalised


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _train(tmp: Path, **kw) -> tuple[Trainer, list[torch.dtype]]:
    x, y = load_data("digits", "train").tensors()
    cfg = TrainConfig(model="digits-cnn", defense="at", epochs=1, iterations=None, batch_size=32, lr=0.05,
                      quiet=True, log_every=1, checkpoint_every=0, device="cpu", out=str(tmp),
                      defense_params={"eps": 0.1, "steps": 2}, n_train=64, **kw)
    dtypes: list[torch.dtype] = []
    model = _model()
    model[-1].register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    trainer = Trainer(cfg, registry=Registry.create(), model=lambda: model, data=(x[:64], y[:64]))
    trainer.fit()
    return trainer, dtypes


def test_bfloat16_autocasts_the_defense_on_the_cpu(tmp_path):
    trainer, dtypes = _train(tmp_path, amp=True, amp_dtype="bfloat16")
    # 2 steps x (2 attack forwards + the training forward) under bf16 autocast, then the final accuracy
    # in float32; bf16 needs no scaler
    assert dtypes[:6] == [torch.bfloat16] * 6 and set(dtypes[6:]) == {torch.float32}
    assert trainer.state.scaler is None
    assert all(p.dtype == torch.float32 for p in trainer.state.model.parameters())


def test_float16_is_cuda_only_and_warns_on_the_cpu(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, dtypes = _train(tmp_path, amp=True)
    assert dtypes and set(dtypes) == {torch.float32}
    assert any("amp=true applies to CUDA only" in str(w.message) for w in caught)


def test_bad_amp_dtype_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="amp_dtype.*float16.*bfloat16"):
        TrainConfig(model="digits-cnn", epochs=1, amp_dtype="half", out=str(tmp_path))


def test_checkpoint_without_amp_dtype_counts_as_the_default():
    now = _normalised(TrainConfig(model="digits-cnn", epochs=1).to_dict())
    old = {k: v for k, v in now.items() if k != "amp_dtype"}
    assert _config_diff(old, now) == []
    changed = _normalised(TrainConfig(model="digits-cnn", epochs=1, amp=True, amp_dtype="bfloat16").to_dict())
    diff = _config_diff(old, changed)
    assert any(d.startswith("amp_dtype: 'float16' in the checkpoint, 'bfloat16' now") for d in diff), diff
