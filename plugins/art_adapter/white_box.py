"""ART's gradient attacks as registry entries: fgm, bim, pgd, apgd-ce, apgd-dlr and ART's AutoAttack."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

from robustreg import AttackInfo, Param, ParamError, ParamSet

from ._base import ArtAttack, alias, art_norm, art_version, count, flag, import_art, positive

__all__ = ["ArtAPGDCE", "ArtAPGDDLR", "ArtAutoAttack", "ArtBIM", "ArtFGM", "ArtPGD"]


def _source(what: str) -> str:
    return f"ART {art_version()} ({what})"


# Our vocabulary for ART's keywords (each entry sets its own default for steps).
_STEPS = count("steps", 10, "iterations", toolkit="max_iter", sane_high=100_000)
_STEP_SIZE = positive("step_size", None, "step per iteration; None = eps / 4", toolkit="eps_step",
                      unit="pixels [0, 1]")
_RESTARTS = count("restarts", 1, "random restarts; every restart starts at random",
                  toolkit="nb_random_init", sane_high=100_000)
_AA_STEP = positive("step_size", 0.1, "initial step of the APGDs", toolkit="eps_step",
                    unit="pixels [0, 1]")


class ArtFGM(ArtAttack):
    """Fast Gradient Method from ART: one step of size eps along the loss gradient (sign for linf).

    Paper: "Explaining and Harnessing Adversarial Examples", Goodfellow et al., 2015, arXiv:1412.6572.
    Norms: linf (FGSM), l2.  ART class ``FastGradientMethod``.

    Parameters (keyword-only; eps comes from the ThreatModel, in [0, 1] pixel units):

    - ``random_start`` (False): start from a random point of the eps ball (ART ``num_random_init=1``;
      ART's ``num_random_init``, if given, wins).
    - ``batch_size`` (256): samples per ART batch.
    - ART's own names: ``num_random_init``, ``minimal`` (False; with ``eps_step`` (0.1) searches the
      smallest step up to eps that flips the label).

    Example::

        atk = registry.build_attack("art:fgm", ThreatModel("linf", 8 / 255))
        x_adv = atk(model, x, y)
    """

    name = "art:fgm"
    info = AttackInfo(norms=("linf", "l2"), kind="white-box", single_step=True, source=_source("FastGradientMethod"),
                      toolkit="art", summary="ART FastGradientMethod (FGSM / FGM), one gradient step")
    art_class = "FastGradientMethod"
    params = ParamSet([
        flag("random_start", False, "start from a random point of the eps ball (ART num_random_init=1)"),
        count("num_random_init", None, "ART's random starts; None = 1 if random_start else 0 (wins over it)",
              low=0),
        positive("eps_step", 0.1, "step of the minimal search (minimal=True)", unit="pixels [0, 1]"),
        flag("minimal", False, "search the smallest step up to eps that flips the label"),
        count("batch_size", 256, "samples per ART batch"),
    ])
    own = ("random_start",)
    random_start: bool
    fixed: ClassVar[dict[str, Any]] = {}
    implied: ClassVar[dict[str, Any]] = {"step_size": None}  # one step of eps, as robustreg's fgsm

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        if kwargs["num_random_init"] is None:  # ART's own name wins over random_start
            kwargs["num_random_init"] = int(self.random_start)
        kwargs.update(norm=art_norm(self.threat), eps=self.threat.eps, targeted=False)
        return kwargs


class ArtBIM(ArtAttack):
    """Basic Iterative Method from ART: iterated FGSM steps clipped to the linf ball, no random start.

    Paper: "Adversarial examples in the physical world", Kurakin et al., 2017, arXiv:1607.02533.
    Norm: linf.  ART class ``BasicIterativeMethod``.

    Parameters (keyword-only):

    - ``steps`` (10) -> ART ``max_iter`` (ART's default is 100).
    - ``step_size`` (None: eps / 4) -> ART ``eps_step`` (ART's default is a fixed 0.1), [0, 1] units.
    - ``batch_size`` (256).

    Example::

        atk = registry.build_attack("art:bim", ThreatModel("linf", 8 / 255), steps=10)
    """

    name = "art:bim"
    info = AttackInfo(norms=("linf",), kind="white-box", source=_source("BasicIterativeMethod"),
                      toolkit="art", summary="ART BasicIterativeMethod (I-FGSM)")
    art_class = "BasicIterativeMethod"
    params = ParamSet([
        replace(_STEPS, default=10),
        _STEP_SIZE,
        count("batch_size", 256, "samples per ART batch"),
        alias(_STEPS),
        alias(_STEP_SIZE),
    ])

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        if kwargs["eps_step"] is None:
            kwargs["eps_step"] = self.threat.eps / 4
        kwargs.update(eps=self.threat.eps, targeted=False)
        return kwargs


class ArtPGD(ArtAttack):
    """Projected Gradient Descent from ART (its PyTorch implementation), linf or l2.

    Paper: "Towards Deep Learning Models Resistant to Adversarial Attacks", Madry et al., 2018,
    arXiv:1706.06083.  ART class ``ProjectedGradientDescent``.

    Parameters (keyword-only; eps from the ThreatModel):

    - ``steps`` (20, as robustreg's ``pgd``) -> ART ``max_iter`` (ART's default is 100).
    - ``step_size`` (None: eps / 4, as ``pgd``) -> ART ``eps_step`` (ART's default is a fixed 0.1).
    - ``random_start`` (True) and ``restarts`` (1) -> ART ``num_random_init``: ``restarts`` random starts
      when ``random_start``, else 0 (then ``restarts`` must be 1).  ART keeps, per sample, the last
      restart that fooled the model.  ART's ``num_random_init``, if given, wins over both.
    - ``batch_size`` (256); ART's own ``decay`` (None, momentum) and ``random_eps`` (False).

    Example::

        atk = registry.build_attack("art:pgd", ThreatModel("linf", 0.3), steps=40, step_size=0.01)
    """

    name = "art:pgd"
    info = AttackInfo(norms=("linf", "l2"), kind="white-box", randomized=True,
                      source=_source("ProjectedGradientDescent"), toolkit="art",
                      summary="ART ProjectedGradientDescent (Madry PGD), linf or l2")
    art_class = "ProjectedGradientDescent"
    params = ParamSet([
        replace(_STEPS, default=20),
        _STEP_SIZE,
        flag("random_start", True, "start from a random point of the eps ball"),
        count("restarts", 1, "random starts when random_start (ART num_random_init); else must be 1"),
        count("batch_size", 256, "samples per ART batch"),
        Param("decay", "float", None, "momentum decay (ART's own); None = no momentum", low=-math.inf,
              low_open=True, high=math.inf, high_open=True, optional=True),
        flag("random_eps", False, "draw eps per sample from a truncated normal (ART's own)"),
        count("num_random_init", None, "ART's random starts; None = restarts if random_start else 0 (wins over "
              "both)", low=0),
        alias(_STEPS),
        alias(_STEP_SIZE),
    ])
    own = ("random_start", "restarts")
    random_start: bool
    restarts: int
    # ART's PGD ascends the classifier's loss, the cross-entropy (so the C&W cap, kappa, does not apply)
    implied: ClassVar[dict[str, Any]] = {"loss": "ce", "kappa": ...}

    def setup(self) -> None:
        super().setup()
        if self.options["num_random_init"] is None and not self.random_start and self.restarts != 1:
            raise ParamError(f"{self.label()}: restarts must be 1 when random_start=False, got {self.restarts}")

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        if kwargs["eps_step"] is None:
            kwargs["eps_step"] = self.threat.eps / 4
        inits = kwargs["num_random_init"]
        if inits is None:
            inits = self.restarts if self.random_start else 0
        kwargs.update(norm=art_norm(self.threat), eps=self.threat.eps, targeted=False, num_random_init=inits)
        return kwargs


class _ArtAPGD(ArtAttack):
    art_class = "AutoProjectedGradientDescent"
    loss_type: ClassVar[str] = ""
    params = ParamSet([
        replace(_STEPS, default=100),
        replace(_STEP_SIZE, doc="initial step; None = 2 * eps"),
        _RESTARTS,
        count("batch_size", 256, "samples per ART batch"),
        alias(_STEPS),
        alias(replace(_STEP_SIZE, doc="initial step; None = 2 * eps")),
        alias(_RESTARTS),
    ])

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        if kwargs["eps_step"] is None:
            kwargs["eps_step"] = 2 * self.threat.eps
        kwargs.update(norm=art_norm(self.threat), eps=self.threat.eps, targeted=False, loss_type=self.loss_type)
        return kwargs


_APGD_DOC = """Auto-PGD from ART with the {loss} loss: step-size-free PGD with momentum and restarts.

    Paper: "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks", Croce & Hein, 2020, arXiv:2003.01690.  Norms: linf, l2.  ART class
    ``AutoProjectedGradientDescent(loss_type="{art_loss}")``.

    Parameters (keyword-only; eps from the ThreatModel):

    - ``steps`` (100) -> ART ``max_iter``.
    - ``step_size`` (None: 2 * eps, the paper's initial step) -> ART ``eps_step`` (ART's default 0.1).
    - ``restarts`` (1) -> ART ``nb_random_init`` (ART's default 5); every restart starts at random.
    - ``batch_size`` (256).

    Example::

        atk = registry.build_attack("{name}", ThreatModel("linf", 8 / 255), steps=100)
    """


class ArtAPGDCE(_ArtAPGD):
    __doc__ = _APGD_DOC.format(loss="cross-entropy", art_loss="cross_entropy", name="art:apgd-ce")
    name = "art:apgd-ce"
    loss_type = "cross_entropy"
    info = AttackInfo(norms=("linf", "l2"), kind="white-box", randomized=True,
                      source=_source("AutoProjectedGradientDescent, cross_entropy"), toolkit="art",
                      summary="ART Auto-PGD with the cross-entropy loss")


class ArtAPGDDLR(_ArtAPGD):
    __doc__ = _APGD_DOC.format(loss="DLR", art_loss="difference_logits_ratio", name="art:apgd-dlr")
    name = "art:apgd-dlr"
    loss_type = "difference_logits_ratio"
    info = AttackInfo(norms=("linf", "l2"), kind="white-box", randomized=True,
                      source=_source("AutoProjectedGradientDescent, difference_logits_ratio"), toolkit="art",
                      summary="ART Auto-PGD with the difference-of-logits-ratio loss")


class ArtAutoAttack(ArtAttack):
    """ART's AutoAttack variant, NOT the standard AutoAttack: ART's ensemble of four attacks, weakest first.

    Paper of the original: "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", Croce & Hein, 2020, arXiv:2003.01690.  Norms: linf, l2.  ART class ``AutoAttack``
    (needs the ``multiprocess`` package).  For the standard one use ``autoattack:standard``.

    How ART's variant differs from the standard version (AutoAttack's ``version="standard"``):

    - attacks: ART runs APGD-CE, *untargeted* APGD-DLR, DeepFool (L2, 100 steps, overshoot 1e-3, whose result
      counts only if it lands inside the eps ball) and Square; the standard version runs APGD-CE,
      *targeted* APGD-T (9 target classes), *FAB-T* and Square.
    - budgets: ART's APGDs use 5 random restarts each and a fixed initial step ``eps_step`` (0.1 by default,
      not 2 * eps); Square runs 5000 iterations with 5 restarts (standard: 1 run of 5000 queries).
    - ART's ``targeted=True`` (not exposed here) would rerun every attack once per target class.
    - like the standard version, each attack runs only on points still standing.

    Parameters (keyword-only; eps from the ThreatModel), defaults = ART's own list of attacks:

    - ``step_size`` (0.1) -> ART ``eps_step`` (the APGDs' initial step).
    - ``steps`` (100): APGD-CE / APGD-DLR iterations; ``restarts`` (5): their random restarts.
    - ``n_queries`` (5000): Square iterations; ``square_restarts`` (5).
    - ``deepfool_steps`` (100).
    - ``batch_size`` (32, ART's default).

    Example::

        atk = registry.build_attack("art:autoattack", ThreatModel("linf", 8 / 255))
    """

    name = "art:autoattack"
    info = AttackInfo(norms=("linf", "l2"), kind="white-box", randomized=True,
                      source=_source("AutoAttack; ART's variant, not the standard AutoAttack"), toolkit="art",
                      summary="ART's AutoAttack variant (APGD-CE, APGD-DLR, DeepFool, Square), not the standard one")
    art_class = "AutoAttack"
    params = ParamSet([
        _AA_STEP,
        count("steps", 100, "APGD-CE / APGD-DLR iterations"),
        count("restarts", 5, "APGD-CE / APGD-DLR random restarts"),
        count("n_queries", 5000, "Square iterations"),
        count("square_restarts", 5, "Square restarts"),
        count("deepfool_steps", 100, "DeepFool iterations"),
        count("batch_size", 32, "samples per ART batch (ART's default)"),
        alias(_AA_STEP),
    ])
    own = ("steps", "restarts", "n_queries", "square_restarts", "deepfool_steps")
    steps: int
    restarts: int
    n_queries: int
    square_restarts: int
    deepfool_steps: int

    def setup(self) -> None:
        super().setup()
        try:
            import multiprocess  # noqa: F401 - ART's AutoAttack imports it in generate()
        except ImportError:
            raise ImportError(
                f"{self.label()} needs the multiprocess package (ART's AutoAttack imports it): pip install multiprocess"
            ) from None

    def build_art_attack(self, classifier: Any, num_samples: int) -> Any:
        import_art(self.label())
        from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, DeepFool, SquareAttack

        o = self.options
        norm, eps, step, bs = art_norm(self.threat), self.threat.eps, o["eps_step"], o["batch_size"]
        # ART's default list (auto_attack.py), rebuilt only to switch its progress bars off.
        attacks = [
            AutoProjectedGradientDescent(classifier, norm=norm, eps=eps, eps_step=step, max_iter=self.steps,
                                         targeted=False, nb_random_init=self.restarts, batch_size=bs,
                                         loss_type=loss, verbose=False)
            for loss in ("cross_entropy", "difference_logits_ratio")
        ]
        attacks.append(DeepFool(classifier, max_iter=self.deepfool_steps, epsilon=1e-3, nb_grads=10, batch_size=bs,
                                verbose=False))
        attacks.append(SquareAttack(classifier, norm=norm, max_iter=self.n_queries, eps=eps, p_init=0.8,
                                    nb_restarts=self.square_restarts, verbose=False))
        return AutoAttack(classifier, norm=norm, eps=eps, eps_step=step, attacks=attacks, batch_size=bs,
                          targeted=False)

