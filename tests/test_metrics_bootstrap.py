"""Bootstrap CIs: reproducible, stratified, and in agreement with scipy.stats.bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from radreview.metrics import bootstrap_ci, bootstrap_indices, roc_auc


def _skewed(seed: int = 0, n: int = 60) -> np.ndarray:
    return np.random.default_rng(seed).exponential(size=n)


@pytest.mark.parametrize("method", ["percentile", "basic", "bca"])
def test_agrees_with_scipy(method: str) -> None:
    # Different random streams, so agreement is up to Monte Carlo error: with 20,000
    # resamples the endpoints of a CI of the mean agree to a small fraction of its width.
    x = _skewed()
    ours = bootstrap_ci(np.mean, x, n_resamples=20_000, method=method, seed=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=20_000, method=method, rng=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert ours.lower == pytest.approx(ref.low, abs=0.03 * width)
    assert ours.upper == pytest.approx(ref.high, abs=0.03 * width)


def test_bca_shifts_towards_skew() -> None:
    # For a right-skewed statistic BCa moves both ends up relative to the percentile interval.
    x = _skewed(3, 40)
    pct = bootstrap_ci(np.var, x, n_resamples=4000, seed=0)
    bca = bootstrap_ci(np.var, x, n_resamples=4000, seed=0, method="bca")
    assert bca.upper > pct.upper and bca.lower > pct.lower


def test_seeded_and_reproducible() -> None:
    x = _skewed()
    a = bootstrap_ci(np.median, x, n_resamples=500, seed=7)
    b = bootstrap_ci(np.median, x, n_resamples=500, seed=7)
    c = bootstrap_ci(np.median, x, n_resamples=500, seed=8)
    assert (a.lower, a.upper) == (b.lower, b.upper)
    assert (a.lower, a.upper) != (c.lower, c.upper)
    assert a.to_dict()["seed"] == 7


def test_stratified_keeps_class_counts_and_pairs() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(5, int), np.zeros(95, int)]  # rare positives: unstratified resamples can lose them all
    idx = bootstrap_indices(100, 200, rng, strata=y)
    assert (y[idx].sum(axis=1) == 5).all()
    s = rng.normal(size=100) + y
    res = bootstrap_ci(roc_auc, y, s, strata=y, n_resamples=300, seed=0)
    assert res.n_failed == 0
    assert res.lower <= res.estimate <= res.upper
    assert res.estimate == roc_auc(y, s)


def test_failed_resamples_are_counted() -> None:
    y = np.r_[np.ones(2, int), np.zeros(18, int)]
    s = np.linspace(0, 1, 20)
    res = bootstrap_ci(roc_auc, y, s, n_resamples=400, seed=0)
    assert res.n_failed > 0  # resamples without a positive case
    assert res.distribution.size == 400 - res.n_failed


def test_paired_arrays_resampled_together() -> None:
    x = np.arange(50.0)
    res = bootstrap_ci(lambda a, b: float(np.mean(a - b)), x, x.copy(), n_resamples=200, seed=0)
    assert res.lower == res.upper == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="same number of cases"):
        bootstrap_ci(np.mean, np.arange(3), np.arange(4))
    with pytest.raises(ValueError, match="unknown bootstrap method"):
        bootstrap_ci(np.mean, np.arange(3), method="studentized")
