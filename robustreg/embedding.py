"""Penultimate features, head weights and cos(theta) of any classifier ending in ``nn.Linear``.

Paper 004's SI-PGD and SI defense, and paper 000's embedding losses, need the features z that
enter the final linear layer, its weights W and bias b, and cos(theta_k) = W_k . z / (|W_k| |z|).
:func:`embed` gets them with forward hooks on the model's ``nn.Linear`` modules (the last one to run
is the head) and never rewrites the model.  Anything the model does after the head (a logit scale,
a temperature) changes the logits but not z, W or cos(theta): that is the point of SI-PGD.

Model heads: a :class:`Head` says what the classifier's final ``nn.Linear`` returns from z, W and b:
``"linear"`` (``W z + b``, every model's own) or ``"cosine"`` (``s * cos(theta)``, optionally with
unnormalised features or weights, optionally plus b).  :func:`apply_head` puts a head on a model by
swapping its final ``nn.Linear`` for a :class:`HeadLinear` holding the same parameters (same state-dict
keys), so ``model(x)`` returns the head's logits and :func:`embed` still finds z, W and b.  A defense
that trains through another head declares it (:meth:`robustreg.Defense.head`); the trainer records it
next to the weights (:meth:`Head.to_dict`) and :func:`robustreg.build_model` applies it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HEAD_KINDS", "Embedding", "Head", "HeadLinear", "apply_head", "embed", "head_of", "model_head"]

HEAD_KINDS = ("linear", "cosine")


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

    def logits_of(self, head: Head) -> torch.Tensor:
        """What ``head`` predicts from this pass's z, W and b (the cosine head: ``s * cos(theta)``)."""
        return head.logits(self.features, self.weight, self.bias)


# --- model heads --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    """A prediction head: the logits the final ``nn.Linear`` returns from its input z, weight W and bias b.

    ``kind="linear"``: ``W z + b`` (the other fields unused).  ``kind="cosine"``: ``s * zn . Wn_k`` with
    ``zn = z / |z|`` when ``normalize_features`` and ``Wn_k = W_k / |W_k|`` when ``normalize_weights``
    (both by default: ``s * cos(theta)``), plus b only when ``bias`` (default: the bias is dropped).
    ``eps``: the floor of the norms (as :func:`torch.nn.functional.normalize`).
    ``renormalize_weights`` (with ``normalize_weights``): instead of differentiating through
    ``W_k / |W_k|``, the weight's rows are set to unit norm in place (``weight.data``, no autograd
    trace) before each use and W is used as it is, as Pang et al.'s HE code does.  The logits are the
    same; the gradient is not: through the normalisation it is projected orthogonally to W_k and
    shrunk by 1 / |W_k|, so SGD steps make |W_k| grow and the direction's effective learning rate
    fall as 1 / |W_k|^2 (with a small-norm initial head this stalls training, see the HE defense); in
    place the gradient reaches W unscaled and every step starts again from |W_k| = 1.
    """

    kind: Literal["linear", "cosine"] = "linear"
    s: float = 1.0
    normalize_features: bool = True
    normalize_weights: bool = True
    bias: bool = False
    eps: float = 1e-12
    renormalize_weights: bool = False

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        for key in ("s", "eps"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"head {key} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, key, float(value))
        for key in ("normalize_features", "normalize_weights", "bias", "renormalize_weights"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"head {key} must be True or False, got {getattr(self, key)!r}")

    @property
    def is_linear(self) -> bool:
        return self.kind == "linear"

    def logits(self, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The head's logits from z (N x D), W (K x D) and b (K, or None)."""
        if self.is_linear:
            return F.linear(features, weight, bias)
        z = F.normalize(features, dim=-1, eps=self.eps) if self.normalize_features else features
        if self.normalize_weights and self.renormalize_weights:
            weight.data.copy_(F.normalize(weight.data, dim=-1, eps=self.eps))  # in place, outside autograd
            w = weight
        else:
            w = F.normalize(weight, dim=-1, eps=self.eps) if self.normalize_weights else weight
        out = self.s * F.linear(z, w)
        return out + bias if self.bias and bias is not None else out

    def to_dict(self) -> dict[str, Any]:
        """Plain values (str, float, bool) as recorded in a checkpoint; ``torch.load(weights_only=True)`` reads them.
        ``renormalize_weights`` is recorded only when set, so the records of other heads are unchanged."""
        record = asdict(self)
        if not self.renormalize_weights:
            del record["renormalize_weights"]
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, origin: str = "the head record") -> Head:
        """The head of a :meth:`to_dict` record; unknown keys or bad values raise ValueError naming ``origin``."""
        if not isinstance(record, Mapping):
            raise ValueError(f"{origin}: a head record must be a mapping, got {type(record).__name__}")
        unknown = sorted(set(record) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{origin}: unknown head field(s) {', '.join(map(str, unknown))}")
        try:
            return cls(**dict(record))
        except ValueError as exc:
            raise ValueError(f"{origin}: {exc}") from None

    def describe(self) -> str:
        if self.is_linear:
            return "linear (W z + b)"
        z = "z/|z|" if self.normalize_features else "z"
        w = ("W (renormalised)" if self.renormalize_weights else "W/|W|") if self.normalize_weights else "W"
        return f"cosine ({self.s:g} * {w} {z}{' + b' if self.bias else ''})"


class HeadLinear(nn.Linear):
    """An ``nn.Linear`` whose forward returns its :class:`Head`'s logits; it holds the parameters of the
    layer it replaces (same objects, same state-dict keys ``weight`` / ``bias``)."""

    def __init__(self, linear: nn.Linear, head: Head) -> None:
        nn.Module.__init__(self)  # no fresh parameters: the replaced layer's are shared
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.register_parameter("bias", linear.bias)
        self.head = head
        self.train(linear.training)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.head.logits(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, head={self.head.describe()}"


def apply_head(model: nn.Module, head: Head | None) -> nn.Module:
    """Give ``model`` the prediction ``head`` (in place) and return it.

    The final ``nn.Linear`` (:func:`head_of`) is swapped for a :class:`HeadLinear` sharing its
    parameters, so the state dict, the optimizer's parameters and :func:`embed` are unchanged while
    ``model(x)`` returns the head's logits.  ``None`` or a linear head restores a plain ``nn.Linear``.
    Returns the new layer itself when ``model`` is the ``nn.Linear``.
    """
    name, layer = head_of(model)
    if head is None or head.is_linear:
        if not isinstance(layer, HeadLinear):
            return model
        plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                          device="meta")
        plain.weight = layer.weight
        plain.register_parameter("bias", layer.bias)
        new: nn.Linear = plain.train(layer.training)
    else:
        new = HeadLinear(layer, head)
    if not name:
        return new
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def model_head(model: nn.Module) -> Head | None:
    """The head :func:`apply_head` gave ``model``; None when its final ``nn.Linear`` is its own (``W z + b``)."""
    layer = head_of(model)[1]
    return layer.head if isinstance(layer, HeadLinear) else None


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
    out: torch.Tensor = captured["output"]  # type: ignore[assignment]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or out.shape != logits.shape:
        raise ValueError(
            f"the last nn.Linear to run ({captured['name']!r}) outputs shape {tuple(out.shape)}, but the model "
            f"returns {tuple(getattr(logits, 'shape', ()))}: its last layer must be the nn.Linear classification head"
        )
    head: nn.Linear = captured["module"]  # type: ignore[assignment]
    features: torch.Tensor = captured["features"]  # type: ignore[assignment]
    return Embedding(logits, features.flatten(1), head.weight, head.bias, str(captured["name"]))
