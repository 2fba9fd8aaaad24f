"""SPSA: a score-based L_inf attack that estimates the gradient from finite differences."""

from __future__ import annotations

import math

import torch
from torch import nn

from robustreg import Attack, AttackInfo, AttackResult, Param, ParamError, ParamSet, report_progress

__all__ = ["SPSA", "margin_loss"]


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Uesato et al.'s margin on the logits: ``z_y - max_{j != y} z_j`` per sample (negative = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.amax(dim=1)


class SPSA(Attack):
    """SPSA: Adam on a finite-difference (SPSA) estimate of the margin loss's gradient, queries only.

    Paper: Uesato, O'Donoghue, van den Oord, Kohli, "Adversarial Risk and the Dangers of Evaluating
    Against Weak Attacks", ICML 2018, arXiv 1802.05666.  Used by paper 004 (section 5.4.2, Table 9)
    with samples 128/256/512, delta 0.001, learning rate 0.01, 100 iterations and early stopping.
    Norm: linf only.  Score-based: it reads the logits, never a gradient.

    The loss is Uesato et al.'s margin on the logits, ``z_y - max_{j != y} z_j`` (negative once
    the image is misclassified), minimised with Adam.  Each step draws ``samples / 2`` Rademacher
    directions ``v`` (entries +-1) per image and evaluates the model at ``x + delta v`` and
    ``x - delta v`` (antithetic pairs); the gradient estimate is the mean of
    ``(f(x + delta v) - f(x - delta v)) / (2 delta) * v``.  As in the original, the probe points are
    not clipped to the box; the iterate is projected onto the eps ball and the box after each step.

    All images of the batch and all probes of a step go through the model together, in forward
    passes of at most ``max_batch`` inputs; there is no per-image Python loop.

    Parameters: keyword-only, declared in :attr:`params` (``robustreg list spsa`` shows them), plus
    ``seed`` and ``eval_mode`` (see :class:`robustreg.Attack`).  ``samples`` is the "batch size" of
    Uesato et al. and paper 004 and must be even (``samples / 2`` antithetic pairs); ``early_stop``
    costs one extra query per image per step (to evaluate the iterate); ``random_start=False``
    starts from the clean image.

    Input contract: x float N x C x H x W in the threat model's box, y int64 labels.
    ``run`` returns ``AttackResult(x_adv, queries=...)`` with the model evaluations spent per image.

    Example::

        from robustreg import Registry, ThreatModel
        attack = Registry.create().build_attack("spsa", ThreatModel("linf", 0.3), samples=128, steps=50, seed=0)
        result = attack.run(model, x, y)      # result.queries: per-image query counts
    """

    name = "spsa"
    info = AttackInfo(
        norms=("linf",),
        kind="score",
        randomized=True,
        source="Uesato et al. 2018, Adversarial Risk and the Dangers of Evaluating Against Weak Attacks, "
        "arXiv 1802.05666",
        toolkit="native",
        paper="004",
        summary="SPSA gradient estimate + Adam on the logit margin, batched over images and probes (score-based)",
    )

    params = ParamSet([
        Param("samples", "int", 128, "model evaluations per image per step; even (samples / 2 antithetic pairs)",
              low=2, unit="queries"),
        Param("delta", "float", 0.001, "size of the finite-difference probe", low=0, low_open=True, high=math.inf,
              high_open=True, unit="pixels [0, 1]"),
        Param("learning_rate", "float", 0.01, "Adam's step size", low=0, low_open=True, high=math.inf,
              high_open=True, unit="pixels [0, 1]"),
        Param("steps", "int", 100, "Adam iterations", low=0, sane_high=100_000),
        Param("early_stop", "bool", True, "stop on an image as soon as it is misclassified"),
        Param("random_start", "bool", True, "start from a uniform point of the eps ball (as the original code)"),
        Param("max_batch", "int", 1024, "the most inputs in one forward pass (bounds memory)", low=2),
    ])
    samples: int
    delta: float
    learning_rate: float
    steps: int
    early_stop: bool
    random_start: bool
    max_batch: int

    def setup(self) -> None:
        if self.samples % 2:
            raise ParamError(f"{self.label()}: samples must be even (antithetic +- pairs), got {self.samples}")

    # Adam's constants, as in torch.optim.Adam's defaults.
    betas = (0.9, 0.999)
    adam_eps = 1e-8

    def _margins(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = [margin_loss(model(x[i:i + self.max_batch]), y[i:i + self.max_batch])
               for i in range(0, x.shape[0], self.max_batch)]
        return torch.cat(out)

    def _gradient(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """SPSA estimate of d margin / dx for every image of ``x`` (no_grad; batched forwards)."""
        n, shape = x.shape[0], x.shape[1:]
        pairs = self.samples // 2
        # A chunk is g images x p pairs -> 2 g p inputs <= max_batch.
        p_chunk = min(pairs, max(1, self.max_batch // 2))
        g_chunk = max(1, self.max_batch // (2 * p_chunk))
        grad = torch.zeros_like(x)
        for i in range(0, n, g_chunk):
            xi, yi = x[i:i + g_chunk], y[i:i + g_chunk]
            g = xi.shape[0]
            for j in range(0, pairs, p_chunk):
                p = min(p_chunk, pairs - j)
                v = torch.empty((g, p, *shape), device=x.device, dtype=x.dtype).bernoulli_(0.5, generator=generator)
                v.mul_(2).sub_(1)
                probes = torch.cat([xi[:, None] + self.delta * v, xi[:, None] - self.delta * v], dim=1)
                labels = yi[:, None].expand(g, 2 * p).reshape(-1)
                f = margin_loss(model(probes.view(-1, *shape)), labels).view(g, 2 * p)
                diff = (f[:, :p] - f[:, p:]) / (2 * self.delta)
                grad[i:i + g] += torch.einsum("gp,gp...->g...", diff, v)
        return grad / pairs

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> AttackResult:
        n = x.shape[0]
        eps = self.threat.eps
        lower, upper = self.threat.clip_bounds(x)  # the ball and the box, one clamp per step
        queries = torch.zeros(n, dtype=torch.int64, device=x.device)
        with torch.no_grad():
            if self.random_start:
                start = x + (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
                x_adv = self.threat.project(start, x)
            else:
                x_adv = x.clone()
            active = torch.ones(n, dtype=torch.bool, device=x.device)
            if self.early_stop:
                # An image that is already misclassified needs no attack (one query to learn that).
                active = self._margins(model, x_adv, y) >= 0
                queries += 1
            m = torch.zeros_like(x)
            v = torch.zeros_like(x)
            beta1, beta2 = self.betas
            for t in range(1, self.steps + 1):
                idx = active.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                xa, ya = x_adv[idx], y[idx]
                grad = self._gradient(model, xa, ya, generator)
                queries[idx] += self.samples
                # Adam on the (frozen-for-stopped-images) per-image state.
                m[idx] = beta1 * m[idx] + (1 - beta1) * grad
                v[idx] = beta2 * v[idx] + (1 - beta2) * grad * grad
                m_hat = m[idx] / (1 - beta1**t)
                v_hat = v[idx] / (1 - beta2**t)
                xa = xa - self.learning_rate * m_hat / (v_hat.sqrt() + self.adam_eps)
                xa = torch.min(torch.max(xa, lower[idx]), upper[idx])
                x_adv[idx] = xa
                if self.early_stop:
                    still = self._margins(model, xa, ya) >= 0
                    queries[idx] += 1
                    active[idx] = still
                report_progress("spsa step", t, self.steps)  # the evaluation's bar shows it between batches
        return AttackResult(x_adv, queries=queries)
