"""The one noise rule (robustreg.stats): two standard errors plus one point, and its paired form.

Expected values are computed by hand from the formula in docs/checks.md ("How much is noise"); the
boundary cases sit at least 0.002 from the threshold, far beyond float64 rounding (about 1e-16).
"""

from __future__ import annotations

import math

import pytest

from robustreg.checks import beyond_noise as checks_beyond_noise
from robustreg.stats import beyond_noise, beyond_paired_noise, noise, paired_noise


def test_noise_is_two_standard_errors_plus_one_point() -> None:
    assert noise(0.5, 100) == pytest.approx(2 * 0.05 + 0.01)  # sqrt(0.25 / 100) = 0.05
    assert noise(0.02, 100) == pytest.approx(2 * math.sqrt(0.0196) / 10 + 0.01)  # 0.038
    assert noise(0.0, 40) == noise(1.0, 40) == pytest.approx(1 / 40)  # no spread: one point


def test_beyond_noise_is_one_sided_and_strict() -> None:
    # noise(0.02, 100) = 0.038: 6 of 100 samples against an expected 2% are beyond it, 5 are not
    assert beyond_noise(0.06 - 0.02, 0.02, 100)
    assert not beyond_noise(0.05 - 0.02, 0.02, 100)
    assert not beyond_noise(-0.5, 0.5, 100)  # the other direction is never a finding
    assert checks_beyond_noise is beyond_noise  # the checks use the same function, not a copy


def test_paired_noise_counts_only_the_discordant_points() -> None:
    # 16 broken by a alone, none by b, on 64 points: d = 0.25, variance (0.25 - 0.0625) / 64
    assert paired_noise(16, 0, 64) == pytest.approx(2 * math.sqrt(0.1875 / 64) + 1 / 64)
    assert beyond_paired_noise(16, 0, 64)
    assert not beyond_paired_noise(2, 0, 64)  # 2/64 = 0.031 < 0.050
    assert not beyond_paired_noise(5, 5, 64)  # as many each way: no difference at all


@pytest.mark.parametrize("n", [0, -3])
def test_no_points_is_a_clear_error(n: int) -> None:
    with pytest.raises(ValueError, match=f"n must be a number of points >= 1, got {n}"):
        noise(0.5, n)
    with pytest.raises(ValueError, match=f"n must be a number of points >= 1, got {n}"):
        paired_noise(1, 0, n)
