"""robustreg.runtime: the core's one device resolver and one batched predict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustreg.runtime import model_device, predict, resolve_device


def test_resolve_device_text_and_objects():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None).type == resolve_device("auto").type  # no model: as "auto"
    for bad in ("gpu", "cuda:x", "tpu", "", "cuda:"):
        with pytest.raises(ValueError, match="auto"):
            resolve_device(bad)
    with pytest.raises(TypeError):
        resolve_device(0)  # type: ignore[arg-type]
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
        with pytest.raises(ValueError, match="visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        for spec in ("cuda", "cuda:0", torch.device("cuda")):
            with pytest.raises(ValueError, match="CUDA is not available"):
                resolve_device(spec)


def test_resolve_device_none_means_where_the_model_is():
    model = nn.Linear(3, 2)
    assert resolve_device(None, model) == model_device(model) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters or buffers


def test_predict_batches_without_grad():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x = torch.rand(10, 4)
    logits = predict(model, x, torch.device("cpu"), batch_size=3)
    assert logits.shape == (10, 3) and logits.dtype == torch.float32 and not logits.requires_grad
    assert torch.allclose(logits, model(x).detach())
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, x, "cpu", 0)
