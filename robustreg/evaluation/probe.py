"""Probe the model before any work: it fits the data (:func:`probe_model`: one forward, logits N x K, enough
classes, finite, input-dependent).  Whether it looks attackable (logits, not probabilities; non-zero
gradients; ...) is for the automatic checks at the end of the run (:mod:`robustreg.checks`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.source import Images
from ..errors import ModelCodeError, UserError, describe_exception
from ..models.outputs import FLAG, describe_output

__all__ = ["probe_model"]


def _shape(x: torch.Tensor | Images) -> str:
    return "x".join(str(d) for d in x.shape[1:])


def _forward(model: nn.Module, x: torch.Tensor, what: str) -> Any:
    try:
        return model(x)
    except Exception as exc:
        raise ModelCodeError(f"the model's forward raised {describe_exception(exc)} on {what} of shape "
                             f"{_shape(x)} (a batch of {x.shape[0]})") from exc


def _check_inputs(model: nn.Module, x: Any, y: Any, trainable: bool) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise UserError("the model has no parameters (is it a classifier at all? an attack needs gradients "
                        "through learned weights)")
    if trainable and not any(p.requires_grad for p in params):
        raise UserError("the model has no trainable parameters (every parameter has requires_grad=False)")
    if not isinstance(x, (torch.Tensor, Images)) or not x.is_floating_point():
        raise TypeError(f"data x must be a float tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 4:
        raise ValueError(f"data x must be N x C x H x W, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("the data holds no samples")
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"data x is {str(x.dtype).replace('torch.', '')} but the model's parameters are "
                        f"{str(dtype).replace('torch.', '')}; convert one of them (e.g. x.float())")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise TypeError(f"data y must be an int64 tensor of shape ({x.shape[0]},), got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")


def _check_logits(out: Any, n: int, y: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise UserError(f"the model must return a tensor of logits N x K, got a {describe_output(out)}; pick the "
                        f"logits with {FLAG}")
    if out.dim() != 2 or out.shape[0] != n:
        raise UserError(f"the model returned shape {tuple(out.shape)} for a batch of {n} samples; it must return "
                        f"logits N x K, one row per sample")
    k = out.shape[1]
    if num_classes is not None and k < num_classes:
        raise UserError(f"the model has {k} outputs but the data has {num_classes} classes "
                        f"(labels 0..{num_classes - 1})")
    top = int(y.max()) if y.numel() else -1
    if top >= k:
        raise UserError(f"the data's labels go up to {top} but the model has only {k} outputs (classes 0..{k - 1})")
    if not bool(torch.isfinite(out).all()):
        raise UserError("the model's outputs are not finite (NaN or inf) on the first samples")
    return out


def probe_model(model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, *, num_classes: int | None = None,
                device: torch.device | str | None = None, trainable: bool = False) -> None:
    """Check that ``model`` fits the data before any work: one forward on the first 2 samples (eval mode, no
    grad; the model's modes are restored).

    The output must be a 2-D tensor N x K with N the batch size, K >= ``num_classes`` and > every label in
    ``y``, finite, and depend on the input; the model must have parameters (trainable ones with
    ``trainable=True``).  ``device``: where the model is (default: where its first parameter is).  A
    mismatch is a :class:`~robustreg.UserError` (a ValueError) -- the model's own exception, with its file
    and line, when its forward raises (e.g. data of the wrong shape) -- and a wrong dtype a TypeError.
    """
    _check_inputs(model, x, y, trainable)
    modes = {m: m.training for m in model.modules()}
    xs = x[:2].to(device if device is not None else next(model.parameters()).device)
    try:
        model.eval()
        with torch.no_grad():
            out = _check_logits(_forward(model, xs, "data"), xs.shape[0], y, num_classes)
            other = _forward(model, 1 - xs if not torch.equal(1 - xs, xs) else xs * 0, "a second input")
    finally:
        for module, mode in modes.items():
            module.train(mode)
    if isinstance(other, torch.Tensor) and other.shape == out.shape and torch.equal(other, out):
        raise UserError("the model's output does not depend on its input (two different inputs give the same "
                        "logits)")
