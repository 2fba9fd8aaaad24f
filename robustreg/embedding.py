"""Penultimate features, head weights and cos(theta) of any classifier ending in ``nn.Linear``.

Paper 004's SI-PGD and SI defense, and paper 000's embedding losses, need the features z that
enter the final linear layer, its weights W and bias b, and cos(theta_k) = W_k . z / (|W_k| |z|).
:func:`embed` gets them with forward hooks on the model's ``nn.Linear`` modules (the last one to run
is the head) and never rewrites the model.  Anything the model does after the head (a logit scale,
a temperature) changes the logits but not z, W or cos(theta): that is the point of SI-PGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Embedding", "embed", "head_of"]


@dataclass
class Embedding:
    """Everything :func:`embed` captures for one forward pass (all differentiable)."""

    logits: torch.Tensor  # N x K, what the model returns
    features: torch.Tensor  # N x D, the input of the head (z)
    weight: torch.Tensor  # K x D, the head's weight (W)
    bias: torch.Tensor | None  # K, the head's bias (b)
    head_name: str

    def cosine(self, eps: float = 1e-12) -> torch.Tensor:
        """cos(theta): N x K, W_k . z / (|W_k| |z|), in [-1, 1]."""
        return F.linear(F.normalize(self.features, dim=1, eps=eps), F.normalize(self.weight, dim=1, eps=eps))


def _linear_modules(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def head_of(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` registered in ``model`` (a static guess; :func:`embed` checks it runs last)."""
    linears = _linear_modules(model)
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer: the embedding (penultimate features, "
            "cos(theta)) needs a classifier whose last layer is nn.Linear"
        )
    return linears[-1]


def embed(model: nn.Module, x: torch.Tensor) -> Embedding:
    """Run ``model(x)`` once and return logits, z, W, b of the last ``nn.Linear`` that ran.

    Raises ValueError if the model has no ``nn.Linear`` or if the last one to run does not produce
    an N x K output matching the logits' shape (then it is not the classification head).
    """
    head_of(model)  # clear error when there is no Linear at all
    captured: dict[str, object] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            captured["name"], captured["module"] = name, module
            captured["features"], captured["output"] = inputs[0], output
        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in _linear_modules(model)]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if "module" not in captured:
        raise ValueError(f"no nn.Linear of {type(model).__name__} ran in its forward pass")
    out = captured["output"]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or out.shape != logits.shape:
        raise ValueError(
            f"the last nn.Linear to run ({captured['name']!r}) outputs shape {tuple(out.shape)}, but the model "
            f"returns {tuple(getattr(logits, 'shape', ()))}: its last layer must be the nn.Linear classification head"
        )
    head: nn.Linear = captured["module"]  # type: ignore[assignment]
    features = captured["features"]
    return Embedding(logits, features.flatten(1), head.weight, head.bias, str(captured["name"]))
