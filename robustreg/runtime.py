"""Where a model runs and how the core runs it: one device resolver and one batched predict.

:func:`resolve_device` turns what a user or a config says (``"auto"``, ``"cpu"``, ``"cuda"``,
``"cuda:N"``, a ``torch.device`` or None) into a ``torch.device``; :func:`predict` returns a
model's logits for a whole tensor, batched, without gradients.  Evaluation, comparison and
training all go through these two, so a device is checked (and refused) the same way everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_device", "predict", "resolve_device"]

_DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def resolve_device(spec: str | torch.device | None, model: nn.Module | None = None, *,
                   local_rank: int | None = None) -> torch.device:
    """``spec`` -> ``torch.device``.

    - None: where ``model`` is (its first parameter or buffer); without a model, as ``"auto"``.
    - ``"auto"``: CUDA when available, else CPU.
    - ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (case and surrounding blanks ignored); a CUDA device is
      refused (ValueError) when CUDA is not available or index N is not visible.
    - a ``torch.device``: returned as it is, except that a CUDA one is checked like the text.

    ``local_rank``: under torchrun, plain ``"cuda"`` (or ``"auto"`` resolving to CUDA) means this
    rank's GPU, ``cuda:<local_rank>``.
    """
    if spec is None:
        if model is not None:
            return model_device(model)
        spec = "auto"
    if isinstance(spec, torch.device):
        if spec.type != "cuda":
            return spec
        spec = str(spec)
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as {_DEVICES}, got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return _cuda(spec, text, local_rank)
    raise ValueError(f"device must be {_DEVICES}, got {spec!r}")


def _cuda(spec: str, text: str, local_rank: int | None) -> torch.device:
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    if text == "cuda":
        return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)
    index = int(text[5:])
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", index)


def predict(model: nn.Module, x: torch.Tensor, device: torch.device | str, batch_size: int) -> torch.Tensor:
    """The model's logits for ``x`` (float32, on the CPU), ``batch_size`` samples per forward, no grad.

    The model runs in whatever train/eval mode it is in and must already be on ``device``: the
    caller sets (and restores) both.  ``predict(...).argmax(dim=1)`` gives the predicted classes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    outs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outs.append(model(x[start:start + batch_size].to(device)).float().cpu())
    if not outs:
        raise ValueError("predict needs at least one sample, got an empty x")
    return torch.cat(outs)
