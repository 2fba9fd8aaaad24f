"""Multi-step adversarial training defenses (AT, TRADES, ALP, MART).

Formulas follow paper 004 (Xu et al., "Scale-Invariant Adversarial Attack for Evaluating and
Enhancing Adversarial Defenses", 2022, arXiv 2201.12527) Table 1 and section 5.4: lambda = 6 / 3 / 6
for TRADES / ALP / MART, training attack PGD-10 with step eps/4 and random start, eps = 8/255.  See
:mod:`.defense_base` for the split into ``adversarial`` (eval mode, input gradients only) and
``objective`` (the caller's mode), and for the extension points mechanisms compose through.

This module also holds the plugin's ``robustreg_register_defenses`` hook, which registers these and
the single-step defenses of :mod:`.defense_single_step`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import DefenseInfo, DefenseOutput, Embedding, ForwardPass, Param, ParamSet, Registrar, embed, hookimpl

from .defense_base import AdversarialDefense, init_param, kl_per_sample, weight_param
from .defense_single_step import GAT, RFGSMAT, FreeAT, GradAlign

__all__ = ["ALP", "AT", "MART", "TRADES", "robustreg_register_defenses"]


class AT(AdversarialDefense):
    """PGD adversarial training: minimise CE(f(x'), y) on PGD examples x'.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018,
    arXiv 1706.06083; settings of paper 004 (Xu, Zhang, Li, Zhang, "Scale-Invariant Adversarial Attack
    for Evaluating and Enhancing Adversarial Defenses", 2022, arXiv 2201.12527, Table 1 row AT, section
    5.4).  Norm: linf.

    Training objective: ``CE(f(x'), y)``.  Adversarial objective: ``CE(f(x'), y)``.

    Parameters: ``eps`` (8/255, pixel units), ``steps`` (10), ``step_size`` (eps/4, pixel units),
    ``random_start`` (True: uniform in the ball), ``seed`` (None).  Inputs: float N x C x H x W in
    [0, 1], int64 labels.

    Example::

        defense = Registry.create().build_defense("at", eps=8 / 255)
        out = defense.loss(model, x, y, step=0); out.loss.backward()
    """

    name = "at"
    info = DefenseInfo(source="Madry et al. 2018, arXiv 1706.06083", summary="PGD adversarial training (PGD-10, eps/4)")
    # objective: the base class's CE(f(x'), y)


class TRADES(AdversarialDefense):
    """TRADES: CE(f(x), y) + lambda * KL(f(x) || f(x')), x' maximising the KL.

    Paper: Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML
    2019, arXiv 1901.08573.  Zhang et al. write CE + KL / lambda with 1/lambda = 6; paper 004 (Table 1)
    writes lambda * KL with lambda = 6: the same loss.  Norm: linf.

    Training objective: ``CE(f(x), y) + lam * KL(f(x) || f(x'))`` (KL averaged over the batch).
    Adversarial objective: ``KL(f(x) || f(x'))`` with f(x) fixed.

    Parameters: ``lam`` (6), ``eps`` (8/255), ``steps`` (10), ``step_size`` (eps/4), ``random_start``
    (True: x + 0.001 * N(0, I) as in Zhang et al.'s code, since the KL and its gradient vanish at x'
    = x), ``seed`` as in :class:`AT`.

    Example: ``Registry.create().build_defense("trades", lam=6.0)``.
    """

    name = "trades"
    info = DefenseInfo(source="Zhang et al. 2019, arXiv 1901.08573", summary="TRADES (lambda 6, KL inner attack)")
    start = "gaussian"
    params = ParamSet([weight_param("lam", 6.0, "weight of the KL term"), *AdversarialDefense.params])
    lam: float

    def own_attack_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                        ) -> Callable[[ForwardPass], torch.Tensor]:
        """KL(f(x) || f(x')) summed, f(x) computed once, on first use (not at all when a mechanism replaces it)."""
        nat: list[torch.Tensor] = []

        def kl(out: ForwardPass) -> torch.Tensor:
            if not nat:
                with torch.no_grad():
                    nat.append(model(x))
            return kl_per_sample(nat[0], out.logits).sum()
        return kl

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_clean = model(x)
        adv = self.forward(model, x_adv)
        ce = F.cross_entropy(logits_clean, y)
        kl = kl_per_sample(logits_clean, adv.logits).mean()
        metrics = {"loss_ce": float(ce.detach()), "loss_kl": float(kl.detach())}
        loss = self.add_terms(ce + self.lam * kl, adv, y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_clean=logits_clean.detach(), logits_adv=adv.logits.detach())


class ALP(AdversarialDefense):
    """Adversarial logit pairing: mixed clean/adversarial CE plus lambda * ||W^T (z - z')||_2.

    Paper: Kannan, Kurakin and Goodfellow, "Adversarial Logit Pairing", 2018, arXiv 1803.06373.  Two
    forms (``form``):

    - ``"paper004"`` (default): the form paper 004 gives (Table 1), the one its ALP numbers use: z, z'
      are the penultimate features of x and x' and W the head's weight, so W^T (z - z') is the logit
      difference without the bias; the pairing term is the L2 norm (NOT squared) per sample, averaged
      over the batch; x and x' go through the model in two forward passes.
      ``alpha * CE(f(x), y) + (1 - alpha) * CE(f(x'), y) + lam * mean_i ||W^T (z_i - z'_i)||_2``.
    - ``"kannan"``: Kannan et al.'s own (section 3, "L(f(x), f(x'))" with L the squared L2 loss, in their
      code the mean squared logit difference): ONE forward pass of the mixed batch [x; x'] (BatchNorm
      sees clean and adversarial images together) and
      ``alpha * CE(f(x), y) + (1 - alpha) * CE(f(x'), y) + lam * mean_{i,k} (f(x_i)_k - f(x'_i)_k)^2``
      (the mean over the N x K logit entries; with alpha 0.5 the CE is the mixed batch's mean CE).
      ``lam`` keeps paper 004's default 3 in both forms; Kannan et al. weight the pairing 0.5 on
      ImageNet -- set it explicitly for their recipe.  Paper 004 does not say whether it pairs on one
      mixed batch, nor why its term is unsquared.
    - ``"mse"``: the released code of the paper whose Table 1 paper 004's Table 1 reproduces (Pang et
      al., "Boosting Adversarial Training with Hypersphere Embedding", NeurIPS 2020, which writes the
      same ``lam ||W^T (z - z')||_2``; github.com/ShawnXYang/AT_HE, ``CIFAR-10/losses.py``,
      ``alp_loss``): two forward passes, ``0.5 CE(f(x), y) + 0.5 CE(f(x'), y) + lam * mean_{i,k}
      (f(x_i)_k - f(x'_i)_k)^2`` (``F.mse_loss`` of the logits; the bias cancels, so it is W^T (z - z')
      squared and averaged over the N x K entries).  On a network without BatchNorm it equals
      ``"kannan"``.

    Why the literal ``"paper004"`` form can stall training (measured, issue 11): its gradient does not
    shrink with the distance (d||v||/dv = v / ||v||), so at initialisation, where the pairing is ~0.01,
    ``3 ||W^T (z - z')||_2`` already pulls with 0.4x (eps 0.02) to 1.2x (eps 0.1) the parameter gradient
    of the CE terms (the squared ``"mse"`` term: ~1/3000 of it) -- towards making the logits insensitive
    to the input.  digits-cnn on scikit-learn digits (paper 004's recipe, 20 epochs, lr 0.05 or 0.02,
    cosine) then collapses to a constant output (test accuracy 10-20%); ``lam=0.5`` or ``"mse"`` /
    ``"kannan"`` with lam 3 train to ~99% clean.

    Adversarial objective: ``CE(f(x'), y)``.  Norm: linf.

    Parameters: ``alpha`` (0.5, in [0, 1]), ``lam`` (3), ``form`` ("paper004" | "kannan" | "mse", default
    "paper004"), and the common ``eps``
    (8/255), ``steps`` (10), ``step_size`` (eps/4), ``random_start`` (True), ``seed``.

    Example: ``Registry.create().build_defense("alp", alpha=0.5, lam=3.0)``.
    """

    name = "alp"
    info = DefenseInfo(source="Kannan et al. 2018, arXiv 1803.06373", summary="adversarial logit pairing (lambda 3)")

    params = ParamSet([
        Param("alpha", "float", 0.5, "weight of the clean CE (1 - alpha: the adversarial CE's)", low=0, high=1),
        weight_param("lam", 3.0, "weight of the logit pairing ||W^T (z - z')||_2"),
        Param("form", "choice", "paper004", "paper004: lam * mean ||W^T (z - z')||_2, two forward passes (paper 004 "
              "Table 1); kannan: lam * mean squared logit difference on one mixed batch (Kannan et al.); mse: the "
              "same squared mean with two forward passes (Pang et al. 2020's released code of that Table 1 row)",
              choices=("paper004", "kannan", "mse")),
        *AdversarialDefense.params,
    ])
    alpha: float
    lam: float
    form: str

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        if self.form == "kannan":
            return self.kannan_objective(model, x, x_adv, y)
        clean = embed(model, x)
        adv = embed(model, x_adv)
        ce = F.cross_entropy(clean.logits, y)
        ce_adv = F.cross_entropy(adv.logits, y)
        if self.form == "mse":
            pairing = F.mse_loss(clean.logits, adv.logits)
        else:
            pairing = F.linear(clean.features - adv.features, adv.weight).norm(p=2, dim=1).mean()
        metrics = {"loss_ce": float(ce.detach()), "loss_ce_adv": float(ce_adv.detach()),
                   "loss_pairing": float(pairing.detach())}
        loss = self.alpha * ce + (1 - self.alpha) * ce_adv + self.lam * pairing
        loss = self.add_terms(loss, ForwardPass(adv.logits, adv), y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_clean=clean.logits.detach(), logits_adv=adv.logits.detach())


    def kannan_objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
                         ) -> DefenseOutput:
        """Kannan et al.'s ALP: one forward of [x; x'], mixed CE + lam * mean squared logit difference."""
        n = x.shape[0]
        both = embed(model, torch.cat([x, x_adv]))
        logits_clean, logits_adv = both.logits[:n], both.logits[n:]
        ce = F.cross_entropy(logits_clean, y)
        ce_adv = F.cross_entropy(logits_adv, y)
        pairing = F.mse_loss(logits_clean, logits_adv)
        metrics = {"loss_ce": float(ce.detach()), "loss_ce_adv": float(ce_adv.detach()),
                   "loss_pairing": float(pairing.detach())}
        loss = self.alpha * ce + (1 - self.alpha) * ce_adv + self.lam * pairing
        adv = Embedding(logits_adv, both.features[n:], both.weight, both.bias, both.head_name)
        loss = self.add_terms(loss, ForwardPass(logits_adv, adv), y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_clean=logits_clean.detach(), logits_adv=logits_adv.detach())


def boosted_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MART's BCE per sample: -log p_y - log(1 - max_{k != y} p_k), the second term from logsumexps.

    log(1 - p_j) = logsumexp_{k != j} l_k - logsumexp_k l_k, exact and finite for any logits (K >= 2).
    """
    onehot = F.one_hot(y, logits.shape[1]).bool()
    runner_up = logits.masked_fill(onehot, float("-inf")).argmax(dim=1)
    without = logits.masked_fill(F.one_hot(runner_up, logits.shape[1]).bool(), float("-inf"))
    log_one_minus = torch.logsumexp(without, dim=1) - torch.logsumexp(logits, dim=1)
    return F.cross_entropy(logits, y, reduction="none") - log_one_minus


class MART(AdversarialDefense):
    """MART: boosted CE on x' plus lambda * KL(f(x) || f(x')) weighted by (1 - f(x)_y).

    Paper: Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified Examples",
    ICLR 2020 (openreview rklOg6EFwS); Table 1 of paper 004.  Norm: linf.

    Training objective: ``mean_i[BCE(f(x'_i), y_i) + lam * KL(f(x_i) || f(x'_i)) * (1 - f(x_i)_{y_i})]``
    with ``BCE(p, y) = -log p_y - log(1 - max_{k != y} p_k)``.
    The weight (1 - f(x)_y) is differentiated through, as in Wang et al.'s code.
    Adversarial objective: ``CE(f(x'), y)``.

    Parameters: ``lam`` (6), ``init`` ("normal": the inner attack starts from x + 0.001 N(0, I), as in
    Wang et al.'s released code (``mart.py``); "uniform": U(-eps, eps), this library's former choice;
    the paper says only "PGD"), and the common ``eps`` (8/255), ``steps`` (10), ``step_size`` (eps/4),
    ``random_start`` (True; False: start at x), ``seed``.

    Example: ``Registry.create().build_defense("mart", lam=6.0)``.
    """

    name = "mart"
    info = DefenseInfo(source="Wang et al. 2020, ICLR (MART)", summary="MART (lambda 6, boosted CE + weighted KL)")

    params = ParamSet([weight_param("lam", 6.0, "weight of the (1 - f(x)_y)-weighted KL term"),
                       init_param("normal", "Wang et al.'s code"),
                       *AdversarialDefense.params])
    lam: float
    init: str

    def start_kind(self) -> str:
        return "gaussian" if self.init == "normal" else "uniform"

    def objective(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> DefenseOutput:
        logits_clean = model(x)
        adv = self.forward(model, x_adv)
        bce = boosted_ce(adv.logits, y).mean()
        p_true = F.softmax(logits_clean, dim=1).gather(1, y[:, None]).squeeze(1)
        kl = (kl_per_sample(logits_clean, adv.logits) * (1 - p_true)).mean()
        metrics = {"loss_bce": float(bce.detach()), "loss_kl_weighted": float(kl.detach())}
        loss = self.add_terms(bce + self.lam * kl, adv, y, metrics)
        metrics["loss"] = float(loss.detach())
        return DefenseOutput(loss, metrics, logits_clean=logits_clean.detach(), logits_adv=adv.logits.detach())


CLASSIC_DEFENSES = (AT, TRADES, ALP, MART, FreeAT, RFGSMAT, GAT, GradAlign)


@hookimpl
def robustreg_register_defenses(registrar: Registrar) -> None:
    """Register at, trades, alp, mart, free-at, rfgsm-at, gat and grad-align."""
    for cls in CLASSIC_DEFENSES:
        registrar.add_defense(cls.name, cls, info=cls.info, summary=cls.info.summary)
