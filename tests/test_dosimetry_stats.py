"""Known-value tests of atp.dosimetry.stats (closed-form t distributions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atp.dosimetry import (
    bonferroni,
    mean_difference_ci,
    paired_ttest,
    relative_difference_percent,
)


def test_paired_ttest_df1_closed_form():
    # d = a - b = [1, 3]: mean 2, sd sqrt(2), se = sqrt(2)/sqrt(2) = 1, t = 2, df = 1.
    # Student t with 1 df is Cauchy: two-tailed p = 1 - (2/pi) atan(|t|) = 0.29516723530...
    expected = 1.0 - 2.0 / math.pi * math.atan(2.0)
    assert paired_ttest([3.0, 5.0], [2.0, 2.0]) == pytest.approx(expected, abs=1e-12)
    # A NaN pair is dropped, leaving the same two pairs.
    assert paired_ttest([3.0, 5.0, math.nan], [2.0, 2.0, 1.0]) == pytest.approx(expected)


def test_paired_ttest_df2_closed_form():
    # d = [1, 2, 3]: mean 2, sd 1, se = 1/sqrt(3), t = 2 sqrt(3), df = 2.
    # t with 2 df: F(t) = 1/2 + t / (2 sqrt(2 + t^2)) -> p = 1 - t / sqrt(2 + t^2)
    # = 1 - 2 sqrt(3) / sqrt(14) = 0.0741799...
    t = 2.0 * math.sqrt(3.0)
    expected = 1.0 - t / math.sqrt(2.0 + t * t)
    a = np.array([11.0, 12.0, 13.0])
    b = np.array([10.0, 10.0, 10.0])
    assert paired_ttest(a, b) == pytest.approx(expected, abs=1e-12)
    # Swapping a and b flips t's sign, not the two-tailed p.
    assert paired_ttest(b, a) == pytest.approx(expected, abs=1e-12)


def test_paired_ttest_degenerate_is_nan():
    assert math.isnan(paired_ttest([1.0], [2.0]))  # n < 2
    assert math.isnan(paired_ttest([], []))
    assert math.isnan(paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))  # all d = 0
    assert math.isnan(paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]))  # all d = 1
    with pytest.raises(ValueError, match="same length"):
        paired_ttest([1.0, 2.0], [1.0])


def test_bonferroni_scaling_and_clipping():
    # m = 3 non-NaN p values: 0.01*3 = 0.03, 0.2*3 = 0.6, 0.5*3 = 1.5 -> clipped to 1.
    out = bonferroni([0.01, 0.2, 0.5, math.nan])
    np.testing.assert_allclose(out[:3], [0.03, 0.6, 1.0])
    assert math.isnan(out[3])
    with pytest.raises(ValueError, match="p_values"):
        bonferroni([0.1, 1.2])


def test_mean_difference_ci_closed_form():
    # d = [1, 3]: mean 2, se 1, df 1; t_0.975(1) = tan(pi (0.975 - 0.5)) = 12.7062047...
    tcrit = math.tan(math.pi * 0.475)
    mean, lo, hi = mean_difference_ci([3.0, 5.0], [2.0, 2.0])
    assert mean == pytest.approx(2.0)
    assert lo == pytest.approx(2.0 - tcrit, abs=1e-9)
    assert hi == pytest.approx(2.0 + tcrit, abs=1e-9)
    # d = [1, 2, 3]: se = 1/sqrt(3); df 2 quantile t_p = (2p - 1)/sqrt(2 p (1 - p)),
    # p = 0.975 -> 0.95 / sqrt(0.04875) = 4.30265...
    t2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    mean, lo, hi = mean_difference_ci([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - t2 / math.sqrt(3), 2.0 + t2 / math.sqrt(3)))
    # n = 1: mean only; n = 0: all NaN.
    m1 = mean_difference_ci([3.0], [1.0])
    assert m1[0] == 2.0 and math.isnan(m1[1]) and math.isnan(m1[2])
    assert all(math.isnan(v) for v in mean_difference_ci([], []))
    with pytest.raises(ValueError, match="confidence"):
        mean_difference_ci([1.0, 2.0], [0.0, 0.0], confidence=1.5)


def test_relative_difference_sign_convention():
    # Lower is better (OAR mean dose 20 -> 15 Gy): (20 - 15)/20 * 100 = +25 %.
    assert relative_difference_percent(20.0, 15.0) == pytest.approx(25.0)
    assert relative_difference_percent(20.0, 25.0) == pytest.approx(-25.0)
    # Higher is better (coverage 0.95 -> 0.98): -(0.95 - 0.98)/0.95 * 100 = +3.1578947 %.
    assert relative_difference_percent(0.95, 0.98, higher_is_better=True) == pytest.approx(
        3.0 / 0.95
    )
    assert relative_difference_percent(0.95, 0.90, higher_is_better=True) == pytest.approx(
        -5.0 / 0.95
    )
    assert math.isnan(relative_difference_percent(0.0, 1.0))
    out = relative_difference_percent(np.array([10.0, 0.0, 40.0]), np.array([5.0, 1.0, 50.0]))
    np.testing.assert_allclose(out, [50.0, np.nan, -25.0])
