"""ART's black-box attacks as registry entries.

Score-based (probabilities only): square, simba, zoo.  Decision-based (labels only): hopskipjump,
boundary, geoda, sign-opt.  Every one runs only on the points the model still classifies correctly
(the others are already adversarial and come back unchanged).  All but Square run one sample at a time,
as ART does internally, so the queries each sample used are counted and returned in
``AttackResult.queries`` (including the one clean prediction).  The minimal-norm attacks (zoo, simba,
hopskipjump, boundary, geoda, sign-opt) do not bound their perturbation by eps: the adapter projects
their result into the eps ball and the box (``minimal_norm = True``), which can undo a success found
outside the ball, so their robust accuracy at a given eps is an upper bound.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from robustreg import AttackInfo, Param, ParamSet

from ._base import (
    ArtAttack,
    ArtForward,
    alias,
    art_norm,
    art_version,
    count,
    flag,
    fraction,
    import_art,
    non_negative,
    positive,
)

__all__ = ["ArtBoundary", "ArtGeoDA", "ArtHopSkipJump", "ArtSignOPT", "ArtSimBA", "ArtSquare", "ArtZOO"]


def _source(what: str) -> str:
    return f"ART {art_version()} ({what})"


def _budget(name: str, default: int, doc: str, low: int = 1, toolkit: str = "max_iter") -> Param:
    return count(name, default, doc, low=low, toolkit=toolkit, sane_high=1_000_000)


_BATCH = count("batch_size", 64, "samples per ART batch (of queries)")


class _BlackBox(ArtAttack):
    """Runs ART on still-correct points, one sample at a time (``per_sample``) to count queries."""

    per_sample: ClassVar[bool] = True
    random_init: ClassVar[bool] = False  # pass our own seeded starting point (x_adv_init)

    def generate(self, attack: Any, x: np.ndarray, y: np.ndarray, forward: ArtForward,
                 generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor | None]:
        forward.count = 0
        pred = attack.estimator.predict(x, batch_size=max(1, len(x)))
        correct = np.flatnonzero(pred.argmax(axis=1) == y.argmax(axis=1))
        x_adv = x.copy()
        if not self.per_sample:
            if len(correct):
                x_adv[correct] = attack.generate(x=x[correct], y=y[correct])
            return x_adv, None
        queries = torch.ones(len(x), dtype=torch.int64)
        for i in correct:
            forward.count = 0
            kwargs = {}
            if self.random_init:
                start = self._random_start(attack, x[i], y[i], generator)
                if start is not None:
                    kwargs["x_adv_init"] = start[None]
            x_adv[i] = attack.generate(x=x[i:i + 1], y=y[i:i + 1], **kwargs)[0]
            queries[i] += forward.count
        return x_adv, queries

    def _random_start(self, attack: Any, x: np.ndarray, y: np.ndarray, generator: torch.Generator,
                      tries: int = 20) -> np.ndarray | None:
        """A uniform-noise image the model misclassifies, drawn from our generator (ART's own search is unseeded)."""
        lo, hi = self.threat.box
        noise = torch.rand((tries, *x.shape), generator=generator, device=generator.device)
        candidates = (lo + (hi - lo) * noise).cpu().numpy().astype(np.float32)
        pred = attack.estimator.predict(candidates, batch_size=tries).argmax(axis=1)
        wrong = np.flatnonzero(pred != y.argmax())
        return candidates[wrong[0]] if len(wrong) else None


_SQUARE_QUERIES = _budget("n_queries", 100, "iterations, one query each")
_SQUARE_RESTARTS = count("restarts", 1, "restarts", toolkit="nb_restarts")


class ArtSquare(_BlackBox):
    """Square Attack from ART: random square-shaped updates accepted when the margin loss drops.

    Paper: "Square Attack: a query-efficient black-box adversarial attack via random search",
    Andriushchenko et al., 2020, arXiv:1912.00049.  Norms: linf, l2.  Score-based.  ART class ``SquareAttack``.
    Runs on the whole batch (ART's batched loop), so ``queries`` is not reported per sample.

    Parameters (keyword-only; eps from the ThreatModel):

    - ``n_queries`` / ``max_queries`` (100, ART's default) -> ART ``max_iter`` (iterations, one query each).
    - ``restarts`` (1) -> ART ``nb_restarts``.
    - ``p_init`` (0.8): initial fraction of pixels changed.  ``batch_size`` (128).

    Example::

        atk = registry.build_attack("art:square", ThreatModel("linf", 8 / 255), n_queries=1000)
    """

    name = "art:square"
    info = AttackInfo(norms=("linf", "l2"), kind="score", randomized=True, source=_source("SquareAttack"),
                      toolkit="art", summary="ART Square Attack (score-based random search)")
    art_class = "SquareAttack"
    per_sample = False
    params = ParamSet([
        _SQUARE_QUERIES,
        _SQUARE_RESTARTS,
        fraction("p_init", 0.8, "initial fraction of pixels changed"),
        count("batch_size", 128, "samples per ART batch"),
        alias(_SQUARE_QUERIES, "max_queries"),
        alias(_SQUARE_QUERIES),
        alias(_SQUARE_RESTARTS),
    ])

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        kwargs.update(norm=art_norm(self.threat), eps=self.threat.eps)
        return kwargs


_SIMBA_STEPS = _budget("steps", 3000, "directions tried, up to 2 queries each")
_SIMBA_STEP = positive("step_size", 0.2, "step along each direction", toolkit="epsilon",
                       unit="pixels [0, 1]")


class ArtSimBA(_BlackBox):
    """SimBA from ART: tries +/- a step along random pixel or DCT directions, keeps what lowers the true-class prob.

    Paper: "Simple Black-box Adversarial Attacks", Guo et al., 2019, arXiv:1905.07121.  Norm: l2
    (minimal-norm; the adapter projects the result into the eps ball).  Score-based.  ART class ``SimBA``
    (given softmax probabilities: ART refuses logits).

    Parameters (keyword-only):

    - ``steps`` / ``max_queries`` (3000) -> ART ``max_iter`` (directions tried; up to 2 queries each).
    - ``step_size`` (0.2) -> ART ``epsilon`` (the step along each direction, [0, 1] units).
    - ``attack`` ("dct" or "px", default "dct"), ``order`` ("random" or "diag"), ``freq_dim`` (4),
      ``stride`` (1): ART's own.  For "dct", (image side - freq_dim) must be divisible by stride.

    Example::

        atk = registry.build_attack("art:simba", ThreatModel("l2", 2.0), max_queries=1000)
    """

    name = "art:simba"
    info = AttackInfo(norms=("l2",), kind="score", randomized=True, source=_source("SimBA"), toolkit="art",
                      summary="ART SimBA (score-based, pixel or DCT directions)")
    art_class = "SimBA"
    minimal_norm = True
    probabilities = True
    params = ParamSet([
        _SIMBA_STEPS,
        _SIMBA_STEP,
        Param("attack", "choice", "dct", "directions: DCT basis or single pixels", choices=("dct", "px")),
        Param("order", "choice", "random", "order of the directions", choices=("random", "diag")),
        count("freq_dim", 4, "DCT frequencies per side"),
        count("stride", 1, "DCT stride"),
        alias(_SIMBA_STEPS, "max_queries"),
        alias(_SIMBA_STEPS),
        alias(_SIMBA_STEP),
    ])
    fixed = {"verbose": False, "targeted": False, "batch_size": 1}


_ZOO_STEPS = _budget("steps", 10, "iterations")
_ZOO_STEP = positive("step_size", 1e-2, "learning rate", toolkit="learning_rate")


class ArtZOO(_BlackBox):
    """ZOO from ART: Carlini-Wagner's L2 objective optimised with coordinate-wise finite differences.

    Paper: "ZOO: Zeroth Order Optimization based Black-box Attacks to Deep Neural Networks without
    Training Substitute Models", Chen et al., 2017, arXiv:1708.03999.  Norm: l2 (minimal-norm; the adapter
    projects the result into the eps ball).  Score-based.  ART class ``ZooAttack``.

    Parameters (keyword-only):

    - ``steps`` (10, ART's default) -> ART ``max_iter``.
    - ``step_size`` (0.01) -> ART ``learning_rate``.
    - ART's own: ``confidence`` (0), ``binary_search_steps`` (1), ``initial_const`` (1e-3),
      ``abort_early`` (True), ``use_resize`` (False here: ART's resizing needs larger images than MNIST),
      ``use_importance`` (True), ``nb_parallel`` (128 coordinates per step, capped at the input's size),
      ``variable_h`` (1e-4).

    Example::

        atk = registry.build_attack("art:zoo", ThreatModel("l2", 2.0), steps=20)
    """

    name = "art:zoo"
    info = AttackInfo(norms=("l2",), kind="score", randomized=True, source=_source("ZooAttack"), toolkit="art",
                      summary="ART ZOO (zeroth-order C&W L2)")
    art_class = "ZooAttack"
    minimal_norm = True
    params = ParamSet([
        _ZOO_STEPS,
        _ZOO_STEP,
        non_negative("confidence", 0.0, "C&W confidence margin"),
        count("binary_search_steps", 1, "binary search steps over the constant"),
        positive("initial_const", 1e-3, "initial trade-off constant"),
        flag("abort_early", True, "stop when the loss stalls"),
        flag("use_resize", False, "ART's resizing (needs larger images than MNIST)"),
        flag("use_importance", True, "importance sampling of the coordinates"),
        count("nb_parallel", 128, "coordinates per step (capped at the input's size)"),
        positive("variable_h", 1e-4, "finite-difference step"),
        alias(_ZOO_STEPS),
        alias(_ZOO_STEP),
    ])
    fixed = {"verbose": False, "targeted": False, "batch_size": 1}

    def build_art_attack(self, classifier: Any, num_samples: int) -> Any:
        from art.attacks.evasion import ZooAttack

        kwargs = self.art_kwargs(num_samples)
        # ART refuses more parallel coordinates than the input has (e.g. 128 on an 8x8 image).
        kwargs["nb_parallel"] = min(kwargs["nb_parallel"], int(np.prod(classifier.input_shape)))
        return ZooAttack(classifier, **kwargs)


_HSJ_STEPS = _budget("steps", 50, "boundary iterations", low=0)


class ArtHopSkipJump(_BlackBox):
    """HopSkipJump from ART: boundary walk with gradient-direction estimates from label queries.

    Paper: "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack", Chen et al., 2020,
    arXiv:1904.02144.  Norms: linf, l2 (minimal-norm; the adapter projects the result into the eps ball).
    Decision-based.  ART class ``HopSkipJump``; its starting point is drawn from our seeded generator
    (ART's own search uses an unseeded RandomState).

    Parameters (keyword-only):

    - ``steps`` (50) -> ART ``max_iter``.
    - ART's own: ``max_eval`` (10000, queries per gradient estimate at most), ``init_eval`` (100),
      ``init_size`` (100), ``batch_size`` (64).

    Example::

        atk = registry.build_attack("art:hopskipjump", ThreatModel("l2", 2.0), steps=20)
    """

    name = "art:hopskipjump"
    info = AttackInfo(norms=("linf", "l2"), kind="decision", randomized=True, source=_source("HopSkipJump"),
                      toolkit="art", summary="ART HopSkipJump (decision-based)")
    art_class = "HopSkipJump"
    minimal_norm = True
    random_init = True
    params = ParamSet([
        _HSJ_STEPS,
        count("max_eval", 10000, "queries per gradient estimate at most"),
        count("init_eval", 100, "queries of the first gradient estimate"),
        count("init_size", 100, "tries of ART's own search for a starting point"),
        _BATCH,
        alias(_HSJ_STEPS),
    ])
    fixed = {"verbose": False, "targeted": False}

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        kwargs["norm"] = art_norm(self.threat)
        return kwargs


_BOUNDARY_STEPS = _budget("steps", 5000, "iterations", low=0)


class ArtBoundary(_BlackBox):
    """Boundary Attack from ART: a random walk along the decision boundary towards the input.

    Paper: "Decision-Based Adversarial Attacks: Reliable Attacks Against Black-Box Machine Learning
    Models", Brendel et al., 2018, arXiv:1712.04248.  Norm: l2 (minimal-norm; the adapter projects the
    result into the eps ball).  Decision-based.  ART class ``BoundaryAttack`` (run untargeted; ART's
    default is targeted), started from a point drawn from our seeded generator.

    Parameters (keyword-only):

    - ``steps`` (5000) -> ART ``max_iter``.
    - ART's own: ``delta`` (0.01, orthogonal step), ``epsilon`` (0.01, step towards the input; not the
      threat's eps), ``step_adapt`` (0.667), ``num_trial`` (25), ``sample_size`` (20), ``init_size`` (100),
      ``min_epsilon`` (0), ``batch_size`` (64).

    Example::

        atk = registry.build_attack("art:boundary", ThreatModel("l2", 2.0), steps=200)
    """

    name = "art:boundary"
    info = AttackInfo(norms=("l2",), kind="decision", randomized=True, source=_source("BoundaryAttack"),
                      toolkit="art", summary="ART Boundary Attack (decision-based)")
    art_class = "BoundaryAttack"
    minimal_norm = True
    random_init = True
    params = ParamSet([
        _BOUNDARY_STEPS,
        positive("delta", 0.01, "orthogonal step"),
        positive("epsilon", 0.01, "step towards the input (not the threat's eps)"),
        fraction("step_adapt", 0.667, "step adaptation factor"),
        count("num_trial", 25, "trials per step"),
        count("sample_size", 20, "samples per trial"),
        count("init_size", 100, "tries of ART's own search for a starting point"),
        non_negative("min_epsilon", 0.0, "stop when the step towards the input falls below it"),
        _BATCH,
        alias(_BOUNDARY_STEPS),
    ])
    fixed = {"verbose": False, "targeted": False}


def _dct_basis(sub_dim: int, res: int) -> np.ndarray:
    """The (res*res, sub_dim**2) low-frequency 2-D DCT basis GeoDA samples from, as a plain ndarray.

    ART builds it with ``np.mat``, removed in NumPy 2; same values and layout (column u*sub_dim+v holds
    basis image [y, x] = c[u, x] * c[v, y], flattened row-major).
    """
    n = max(res, sub_dim)
    k = np.arange(sub_dim)[:, None]
    pos = np.arange(res)[None, :]
    alpha = np.where(k == 0, math.sqrt(1.0 / n), math.sqrt(2.0 / n))
    c = alpha * np.cos((2 * pos + 1) * k * math.pi / (2 * n))  # (sub_dim, res)
    return np.einsum("ux,vy->uvyx", c, c).reshape(sub_dim * sub_dim, res * res).T.copy()


_GEODA_CLASS: list[type] = []


def _geoda_class() -> type:
    """ART's GeoDA with two NumPy-2 / termination fixes (built on first use: ART is imported lazily)."""
    if _GEODA_CLASS:
        return _GEODA_CLASS[0]
    import_art("art:geoda")
    from art.attacks.evasion import GeoDA

    class _GeoDA(GeoDA):
        @staticmethod
        def _generate_2d_dct_basis(sub_dim: int, res: int) -> np.ndarray:
            return _dct_basis(sub_dim, res)

        def _find_random_adversarial(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
            # ART's loop has no bound: growing Gaussian noise until misclassified.  Same search, capped.
            for scale in np.arange(1, 501) * 0.02:
                noise = np.random.normal(size=x.shape).astype(np.float32)
                candidate = np.clip(x + scale * noise, self.clip_min, self.clip_max)
                self.nb_calls += 1
                if self._is_adversarial(candidate, y):
                    return candidate
            return x  # none found: the binary search then stays at x and the sample is not attacked

        def _opt_query_iteration(self, var_nq: int, var_t: int, lambda_param: float) -> tuple[list[int], int]:
            # ART's recursion indexes an empty list for budgets under ~300 queries and can recurse
            # forever for others; then take the fewest rounds whose first round gets <= 80 queries.
            try:
                return super()._opt_query_iteration(var_nq, var_t, lambda_param)
            except (IndexError, RecursionError):
                rounds = 1
                while True:
                    weights = [lambda_param ** (-2 * i / 3) for i in range(rounds)]
                    shares = [max(1, round(var_nq * w / sum(weights))) for w in weights]
                    if shares[0] <= 80 or shares[0] <= 1:
                        return shares, rounds
                    rounds += 1

    _GEODA_CLASS.append(_GeoDA)
    return _GeoDA


@contextlib.contextmanager
def _private_cwd() -> Iterator[None]:
    """ART's GeoDA saves/loads ``2d_dct_basis_*.npy`` in the working directory: point it at a temp dir.

    Changes the process's working directory for the duration of the call (not thread-safe).
    """
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="robustreg-art-geoda-") as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)


_GEODA_QUERIES = _budget("max_queries", 4000, "query budget")


class ArtGeoDA(_BlackBox):
    """GeoDA from ART: estimates the boundary normal in a low-frequency DCT subspace from label queries.

    Paper: "GeoDA: a geometric framework for black-box adversarial attacks", Rahmati et al., 2020,
    arXiv:2003.06468.  Norms: linf, l2 (minimal-norm; the adapter projects the result into the eps ball).
    Decision-based.  ART class ``GeoDA``, with its DCT basis rebuilt without ``np.mat`` (NumPy 2), its unbounded random
    search capped at 500 draws, its query split made total, and its basis cache file kept out of the
    working directory.  Square images only.

    Parameters (keyword-only):

    - ``max_queries`` / ``n_queries`` (4000) -> ART ``max_iter`` (ART's query budget; budgets on which
      ART's split into rounds fails, under ~300, use the fewest rounds of at most 80 queries).
    - ART's own: ``sub_dim`` (10, DCT frequencies per side), ``bin_search_tol`` (0.1),
      ``lambda_param`` (0.6), ``sigma`` (0.0002), ``batch_size`` (64).

    Example::

        atk = registry.build_attack("art:geoda", ThreatModel("l2", 2.0), max_queries=1000)
    """

    name = "art:geoda"
    info = AttackInfo(norms=("linf", "l2"), kind="decision", randomized=True, source=_source("GeoDA"),
                      toolkit="art", summary="ART GeoDA (decision-based, DCT subspace)")
    art_class = "GeoDA"
    minimal_norm = True
    params = ParamSet([
        _GEODA_QUERIES,
        count("sub_dim", 10, "DCT frequencies per side"),
        positive("bin_search_tol", 0.1, "tolerance of the binary search"),
        positive("lambda_param", 0.6, "query split across rounds"),
        positive("sigma", 0.0002, "scale of the random perturbations"),
        _BATCH,
        alias(_GEODA_QUERIES, "n_queries"),
        alias(_GEODA_QUERIES),
    ])

    def art_kwargs(self, num_samples: int) -> dict[str, Any]:
        kwargs = super().art_kwargs(num_samples)
        kwargs["norm"] = art_norm(self.threat)
        return kwargs

    def build_art_attack(self, classifier: Any, num_samples: int) -> Any:
        return _geoda_class()(classifier, **self.art_kwargs(num_samples))

    def generate(self, attack: Any, x: np.ndarray, y: np.ndarray, forward: ArtForward,
                 generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor | None]:
        with _private_cwd():
            return super().generate(attack, x, y, forward, generator)


_SIGNOPT_STEPS = _budget("steps", 1000, "iterations")
_SIGNOPT_QUERIES = _budget("max_queries", 20000, "query budget", toolkit="query_limit")


class ArtSignOPT(_BlackBox):
    """Sign-OPT from ART: optimises the boundary distance along a direction with sign-only gradient estimates.

    Paper: "Sign-OPT: A Query-Efficient Hard-label Adversarial Attack", Cheng et al., 2020,
    arXiv:1909.10773.  Norm: l2 (minimal-norm; the adapter projects the result into the eps ball).  Decision-based.
    ART class ``SignOPTAttack`` (run untargeted; ART's default is targeted).

    Parameters (keyword-only):

    - ``steps`` (1000) -> ART ``max_iter``; ``max_queries`` (20000) -> ART ``query_limit``.
    - ART's own: ``k`` (200, directions per sign estimate), ``alpha`` (0.2), ``beta`` (0.001),
      ``num_trial`` (100, random starting directions), ``epsilon`` (0.001), ``batch_size`` (64).

    Example::

        atk = registry.build_attack("art:sign-opt", ThreatModel("l2", 2.0), max_queries=2000)
    """

    name = "art:sign-opt"
    info = AttackInfo(norms=("l2",), kind="decision", randomized=True, source=_source("SignOPTAttack"),
                      toolkit="art", summary="ART Sign-OPT (decision-based)")
    art_class = "SignOPTAttack"
    minimal_norm = True
    params = ParamSet([
        _SIGNOPT_STEPS,
        _SIGNOPT_QUERIES,
        count("k", 200, "directions per sign estimate"),
        positive("alpha", 0.2, "step size of the direction update"),
        positive("beta", 0.001, "smoothing of the sign estimate"),
        count("num_trial", 100, "random starting directions"),
        positive("epsilon", 0.001, "stopping tolerance"),
        _BATCH,
        alias(_SIGNOPT_QUERIES, "n_queries"),
        alias(_SIGNOPT_STEPS),
        alias(_SIGNOPT_QUERIES),
    ])
    fixed = {"verbose": False, "targeted": False}
