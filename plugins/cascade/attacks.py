"""Paper 000's one-step and iterative attacks: step_ll, step_FGSM, iter_FGSM and iter_ll.

Paper 000: Na, Ko & Mukhopadhyay, "Cascade Adversarial Machine Learning Regularized with a Unified
Embedding", ICLR 2018, arXiv:1708.02582, section 2 (after Kurakin et al., "Adversarial Machine
Learning at Scale", 2017, arXiv:1611.01236).

The paper works on a 0..255 scale; robustreg's eps and alpha are in [0, 1] units, so the paper's
eps = 16 is ``eps=16/255`` here and its alpha = 1 is ``alpha=1/255``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import Attack, AttackInfo, Param, ParamSet, least_likely, projected_gradient_ascent

__all__ = ["TARGETS", "IterFGSM", "IterLL", "StepFGSM", "StepLL", "default_iterations", "least_likely"]

#: the CE labels of a batch, from its logits
LabelsFn = Callable[[torch.Tensor], torch.Tensor]

_SOURCE = "paper 000 (Na et al. 2018, arXiv:1708.02582) sec. 2; Kurakin et al. 2017, arXiv:1611.01236"


def default_iterations(eps: float) -> int:
    """Paper 000's iteration count min(eps + 4, 1.25 eps) with eps on the 255 scale, as an int >= 1.

    The fractional count is truncated (``int``), as in Kurakin et al.'s code, e.g. eps = 2/255 ->
    min(6, 2.5) -> 2; eps = 16/255 -> 20; eps = 0 -> 1.  A 1e-6 tolerance absorbs float noise in
    eps * 255 (8/255 * 255 may be 7.9999999).
    """
    e = eps * 255
    return max(1, int(min(e + 4, 1.25 * e) + 1e-6))


def _input_grad(model: nn.Module, x: torch.Tensor, labels_fn: LabelsFn) -> torch.Tensor:
    """Gradient of the batch-summed CE w.r.t. the input; ``labels_fn(logits)`` gives the CE labels."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, labels_fn(logits.detach()), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


class StepLL(Attack):
    """step_ll: one step of eps down the CE to the least-likely class, x - eps * sign(grad CE(x, y_LL)).

    Paper 000 (Na et al., "Cascade Adversarial Machine Learning Regularized with a Unified
    Embedding", 2018, arXiv:1708.02582), eq. 2; y_LL = argmin of the logits at the clean point.
    Norm: linf.  No parameters of its own (:attr:`params` is empty) besides ``seed`` (unused,
    deterministic) and ``eval_mode`` (default True).

    Example::

        x_adv = StepLL(ThreatModel("linf", 16 / 255))(model, x, y)
    """

    name = "step-ll"
    info = AttackInfo(norms=("linf",), kind="white-box", targeted=False, randomized=False, single_step=True,
                      aims_at="least-likely", source=_SOURCE, toolkit="native", paper="000",
                      summary="step_ll (paper 000): one eps step toward the least-likely class")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> torch.Tensor:
        grad = _input_grad(model, x, least_likely)
        lo, hi = self.threat.clip_bounds(x)  # Clip_{X, eps}
        with torch.no_grad():
            return torch.minimum(torch.maximum(x - self.threat.eps * grad.sign(), lo), hi)


class StepFGSM(Attack):
    """step_FGSM: one step of eps up the CE to the true label, x + eps * sign(grad CE(x, y)).

    Paper 000 (Na et al. 2018, arXiv:1708.02582) eq. 1, i.e. FGSM (Goodfellow et al. 2015,
    arXiv:1412.6572).  Norm: linf.  No parameters of its own (:attr:`params` is empty) besides
    ``seed`` (unused, deterministic) and ``eval_mode`` (default True).

    Example::

        x_adv = StepFGSM(ThreatModel("linf", 16 / 255))(model, x, y)
    """

    name = "step-fgsm"
    info = AttackInfo(norms=("linf",), kind="white-box", targeted=False, randomized=False, single_step=True,
                      source=_SOURCE,
                      toolkit="native", paper="000",
                      summary="step_FGSM (paper 000): one eps step up the CE of the true label")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> torch.Tensor:
        grad = _input_grad(model, x, lambda _logits: y)
        lo, hi = self.threat.clip_bounds(x)  # Clip_{X, eps}
        with torch.no_grad():
            return torch.minimum(torch.maximum(x + self.threat.eps * grad.sign(), lo), hi)


class _Iterative(Attack):
    """Shared loop of iter_FGSM / iter_ll: ``steps`` signed steps of ``alpha``, clipped each time."""

    direction: float = 1.0  # +1 ascends CE(y), -1 descends CE(y_LL)
    params = ParamSet([
        Param("alpha", "float", 1 / 255, "step size (the paper's alpha = 1 on the 255 scale is 1/255)",
              low=0, low_open=True, high=math.inf, high_open=True, unit="pixels [0, 1]"),
        Param("steps", "int", None, "iterations; None = int(min(eps*255 + 4, 1.25 eps*255)), at least 1",
              low=1, optional=True, sane_high=100_000),
    ])
    alpha: float
    steps: int | None

    @property
    def iterations(self) -> int:
        return self.steps if self.steps is not None else default_iterations(self.threat.eps)

    def _labels(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LabelsFn:
        """``labels_fn(logits_of_the_iterate) -> CE labels`` for the whole run."""
        raise NotImplementedError

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> torch.Tensor:
        labels_fn = self._labels(model, x, y)

        def loss_fn(model: nn.Module, x_adv: torch.Tensor, _y: torch.Tensor,
                    _target: torch.Tensor | None) -> torch.Tensor:
            logits = model(x_adv)
            return self.direction * F.cross_entropy(logits, labels_fn(logits.detach()), reduction="sum")

        # Clip_{X,eps} after each signed step of alpha, from X_0 = X: PGD without random start
        return projected_gradient_ascent(model, loss_fn, x, y, None, self.threat, steps=self.iterations,
                                         step_size=self.alpha, random_start=False, restarts=1, generator=generator)


class IterFGSM(_Iterative):
    """iter_FGSM (basic iterative method): repeated steps of alpha up the CE of the true label.

    Paper 000 (Na et al. 2018, arXiv:1708.02582) section 2, after Kurakin et al. 2017
    (arXiv:1611.01236): X_{N+1} = Clip_{X,eps}(X_N + alpha * sign(grad CE(X_N, y))), X_0 = X.
    Norm: linf.

    Parameters: keyword-only, declared in :attr:`params` (``alpha``, and ``steps`` whose None means
    :func:`default_iterations`), plus ``seed`` (unused, deterministic) and ``eval_mode``.

    Example::

        x_adv = IterFGSM(ThreatModel("linf", 16 / 255))(model, x, y)   # 20 steps of 1/255
    """

    name = "iter-fgsm"
    direction = 1.0
    info = AttackInfo(norms=("linf",), kind="white-box", targeted=False, randomized=False, source=_SOURCE,
                      toolkit="native", paper="000",
                      summary="iter_FGSM (paper 000): min(eps+4, 1.25 eps) steps of 1/255 up the CE")

    def _labels(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LabelsFn:
        return lambda _logits: y


TARGETS = ("clean", "every-step")


class IterLL(_Iterative):
    """iter_ll: repeated steps of alpha down the CE to the least-likely class of the clean image.

    Paper 000 (Na et al. 2018, arXiv:1708.02582) section 2, after Kurakin et al. 2017
    (arXiv:1611.01236): X_{N+1} = Clip_{X,eps}(X_N - alpha * sign(grad CE(X_N, y_LL))).  Norm: linf.

    Which y_LL (``target``): the authors' released code (github.com/taesikna/cascade_adv_training,
    ``utils.py``, ``get_adver_image``) takes the least-likely labels once, from the clean images, and
    keeps them for every iteration (``target_ll_labels``), as Kurakin et al. define iter_ll
    (y_LL = argmin_y p(y | X) of the clean X).  robustreg follows the released code, as it does for the
    pivot and L_dist: ``target="clean"`` (default).  Paper 000's text ("we change the target every
    iteration") reads as re-picking y_LL at the current iterate: ``target="every-step"``, kept as a
    documented option.  The two differ a lot: on resnet4b (300 CIFAR-10 test images) accuracy under
    iter_ll at eps 16/255 is 24.7% with the fixed target and 54.3% with the re-picked one (eps 8: 66.7
    vs 69.3) -- re-picking chases a moving class and pushes less.

    Parameters: keyword-only, declared in :attr:`params` (``alpha``; ``steps`` whose None means
    :func:`default_iterations`; ``target``), plus ``seed`` (unused, deterministic) and ``eval_mode``.

    Example::

        x_adv = IterLL(ThreatModel("linf", 16 / 255))(model, x, y)
    """

    name = "iter-ll"
    direction = -1.0
    params = _Iterative.params + [
        Param("target", "choice", "clean", "y_LL: 'clean' = least-likely class of the clean image, fixed for every "
              "step (the authors' released code, Kurakin et al.); 'every-step' = re-picked at each iterate (paper "
              "000's text)", choices=TARGETS),
    ]
    target: str
    info = AttackInfo(norms=("linf",), kind="white-box", targeted=False, randomized=False, aims_at="least-likely",
                      source=_SOURCE, toolkit="native", paper="000",
                      summary="iter_ll (paper 000): iterative steps toward the clean image's least-likely class")

    def _labels(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LabelsFn:
        if self.target == "every-step":
            return least_likely
        with torch.no_grad():
            fixed = least_likely(model(x))
        return lambda _logits: fixed
