"""McNemar's test against Agresti (2002) and the exact binomial definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from radreview.metrics import mcnemar_from_counts, mcnemar_test


def test_agresti_presidential_approval() -> None:
    # Agresti (2002) Categorical Data Analysis, 2nd ed., Table 10.1: 1600 people asked twice;
    # 150 approve -> disapprove, 86 disapprove -> approve. z^2 = 17.36; difference -0.04,
    # SE 0.0095, 95% CI (-0.06, -0.02).
    res = mcnemar_from_counts(86, 150, 1600, method="chi2")
    assert res.statistic == pytest.approx(17.36, abs=0.005)
    assert res.difference == pytest.approx(-0.04)
    assert (res.upper - res.lower) / (2 * 1.959964) == pytest.approx(0.0095, abs=5e-5)
    assert (round(res.lower, 2), round(res.upper, 2)) == (-0.06, -0.02)


def test_exact_is_two_sided_binomial() -> None:
    res = mcnemar_from_counts(2, 9, 40)
    # Two-sided exact p: twice the smaller tail of Binomial(11, 1/2) (symmetric), capped at 1.
    assert res.p_value == pytest.approx(min(1.0, 2 * binom.cdf(2, 11, 0.5)))
    corrected = mcnemar_from_counts(2, 9, 40, method="chi2-corrected")
    assert corrected.statistic == pytest.approx((abs(2 - 9) - 1) ** 2 / 11)


def test_from_outcomes() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(100) < 0.7
    b = a.copy()
    b[:10] = ~b[:10]
    res = mcnemar_test(a, b)
    assert res.a_only + res.b_only == 10
    assert res.difference == pytest.approx(a.mean() - b.mean())
    same = mcnemar_test(a, a)
    assert same.p_value == 1.0
    with pytest.raises(ValueError, match="unknown McNemar method"):
        mcnemar_test(a, b, method="wald")
