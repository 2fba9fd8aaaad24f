"""Paper 000's training objectives: Kurakin adversarial training, the bidirectional and pivot
similarity losses, and cascade adversarial training.

Paper 000: Na, Ko & Mukhopadhyay, "Cascade Adversarial Machine Learning Regularized with a Unified
Embedding", ICLR 2018, arXiv:1708.02582, sections 3.1-3.2 (Algorithm 1) and 6; Kurakin et al.,
"Adversarial Machine Learning at Scale", 2017, arXiv:1611.01236 (the baseline).

Shared choices, documented once:

- **Adversarial examples are one-step** (step_ll, step_FGSM, or half of each: "step_both") from
  the current network, each with its own eps drawn from |N(0, max_eps / 2)| kept in [0, max_eps].
  Paper 000 calls this a "clipped normal distribution N(mu = 0, sigma = max_e / 2)", and the
  authors' released code (github.com/taesikna/cascade_adv_training, ``utils.py``, ``get_intensity``,
  ``adver_option=2``) clips: ``np.clip(abs(np.random.normal(0, max_e/2)), 0, max_e)``, so
  P(eps = max_eps) = P(|Z| > 2) = 4.55%.  That is the default, ``eps_distribution="clipped"``.
  Kurakin et al. 2017 (section 4.1), the source paper 000 follows, draw "from a truncated normal
  distribution defined in interval [0, 16]": ``"truncated"`` resamples draws above max_eps (no point
  mass at max_eps), kept as an option.
- **Batch composition** (``composition``, the similarity defenses and cascade): ``"split"`` (default)
  is Algorithm 1 of paper 000: a trainer batch of m images becomes B' of m images, k adversarial +
  m - k clean, the adversarial ones crafted from k of the clean ones (paper: m = 128, k = 64).
  ``"added"`` keeps the whole trainer batch clean and adds the adversarial copies (B + k images:
  trainer ``batch_size`` = m - k gives the paper's composition).  Kurakin always replaces (k of the
  m images are swapped for their adversarial versions; ``k_fraction`` = k / m).
- **They are crafted with the model in eval mode** (BatchNorm running statistics, no dropout), so
  that crafting neither updates BatchNorm statistics nor depends on the rest of the batch; the
  model's modes, ``requires_grad`` and ``.grad`` are restored afterwards.  The loss forward then
  runs in the trainer's mode (train) on ONE concatenated batch B' = [adversarial; clean], as in
  Algorithm 1, step 5.
- **Loss** (paper eq. in section 3.1)::

      (sum_{clean} CE + lam * sum_{adv} CE) / ((m - k) + lam * k) + lam2 * sum_{i <= k} L_dist(E_i^adv, E_i)

  with m - k clean and k adversarial images in B', summed (not averaged) over the k pairs.  E is the
  logits (default; the authors' ``embedding_at=5``) or the penultimate features
  (``embedding="features"``, which needs an ``nn.Linear`` head).
- **L_dist's scale** (N = 2): the paper writes |E_i^adv - E_i|^N and "when N = 2, L_dist becomes L2
  loss"; the authors' released code (github.com/taesikna/cascade_adv_training, ``model.py``,
  ``_get_similarity_loss`` / ``_get_pivot_loss``) computes it with TensorFlow's ``tf.nn.l2_loss``,
  i.e. **1/2 sum (E^adv - E)^2**, and lam2 = 1e-4 is tuned for that, so N = 2 here is
  1/2 sum of squares; N = 1 is sum |E^adv - E| (``reduce_sum(abs)``, no 1/2) in both.
- **Pivot's gradient** (``detach_pivot``): the paper's text says the pivot loss moves "only the
  adversarial embeddings" (footnote 4: a non-trainable TensorFlow variable updated with E_i every
  step).  Its released code creates that variable but then rebinds the name to the slice of the
  embeddings itself (``pivots = embeddings[offset:offset+num_same_images]``) and never assigns it,
  so its "pivot" loss passes gradient to the clean embeddings as well: numerically the bidirectional
  loss, which is what produced the paper's pivot numbers (and matches its "we found not much
  difference between two distance based losses").  The literal stop-gradient is unstable: with
  E = W h (last layer), a step on |W h_adv - const|^2 changes the residual r = E^adv - E by
  -2 lr lam2 r (|h_adv|^2 - h_adv . h_clean), so whenever the clean features are larger than the
  adversarial ones along h_adv (they are: the attack lowers the true class's activations) the
  pivot runs away faster than E^adv follows and |r| grows geometrically -- on LeNet-5 / digits28
  (lr 0.02 and 0.05, momentum 0.9) the logits' norm went from ~10 to ~2000 and the loss to NaN in
  ~110 steps at lr 0.02, ~75 at lr 0.05, while bidirectional stayed at ~12.  So ``detach_pivot=False``
  (default) follows the released code; ``detach_pivot=True`` is the text's fixed pivot, kept for study.
- **Randomness** (eps draws, store sampling) comes from the defense's own ``torch.Generator``
  (``seed``); its state is in ``state_dict()`` so a resumed run is exact.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustreg import (
    Defense,
    DefenseInfo,
    DefenseOutput,
    ModelState,
    Param,
    ParamError,
    ParamSet,
    ParamTypeError,
    embed,
)

from .attacks import least_likely
from .store import LAWS, CascadeStore, load_cascade_store

__all__ = [
    "METHODS",
    "Bidirectional",
    "Cascade",
    "Kurakin",
    "Pivot",
    "craft_one_step",
    "draw_eps",
    "paper_objective",
    "similarity_loss",
]

METHODS = ("step_ll", "step_fgsm", "step_both")
_SOURCE = "paper 000 (Na et al. 2018, arXiv:1708.02582); Kurakin et al. 2017, arXiv:1611.01236"


# --- pieces, each checkable against the paper --------------------------------------------------
EPS_DISTRIBUTIONS = ("clipped", "truncated")


def draw_eps(n: int, max_eps: float, generator: torch.Generator, distribution: str = "clipped") -> torch.Tensor:
    """n per-example budgets |N(0, max_eps / 2)| on [0, max_eps] (CPU, float32).

    ``"clipped"`` (default): draws above max_eps are set to max_eps, as the authors' released code
    does (``utils.py``, ``get_intensity``); ``"truncated"``: they are drawn again (from ``generator``)
    until every one is inside, Kurakin et al.'s truncated normal.
    """
    if distribution not in EPS_DISTRIBUTIONS:
        raise ValueError(f"eps distribution must be one of {', '.join(EPS_DISTRIBUTIONS)}, got {distribution!r}")
    eps = (torch.randn(n, generator=generator) * (max_eps / 2)).abs()
    if distribution == "clipped":
        return eps.clamp(max=max_eps)
    out = eps.to(torch.float32)
    top = torch.tensor(max_eps, dtype=torch.float32)
    over = (out > top).nonzero().squeeze(1)
    while over.numel():  # P(over) = 4.55% per draw: a few rounds at most
        out[over] = (torch.randn(over.numel(), generator=generator) * (max_eps / 2)).abs()
        over = over[out[over] > top]
    return out


def craft_one_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, method: str, *, eval_mode: bool = True
) -> torch.Tensor:
    """One-step adversarial examples with a per-example ``eps`` (N), clipped to [0, 1].

    step_ll: x - eps * sign(grad CE(x, y_LL)), y_LL = argmin of the logits; step_fgsm:
    x + eps * sign(grad CE(x, y)); step_both: the first ceil(N / 2) step_ll, the rest step_fgsm.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if x.shape[0] == 0:
        return x.detach().clone()
    state = ModelState(model)
    try:
        if eval_mode:
            model.eval()
        with torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)
            logits = model(xr)
            n_ll = {"step_ll": x.shape[0], "step_fgsm": 0, "step_both": math.ceil(x.shape[0] / 2)}[method]
            labels = y.clone()
            labels[:n_ll] = least_likely(logits.detach()[:n_ll])
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), xr)
    finally:
        state.restore()
    direction = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    direction[:n_ll] = -1.0
    step = (direction * eps.to(device=x.device, dtype=x.dtype)).view(-1, *([1] * (x.dim() - 1)))
    return (x.detach() + step * grad.sign()).clamp(0.0, 1.0)


def similarity_loss(e_adv: torch.Tensor, e_clean: torch.Tensor, power: int, *, pivot: bool) -> torch.Tensor:
    """sum_i L_dist(E_i^adv, E_i): power 2: 1/2 sum (E^adv - E)^2 (``tf.nn.l2_loss``, the authors' code),
    power 1: sum |E^adv - E|; ``pivot``: the clean embedding is a constant (no gradient reaches it)."""
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    if pivot:
        e_clean = e_clean.detach()
    diff = (e_adv - e_clean).reshape(e_adv.shape[0], -1)
    return diff.abs().sum() if power == 1 else 0.5 * diff.pow(2).sum()


def paper_objective(
    model: nn.Module,
    x_adv: torch.Tensor,
    y_adv: torch.Tensor,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    *,
    lam: float,
    pairs: torch.Tensor | None = None,
    lam2: float = 0.0,
    power: int = 2,
    embedding: str = "logits",
    pivot: bool = False,
) -> DefenseOutput:
    """Algorithm 1 of paper 000 on B' = [x_adv; x_clean] with one forward pass.

    ``pairs[i]`` is the index in ``x_clean`` of the clean image of ``x_adv[i]`` (for the similarity
    term; None: no similarity term).
    """
    k, clean_n = x_adv.shape[0], x_clean.shape[0]
    batch = torch.cat([x_adv, x_clean])
    if pairs is not None and embedding == "features":
        emb = embed(model, batch)
        logits, e_all = emb.logits, emb.features
    else:
        logits = model(batch)
        e_all = logits
    ce = F.cross_entropy(logits, torch.cat([y_adv, y_clean]), reduction="none")
    ce_adv, ce_clean = ce[:k], ce[k:]
    loss = (ce_clean.sum() + lam * ce_adv.sum()) / (clean_n + lam * k)
    metrics = {"ce_clean": float(ce_clean.detach().mean()) if clean_n else 0.0,
               "ce_adv": float(ce_adv.detach().mean()) if k else 0.0}
    if pairs is not None and k:
        dist = similarity_loss(e_all[:k], e_all[k:][pairs], power, pivot=pivot)
        loss = loss + lam2 * dist
        metrics["distance"] = float(dist.detach())
    metrics["loss"] = float(loss.detach())
    with torch.no_grad():
        if clean_n:
            metrics["acc_clean"] = float((logits[k:].argmax(1) == y_clean).float().mean())
        if k:
            metrics["acc_adv"] = float((logits[:k].argmax(1) == y_adv).float().mean())
    return DefenseOutput(loss, metrics, logits_clean=logits[k:].detach(), logits_adv=logits[:k].detach(),
                         labels_clean=y_clean, labels_adv=y_adv)


# --- declared parameters ---------------------------------------------------------------------------
PIXELS = "pixels [0, 1]"


def _weight(name: str, default: float, doc: str) -> Param:
    return Param(name, "float", default, doc, low=0, high=math.inf, high_open=True)


def _fraction(name: str, default: float, doc: str) -> Param:
    return Param(name, "float", default, doc, low=0, high=1)


COMMON = ParamSet([
    Param("method", "choice", "step_ll", "the one-step attack: step_ll, step_FGSM or half of each", choices=METHODS),
    Param("max_eps", "float", 16 / 255, "the largest eps; eps ~ |N(0, max_eps / 2)| on [0, max_eps]",
          low=0, low_open=True, high=1, unit=PIXELS),
    _weight("lam", 0.3, "weight of the adversarial examples' CE"),
    Param("seed", "int", 0, "seeds the defense's own generator (eps draws, store sampling)"),
    Param("craft_eval", "bool", True, "craft the adversarial examples with the model in eval mode"),
    Param("eps_distribution", "choice", "clipped", "how |N(0, max_eps / 2)| is kept in [0, max_eps]: "
          "clipped (clamped, 4.55% at max_eps: paper 000's 'clipped normal' and its released code, get_intensity) "
          "or truncated (resampled, Kurakin et al. 2017, the source paper 000 cites)", choices=EPS_DISTRIBUTIONS),
])
COMPOSITIONS = ("split", "added")
COMPOSITION = Param(
    "composition", "choice", "split", "split: B' = k adversarial + m - k clean out of the trainer's m (paper 000 "
    "Algorithm 1, 64 + 64 of 128); added: the trainer's B all clean plus the adversarial copies (B + k)",
    choices=COMPOSITIONS)
SIMILARITY = ParamSet([
    _weight("lam2", 1e-4, "weight of the distance sum_i L_dist(E_i^adv, E_i)"),
    Param("power", "choice", 2, "L_dist: 2: 1/2 |E_adv - E|_2^2 (tf.nn.l2_loss, the authors' code), 1: |E_adv - E|_1",
          choices=(1, 2)),
    Param("embedding", "choice", "logits", "E: the logits or the penultimate features (needs an nn.Linear head)",
          choices=("logits", "features")),
])
DETACH_PIVOT = Param(
    "detach_pivot", "bool", False, "pivot loss: True holds E (clean) constant, the paper's text (unstable: the pivot "
    "runs away); False (default) lets gradient reach it too, as the authors' released code does")


class _PaperDefense(Defense):
    """Holds the generator and the one-step crafting shared by every paper-000 defense."""

    params = COMMON
    method: str
    max_eps: float
    lam: float
    seed: int
    craft_eval: bool
    eps_distribution: str

    def setup(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_adv, eps)``: one-step examples of ``x`` with freshly drawn per-example eps."""
        eps = draw_eps(x.shape[0], self.max_eps, self.generator, self.eps_distribution)
        return craft_one_step(model, x, y, eps, self.method, eval_mode=self.craft_eval), eps

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"generator"}:
            raise ValueError(f"{type(self).__name__} state must have the key 'generator', got {sorted(state)}")
        self.generator.set_state(state["generator"])


def _count(fraction: float, n: int) -> int:
    return int(round(fraction * n))


def _store_text(store: Any) -> Any:
    """The declared (text) form of a ``store`` argument: paths joined with os.pathsep, a CascadeStore described."""
    if isinstance(store, CascadeStore):
        return f"<CascadeStore of {store.source_id!r} ({store.source_hash[:12]}), {len(store)} images>"
    if isinstance(store, os.PathLike):
        return os.fspath(store)
    if isinstance(store, (list, tuple)):
        if not store or not all(isinstance(p, (str, os.PathLike)) for p in store):
            raise ParamTypeError(f"cascade: store must be a CascadeStore, a directory or a non-empty list of "
                                 f"directories, got {store!r}")
        return os.pathsep.join(os.fspath(p) for p in store)
    return store  # a str, None, or a wrong type the declaration refuses


class Kurakin(_PaperDefense):
    """Kurakin adversarial training: k of the m batch images REPLACED by one-step adversarial ones.

    Paper: Kurakin et al., "Adversarial Machine Learning at Scale", 2017, arXiv:1611.01236, as used
    in paper 000 (Na et al. 2018, arXiv:1708.02582) section 3.1.  Norm linf.  Loss:
    (sum_{m-k clean} CE + lam * sum_{k adv} CE) / ((m - k) + lam * k).  See the module docstring for
    the eps distribution and the eval-mode crafting.

    Parameters (keyword-only):

    - ``method`` ("step_ll" | "step_fgsm" | "step_both", default "step_ll").
    - ``max_eps`` (float, default 16/255): the largest eps, [0, 1] units; eps ~ |N(0, max_eps/2)|
      on [0, max_eps] per example.
    - ``eps_distribution`` ("clipped" | "truncated", default "clipped", the released code): see the module docstring.
    - ``k_fraction`` (float, default 0.5): k / m, the share of the batch replaced (paper: 64 of 128);
      k = round(k_fraction * m), the first k images of the batch.
    - ``lam`` (float, default 0.3): the weight of the adversarial examples' CE.
    - ``seed`` (int, default 0): seeds the defense's generator.
    - ``craft_eval`` (bool, default True): craft with the model in eval mode.

    Batch size: the trainer's ``batch_size`` is m (paper: 128, k_fraction 0.5: 64 clean + 64 adversarial).

    Example::

        defense = Kurakin(max_eps=16 / 255)
        out = defense.loss(model, x, y)          # out.loss.backward()
    """

    name = "kurakin"
    info = DefenseInfo(source=_SOURCE, paper="000", single_step=True, needs_embedding=False,
                       summary="Kurakin AT: k of m replaced by step_ll/step_FGSM examples, lam-weighted CE")

    params = ParamSet([
        *COMMON[:2],
        _fraction("k_fraction", 0.5, "k / m: the share of the batch replaced by adversarial examples"),
        *COMMON[2:],
    ])
    k_fraction: float

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        k = _count(self.k_fraction, x.shape[0])
        x_adv, eps = self.adversarial(model, x[:k], y[:k])
        out = paper_objective(model, x_adv, y[:k], x[k:], y[k:], lam=self.lam)
        out.metrics["mean_eps"] = float(eps.mean()) if k else 0.0
        return out


def split_counts(m: int, per_clean: float) -> tuple[int, int]:
    """``(k, m - k)`` of a B' of m images with ``per_clean`` adversarial images per clean one (``"split"``)."""
    k = int(round(m * per_clean / (1.0 + per_clean)))
    return k, m - k


class _Similarity(_PaperDefense):
    """Adversarial copies of clean images in B' with their clean versions, plus lam2 * sum_i L_dist(E_adv, E)."""

    pivot = False
    params = ParamSet([
        *COMMON[:2],
        _fraction("adv_fraction", 1.0, "k / (m - k): adversarial copies per clean image of B' (1.0: the paper's "
                  "64 of 128)"),
        COMPOSITION,
        COMMON["lam"],
        *SIMILARITY,
        *COMMON[3:],
    ])
    adv_fraction: float
    composition: str
    lam2: float
    power: int
    embedding: str

    def detached(self) -> bool:
        """Whether the clean embedding is held constant in the distance (only Pivot with ``detach_pivot``)."""
        return False

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        if self.composition == "split":
            k, n_clean = split_counts(x.shape[0], self.adv_fraction)
        else:
            k, n_clean = _count(self.adv_fraction, x.shape[0]), x.shape[0]
        x, y = x[:n_clean], y[:n_clean]
        x_adv, eps = self.adversarial(model, x[:k], y[:k])
        pairs = torch.arange(k, device=x.device)
        out = paper_objective(model, x_adv, y[:k], x, y, lam=self.lam, pairs=pairs, lam2=self.lam2,
                              power=self.power, embedding=self.embedding, pivot=self.detached())
        out.metrics["mean_eps"] = float(eps.mean()) if k else 0.0
        return out


class Bidirectional(_Similarity):
    """Adversarial training with the bidirectional distance loss: both embeddings move together.

    Paper 000 (Na et al., "Cascade Adversarial Machine Learning Regularized with a Unified
    Embedding", 2018, arXiv:1708.02582) section 3.2, Algorithm 1.  Norm linf.  Loss:
    (sum_{clean} CE + lam * sum_{adv} CE) / ((m - k) + lam * k) + lam2 * sum_i L_dist(E_i^adv, E_i),
    gradients through both E^adv and E.

    Parameters (keyword-only):

    - ``method`` ("step_ll" | "step_fgsm" | "step_both", default "step_ll").
    - ``max_eps`` (float, default 16/255): eps ~ |N(0, max_eps/2)| on [0, max_eps], [0, 1] units;
      ``eps_distribution`` ("clipped" | "truncated", default "clipped", the released code): see the module docstring.
    - ``adv_fraction`` (float, default 1.0): k / (m - k), adversarial copies per clean image of B'.
    - ``composition`` ("split" | "added", default "split"): how the trainer's batch becomes B'.
      "split" (paper 000's Algorithm 1): the trainer's ``batch_size`` is m; k = round(m * a / (1 + a))
      with a = adv_fraction, B' = adversarial copies of the first k images + the first m - k images
      clean (the last k images of the trainer's batch are not used); batch_size 128 gives the
      paper's 64 + 64.  "added": all B images of the trainer's batch stay clean and the first
      k = round(a * B) get an adversarial copy, B' has B + k images (batch_size 64 gives 64 + 64).
    - ``lam`` (float, default 0.3), ``lam2`` (float, default 1e-4): weights of the adversarial CE and
      of the distance.
    - ``power`` (1 or 2, default 2): L_dist = 1/2 |E_adv - E|_2^2 (the authors' ``tf.nn.l2_loss``) or
      |E_adv - E|_1.
    - ``embedding`` ("logits" | "features", default "logits"): E; "features" (the input of the
      final ``nn.Linear``) comes from :func:`robustreg.embed`.
    - ``seed`` (int, default 0), ``craft_eval`` (bool, default True): as :class:`Kurakin`.

    Example::

        out = Bidirectional(lam2=1e-4).loss(model, x, y)
    """

    name = "bidirectional"
    pivot = False
    info = DefenseInfo(source=_SOURCE, paper="000", single_step=True, needs_embedding=False,
                       summary="paper 000: adversarial examples added + bidirectional |E_adv - E|^N loss")


class Pivot(_Similarity):
    """Adversarial training with the pivot distance loss: the clean embedding as the target.

    Paper 000 (Na et al. 2018, arXiv:1708.02582) section 3.2.  The paper's text detaches E_i (a
    non-trainable copy of the clean embedding) so that only E^adv moves; the authors' released code
    does not (the copy is never used, see the module docstring), so by default (``detach_pivot=False``)
    the gradient reaches both embeddings and the loss equals :class:`Bidirectional`'s -- what the
    paper's pivot numbers were produced with.  ``detach_pivot=True`` is the text's fixed pivot; it is
    unstable (the pivot runs away from E^adv: the logits grow geometrically and the loss reaches NaN
    within ~110 steps of LeNet-5 on digits28 at lr 0.02).  Other parameters, defaults and norm: as
    :class:`Bidirectional`.

    - ``detach_pivot`` (bool, default False): hold E_i constant in the distance.

    Example::

        out = Pivot().loss(model, x, y)
    """

    name = "pivot"
    pivot = True
    info = DefenseInfo(source=_SOURCE, paper="000", single_step=True, needs_embedding=False,
                       summary="paper 000: adversarial examples added + pivot loss (as the authors' code computes it)")
    params = _Similarity.params + [DETACH_PIVOT]
    detach_pivot: bool

    def detached(self) -> bool:
        return self.detach_pivot


class Cascade(_PaperDefense):
    """Cascade adversarial training: one-step examples from the current model plus stored iter_FGSM
    images from an already defended source model, optionally with the similarity loss.

    Paper 000 (Na et al. 2018, arXiv:1708.02582) section 6 and Table 5 ("step_ll, saved_P2": of
    k = 64 adversarial images per minibatch of 128, 32 are step_ll from the current network and 32
    are stored iter_FGSM images).

    Batch composition: fresh_fraction and stored_fraction count adversarial images per clean image of
    B'.  With ``composition="split"`` (default, paper 000's Algorithm 1) the trainer's ``batch_size``
    is m: k = round(m (f + s) / (1 + f + s)) adversarial images (k_stored = round(m s / (1 + f + s))
    stored, k_fresh = k - k_stored fresh) and m - k clean ones, so batch_size 128 gives the paper's
    32 step_ll + 32 stored + 64 clean.  With ``"added"`` a trainer batch of B stays B clean images and
    k_fresh = round(f B), k_stored = round(s B) adversarial ones are added (batch_size 64 gives the
    paper's composition).  In both, the first k_fresh clean images get a one-step adversarial copy;
    k_stored entries are drawn at random (with replacement, from the defense's generator) from the
    store, and their stored clean images take the last k_stored clean places of B', so every
    adversarial image has its clean version among the m - k clean images (Algorithm 1's structure).
    The stored images are not
    augmented (the paper does not crop them either).  With ``distance=None`` no similarity term is
    added (the paper's K_C); "pivot" (default) or "bidirectional" add it (P_C).  As in :class:`Pivot`,
    "pivot" holds the clean embedding constant only with ``detach_pivot=True``; by default it is the
    released code's pivot, i.e. the same loss as "bidirectional".

    Parameters (keyword-only):

    - ``store`` (CascadeStore, or a path / list of paths of stores): see
      :func:`~robustreg_plugins.cascade.store.build_cascade_store` and the ``cascade-store`` command.
    - ``fresh_fraction`` (float, default 0.5), ``stored_fraction`` (float, default 0.5): per clean
      image of B'; fresh_fraction + stored_fraction <= 1.
    - ``composition`` ("split" | "added", default "split"): see above.
    - ``distance`` ("pivot" | "bidirectional" | None, default "pivot").
    - ``method`` (default "step_ll"), ``max_eps`` (default 16/255), ``lam`` (0.3), ``lam2`` (1e-4),
      ``power`` (2), ``embedding`` ("logits"), ``seed`` (0), ``craft_eval`` (True): as
      :class:`Bidirectional`; ``detach_pivot`` (False): as :class:`Pivot`.
    - ``expect_source_hash`` (str or None): refuse a store crafted by another source.
    - ``stored_eps`` ("normal" | "uniform", default "normal"): the eps law of the stored images.
      "normal" is the authors' released code (``utils.py``, ``get_batch``): the store holds every
      image at every eps 1..16 and each use draws the eps from the training's clipped normal
      clip(|N(0, max_eps / 2)|, 0, max_eps), floored to 1..max_eps (mean 6.73/255 for 16/255), via
      :meth:`~robustreg_plugins.cascade.store.CascadeStore.draw`; it needs a store built with
      ``eps_mode="all"`` (the default).  "uniform" draws stored entries uniformly -- with an
      ``eps_mode="uniform"`` store, robustreg's earlier reading (one eps per image, uniform on 1..16,
      mean 8.5/255).

    Example::

        out = Cascade(store="runs/p2_store").loss(model, x, y)
    """

    name = "cascade"
    info = DefenseInfo(source=_SOURCE, paper="000", single_step=True, needs_embedding=False,
                       summary="paper 000 cascade AT: step_ll + stored iter_FGSM images of a source network")

    params = ParamSet([
        Param("store", "str", None, "directory of a cascade store (`robustreg cascade-store`), several joined with "
              f"{os.pathsep!r}; required (the constructor also takes a CascadeStore or a list of directories)",
              optional=True),
        _fraction("fresh_fraction", 0.5, "one-step adversarial copies from the current model, per clean image"),
        _fraction("stored_fraction", 0.5, "stored iter_FGSM images of the source network, per clean image"),
        COMPOSITION,
        Param("distance", "choice", "pivot", "the similarity loss; None: none (the paper's K_C)",
              choices=("pivot", "bidirectional"), optional=True),
        *COMMON[:3],
        *SIMILARITY,
        DETACH_PIVOT,
        *COMMON[3:],
        Param("expect_source_hash", "str", None, "refuse a store crafted by a source with other weights (SHA-256)",
              optional=True),
        Param("stored_eps", "choice", "normal", "how stored images are drawn: normal = each slot's eps from "
              "clip(|N(0, max_eps/2)|) floored to 1..max_eps, then an image at that eps (the released code's "
              "get_batch; needs a store with every eps); uniform = entries uniformly, whatever their eps",
              choices=LAWS),
    ])
    fresh_fraction: float
    stored_fraction: float
    composition: str
    distance: str | None
    lam2: float
    power: int
    embedding: str
    detach_pivot: bool
    expect_source_hash: str | None
    stored_eps: str

    def __init__(self, *, store: CascadeStore | str | os.PathLike | list | tuple | None = None, **params: Any) -> None:
        self._store_arg = store
        super().__init__(store=_store_text(store), **params)

    def setup(self) -> None:
        super().setup()
        if self.fresh_fraction + self.stored_fraction > 1.0 + 1e-9:
            raise ParamError(f"cascade: fresh_fraction + stored_fraction must be <= 1, got {self.fresh_fraction} + "
                             f"{self.stored_fraction}")
        self.store = self._open_store()
        self.max_eps255 = int(round(self.max_eps * 255))
        if self.stored_eps == "normal" and abs(self.max_eps * 255 - self.max_eps255) > 1e-4:
            raise ParamError(f"cascade: stored_eps='normal' draws integer eps 1..max_eps on the 255 scale, so max_eps "
                             f"must be k/255, got {self.max_eps}; use stored_eps='uniform' otherwise")

    def _open_store(self) -> CascadeStore:
        store, expect = self._store_arg, self.expect_source_hash
        if store is None:
            raise ParamTypeError("cascade: store is required: a cascade store's directory (`robustreg cascade-store`)")
        if isinstance(store, CascadeStore):
            if expect is not None and store.source_hash != expect:
                raise ParamError(f"cascade: the cascade store's source hash {store.source_hash[:12]} is not the "
                                 f"expected {expect[:12]}")
            return store
        paths = store.split(os.pathsep) if isinstance(store, str) else store
        return load_cascade_store(list(paths) if isinstance(paths, (list, tuple)) else paths,
                                  expect_source_hash=expect)

    def counts(self, m: int) -> tuple[int, int, int]:
        """``(k_fresh, k_stored, clean)`` for a trainer batch of m (see the class docstring)."""
        if self.composition == "split":
            per_clean = self.fresh_fraction + self.stored_fraction
            k, b = split_counts(m, per_clean)
            k_stored = int(round(m * self.stored_fraction / (1.0 + per_clean)))
            return min(k - k_stored, b - k_stored), k_stored, b
        k_fresh, k_stored = _count(self.fresh_fraction, m), _count(self.stored_fraction, m)
        return min(k_fresh, m - k_stored), k_stored, m

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: int = 0) -> DefenseOutput:
        k_fresh, k_stored, b = self.counts(x.shape[0])
        x, y = x[:b], y[:b]
        index = self.store.draw(k_stored, self.generator, law=self.stored_eps, max_eps255=self.max_eps255)
        s_clean, s_adv, s_y = self.store.get(index, x.device)
        if s_clean.shape[1:] != x.shape[1:]:
            raise ValueError(f"stored images have shape {tuple(s_clean.shape[1:])}, the batch {tuple(x.shape[1:])}")
        x_fresh, eps = self.adversarial(model, x[:k_fresh], y[:k_fresh])
        x_clean = torch.cat([x[:b - k_stored], s_clean.to(x.dtype)])
        y_clean = torch.cat([y[:b - k_stored], s_y])
        x_adv = torch.cat([x_fresh, s_adv.to(x.dtype)])
        y_adv = torch.cat([y[:k_fresh], s_y])
        pairs = None
        if self.distance is not None:
            pairs = torch.cat([torch.arange(k_fresh), torch.arange(b - k_stored, b)]).to(x.device)
        out = paper_objective(model, x_adv, y_adv, x_clean, y_clean, lam=self.lam, pairs=pairs, lam2=self.lam2,
                              power=self.power, embedding=self.embedding,
                              pivot=self.distance == "pivot" and self.detach_pivot)
        out.metrics["mean_eps"] = float(eps.mean()) if k_fresh else 0.0
        out.metrics["stored"] = float(k_stored)
        return out
