"""The torchattacks entries: our parameter names -> torchattacks' keywords, with torchattacks' defaults.

Common vocabulary: eps comes from the ThreatModel; ``steps`` -> steps (SPSA: nb_iter), ``step_size``
-> alpha (SPSA: lr, the Adam learning rate), ``restarts`` -> n_restarts, ``random_start`` ->
random_start, ``n_queries`` -> n_queries, ``loss`` -> loss, ``seed`` -> seed (and torch's RNG).
Every other parameter keeps torchattacks' own name.
"""

from __future__ import annotations

from robustreg import Param

from .adapter import EntrySpec, TorchattacksAttack, make_entry

__all__ = ["ENTRIES", "SPECS"]

_MADRY = "Towards Deep Learning Models Resistant to Adversarial Attacks (Madry et al., 2018), arXiv:1706.06083"
_APGD = ("Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks "
         "(Croce & Hein, 2020), arXiv:2003.01690")
_FAB = ("Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack (Croce & Hein, 2020), "
        "arXiv:1907.02044")


def _steps(default: int, low: int = 1) -> Param:
    return Param("steps", "int", default, "number of iterations", low=low, sane_high=100_000)


def _step_size(default: float) -> Param:
    return Param("step_size", "float", default, "step size per iteration", low=0, low_open=True,
                 unit="pixels [0, 1]", toolkit="alpha")


def _restarts(default: int = 1) -> Param:
    return Param("restarts", "int", default, "number of restarts", low=1, toolkit="n_restarts", sane_high=100_000)


def _positive(name: str, default: float, doc: str) -> Param:
    return Param(name, "float", default, doc, low=0, low_open=True)


def _at_least(name: str, default: float, doc: str, low: float = 0) -> Param:
    return Param(name, "float", default, doc, low=low)


def _count(name: str, default: int, doc: str) -> Param:
    return Param(name, "int", default, doc, low=1)


def _choice(name: str, default: str, doc: str, choices: tuple[str, ...]) -> Param:
    return Param(name, "choice", default, doc, choices=choices)


#: what torchattacks' PGD runs without a parameter for it: one run, on the cross-entropy (so the C&W cap,
#: kappa, does not apply)
_PGD_IMPLIED = {"restarts": 1, "loss": "ce", "kappa": ...}
_RANDOM_START = Param("random_start", "bool", True, "start at a uniform random point of the ball")
_EOT = _count("eot_iter", 1, "gradient samples averaged per step (EOT)")
_RHO = _positive("rho", 0.75, "step-size halving threshold")
_N_CLASSES = Param("n_classes", "int", None, "number of classes; None = read from the model", low=2, optional=True)

SPECS: tuple[EntrySpec, ...] = (
    EntrySpec(
        "fgsm", "FGSM", "Fast gradient sign method: one signed-gradient step of size eps",
        "Explaining and Harnessing Adversarial Examples (Goodfellow et al., 2015), arXiv:1412.6572",
        ("linf",), targeted=True, single_step=True, implied={"random_start": False, "step_size": None},
    ),
    EntrySpec(
        "bim", "BIM", "Basic iterative method: iterated FGSM without random start",
        "Adversarial examples in the physical world (Kurakin et al., 2017), arXiv:1607.02533",
        ("linf",), (_steps(10, low=0), _step_size(2 / 255)), targeted=True,
        note="steps=0 uses the paper's rule min(eps*255 + 4, 1.25*eps*255).",
    ),
    EntrySpec(
        "pgd", "PGD", "Projected gradient descent on the cross-entropy (L_inf)", _MADRY,
        ("linf",), (_steps(10), _step_size(2 / 255), _RANDOM_START), targeted=True, randomized=True,
        implied=_PGD_IMPLIED,
    ),
    EntrySpec(
        "pgdl2", "PGDL2", "Projected gradient descent on the cross-entropy (L2)", _MADRY,
        ("l2",), (_steps(10), _step_size(0.2), _RANDOM_START,
                  _positive("eps_for_division", 1e-10, "guard against division by 0")),
        targeted=True, randomized=True, implied=_PGD_IMPLIED,
    ),
    EntrySpec(
        "rfgsm", "RFGSM", "R+FGSM: a random sign step of size step_size, then signed-gradient steps",
        "Ensemble Adversarial Training: Attacks and Defenses (Tramer et al., 2018), arXiv:1705.07204",
        ("linf",), (_steps(10), _step_size(2 / 255)), targeted=True, randomized=True,
    ),
    EntrySpec(
        "mifgsm", "MIFGSM", "Momentum iterative FGSM",
        "Boosting Adversarial Attacks with Momentum (Dong et al., 2018), arXiv:1710.06081",
        ("linf",), (_steps(10), _step_size(2 / 255),
                    _at_least("decay", 1.0, "momentum decay factor")),
        targeted=True,
    ),
    EntrySpec(
        "tpgd", "TPGD", "PGD on the TRADES KL divergence to the clean prediction (labels unused)",
        "Theoretically Principled Trade-off between Robustness and Accuracy (Zhang et al., 2019), arXiv:1901.08573",
        ("linf",), (_steps(10), _step_size(2 / 255)), randomized=True,
    ),
    EntrySpec(
        "eotpgd", "EOTPGD", "PGD with expectation over transformation (gradients averaged over eot_iter passes)",
        "Synthesizing Robust Adversarial Examples (Athalye et al., 2018), arXiv:1707.07397",
        ("linf",), (_steps(10), _step_size(2 / 255), _RANDOM_START,
                    _count("eot_iter", 2, "gradient samples averaged per step")),
        targeted=True, randomized=True,
    ),
    EntrySpec(
        "apgd", "APGD", "Auto-PGD: step-size-free PGD on the cross-entropy or DLR loss (torchattacks' version)",
        _APGD, ("linf", "l2"),
        (_steps(10), _restarts(), _choice("loss", "ce", "loss to maximise", ("ce", "dlr")),
         _EOT, _RHO),
        takes_norm=True, takes_seed=True, randomized=True,
        note="torchattacks' default is 10 steps; the standard AutoAttack APGD runs 100 (see autoattack:apgd-ce).",
    ),
    EntrySpec(
        "apgdt", "APGDT", "Targeted Auto-PGD on the DLR loss over the n_classes-1 most likely wrong classes",
        _APGD, ("linf", "l2"), (_steps(10), _restarts(), _EOT, _RHO, _N_CLASSES),
        takes_norm=True, takes_seed=True, takes_n_classes=True, randomized=True, picks_targets=True,
        note="Untargeted from the caller's view: it chooses its target classes itself.",
    ),
    EntrySpec(
        "fab", "FAB", "Fast adaptive boundary attack (minimal-norm; the adapter projects the result into the eps ball)",
        _FAB, ("linf", "l2"),
        (_steps(10), _restarts(),
         _at_least("alpha_max", 0.1, "maximum step extrapolation"),
         _at_least("eta", 1.05, "overshoot of the projection", low=1),
         _at_least("beta", 0.9, "weight of the backward step"),
         Param("multi_targeted", "bool", False, "run FAB-T over n_classes-1 target classes"),
         _N_CLASSES),
        takes_norm=True, takes_seed=True, takes_n_classes=True, minimal_norm=True, randomized=True,
        note="L1 is not offered: torchattacks 3.5.1's FAB crashes on it (UnboundLocalError); use autoattack:fab.",
    ),
    EntrySpec(
        "square", "Square", "Square attack: score-based random search with square-shaped updates",
        "Square Attack: a query-efficient black-box adversarial attack via random search "
        "(Andriushchenko et al., 2020), arXiv:1912.00049",
        ("linf", "l2"),
        (_count("n_queries", 5000, "query budget per sample"), _restarts(),
         _positive("p_init", 0.8, "initial fraction of pixels changed"),
         _choice("loss", "margin", "loss to maximise", ("margin", "ce")),
         Param("resc_schedule", "bool", True, "rescale the p schedule to n_queries")),
        kind="score", takes_norm=True, takes_seed=True, randomized=True,
    ),
    EntrySpec(
        "spsa", "SPSA", "SPSA: gradient-free ascent on the margin loss with finite-difference gradient estimates",
        "Adversarial Risk and the Dangers of Evaluating Against Weak Attacks (Uesato et al., 2018), arXiv:1802.05666",
        ("linf",),
        (Param("steps", "int", 1, "number of iterations", low=1, toolkit="nb_iter"),
         Param("step_size", "float", 0.01, "Adam learning rate on the perturbation", low=0, low_open=True,
               unit="pixels [0, 1]", toolkit="lr"),
         _positive("delta", 0.01, "finite-difference scale"),
         _count("nb_sample", 128, "random directions per gradient estimate"),
         _count("max_batch_size", 64, "directions evaluated per forward")),
        kind="score", targeted=True, randomized=True,
    ),
    EntrySpec(
        "cw", "CW", "Carlini-Wagner L2 attack (Adam in tanh space, fixed c; minimal-norm; the adapter projects the "
        "result into the eps ball)",
        "Towards Evaluating the Robustness of Neural Networks (Carlini & Wagner, 2017), arXiv:1608.04644",
        ("l2",),
        (_at_least("c", 1.0, "weight of the misclassification term"),
         _at_least("kappa", 0.0, "confidence margin"),
         _steps(50),
         _positive("lr", 0.01, "Adam learning rate in tanh space")),
        targeted=True, takes_eps=False, minimal_norm=True,
    ),
    EntrySpec(
        "deepfool", "DeepFool",
        "DeepFool: iterated linearisation of the nearest decision boundary (minimal-norm; the adapter projects the "
        "result into the eps ball)",
        "DeepFool: a simple and accurate method to fool deep neural networks (Moosavi-Dezfooli et al., 2016), "
        "arXiv:1511.04599",
        ("l2",),
        (_steps(50), _at_least("overshoot", 0.02, "overshoot past the boundary")),
        takes_eps=False, minimal_norm=True,
    ),
    EntrySpec(
        "autoattack", "AutoAttack",
        "torchattacks' AutoAttack variant, NOT the standard AutoAttack: APGD, APGD-T and FAB run 10 steps",
        _APGD, ("linf", "l2"),
        (_choice("version", "standard", "which ensemble", ("standard", "plus", "rand")),
         _N_CLASSES),
        takes_norm=True, takes_seed=True, takes_n_classes=True, randomized=True, picks_targets=True,
        note=(
            "torchattacks 3.5.1's version='standard' chains APGD(ce, 10 steps, 1 restart), APGDT(10 steps, "
            "1 restart, n_classes-1 targets), FAB(multi-targeted, 10 steps, 1 restart) and Square(5000 queries, "
            "resc_schedule=True), each later attack on the points still standing; the standard AutoAttack "
            "(autoattack:standard) runs APGD-CE, APGD-T and FAB-T for 100 iterations and Square without the "
            "schedule rescaling.  'plus' uses 5 restarts for APGD-CE/DLR and FAB, 'rand' 20 EOT samples."
        ),
    ),
)

ENTRIES: tuple[type[TorchattacksAttack], ...] = tuple(make_entry(spec) for spec in SPECS)
