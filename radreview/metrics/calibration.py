"""Calibration of predicted probabilities: reliability curve, ECE and Brier score.

* Reliability curve (reliability diagram; DeGroot & Fienberg 1983): cases binned by
  predicted probability; per bin the mean prediction, the observed fraction of positives and
  the count. Bins as scikit-learn's ``calibration_curve``: ``uniform`` = equal widths on
  [0, 1], ``quantile`` = equal counts; a probability on an inner edge falls in the lower bin.
* Expected calibration error (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017):
  ECE = sum_b (n_b / N) |fraction_positive_b - mean_predicted_b|.
* Brier score (Brier 1950): mean (p - y)^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics._serialize import DictMixin
from radreview.metrics._validation import binary_truth


@dataclass(frozen=True)
class ReliabilityCurve(DictMixin):
    """Non-empty bins only (like scikit-learn); ``bin_edges`` has all ``n_bins + 1`` edges."""

    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    counts: np.ndarray
    bin_edges: np.ndarray
    bin_index: np.ndarray  # which of the n_bins each returned bin is
    strategy: str


def _probabilities(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = binary_truth(y_true)
    p = np.asarray(y_prob, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"probabilities must have one value per case ({y.shape[0]}), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min(initial=0.0) < 0.0 or p.max(initial=0.0) > 1.0:
        raise ValueError("probabilities must be finite and lie in [0, 1]")
    if y.shape[0] == 0:
        raise ValueError("calibration needs at least one case")
    return y, p


def reliability_curve(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform") -> ReliabilityCurve:
    """Per-bin mean predicted probability, fraction of positives and count."""
    y, p = _probabilities(y_true, y_prob)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    else:
        raise ValueError(f"unknown binning strategy {strategy!r}; use 'uniform' or 'quantile'")
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=n_bins)
    sums = np.bincount(ids, weights=p, minlength=n_bins)
    positives = np.bincount(ids, weights=y.astype(np.float64), minlength=n_bins)
    used = np.flatnonzero(counts)
    return ReliabilityCurve(
        mean_predicted=sums[used] / counts[used],
        fraction_positive=positives[used] / counts[used],
        counts=counts[used],
        bin_edges=edges,
        bin_index=used,
        strategy=strategy,
    )


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform") -> float:
    """Count-weighted mean absolute gap between observed and predicted per bin."""
    curve = reliability_curve(y_true, y_prob, n_bins, strategy)
    weights = curve.counts / curve.counts.sum()
    return float((weights * np.abs(curve.fraction_positive - curve.mean_predicted)).sum())


def maximum_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "uniform") -> float:
    """Largest per-bin gap (Naeini et al. 2015)."""
    curve = reliability_curve(y_true, y_prob, n_bins, strategy)
    return float(np.abs(curve.fraction_positive - curve.mean_predicted).max())


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    y, p = _probabilities(y_true, y_prob)
    return float(np.mean((p - y) ** 2))
