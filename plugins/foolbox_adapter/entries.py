"""The foolbox entries: our parameter names -> foolbox's keywords, with foolbox's own defaults.

Common vocabulary: eps comes from the ThreatModel (foolbox's ``epsilons``); ``steps`` -> steps,
``step_size`` -> abs_stepsize (C&W: stepsize, the Adam learning rate is ``lr`` -> stepsize),
``random_start`` -> random_start, ``kappa`` -> confidence, ``alpha_init`` / ``alpha_final`` ->
max_stepsize / min_stepsize (FMN), ``gamma_init`` -> gamma (FMN), ``init_norm`` -> init_epsilon (DDN).
Every other parameter keeps foolbox's own name.  foolbox has no APGD.
"""

from __future__ import annotations

from robustreg import Param

from .adapter import EntrySpec, FoolboxAttack, make_entry

__all__ = ["ENTRIES", "SPECS"]

_MADRY = "Towards Deep Learning Models Resistant to Adversarial Attacks (Madry et al., 2018), arXiv:1706.06083"
_FMN = ("Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints (Pintor et al., 2021), "
        "arXiv:2102.12827")
_DDN = ("Decoupling Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks and Defenses "
        "(Rony et al., 2019), arXiv:1811.09600")
_CW = "Towards Evaluating the Robustness of Neural Networks (Carlini & Wagner, 2017), arXiv:1608.04644"
_DF = ("DeepFool: a simple and accurate method to fool deep neural networks (Moosavi-Dezfooli et al., 2016), "
       "arXiv:1511.04599")


def _steps(default: int | None, doc: str = "number of iterations") -> Param:
    return Param("steps", "int", default, doc, low=1, optional=default is None, sane_high=100_000)


def _positive(name: str, default: float | None, doc: str, toolkit: str | None = None, unit: str = "") -> Param:
    return Param(name, "float", default, doc, low=0, low_open=True, toolkit=toolkit, unit=unit,
                 optional=default is None)


def _at_least(name: str, default: float, doc: str, toolkit: str | None = None) -> Param:
    return Param(name, "float", default, doc, low=0, toolkit=toolkit)


def _flag(name: str, default: bool, doc: str) -> Param:
    return Param(name, "bool", default, doc)


#: what foolbox's PGD runs without a parameter for it: one run on the cross-entropy (kappa does not apply)
_PGD_IMPLIED = {"restarts": 1, "loss": "ce", "kappa": ...}

SPECS: tuple[EntrySpec, ...] = (
    EntrySpec(
        "pgd", {"linf": "LinfProjectedGradientDescentAttack", "l2": "L2ProjectedGradientDescentAttack"},
        "Projected gradient descent on the cross-entropy (L_inf: signed steps; L2: normalised steps)", _MADRY,
        params=(_steps(None, "number of iterations; None = foolbox's default (linf 40, l2 50)"),
                _positive("step_size", None, "absolute step size; None = eps * rel_stepsize", toolkit="abs_stepsize",
                          unit="pixels [0, 1]"),
                _positive("rel_stepsize", None, "step size as a fraction of eps when step_size is None; "
                          "None = foolbox's default (linf 0.01/0.3, l2 0.025)"),
                _flag("random_start", True, "start at a uniform random point of the ball")),
        per_class_default=("steps", "rel_stepsize"), randomized=True, implied=_PGD_IMPLIED,
        note="foolbox returns the last iterate (clipped to eps), adversarial or not.",
    ),
    EntrySpec(
        "fgsm", {"linf": "LinfFastGradientAttack", "l2": "L2FastGradientAttack"},
        "Fast gradient (sign) method: one step of size eps (L_inf: FGSM, signed; L2: FGM, normalised)",
        "Explaining and Harnessing Adversarial Examples (Goodfellow et al., 2015), arXiv:1412.6572",
        params=(_flag("random_start", False, "step from a uniform random point of the ball"),),
               targeted=False, single_step=True, implied={"step_size": None},
        note="Untargeted only: foolbox's fast gradient attacks refuse a TargetedMisclassification criterion.",
    ),
    EntrySpec(
        "fmn", {"linf": "LInfFMNAttack", "l2": "L2FMNAttack", "l1": "L1FMNAttack"},
        "Fast minimum-norm attack (minimal-norm; foolbox clips the result to eps)", _FMN,
        params=(_steps(100),
                _positive("alpha_init", 1.0, "initial step size (cosine-annealed)", toolkit="max_stepsize"),
                _positive("alpha_final", None, "final step size; None = alpha_init / 100", toolkit="min_stepsize"),
                _positive("gamma_init", 0.05, "initial factor of the norm-constraint update (annealed to 0.001)",
                          toolkit="gamma")),
        minimal_norm=True, implied={"gamma_final": 0.001},
    ),
    EntrySpec(
        "ddn", {"l2": "DDNAttack"},
        "Decoupled direction and norm attack (minimal-norm L2; foolbox clips the result to eps)", _DDN,
        params=(_steps(100),
                _positive("gamma", 0.05, "factor of the norm update: norm * (1 +- gamma)"),
                _positive("init_norm", 1.0, "initial norm of the perturbation", toolkit="init_epsilon")),
        minimal_norm=True, implied={"levels": None, "alpha_init": 1.0, "alpha_final": 0.01},
        note=("No quantisation of the iterates (adv-lib's DDN quantises to 256 levels by default); the step is "
              "cosine-annealed from 1 to 0.01 (fixed in foolbox)."),
    ),
    EntrySpec(
        "cw", {"l2": "L2CarliniWagnerAttack"},
        "Carlini-Wagner L2 attack (Adam in tanh space, binary search on c; minimal-norm; foolbox clips the result "
        "to eps)", _CW,
        params=(Param("binary_search_steps", "int", 9, "binary-search steps on c", low=1),
                _steps(10000, "Adam steps per binary-search step"),
                _positive("lr", 0.01, "Adam learning rate in tanh space", toolkit="stepsize"),
                _at_least("kappa", 0.0, "confidence margin", toolkit="confidence"),
                _positive("initial_const", 0.001, "initial weight c of the misclassification term"),
                _flag("abort_early", True, "stop a search step when the loss stops decreasing")),
        minimal_norm=True,
        note="foolbox's default of 10000 steps per search step is slow; fewer (e.g. steps=100) are common.",
    ),
    EntrySpec(
        "deepfool", {"linf": "LinfDeepFoolAttack", "l2": "L2DeepFoolAttack"},
        "DeepFool: iterated linearisation of the nearest decision boundary (minimal-norm; foolbox clips the result "
        "to eps)", _DF,
        params=(_steps(50),
                Param("candidates", "int", 10, "most likely classes considered; None = all", low=2, optional=True),
                _at_least("overshoot", 0.02, "overshoot past the boundary"),
                Param("loss", "choice", "logits", "what is linearised: logit differences or cross-entropy differences",
                      choices=("logits", "crossentropy"))),
        targeted=False, minimal_norm=True,
    ),
)

ENTRIES: tuple[type[FoolboxAttack], ...] = tuple(make_entry(spec) for spec in SPECS)
