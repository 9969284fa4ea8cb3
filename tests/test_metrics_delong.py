"""DeLong variance, covariance, CIs and tests.

References: the placement-value formula of DeLong et al. (1988) written out by brute force
here (O(m n), independent of the mid-rank code under test); scikit-learn for the AUCs; the
Hanley & McNeil (1982) CT rating data for a published AUC. The covariance matrix is also
checked against MRMCaov's published DeLong figures in test_metrics_mrmc.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from radreview.metrics import (
    auc_ci,
    delong_covariance,
    delong_global_test,
    delong_test,
    delong_test_unpaired,
    delong_variance,
    placement_values,
)


def _brute_force(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """V10, V01, AUCs and covariance straight from DeLong et al. (1988), eqs. (2)-(4)."""
    x_all, y_all = scores[:, y == 1], scores[:, y == 0]
    k, m, n = scores.shape[0], x_all.shape[1], y_all.shape[1]
    psi = np.zeros((k, m, n))
    for r in range(k):
        for i in range(m):
            for j in range(n):
                a, b = x_all[r, i], y_all[r, j]
                psi[r, i, j] = 1.0 if a > b else (0.5 if a == b else 0.0)
    v10 = psi.mean(axis=2)
    v01 = psi.mean(axis=1)
    theta = psi.mean(axis=(1, 2))
    s10 = np.array([[((v10[a] - theta[a]) * (v10[b] - theta[b])).sum() / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[((v01[a] - theta[a]) * (v01[b] - theta[b])).sum() / (n - 1) for b in range(k)] for a in range(k)])
    return v10, v01, theta, s10 / m + s01 / n


def _correlated(seed: int, n: int, k: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    common = rng.normal(size=n)
    scores = np.array([common + rng.normal(size=n) + (0.6 + 0.3 * r) * y for r in range(k)])
    if tied:
        scores = np.clip(np.round(scores), -2, 2)  # five-point-scale-like ties
    return y, scores


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_placement_values(seed: int, tied: bool) -> None:
    y, scores = _correlated(seed, 70, 3, tied)
    v10, v01, theta, cov = _brute_force(y, scores)
    pv = placement_values(y, scores)
    np.testing.assert_allclose(pv.v10, v10, atol=1e-12)
    np.testing.assert_allclose(pv.v01, v01, atol=1e-12)
    aucs, got_cov = delong_covariance(y, scores)
    np.testing.assert_allclose(aucs, theta, atol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, s) for s in scores], atol=1e-12)
    np.testing.assert_allclose(got_cov, cov, rtol=1e-10, atol=1e-15)
    assert delong_variance(y, scores[0]) == pytest.approx(cov[0, 0], rel=1e-10)


def test_hanley_mcneil_ct_example() -> None:
    # Hanley & McNeil (1982) Radiology 143:29-36, Table 1: 109 CT images rated 1-5.
    normal = [33, 6, 6, 11, 2]
    abnormal = [3, 2, 2, 11, 33]
    ratings = np.repeat(np.arange(1, 6), normal).tolist() + np.repeat(np.arange(1, 6), abnormal).tolist()
    truth = [0] * sum(normal) + [1] * sum(abnormal)
    ci = auc_ci(truth, ratings)
    assert ci.auc == pytest.approx(0.893, abs=5e-4)  # the published area
    # Their exponential-approximation SE is 0.032; DeLong's nonparametric SE is close to it.
    assert ci.se == pytest.approx(0.032, abs=0.003)
    assert (ci.n_positive, ci.n_negative) == (51, 58)


def test_ci_methods() -> None:
    y, scores = _correlated(4, 120, 1, False)
    var = delong_variance(y, scores[0])
    wald = auc_ci(y, scores[0])
    z = norm.ppf(0.975)
    assert (wald.lower, wald.upper) == pytest.approx((wald.auc - z * math.sqrt(var), wald.auc + z * math.sqrt(var)))
    logit = auc_ci(y, scores[0], method="logit")
    lo, hi = (math.log(wald.auc / (1 - wald.auc)) + s * z * math.sqrt(var) / (wald.auc * (1 - wald.auc)) for s in (-1, 1))
    assert (logit.lower, logit.upper) == pytest.approx((1 / (1 + math.exp(-lo)), 1 / (1 + math.exp(-hi))))
    assert 0 < logit.lower < logit.auc < logit.upper < 1
    # Near-perfect separation: the Wald interval is clipped at 1, the logit one stays below.
    y2 = np.r_[np.zeros(30), np.ones(30)]
    s2 = np.r_[np.arange(30), np.arange(29, 59)]
    assert auc_ci(y2, s2).upper == 1.0
    assert auc_ci(y2, s2, method="logit").upper < 1.0
    with pytest.raises(ValueError, match="unknown CI method"):
        auc_ci(y2, s2, method="exact")


def test_paired_test_formula_and_symmetry() -> None:
    y, scores = _correlated(7, 150, 2, False)
    _, _, theta, cov = _brute_force(y, scores)
    res = delong_test(y, scores[0], scores[1])
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert res.difference == pytest.approx(theta[0] - theta[1])
    assert res.se == pytest.approx(se)
    assert res.z == pytest.approx((theta[0] - theta[1]) / se)
    assert res.p_value == pytest.approx(2 * norm.sf(abs(res.z)))
    assert res.correlation == pytest.approx(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]))
    flipped = delong_test(y, scores[1], scores[0])
    assert flipped.z == pytest.approx(-res.z) and flipped.p_value == pytest.approx(res.p_value)
    # Two identical score vectors: no difference, p = 1.
    same = delong_test(y, scores[0], scores[0])
    assert (same.difference, same.p_value) == (0.0, 1.0)
    # With two vectors the global chi-square is the squared paired z.
    glob = delong_global_test(y, scores)
    assert (glob.df, glob.chi2) == (1, pytest.approx(res.z**2))
    assert glob.p_value == pytest.approx(res.p_value)


def test_unpaired_test() -> None:
    y1, s1 = _correlated(8, 100, 1, False)
    y2, s2 = _correlated(9, 80, 1, False)
    res = delong_test_unpaired(y1, s1[0], y2, s2[0])
    assert res.se == pytest.approx(math.sqrt(delong_variance(y1, s1[0]) + delong_variance(y2, s2[0])))
    assert res.correlation == 0.0


def test_size_of_the_paired_test_under_the_null() -> None:
    # Two exchangeable markers: the 5% test should reject about 5% of the time.
    rng = np.random.default_rng(11)
    rejections = 0
    trials = 400
    for _ in range(trials):
        y = np.r_[np.zeros(60), np.ones(40)].astype(int)
        common = rng.normal(size=100) + y
        a = common + rng.normal(size=100)
        b = common + rng.normal(size=100)
        rejections += delong_test(y, a, b).p_value < 0.05
    assert 0.02 <= rejections / trials <= 0.09
