"""The one verdict rule of every reproduction, and the statistics it rests on.

A claim is split into *cells* (a setting, a defense x attack pair, ...).  Each cell is judged by one
test at the 5% level, two-sided:

- the same images under two attacks or two models: McNemar's exact test on the discordant samples
  (:func:`mcnemar`), from the per-sample results every evaluation saves;
- trainings over seeds: the 95% Student-t interval of the per-seed difference (:func:`t_interval`),
  from at least 3 seeds (issue 24 asks for 5 where one training takes under 5 minutes);
- the spread of trainings (paper 000 Table 3): the two-sided F test of the ratio of the two sample variances
  over the seeds (:func:`variance_outcome`), from at least 3 seeds each;
- a *flat* statement ("accuracy does not move with m"): the same 95% t-interval of the per-seed difference,
  judged against the band +-:data:`EQUIVALENCE_DELTA` points (:func:`equivalence_outcome`): inside it supports,
  entirely outside it contradicts.

A cell **supports** the claim when the difference goes the claimed way and is significant,
**contradicts** it when it goes the other way and is significant, and is **inconclusive** otherwise.
The claim's verdict (:func:`verdict`), defined here once and in ``benchmarks/reproduce/README.md``:

- **held**: every cell supports it;
- **partly**: at least half of the cells support it, not all;
- **did not hold**: fewer than half support it;
- **not testable at this scale**: a precondition the claim needs fails in our setting (the report says
  which, e.g. the white-box attack leaves an undefended net mostly correct, so no transfer attack can
  show anything), whatever the cells say.

No correction for multiple cells: each cell is its own 5% test, and the report lists them all.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ALPHA", "EQUIVALENCE_DELTA", "EQUIVALENCE_TEXT", "MIN_SEEDS", "OUTCOMES", "RULE_TEXT", "VERDICTS",
           "Interval", "Paired", "best_case_p", "bits", "equivalence_outcome", "f_test_p", "mcnemar", "mcnemar_p",
           "paired_outcome", "seeds_outcome", "t_interval", "unbits", "variance_outcome", "verdict", "verdict_lines"]

ALPHA = 0.05
OUTCOMES = ("supports", "contradicts", "inconclusive")
VERDICTS = ("held", "partly", "did not hold", "not testable at this scale")
RULE_TEXT = ("One rule (benchmarks/reproduce/README.md): each cell supports the claim when the difference goes the "
             "claimed way at the 5% level (two-sided McNemar exact test on the same images, or a 95% t-interval "
             "over at least 3 training seeds that excludes 0, or for a spread over seeds the two-sided F test), "
             "contradicts it when significant the other way, else is "
             "inconclusive; held = every cell supports, partly = at least half, did not hold = fewer than half, "
             "not testable at this scale = a precondition of the claim fails here.")

# Student t 0.975 quantiles for 1..30 degrees of freedom (beyond: the normal's 1.960 within 0.05)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(b + c, 1/2) test of the discordant counts b and c."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def best_case_p(diff_samples: int) -> float:
    """The smallest p McNemar can give for a net difference of ``diff_samples`` (all discordant pairs one
    way): for an old run without per-sample results, a cell whose best case is >= 5% is inconclusive."""
    return mcnemar_p(abs(diff_samples), 0)


@dataclass(frozen=True)
class Paired:
    """Same images, A vs B: ``only_a`` correct under A only, ``only_b`` under B only; the exact p."""

    n: int
    only_a: int
    only_b: int
    p: float

    def text(self) -> str:
        return f"{self.only_a} vs {self.only_b} discordant of {self.n}, p = {self.p:.3g}"


def bits(correct: Sequence[bool] | Any) -> str:
    """Per-sample correctness as a '0'/'1' string (compact in report.json)."""
    return "".join("1" if bool(v) else "0" for v in (correct.tolist() if hasattr(correct, "tolist") else correct))


def unbits(text: str) -> list[bool]:
    if set(text) - {"0", "1"}:
        raise ValueError(f"per-sample results must be a string of 0 and 1, got {text[:20]!r}...")
    return [c == "1" for c in text]


def mcnemar(a: Sequence[bool] | str, b: Sequence[bool] | str) -> Paired:
    """McNemar's exact test of two per-sample correctness vectors on the same images."""
    xa = unbits(a) if isinstance(a, str) else [bool(v) for v in a]
    xb = unbits(b) if isinstance(b, str) else [bool(v) for v in b]
    if len(xa) != len(xb):
        raise ValueError(f"paired results must cover the same images, got {len(xa)} and {len(xb)}")
    only_a = sum(p and not q for p, q in zip(xa, xb))
    only_b = sum(q and not p for p, q in zip(xa, xb))
    return Paired(len(xa), only_a, only_b, mcnemar_p(only_a, only_b))


def lower_cell(same: str | None, other: str | None) -> dict[str, Any]:
    """A transfer cell's paired test (claims 4 and 7): the claim says the target leaves fewer images correct on
    the ``same`` source's images than on the ``other``'s (per-image bits on the same images; None where the run
    kept none: then inconclusive)."""
    if same is None or other is None:
        return {"only_same": None, "only_other": None, "p": None, "outcome": "inconclusive"}
    test = mcnemar(same, other)
    return {"only_same": test.only_a, "only_other": test.only_b, "p": test.p, "outcome": paired_outcome(test, "a")}


def paired_outcome(test: Paired, claimed_lower: str) -> str:
    """``claimed_lower``: "a" when the claim says A leaves fewer images correct than B, "b" the reverse."""
    if claimed_lower not in ("a", "b"):
        raise ValueError(f"claimed_lower must be 'a' or 'b', got {claimed_lower!r}")
    if test.p >= ALPHA or test.only_a == test.only_b:
        return "inconclusive"
    a_lower = test.only_b > test.only_a
    return "supports" if a_lower == (claimed_lower == "a") else "contradicts"


@dataclass(frozen=True)
class Interval:
    """Mean and 95% Student-t interval of ``n`` values (a zero-width interval for n = 1 is not a test)."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 1) -> str:
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (1 seed: no interval)"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def t_interval(values: Sequence[float]) -> Interval:
    """The mean and 95% t-interval (t_{0.975, n-1} * s / sqrt(n)) of ``values``."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    t = _T975[len(xs) - 2] if len(xs) - 1 <= len(_T975) else 1.960
    half = t * statistics.stdev(xs) / math.sqrt(len(xs))
    return Interval(mean, mean - half, mean + half, len(xs))


MIN_SEEDS = 3


def seeds_outcome(diffs: Sequence[float], claimed_sign: int = 1) -> str:
    """Per-seed differences (claimed direction ``claimed_sign``): supports when the 95% interval lies on the
    claimed side of 0, contradicts when it lies on the other side, else inconclusive.

    Fewer than :data:`MIN_SEEDS` seeds, or differences that are all equal, are inconclusive: with two seeds
    (t = 12.7) only nearly equal differences pass, and equal ones -- a coincidence of a few images on a few
    hundred -- give a zero-width interval that says nothing of the noise."""
    if claimed_sign not in (1, -1):
        raise ValueError(f"claimed_sign must be 1 or -1, got {claimed_sign!r}")
    iv = t_interval(diffs)
    if iv.n < MIN_SEEDS or iv.high - iv.low <= 0:
        return "inconclusive"
    low, high = (iv.low, iv.high) if claimed_sign == 1 else (-iv.high, -iv.low)
    if low > 0:
        return "supports"
    if high < 0:
        return "contradicts"
    return "inconclusive"


# The band of a flat statement, in accuracy points: wider than paper 004 Table 3's whole range over m in every
# column (at most 1.38 points, PGD), narrower than the effects the other cells look for (2-8 points).
EQUIVALENCE_DELTA = 2.0
EQUIVALENCE_TEXT = (f"a flat statement (no change) is judged by the same 95% t-interval of the per-seed difference "
                    f"against the band +-{EQUIVALENCE_DELTA:g} points: it supports when the interval lies inside the "
                    "band, contradicts when the interval lies entirely outside it, else is inconclusive")


def equivalence_outcome(diffs: Sequence[float], delta: float = EQUIVALENCE_DELTA) -> str:
    """A flat statement (A and B equal within ``delta`` points): supports when the 95% t-interval of the per-seed
    differences lies inside (-delta, +delta), contradicts when it lies entirely outside the band (above +delta or
    below -delta), else inconclusive; fewer than :data:`MIN_SEEDS` seeds or a zero-width interval (no estimate of
    the noise) are inconclusive, as in :func:`seeds_outcome`."""
    if not delta > 0 or math.isinf(delta):
        raise ValueError(f"delta must be a finite number of points > 0, got {delta!r}")
    iv = t_interval(diffs)
    if iv.n < MIN_SEEDS or iv.high - iv.low <= 0:
        return "inconclusive"
    if -delta < iv.low and iv.high < delta:
        return "supports"
    if iv.low > delta or iv.high < -delta:
        return "contradicts"
    return "inconclusive"


def f_test_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of the F test that ``a`` and ``b`` (independent samples, normal) have equal variances."""
    from scipy.stats import f as f_dist

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"the F test needs at least 2 values each, got {len(a)} and {len(b)}")
    va, vb = statistics.variance(a), statistics.variance(b)
    if va == 0 and vb == 0:
        return 1.0
    if vb == 0 or va == 0:
        return 0.0
    ratio = va / vb
    tail = f_dist.cdf(ratio, len(a) - 1, len(b) - 1)
    return float(min(1.0, 2 * min(tail, 1 - tail)))


def variance_outcome(a: Sequence[float], b: Sequence[float]) -> str:
    """Claimed: ``b`` varies less than ``a`` over the seeds; the F test at the 5% level (two-sided); fewer than
    :data:`MIN_SEEDS` values on either side is inconclusive."""
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS or min(statistics.variance(a), statistics.variance(b)) == 0:
        return "inconclusive"  # a zero variance (identical results, e.g. a constant model) says nothing of the noise
    if f_test_p(a, b) >= ALPHA:
        return "inconclusive"
    return "supports" if statistics.variance(b) < statistics.variance(a) else "contradicts"


def verdict(outcomes: Sequence[str], untestable: str | None = None) -> str:
    """The claim's verdict from its cells' outcomes; ``untestable``: why the setting cannot test it."""
    bad = [o for o in outcomes if o not in OUTCOMES]
    if bad:
        raise ValueError(f"cell outcomes must be in {OUTCOMES}, got {bad[0]!r}")
    if untestable:
        return "not testable at this scale"
    if not outcomes:
        raise ValueError("a verdict needs at least one cell")
    support = sum(o == "supports" for o in outcomes)
    if support == len(outcomes):
        return "held"
    return "partly" if 2 * support >= len(outcomes) else "did not hold"


def verdict_lines(result: str, outcomes: Sequence[str], test: str, untestable: str | None = None) -> str:
    """The report's verdict paragraph: the verdict, the cell counts, the test used and the rule."""
    counts = ", ".join(f"{sum(o == k for o in outcomes)} {k}" for k in OUTCOMES)
    why = f" Not testable: {untestable}." if untestable else ""
    return (f"**Verdict: {result}.** {len(outcomes)} cells: {counts}; test: {test}.{why}\n\n_{RULE_TEXT}_")
