"""The adv-lib entries: our parameter names -> adv-lib's keywords, with adv-lib's own defaults.

Common vocabulary: eps comes from the ThreatModel; ``steps`` -> steps (APGD: n_iter, C&W:
max_iterations), ``step_size`` -> absolute_step_size, ``random_start`` -> random_init, ``restarts`` ->
restarts (APGD: n_restarts), ``loss`` -> loss_function, ``kappa`` -> confidence, ``lr`` ->
learning_rate, ``alpha_init`` / ``gamma`` ... -> adv-lib's Greek names (``α_init``, ``γ``).  Every
other parameter keeps adv-lib's own name.  adv-lib has no FGSM and no L2 PGD (its ``pgd_linf`` is
L_inf only; its single step never returns the stepped point, see the pgd entry's note).
"""

from __future__ import annotations

from typing import Any

from robustreg import Param

from .adapter import AdvlibAttack, EntrySpec, make_entry

__all__ = ["ENTRIES", "SPECS"]

_MADRY = "Towards Deep Learning Models Resistant to Adversarial Attacks (Madry et al., 2018), arXiv:1706.06083"
_APGD = ("Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks "
         "(Croce & Hein, 2020), arXiv:2003.01690; L1: Mind the box: l1-APGD (Croce & Hein, 2021), arXiv:2103.01208")
_FMN = ("Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints (Pintor et al., 2021), "
        "arXiv:2102.12827")
_DDN = ("Decoupling Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks and Defenses "
        "(Rony et al., 2019), arXiv:1811.09600")
_CW = "Towards Evaluating the Robustness of Neural Networks (Carlini & Wagner, 2017), arXiv:1608.04644"
_DF = ("DeepFool: a simple and accurate method to fool deep neural networks (Moosavi-Dezfooli et al., 2016), "
       "arXiv:1511.04599")


def _steps(default: int, toolkit: str | None = None, low: int = 1, doc: str = "number of iterations") -> Param:
    return Param("steps", "int", default, doc, low=low, toolkit=toolkit, sane_high=100_000)


def _positive(name: str, default: float | None, doc: str, toolkit: str | None = None) -> Param:
    return Param(name, "float", default, doc, low=0, low_open=True, toolkit=toolkit, optional=default is None)


def _at_least(name: str, default: float, doc: str, low: float = 0, toolkit: str | None = None) -> Param:
    return Param(name, "float", default, doc, low=low, toolkit=toolkit)


def _count(name: str, default: int | None, doc: str, toolkit: str | None = None) -> Param:
    return Param(name, "int", default, doc, low=1, toolkit=toolkit, optional=default is None)


def _flag(name: str, default: bool, doc: str, toolkit: str | None = None) -> Param:
    return Param(name, "bool", default, doc, toolkit=toolkit)


def _loss(default: str) -> Param:
    return Param("loss", "choice", default, "loss to maximise: cross-entropy or DLR", choices=("ce", "dlr"),
                 toolkit="loss_function")


#: APGD's shared parameters (adv_lib.attacks.apgd and apgd_targeted)
_APGD_PARAMS = (
    _steps(100, "n_iter"),
    _count("restarts", 1, "number of restarts", "n_restarts"),
    _loss("dlr"),
    _count("eot_iter", 1, "gradient samples averaged per step (EOT)"),
    _positive("rho", 0.75, "step-size halving threshold"),
    _flag("use_large_reps", False, "l1 only: three phases with eps x3, x2, x1 (l1-APGD's schedule)"),
    _flag("use_rs", True, "l1 with use_large_reps: start the schedule from a random point"),
)


def _check_large_reps(self: AdvlibAttack) -> None:
    if self.config.get("use_large_reps") and self.threat.norm != "l1":
        raise ValueError(f"{self.label()}: use_large_reps must be False for norm {self.threat.norm!r} "
                         "(adv-lib supports it for l1 only)")


SPECS: tuple[EntrySpec, ...] = (
    EntrySpec(
        "pgd", "pgd_linf", "Projected gradient descent (L_inf) on the cross-entropy or DLR loss (adv-lib's version)",
        _MADRY, ("linf",),
        (_steps(40),
         _positive("step_size", None, "absolute step size; None = eps * relative_step_size",
                   toolkit="absolute_step_size"),
         _positive("relative_step_size", 0.01 / 0.3, "step size as a fraction of eps (when step_size is None)"),
         _flag("random_start", True, "start at a uniform random point of the ball", toolkit="random_init"),
         _count("restarts", 1, "number of restarts (later ones on the samples still standing)"),
         _loss("ce")),
        eps_keyword="ε", randomized=True, implied={"kappa": ...},
        note=("adv-lib returns, per sample, the last iterate found adversarial (checked before each step, so the "
              "point after the final step is never checked or returned) and the clean input where none was; "
              "robust accuracy is unaffected by the latter, the reported perturbation is."),
    ),
    EntrySpec(
        "apgd", "apgd", "Auto-PGD on the cross-entropy or DLR loss, L_inf, L2 or L1 (adv-lib's version)",
        _APGD, ("linf", "l2", "l1"),
        (*_APGD_PARAMS,
         _flag("best_loss", False, "keep the highest-loss point within eps instead of the first adversarial one")),
        takes_norm=True, randomized=True,
        # what it runs without a parameter for it: momentum 0.75, untargeted (no target classes), no C&W cap / SI
        implied={"momentum": 0.75, "targeted": False, "n_target_classes": ..., "kappa": ..., "s": ...},
        note="adv-lib's default loss is DLR (AutoAttack's APGD-CE is loss='ce'); 100 steps, as in AutoAttack.",
    ),
    EntrySpec(
        "apgd-t", "apgd_targeted",
        "Targeted Auto-PGD over the most likely wrong classes (untargeted from the caller's view; adv-lib's version)",
        _APGD, ("linf", "l2", "l1"),
        (*_APGD_PARAMS,
         _count("num_targets", None, "wrong classes attacked, most likely first; None = every other class")),
        takes_norm=True, targeted=False, randomized=True, fixed={"targeted": False}, picks_targets=True,
        note="AutoAttack's APGD-T attacks the 9 most likely wrong classes (num_targets=9).",
    ),
    EntrySpec(
        "fmn", "fmn", "Fast minimum-norm attack (minimal-norm; the adapter projects the result into the eps ball)",
        _FMN, ("linf", "l2", "l1"),
        (_steps(10),
         _positive("alpha_init", 1.0, "initial step size (cosine-annealed)", toolkit="α_init"),
         _positive("alpha_final", None, "final step size; None = alpha_init / 100", toolkit="α_final"),
         _positive("gamma_init", 0.05, "initial factor of the norm-constraint update", toolkit="γ_init"),
         _positive("gamma_final", 0.001, "final factor of the norm-constraint update", toolkit="γ_final")),
        eps_keyword=None, takes_norm=True, minimal_norm=True,
    ),
    EntrySpec(
        "ddn", "ddn", "Decoupled direction and norm attack (minimal-norm L2; the adapter projects the result into "
        "the eps ball)",
        _DDN, ("l2",),
        (_steps(100),
         _positive("gamma", 0.05, "factor of the norm update: norm * (1 +- gamma)", toolkit="γ"),
         _positive("init_norm", 1.0, "initial norm of the perturbation"),
         Param("levels", "int", 256, "quantise the iterates to this many levels; None = no quantisation",
               low=2, optional=True)),
        eps_keyword=None, minimal_norm=True, implied={"alpha_init": 1.0, "alpha_final": 0.01},
        note="The step is cosine-annealed from 1 to 0.01 (fixed in adv-lib).",
    ),
    EntrySpec(
        "cw", "carlini_wagner_l2",
        "Carlini-Wagner L2 attack (Adam in tanh space, binary search on c; minimal-norm; the adapter projects the "
        "result into the eps ball)",
        _CW, ("l2",),
        (_at_least("kappa", 0.0, "confidence margin", toolkit="confidence"),
         _positive("lr", 0.01, "Adam learning rate in tanh space", toolkit="learning_rate"),
         _positive("initial_const", 0.001, "initial weight c of the misclassification term"),
         Param("binary_search_steps", "int", 9, "binary-search steps on c", low=1),
         _steps(10000, "max_iterations", low=20,
                doc="iterations per search step (>= 20: adv-lib's loop takes steps // 20 as a modulus)"),
         _flag("abort_early", True, "stop a search step when the loss stops decreasing")),
        eps_keyword=None, minimal_norm=True,
        note="adv-lib's default of 10000 steps per search step is slow; fewer (e.g. steps=100) are common.",
    ),
    EntrySpec(
        "cw-linf", "carlini_wagner_linf",
        "Carlini-Wagner L_inf attack (iteratively tightened tau; minimal-norm; the adapter projects the result into "
        "the eps ball)",
        _CW, ("linf",),
        (_positive("lr", 0.01, "Adam learning rate in tanh space", toolkit="learning_rate"),
         _steps(1000, "max_iterations", low=10,
                doc="iterations per tau (>= 10: adv-lib's loop takes steps // 10 as a modulus)"),
         _positive("initial_const", 1e-5, "initial weight c of the misclassification term"),
         _positive("largest_const", 20.0, "largest c tried"),
         _at_least("const_factor", 2.0, "factor c grows by", low=1),
         _flag("reduce_const", False, "try a smaller c after a success"),
         _positive("decrease_factor", 0.9, "factor tau shrinks by"),
         _flag("abort_early", True, "stop early once an adversarial point is found")),
        eps_keyword=None, minimal_norm=True,
    ),
    EntrySpec(
        "deepfool", "df",
        "DeepFool: iterated linearisation of the nearest decision boundary (minimal-norm; the adapter projects the "
        "result into the eps ball)",
        _DF, ("l2", "linf"),
        (_steps(100), _at_least("overshoot", 0.02, "overshoot past the boundary")),
        eps_keyword=None, takes_norm=True, targeted=False, minimal_norm=True,
    ),
)

_CHECKS: dict[str, Any] = {"apgd": _check_large_reps, "apgd-t": _check_large_reps}

ENTRIES: tuple[type[AdvlibAttack], ...] = tuple(make_entry(spec, _CHECKS.get(spec.name)) for spec in SPECS)
