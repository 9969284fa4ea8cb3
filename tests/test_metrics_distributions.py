"""radreview.metrics.distributions against scipy (the reference; only the tests import it).

The tolerances are the measured accuracy with some room: about 1e-15 relative for the normal,
1e-13 for chi-square, 1e-12 for t and F up to 10^4 degrees of freedom (the Hillis ddf of real
studies are 10 to 1000), 1e-9 up to 10^6, where the incomplete beta's continued fraction loses
digits to the rounding of x = df / (df + t^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from radreview.metrics import distributions as dist


def _worst_relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, dtype=float), np.asarray(reference, dtype=float)
    assert ours.shape == reference.shape
    assert np.array_equal(np.isnan(ours), np.isnan(reference))
    finite = np.isfinite(reference)
    assert np.array_equal(ours[~finite], reference[~finite], equal_nan=True)
    scale = np.maximum(np.abs(reference[finite]), np.finfo(float).tiny)
    return float(np.max(np.abs(ours[finite] - reference[finite]) / scale, initial=0.0))


def test_normal_cdf_sf_and_quantile_match_scipy() -> None:
    # Far out, both lose ~2e-13 to the rounding of x / sqrt(2) (checked against mpmath);
    # beyond 37 scipy's sf underflows to 0 before ours.
    for x, tolerance in ((np.linspace(-6.0, 6.0, 601), 1e-14), (np.linspace(-37.0, 37.0, 1481), 1e-12)):
        assert _worst_relative_error(dist.normal_sf(x), stats.norm.sf(x)) < tolerance
        assert _worst_relative_error(dist.normal_cdf(x), stats.norm.cdf(x)) < tolerance
    p = np.r_[0.0, np.logspace(-300, -1, 300), np.linspace(0.01, 0.99, 99), 1 - np.logspace(-16, -1, 100), 1.0]
    assert _worst_relative_error(dist.normal_ppf(p), stats.norm.ppf(p)) < 5e-15
    assert dist.normal_ppf(0.0) == -math.inf and dist.normal_ppf(1.0) == math.inf
    assert math.isnan(dist.normal_ppf(1.5)) and math.isnan(dist.normal_ppf(-0.1))
    assert dist.normal_ppf(0.975) == pytest.approx(1.959963984540054, rel=1e-15)
    assert isinstance(dist.normal_ppf(0.5), float) and dist.normal_ppf(np.array([0.5])).shape == (1,)


@pytest.mark.parametrize("df", [0.5, 1, 2, 3, 4.7, 10, 33.3, 100, 1000.5])
def test_chi2_sf_matches_scipy(df: float) -> None:
    x = np.r_[0.0, np.logspace(-3, 3.3, 300)]
    reference = stats.chi2.sf(x, df)
    keep = reference > 1e-290
    ours = [dist.chi2_sf(float(v), df) for v in x[keep]]
    assert _worst_relative_error(ours, reference[keep]) < 1e-12
    assert dist.chi2_sf(-1.0, df) == 1.0 and math.isnan(dist.chi2_sf(1.0, 0))


@pytest.mark.parametrize(("df", "tolerance"), [
    (0.5, 1e-13), (1, 1e-13), (2, 1e-13), (5, 1e-13), (17.25, 1e-13), (100, 1e-12), (1000.5, 1e-12),
    (1e4, 1e-11), (1e6, 1e-9), (math.inf, 1e-14),
])
def test_t_tail_and_quantile_match_scipy(df: float, tolerance: float) -> None:
    t = np.r_[-np.logspace(2, -3, 60), 0.0, np.logspace(-3, 2.5, 200)]
    reference = stats.t.sf(t, df)
    keep = reference > 1e-290
    assert _worst_relative_error([dist.t_sf(float(v), df) for v in t[keep]], reference[keep]) < tolerance
    p = np.array([1e-6, 0.001, 0.025, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.975, 0.99, 0.9995, 1 - 1e-6])
    assert _worst_relative_error([dist.t_ppf(float(q), df) for q in p], stats.t.ppf(p, df)) < tolerance
    assert dist.t_ppf(0.0, df) == -math.inf and dist.t_ppf(1.0, df) == math.inf
    assert math.isnan(dist.t_ppf(0.5, 0.0)) and math.isnan(dist.t_sf(1.0, -1.0))


@pytest.mark.parametrize("dfn", [0.5, 1, 2, 3, 10, 50])
def test_f_sf_matches_scipy(dfn: float) -> None:
    f = np.r_[0.0, np.logspace(-3, 3, 120)]
    for dfd, tolerance in ((0.7, 1e-12), (2, 1e-12), (12.3, 1e-12), (100, 1e-12), (1e4, 1e-11), (1e6, 1e-9)):
        reference = stats.f.sf(f, dfn, dfd)
        keep = reference > 1e-290
        ours = [dist.f_sf(float(v), dfn, dfd) for v in f[keep]]
        assert _worst_relative_error(ours, reference[keep]) < tolerance, dfd
    # An infinite denominator df is the chi-square limit (the MRMC fixed-readers test uses it).
    assert dist.f_sf(2.5, dfn, math.inf) == pytest.approx(stats.chi2.sf(2.5 * dfn, dfn), rel=1e-12)


def test_binomial_two_sided_half_matches_scipys_binomtest() -> None:
    ours, reference = [], []
    cases = [(k, n) for n in range(1, 31) for k in range(n + 1)]
    cases += [(k, n) for n in (101, 500) for k in (0, 1, 7, n // 3, n // 2, n // 2 + 1, n - 2, n)]
    for k, n in cases:
        ours.append(dist.binomial_two_sided_half(k, n))
        reference.append(stats.binomtest(k, n, 0.5).pvalue)
    assert _worst_relative_error(ours, reference) < 1e-13
    assert dist.binomial_two_sided_half(0, 0) == 1.0
    assert dist.binomial_two_sided_half(0, 1075) > 0.0  # exact integers: no underflow to 0 in 2^-n
    with pytest.raises(ValueError, match="0 <= k <= n"):
        dist.binomial_two_sided_half(5, 3)


def test_average_ranks_equal_scipys_rankdata_exactly() -> None:
    rng = np.random.default_rng(3)
    tied = rng.integers(0, 6, size=(4, 57)).astype(float)
    distinct = rng.normal(size=(3, 40))
    for values in (tied, distinct):
        for axis in (0, 1, -1):
            assert np.array_equal(dist.average_ranks(values, axis=axis), stats.rankdata(values, axis=axis))
    assert np.array_equal(dist.average_ranks(tied[0]), stats.rankdata(tied[0]))
    assert dist.average_ranks(np.array([])).shape == (0,)


@pytest.mark.parametrize("p, a, b", [(0.025, 1, 10), (0.975, 3, 2), (0.5, 0.5, 0.5), (1e-6, 20, 300), (0.9, 200, 7)])
def test_beta_quantile_matches_scipy(p, a, b):
    from scipy.stats import beta

    from radreview.metrics.distributions import beta_ppf

    assert beta_ppf(p, a, b) == pytest.approx(float(beta.ppf(p, a, b)), rel=1e-10, abs=1e-14)
