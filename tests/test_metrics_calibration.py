"""Calibration against scikit-learn's calibration_curve and brier_score_loss."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from radreview.metrics import brier_score, expected_calibration_error, maximum_calibration_error, reliability_curve


def _data(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 1.3, n)
    y = (rng.random(n) < p**1.3).astype(int)
    return y, p


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [5, 10, 15])
@pytest.mark.parametrize("seed", range(3))
def test_reliability_curve_matches_sklearn(seed: int, n_bins: int, strategy: str) -> None:
    y, p = _data(seed)
    curve = reliability_curve(y, p, n_bins, strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    np.testing.assert_allclose(curve.fraction_positive, prob_true, atol=1e-12)
    np.testing.assert_allclose(curve.mean_predicted, prob_pred, atol=1e-12)
    assert curve.counts.sum() == y.size


def test_edges_and_empty_bins_like_sklearn() -> None:
    # Values exactly on inner edges, and an empty bin.
    p = np.array([0.0, 0.2, 0.4, 0.4, 0.8, 1.0, 1.0])
    y = np.array([0, 0, 1, 0, 1, 1, 1])
    curve = reliability_curve(y, p, n_bins=5)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=5)
    np.testing.assert_allclose(curve.fraction_positive, prob_true)
    np.testing.assert_allclose(curve.mean_predicted, prob_pred)
    assert curve.bin_index.tolist() == [0, 1, 3, 4]


def test_ece_by_hand() -> None:
    y, p = _data(5)
    edges = np.linspace(0, 1, 11)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (p > lo) & (p <= hi) if lo > 0 else (p >= lo) & (p <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(y[in_bin].mean() - p[in_bin].mean())
    assert expected_calibration_error(y, p) == pytest.approx(ece, abs=1e-12)
    assert maximum_calibration_error(y, p) >= expected_calibration_error(y, p)


def test_perfect_calibration_has_small_ece() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01


@pytest.mark.parametrize("seed", range(3))
def test_brier_matches_sklearn(seed: int) -> None:
    y, p = _data(seed)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)


def test_bad_probabilities() -> None:
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        brier_score([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError, match="unknown binning strategy"):
        reliability_curve([0, 1], [0.2, 0.8], strategy="equal")
