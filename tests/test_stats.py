"""Seed statistics: mean and spread, Student's t tail, Welch's test, against closed forms."""

import math

import pytest

from src.stats import mean_std, student_t_two_sided, welch_p_value


def test_mean_and_sample_standard_deviation():
    assert mean_std([0.97, 0.98, 0.99]) == pytest.approx((0.98, 0.01))
    assert mean_std([2.0]) == (2.0, None)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.0, 4.5, 30.0])
def test_student_t_tail_matches_closed_forms(t):
    # Closed forms of the two-sided tail P(|T| >= t): df 1 (Cauchy), df 2, df 4, and df -> inf (normal).
    assert student_t_two_sided(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
    assert student_t_two_sided(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    x = t / math.sqrt(t * t + 4)
    assert student_t_two_sided(t, 4) == pytest.approx(1 - (3 * x - x**3) / 2, abs=1e-12)
    assert student_t_two_sided(t, 1e7) == pytest.approx(math.erfc(t / math.sqrt(2)), abs=1e-6)


def test_welch_by_hand():
    # Means 0.98 and 0.96, both std 0.01 over 3 seeds: t = 0.02 / sqrt(2 * 0.01**2 / 3) = sqrt(6), df = 4.
    x = math.sqrt(6) / math.sqrt(6 + 4)
    p = welch_p_value([0.97, 0.98, 0.99], [0.95, 0.96, 0.97])
    assert p == pytest.approx(1 - (3 * x - x**3) / 2, abs=1e-9)
    assert 0.05 < p < 0.1  # a 2-point gap over 3 seeds is not yet a difference
    # Unequal variances and sizes: Welch's degrees of freedom (Welch–Satterthwaite), not n1 + n2 - 2.
    va, vb = (5 / 3) / 4, 10 / 5  # variances of the means of [1, 2, 3, 4] and [2, 4, 6, 8, 10]
    t, df = (2.5 - 6) / math.sqrt(va + vb), (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    assert welch_p_value([1, 2, 3, 4], [2, 4, 6, 8, 10]) == pytest.approx(student_t_two_sided(t, df))
    assert 4 < df < 7


def test_welch_edge_cases():
    assert welch_p_value([1.0], [1.0, 2.0]) is None  # one seed: nothing to test
    assert welch_p_value([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert welch_p_value([1.0, 1.0], [2.0, 2.0]) == 0.0
