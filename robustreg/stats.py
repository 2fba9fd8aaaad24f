"""The one noise rule: when a difference between two rates measured on n points is more than sampling noise.

A rate p (an accuracy, a fraction of samples) measured on n points has the binomial standard error
``sqrt(p (1 - p) / n)``.  A difference is **beyond noise** when it exceeds *two standard errors plus one
point* (``2 sqrt(p (1 - p) / n) + 1 / n``): the two standard errors are the usual 95% band, and the one
point keeps a rate of 0 or 1 (standard error 0) from turning a single sample into a finding.  It is
one-sided: each caller asks whether the difference goes the way that would mean something.

For two rates measured on the *same* n points (two attacks on one set of samples) only the points
counted by one alone (the discordant pairs, ``only_a`` and ``only_b``) carry information about the
difference: :func:`paired_noise` uses the paired difference's standard error in place of the binomial
one, with the same two standard errors plus one point.

Used by every reader of records that compares rates: the automatic checks (:mod:`robustreg.checks`), the
disagreements of ``robustreg compare`` (a pair's discordant fraction against the native attack's
random-start flips), the curve's verification (the minimal-norm plugin's ``robustreg curve``), and the
checks plugins register.  docs/checks.md ("How much is noise") states the rule for users.  The
reproductions' paired statistical tests of a paper's claims (benchmarks/reproduce) are another question
(is a claim supported?) and keep their own tests.
"""

from __future__ import annotations

import math

__all__ = ["beyond_noise", "beyond_paired_noise", "noise", "paired_noise"]


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be a number of points >= 1, got {n}")


def noise(p: float, n: int) -> float:
    """Sampling noise of a rate ``p`` measured on ``n`` points: two standard errors plus one point."""
    _check_n(n)
    return 2 * math.sqrt(max(p * (1 - p), 0.0) / n) + 1 / n


def paired_noise(only_a: int, only_b: int, n: int) -> float:
    """Sampling noise of the difference of two rates measured on the same ``n`` points, where ``only_a``
    points are counted by the first alone and ``only_b`` by the second alone (the discordant pairs):
    two standard errors of the paired difference plus one point, as :func:`noise` for one rate.
    Points on which both agree carry no information about the difference, so two attacks that break
    different points but as many of them are within noise however many there are."""
    _check_n(n)
    d = (only_a - only_b) / n
    variance = max((only_a + only_b) / n - d * d, 0.0) / n
    return 2 * math.sqrt(variance) + 1 / n


def beyond_noise(gap: float, p: float, n: int) -> bool:
    """Whether ``gap`` (one rate minus another, in the direction that would mean something) exceeds the
    sampling noise of the rate ``p`` measured on ``n`` points (:func:`noise`)."""
    return gap > noise(p, n)


def beyond_paired_noise(only_a: int, only_b: int, n: int) -> bool:
    """Whether the first of two rates on the same ``n`` points exceeds the second beyond noise:
    ``(only_a - only_b) / n`` against :func:`paired_noise`."""
    return (only_a - only_b) / n > paired_noise(only_a, only_b, n)
