"""A tiny model and batch that attacks visibly move, and default budgets per norm."""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..threat import ThreatModel

__all__ = ["default_threat", "separable_batch", "tiny_batch", "tiny_model", "trained_tiny_model"]


# Budgets big enough that attacks on a tiny untrained model actually move.
_DEFAULT_EPS = {"linf": 0.1, "l2": 0.5, "l1": 2.0}


# --- small model and batch ---------------------------------------------------------------
def tiny_model(num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 8, 8), *, seed: int = 0) -> nn.Module:
    """A small CNN (conv, BatchNorm, ReLU, linear, ReLU, linear) ending in ``nn.Linear``.

    Weights come from ``seed`` without touching torch's global RNG.  It has BatchNorm so that a
    mode change or a train-mode forward is visible, and its last layer is an ``nn.Linear`` head so
    embedding attacks work on it.  Returned in train mode, as a fresh ``nn.Module`` would be.
    """
    if len(in_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in in_shape):
        raise ValueError(f"in_shape must be (C, H, W) positive ints, got {in_shape!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    c, h, w = in_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * h * w, 32),
            nn.ReLU(),
            nn.Linear(32, num_classes),
        )
        # Inputs in [0, 1] share a large mean; centre the first layer so that the logits depend on
        # the image rather than on that mean, and give BatchNorm non-trivial statistics so that
        # eval and train mode give different outputs.
        conv, bn, hidden, head = model[0], model[1], model[-3], model[-1]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        assert isinstance(hidden, nn.Linear) and isinstance(head, nn.Linear)
        with torch.no_grad():
            conv.weight.sub_(conv.weight.mean(dim=(1, 2, 3), keepdim=True)).mul_(3.0)
            head.weight.mul_(3.0)
            head.bias.zero_()
            hidden.bias.zero_()
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model


def tiny_batch(
    n: int = 8, in_shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 10, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images in [0, 1] (some pixels exactly 0 and 1, to exercise box clipping) and int64 labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *in_shape), generator=gen)
    x[:, :, 0, :] = 0.0
    x[:, :, -1, :] = 1.0
    y = torch.randint(0, num_classes, (n,), generator=gen)
    return x, y


def default_threat(norm: str) -> ThreatModel:
    """The threat model the checks use when none is given: linf 0.1, l2 0.5, l1 2.0."""
    return ThreatModel(norm, _DEFAULT_EPS[norm])




def separable_batch(
    n: int = 8, in_shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 10, *, seed: int = 0,
    noise: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``num_classes`` fixed random templates (in [0.2, 0.8]) plus small noise, and their labels.

    The classes are far apart, so :func:`trained_tiny_model` learns them in a few steps; the templates
    depend on ``in_shape`` and ``num_classes`` only, the noise and the labels on ``seed``.
    """
    templates = torch.rand((num_classes, *in_shape), generator=torch.Generator().manual_seed(12345)) * 0.6 + 0.2
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=gen)]
    x = (templates[y] + noise * torch.randn((n, *in_shape), generator=gen)).clamp(0.0, 1.0)
    return x, y


@functools.lru_cache(maxsize=4)
def _trained_state(num_classes: int, in_shape: tuple[int, int, int], steps: int) -> dict[str, torch.Tensor]:
    model = tiny_model(num_classes, in_shape)
    x, y = separable_batch(8 * num_classes, in_shape, num_classes, seed=999)
    # SGD, not Adam: the trained weights must not depend on the CPU's kernels.  Adam divides each gradient
    # by its own running size, so a gradient that is zero but for float32 rounding (the conv bias before
    # BatchNorm, whose exact gradient is 0) moves its weight by the full learning rate in the rounding's
    # direction: the AVX2 and the scalar kernels trained conv biases 0.03 apart, and the clean loss of the
    # raises_loss check was 0.0072 (AVX2), 0.0073 (AVX-512, issue 20) or 0.0074 (scalar).  An SGD step is
    # proportional to the gradient, so rounding stays at rounding level (every weight within 1e-6
    # relative across those kernels).
    opt = torch.optim.SGD(model.parameters(), lr=0.07, momentum=0.9)
    model.train()
    with torch.enable_grad():  # the first call may come from inside a caller's torch.no_grad()
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trained_tiny_model(num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 8, 8), *,
                       steps: int = 20) -> nn.Module:
    """:func:`tiny_model` trained ``steps`` SGD steps (momentum 0.9) on :func:`separable_batch` data (in eval mode).

    It classifies :func:`separable_batch` correctly with a margin (every logit margin above 3 for the
    default shape) and a low loss that float32 still resolves (mean cross-entropy about 0.004, not
    1e-8), so a white-box attack that works visibly raises the loss, on any CPU.  Deterministic (no
    global RNG is drawn from); the training runs once per process and each call returns a fresh copy.
    """
    model = tiny_model(num_classes, in_shape)
    model.load_state_dict(_trained_state(num_classes, tuple(in_shape), steps))
    return model.eval()
