"""Threat models: the norm ball and the pixel box an attack must stay inside."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

__all__ = ["NORMS", "ThreatModel", "as_eps", "canonical_norm", "parse_eps"]

NORMS = ("linf", "l2", "l1")
#: other spellings of each norm (compared lower-cased, blanks and "_" dropped): the toolkits' and papers'
_SPELLINGS = {"linf": "linf", "inf": "linf", "l∞": "linf", "l2": "l2", "2": "l2", "l1": "l1", "1": "l1"}


def canonical_norm(norm: object) -> str:
    """A norm's canonical name ("linf", "l2", "l1") from any common spelling: ``"Linf"``, ``"L_inf"``,
    ``"inf"``, ``math.inf`` / ``np.inf``, ``"L2"``, ``2``, ``"L1"``, ``1``; a ValueError otherwise."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        key = "inf" if norm == math.inf else (str(int(norm)) if float(norm).is_integer() else "")
    elif isinstance(norm, str):
        key = norm.strip().lower().replace("_", "").replace(" ", "")
    else:
        key = ""
    if key not in _SPELLINGS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)} (or Linf, inf, np.inf, L2, 2, L1, 1), "
                         f"got {norm!r}")
    return _SPELLINGS[key]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


@dataclass(frozen=True)
class ThreatModel:
    """An L_p ball of radius ``eps`` around each input, intersected with the pixel box.

    ``eps`` is in the same [0, 1] units as the pixels (use :func:`parse_eps` for "8/255" or a
    255-scale integer).  ``box`` is the valid pixel range, (0, 1) for every model in robustreg.
    """

    norm: str = "linf"
    eps: float = 8 / 255
    box: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", canonical_norm(self.norm))  # "Linf", np.inf, ... -> "linf"
        object.__setattr__(self, "eps", as_eps(self.eps))
        if self.norm == "linf" and self.eps > 1:
            raise ValueError(
                f"eps must be in [0, 1] for the linf norm (pixels are in [0, 1]), got {self.eps}; "
                f"did you mean {self.eps:g}/255?"
            )
        lo, hi = self.box
        if not lo < hi:
            raise ValueError(f"box must be (low, high) with low < high, got {self.box!r}")
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "box", (float(lo), float(hi)))

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample distance ||x_adv - x|| in this threat model's norm (shape N)."""
        d = _flat(x_adv - x)
        if self.norm == "linf":
            return torch.linalg.vector_norm(d, ord=math.inf, dim=1)  # max |d| in one pass
        if self.norm == "l2":
            return d.norm(p=2, dim=1)
        return d.abs().sum(dim=1)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Project ``x_adv`` onto the eps ball around ``x``, then clip to the box.

        For linf the result is exactly in the intersection.  For l2 / l1 the ball projection is
        followed by clipping, which can only shrink the perturbation, so the result stays in both.
        """
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        elif self.norm == "l2":
            norms = _flat(delta).norm(p=2, dim=1).clamp_min(1e-12)
            factor = (self.eps / norms).clamp(max=1.0)
            delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
        else:
            delta = _project_l1(delta, self.eps)
        return (x + delta).clamp(*self.box)

    def clamp_slop(self, x_adv: torch.Tensor, x: torch.Tensor, slop: float = 1e-5) -> torch.Tensor:
        """``x_adv`` projected into the ball and the box if it is outside by at most ``slop``, else unchanged.

        For adapters whose toolkit returns points with float slop (numpy round trips, float arithmetic):
        anything further is left for the Attack base to report as a bug, not hidden.
        """
        lo, hi = self.box
        over_ball = float((self.distance(x_adv, x) - self.eps).max())
        over_box = max(lo - float(x_adv.min()), float(x_adv.max()) - hi)
        return self.project(x_adv, x) if max(over_ball, over_box) <= slop else x_adv

    def clip_bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """linf: per-pixel ``(lower, upper)`` bounds of the ball around ``x`` intersected with the box.

        Computed once per call, they turn every later projection into one clamp.
        """
        if self.norm != "linf":
            raise ValueError(f"clip_bounds is for the linf ball, not {self.norm!r}")
        return (x - self.eps).clamp_min(self.box[0]), (x + self.eps).clamp_max(self.box[1])

    def random_point(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A uniform random point of the eps ball around ``x``, clipped to the box (a random start).

        linf: uniform per coordinate; l2: uniform by volume (direction from a Gaussian, radius
        eps * U^(1/d)).  l1 has no random start here.
        """
        if self.norm == "linf":
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
            return (x + self.eps * noise).clamp(*self.box)
        if self.norm != "l2":
            raise ValueError(f"random_point supports linf and l2, not {self.norm!r}")
        view = (-1,) + (1,) * (x.dim() - 1)
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        flat = _flat(direction)
        direction = direction / flat.norm(dim=1).clamp_min(1e-12).view(view)
        radius = self.eps * torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) \
            ** (1.0 / flat.shape[1])
        return (x + direction * radius.view(view)).clamp(*self.box)

    def ball_limit(self, atol: float = 1e-5) -> float:
        """The largest distance :meth:`contains` accepts as inside the ball (float rounding allowed)."""
        return self.eps * (1 + 1e-5) + atol

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor, atol: float = 1e-5) -> torch.Tensor:
        """Boolean per sample: inside the eps ball (up to ``atol``) and inside the box."""
        in_ball = self.distance(x_adv, x) <= self.ball_limit(atol)
        lo, hi = self.box
        flat = _flat(x_adv)
        in_box = (flat >= lo - atol).all(dim=1) & (flat <= hi + atol).all(dim=1)
        return in_ball & in_box

    def describe(self) -> str:
        eps = self.eps * 255
        shown = f"{eps:g}/255" if self.norm == "linf" and abs(eps - round(eps)) < 1e-6 else f"{self.eps:g}"
        return f"{self.norm} eps={shown}"


def _project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each sample onto the L1 ball (Duchi et al. 2008, sort-based)."""
    flat = _flat(delta)
    abs_flat = flat.abs()
    inside = abs_flat.sum(dim=1) <= eps
    if bool(inside.all()):
        return delta
    mu, _ = abs_flat.sort(dim=1, descending=True)
    cumsum = mu.cumsum(dim=1)
    ks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = mu - (cumsum - eps) / ks > 0
    rho = cond.to(torch.int64).cumsum(dim=1).argmax(dim=1)  # last index where cond holds
    theta = (cumsum.gather(1, rho[:, None]) - eps) / (rho[:, None] + 1).to(flat.dtype)
    projected = flat.sign() * (abs_flat - theta).clamp_min(0)
    out = torch.where(inside[:, None], flat, projected)
    return out.view_as(delta)


def parse_eps(value: str | float, scale: float | None = None) -> float:
    """Read an eps given as ``"8/255"``, ``"0.031"``, a number, or on a 255-scale.

    ``scale=255`` reads paper 000's integer budgets: ``parse_eps("16", scale=255) == 16/255``.
    Range checks belong to :class:`ThreatModel` (an L2 eps may exceed 1; a linf one may not).
    A budget whose text is not 0 but whose float is (``1e-400``; ``1e-300`` with ``scale=1e30``) is refused
    rather than run as eps 0, and so is a ``scale`` that is not a finite number > 0 (``inf`` makes every
    budget 0).
    """
    text = str(value).strip()
    try:
        number = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(
            f"eps must be a number, a fraction like '8/255', or a 255-scale value with scale=255; got {value!r}"
        ) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {value!r}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        number /= scale
    if number == 0 and _names_nonzero(text):
        shown = f"{text!r}" + (f" / {scale:g}" if scale is not None else "")
        raise ValueError(f"eps {shown} is not 0 but rounds to 0 as a float; give 0 or a budget a float holds "
                         f"(>= {_TINY:.0e})")
    return number


def _names_nonzero(text: str) -> bool:
    """Does the text of a number name a value other than 0 (a non-zero digit before any exponent)?"""
    head = text.split("/")[0].lower().partition("e")[0]
    return any(c in "123456789" for c in head)


_TINY = 5e-324  # the smallest positive float64 (subnormal)


def as_eps(value: object) -> float:
    """An eps in any form Python code gives it, as a float >= 0: a number, text (``"8/255"``, read by
    :func:`parse_eps`), a 0-d tensor or numpy scalar.  Anything else is a one-line ValueError."""
    if isinstance(value, str):
        return parse_eps(value)
    if isinstance(value, bool):
        raise ValueError(f"eps must be a number, a fraction like '8/255' or a 0-d tensor, got {value!r}")
    number = float(value) if isinstance(value, (int, float)) else _scalar(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {value!r}")
    return number


def _scalar(value: object) -> float:
    """A 0-d (or one-element) tensor or numpy number as a float; else the one-line error."""
    item = getattr(value, "item", None)
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    count = size() if callable(size) else size
    dtype = str(getattr(value, "dtype", ""))
    if callable(item) and count == 1 and "bool" not in dtype and "complex" not in dtype:
        try:
            return float(item())
        except (TypeError, ValueError):
            pass
    shape = tuple(getattr(value, "shape", ()))
    what = f"{type(value).__name__} of shape {shape}" if shape else repr(value)
    raise ValueError(f"eps must be a number, a fraction like '8/255' or a 0-d tensor, got {what}")
