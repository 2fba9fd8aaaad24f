"""The one verdict rule of benchmarks/reproduce (``_verdict.py``): McNemar's exact test, the seeds' t-interval,
and the four verdicts."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "reproduce" / "_verdict.py"
_SPEC = importlib.util.spec_from_file_location("reproduce_verdict", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
v = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = v  # dataclasses look their module up there
_SPEC.loader.exec_module(v)  # stdlib only: no sys.path change needed


@pytest.mark.parametrize("b, c, p", [
    (0, 6, 2 / 64),                        # all 6 discordant one way: 2 * 0.5^6
    (6, 0, 2 / 64),
    (2, 8, 2 * (1 + 10 + 45) / 1024),      # 2 * P(Bin(10, 1/2) <= 2)
    (5, 5, 1.0), (0, 0, 1.0), (0, 1, 1.0),
    (1, 12, 2 * (1 + 13) / 2 ** 13),
])
def test_mcnemar_exact_p(b, c, p):
    assert v.mcnemar_p(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_pairs_the_same_images_and_judges_the_direction():
    a = "1111111100"   # attack A leaves 8 correct
    b = "1111111111"   # attack B leaves 10 correct
    test = v.mcnemar(a, b)
    assert (test.n, test.only_a, test.only_b) == (10, 0, 2) and test.p == pytest.approx(0.5)
    assert v.paired_outcome(test, "a") == "inconclusive"  # 2 samples: no test can tell
    strong = v.mcnemar("0" * 8 + "1" * 12, "1" * 20)
    assert strong.p == pytest.approx(2 / 256)
    assert v.paired_outcome(strong, "a") == "supports" and v.paired_outcome(strong, "b") == "contradicts"
    with pytest.raises(ValueError, match="same images"):
        v.mcnemar("101", "10")
    with pytest.raises(ValueError, match="0 and 1"):
        v.unbits("10x")


def test_t_interval_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")  # the table's reference; absent scipy = a missing resource
    for df in range(1, 31):
        assert v._T975[df - 1] == pytest.approx(float(stats.t.ppf(0.975, df)), abs=6e-4)


def test_t_interval_and_seed_outcomes():
    iv = v.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} * s / sqrt(n)
    assert (iv.mean, iv.low, iv.high, iv.n) == (3.0, pytest.approx(3 - half), pytest.approx(3 + half), 5)
    assert v.seeds_outcome([4.0, 5.0, 6.0, 5.5, 4.5]) == "supports"
    assert v.seeds_outcome([4.0, 5.0, 6.0, 5.5, 4.5], claimed_sign=-1) == "contradicts"
    assert v.seeds_outcome([4.0, -3.0, 6.0]) == "inconclusive"
    assert v.seeds_outcome([9.0]) == "inconclusive"  # one seed is no interval
    # two seeds are too few even when they agree (t_{0.975, 1} = 12.7 passes only near-equal differences)
    assert v.seeds_outcome([5.0, 5.2]) == "inconclusive" and v.seeds_outcome([5.0, 5.2, 5.1]) == "supports"
    assert v.seeds_outcome([1.7, 1.7, 1.7]) == "inconclusive"  # a zero-width interval estimates no noise



def test_equivalence_cell_of_a_flat_statement():
    # mean 0, s = 0.412, half-width 2.776 * 0.412 / sqrt(5) = 0.51: inside +-2 (the default band) by 1.5 points
    flat = [0.5, -0.5, 0.0, 0.3, -0.3]
    assert v.EQUIVALENCE_DELTA == 2.0 and v.equivalence_outcome(flat) == "supports"
    assert v.equivalence_outcome(flat, delta=0.4) == "inconclusive"  # the band narrower than the interval
    assert v.equivalence_outcome([5.0, 6.0, 7.0, 5.5, 6.5]) == "contradicts"  # [5.0, 7.0]: all above +2
    assert v.equivalence_outcome([-5.0, -6.0, -7.0, -5.5, -6.5]) == "contradicts"  # either way out of the band
    assert v.equivalence_outcome([1.5, 2.5, 1.0, 3.0, 2.0]) == "inconclusive"  # [1.0, 3.0] straddles +2
    assert v.equivalence_outcome([8.0, -8.0, 6.0, -6.0, 0.0]) == "inconclusive"  # mean 0, but too noisy to say
    assert v.equivalence_outcome([0.1, -0.1]) == "inconclusive"  # two seeds are never enough
    assert v.equivalence_outcome([0.0, 0.0, 0.0]) == "inconclusive"  # a zero-width interval estimates no noise
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="delta must be"):
            v.equivalence_outcome(flat, delta=bad)

@pytest.mark.parametrize("outcomes, expected", [
    (["supports"] * 4, "held"),
    (["supports", "supports", "inconclusive", "contradicts"], "partly"),
    (["supports", "inconclusive", "inconclusive"], "did not hold"),
    (["supports"] + ["inconclusive"] * 4, "did not hold"),
    (["contradicts"], "did not hold"),
])
def test_one_verdict_rule(outcomes, expected):
    assert v.verdict(outcomes) == expected
    assert v.verdict(outcomes, untestable="the attack cannot break an undefended net") == (
        "not testable at this scale")


def test_bad_outcomes_and_the_verdict_text():
    with pytest.raises(ValueError, match="outcomes"):
        v.verdict(["maybe"])
    with pytest.raises(ValueError, match="at least one"):
        v.verdict([])
    text = v.verdict_lines("partly", ["supports", "inconclusive"], "McNemar")
    assert text.startswith("**Verdict: partly.**") and "1 supports" in text and "held = every cell" in text
    assert v.best_case_p(5) == pytest.approx(2 / 32) and v.best_case_p(6) < v.ALPHA


def test_f_test_of_two_spreads():
    # F(0.95; 4, 4) = 6.3882 (tables): a variance ratio there has the two-sided p 0.10, either way round
    a = [0.0, 1.0, 2.0, 3.0, 4.0]  # sample variance 2.5
    b = [x * math.sqrt(1 / 6.3882) for x in a]  # variance 2.5 / 6.3882
    assert v.f_test_p(a, b) == pytest.approx(0.10, abs=1e-4)
    assert v.f_test_p(b, a) == pytest.approx(0.10, abs=1e-4)
    assert v.f_test_p(a, [x + 7 for x in a]) == pytest.approx(1.0)  # equal spreads, shifted means
    tight = [x / 10 for x in a]  # ratio 100 on 4 and 4 degrees of freedom: p ~ 6e-4
    assert v.variance_outcome(a, tight) == "supports" and v.variance_outcome(tight, a) == "contradicts"
    assert v.variance_outcome(a, b) == "inconclusive"  # p 0.10
    assert v.variance_outcome(a[:2], tight[:2]) == "inconclusive"  # fewer than 3 seeds
    assert v.variance_outcome(a, [1.0] * 5) == "inconclusive"  # a zero spread says nothing of the noise
    with pytest.raises(ValueError, match="at least 2 values"):
        v.f_test_p([1.0], a)
