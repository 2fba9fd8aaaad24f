"""The torchattacks entries: our parameter names -> torchattacks' keywords, with torchattacks' defaults.

Common vocabulary: eps comes from the ThreatModel; ``steps`` -> steps (SPSA: nb_iter), ``step_size``
-> alpha (SPSA: lr, the Adam learning rate), ``restarts`` -> n_restarts, ``random_start`` ->
random_start, ``n_queries`` -> n_queries, ``loss`` -> loss, ``seed`` -> seed (and torch's RNG).
Every other parameter keeps torchattacks' own name.
"""

from __future__ import annotations

from .adapter import EntrySpec, Param, TorchattacksAttack, make_entry

__all__ = ["ENTRIES", "SPECS"]

_MADRY = "Towards Deep Learning Models Resistant to Adversarial Attacks (Madry et al., 2018), arXiv:1706.06083"
_APGD = ("Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks "
         "(Croce & Hein, 2020), arXiv:2003.01690")
_FAB = ("Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack (Croce & Hein, 2020), "
        "arXiv:1907.02044")


def _steps(default: int, low: int = 1) -> Param:
    return Param("steps", "steps", default, "int", "number of iterations", low=low)


def _step_size(default: float) -> Param:
    return Param("step_size", "alpha", default, "float", "step size per iteration, [0, 1] pixel units", low=0,
                 strict_low=True)


def _restarts(default: int = 1) -> Param:
    return Param("restarts", "n_restarts", default, "int", "number of restarts", low=1)


_RANDOM_START = Param("random_start", "random_start", True, "bool", "start at a uniform random point of the ball")
_EOT = Param("eot_iter", "eot_iter", 1, "int", "gradient samples averaged per step (EOT)", low=1)
_RHO = Param("rho", "rho", 0.75, "float", "step-size halving threshold", low=0, strict_low=True)
_N_CLASSES = Param("n_classes", "n_classes", None, "int", "number of classes; None = read from the model",
                   low=2, allow_none=True)

SPECS: tuple[EntrySpec, ...] = (
    EntrySpec(
        "fgsm", "FGSM", "Fast gradient sign method: one signed-gradient step of size eps",
        "Explaining and Harnessing Adversarial Examples (Goodfellow et al., 2015), arXiv:1412.6572",
        ("linf",), targeted=True,
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
    ),
    EntrySpec(
        "pgdl2", "PGDL2", "Projected gradient descent on the cross-entropy (L2)", _MADRY,
        ("l2",), (_steps(10), _step_size(0.2), _RANDOM_START,
                  Param("eps_for_division", "eps_for_division", 1e-10, "float", "guard against division by 0",
                        low=0, strict_low=True)),
        targeted=True, randomized=True,
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
                    Param("decay", "decay", 1.0, "float", "momentum decay factor", low=0)),
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
                    Param("eot_iter", "eot_iter", 2, "int", "gradient samples averaged per step", low=1)),
        targeted=True, randomized=True,
    ),
    EntrySpec(
        "apgd", "APGD", "Auto-PGD: step-size-free PGD on the cross-entropy or DLR loss (torchattacks' version)",
        _APGD, ("linf", "l2"),
        (_steps(10), _restarts(), Param("loss", "loss", "ce", "choice", "loss to maximise", choices=("ce", "dlr")),
         _EOT, _RHO),
        takes_norm=True, takes_seed=True, randomized=True,
        note="torchattacks' default is 10 steps; the standard AutoAttack APGD runs 100 (see autoattack:apgd-ce).",
    ),
    EntrySpec(
        "apgdt", "APGDT", "Targeted Auto-PGD on the DLR loss over the n_classes-1 most likely wrong classes",
        _APGD, ("linf", "l2"), (_steps(10), _restarts(), _EOT, _RHO, _N_CLASSES),
        takes_norm=True, takes_seed=True, takes_n_classes=True, randomized=True,
        note="Untargeted from the caller's view: it chooses its target classes itself.",
    ),
    EntrySpec(
        "fab", "FAB", "Fast adaptive boundary attack (minimal-norm)", _FAB, ("linf", "l2"),
        (_steps(10), _restarts(),
         Param("alpha_max", "alpha_max", 0.1, "float", "maximum step extrapolation", low=0),
         Param("eta", "eta", 1.05, "float", "overshoot of the projection", low=1),
         Param("beta", "beta", 0.9, "float", "weight of the backward step", low=0),
         Param("multi_targeted", "multi_targeted", False, "bool", "run FAB-T over n_classes-1 target classes"),
         _N_CLASSES),
        takes_norm=True, takes_seed=True, takes_n_classes=True, minimal_norm=True, randomized=True,
        note="L1 is not offered: torchattacks 3.5.1's FAB crashes on it (UnboundLocalError); use autoattack:fab.",
    ),
    EntrySpec(
        "square", "Square", "Square attack: score-based random search with square-shaped updates",
        "Square Attack: a query-efficient black-box adversarial attack via random search "
        "(Andriushchenko et al., 2020), arXiv:1912.00049",
        ("linf", "l2"),
        (Param("n_queries", "n_queries", 5000, "int", "query budget per sample", low=1), _restarts(),
         Param("p_init", "p_init", 0.8, "float", "initial fraction of pixels changed", low=0, strict_low=True),
         Param("loss", "loss", "margin", "choice", "loss to maximise", choices=("margin", "ce")),
         Param("resc_schedule", "resc_schedule", True, "bool", "rescale the p schedule to n_queries")),
        kind="score", takes_norm=True, takes_seed=True, randomized=True,
    ),
    EntrySpec(
        "spsa", "SPSA", "SPSA: gradient-free ascent on the margin loss with finite-difference gradient estimates",
        "Adversarial Risk and the Dangers of Evaluating Against Weak Attacks (Uesato et al., 2018), arXiv:1802.05666",
        ("linf",),
        (Param("steps", "nb_iter", 1, "int", "number of iterations", low=1),
         Param("step_size", "lr", 0.01, "float", "Adam learning rate on the perturbation, [0, 1] pixel units",
               low=0, strict_low=True),
         Param("delta", "delta", 0.01, "float", "finite-difference scale", low=0, strict_low=True),
         Param("nb_sample", "nb_sample", 128, "int", "random directions per gradient estimate", low=1),
         Param("max_batch_size", "max_batch_size", 64, "int", "directions evaluated per forward", low=1)),
        kind="score", targeted=True, randomized=True,
    ),
    EntrySpec(
        "cw", "CW", "Carlini-Wagner L2 attack (Adam in tanh space, fixed c; minimal-norm)",
        "Towards Evaluating the Robustness of Neural Networks (Carlini & Wagner, 2017), arXiv:1608.04644",
        ("l2",),
        (Param("c", "c", 1.0, "float", "weight of the misclassification term", low=0),
         Param("kappa", "kappa", 0.0, "float", "confidence margin", low=0),
         _steps(50),
         Param("lr", "lr", 0.01, "float", "Adam learning rate in tanh space", low=0, strict_low=True)),
        targeted=True, takes_eps=False, minimal_norm=True,
    ),
    EntrySpec(
        "deepfool", "DeepFool", "DeepFool: iterated linearisation of the nearest decision boundary (minimal-norm)",
        "DeepFool: a simple and accurate method to fool deep neural networks (Moosavi-Dezfooli et al., 2016), "
        "arXiv:1511.04599",
        ("l2",),
        (_steps(50), Param("overshoot", "overshoot", 0.02, "float", "overshoot past the boundary", low=0)),
        takes_eps=False, minimal_norm=True,
    ),
    EntrySpec(
        "autoattack", "AutoAttack",
        "torchattacks' AutoAttack variant, NOT the standard AutoAttack: APGD, APGD-T and FAB run 10 steps",
        _APGD, ("linf", "l2"),
        (Param("version", "version", "standard", "choice", "which ensemble", choices=("standard", "plus", "rand")),
         _N_CLASSES),
        takes_norm=True, takes_seed=True, takes_n_classes=True, randomized=True,
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
