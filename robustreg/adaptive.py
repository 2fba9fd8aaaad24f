"""Adaptive-attack helpers: Expectation over Transformation, BPDA, and counting an attack's model passes.

- :class:`EoT` (Athalye, Engstrom, Ilyas & Kwok 2018, "Synthesizing Robust Adversarial Examples",
  arXiv:1707.07397): a randomised model seen through the mean of ``n`` draws.  Its forward runs the
  model ``n`` times on the batch (one forward of ``n`` stacked copies) and returns the log of the mean
  softmax, the log-probabilities of the expected classifier; an attack's gradient through it is the
  gradient of its loss of that expectation, estimated from ``n`` draws.  For the cross-entropy this is
  -log E_t[p_y(t(x))], the loss Athalye et al. ascend for randomised defenses (their eq. on EoT over the
  defense's randomness); every attack runs on it unchanged, toolkits' included.  ``--eot N`` (the
  ``eot`` parameter of every attack) attacks the model through it; the attack's result is still judged
  on the model itself.
- :class:`BPDA` (Athalye, Carlini & Wagner 2018, "Obfuscated Gradients Give a False Sense of Security",
  arXiv:1802.00420, section 4.1): marks a non-differentiable preprocessing module of a model.  Forward:
  the module itself; backward: through ``backward_as`` (identity by default, the straight-through
  approximation the paper uses when the preprocessing is close to the identity), so the output's value
  is exactly the module's and only the gradient is approximated.
- :class:`PassCounter`: the model's forward and backward passes while an attack runs, counted in samples
  by hooks on the model (never declared by the attack), so native and toolkit attacks are counted alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["BPDA", "EoT", "PassCounter"]


class EoT(nn.Module):
    """``log(mean_i softmax(model(x)))`` over ``n`` draws of a randomised ``model`` (one forward of n copies).

    Example::

        x_adv = registry.build_attack("pgd", threat, seed=0)(EoT(noisy_model, 20), x, y)
        # equivalently: registry.build_attack("pgd", threat, seed=0, eot=20)(noisy_model, x, y)

    The model must treat the samples of a batch independently (no batch statistics: it is in eval mode
    while attacked).  ``n = 1`` returns the model's log-softmax (same argmax, same cross-entropy).
    """

    def __init__(self, model: nn.Module, n: int) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"EoT n must be an int >= 1, got {n!r}")
        self.model, self.n = model, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        logits = self.model(x.repeat(self.n, *([1] * (x.dim() - 1))))
        logp = torch.log_softmax(logits.float(), dim=1).view(self.n, batch, -1)
        return torch.logsumexp(logp, dim=0) - math.log(self.n)


class _StraightThrough(torch.autograd.Function):
    """Value ``forward_value``, gradient that of ``surrogate`` (both computed from the same input)."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad


class BPDA(nn.Module):
    """``module`` on the forward pass, ``backward_as`` (identity by default) on the backward pass.

    Example: a model whose input is quantised to 4 levels, attacked with BPDA::

        model = nn.Sequential(BPDA(Quantise(levels=4)), classifier)

    ``backward_as``: a differentiable function (or module) approximating ``module`` near its input;
    its output must have the module's shape.
    """

    def __init__(self, module: nn.Module | Callable[[torch.Tensor], torch.Tensor],
                 backward_as: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.module = module
        self.backward_as = backward_as

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            value = self.module(x)
        surrogate = x if self.backward_as is None else self.backward_as(x)
        if tuple(surrogate.shape) != tuple(value.shape):
            raise ValueError(f"BPDA: backward_as returned shape {tuple(surrogate.shape)}, the module "
                             f"{tuple(value.shape)}")
        if not surrogate.requires_grad:
            return value
        out: torch.Tensor = _StraightThrough.apply(value.to(surrogate.dtype), surrogate)
        return out


class PassCounter:
    """Counts ``model``'s forward and backward passes, in samples, while in its ``with`` block.

    A forward hook on the model adds the batch size of every call; when the call's input requires a
    gradient, a hook on that input adds the batch size again each time a gradient reaches it through the
    model (a backward pass, by ``backward()`` or ``torch.autograd.grad``, whichever output it started from:
    SI-PGD's starts from the features, not the logits).  An input without a gradient falls back to a hook
    on the output.  Each forward counts at most one backward (the first gradient that reaches its input)::

        with PassCounter(model) as passes:
            x_adv = attack(model, x, y)
        passes.forwards / len(x), passes.backwards / len(x)   # per sample: k and k for PGD-k
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.forwards = 0
        self.backwards = 0
        self._handle: RemovableHandle | None = None

    def _watch(self, tensor: torch.Tensor, size: int) -> None:
        """Count one backward of ``size`` samples the first time a gradient reaches ``tensor`` (then let go:
        an attack that updates its iterate in place feeds the same tensor to every step's forward)."""
        handle: RemovableHandle | None = None

        def hook(_grad: torch.Tensor) -> None:
            self.backwards += size
            if handle is not None:
                handle.remove()

        handle = tensor.register_hook(hook)

    def _on_forward(self, _module: nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) and output else output
        if not isinstance(out, torch.Tensor) or out.dim() == 0:
            return
        size = int(out.shape[0])
        self.forwards += size
        given = args[0] if args and isinstance(args[0], torch.Tensor) else None
        watched = given if given is not None and given.requires_grad else out
        if watched.requires_grad and torch.is_grad_enabled():
            self._watch(watched, size)

    def __enter__(self) -> PassCounter:
        self._handle = self.model.register_forward_hook(self._on_forward)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
