"""Calibration of predicted probabilities: reliability curve, ECE and Brier score.

* Reliability curve (reliability diagram; DeGroot & Fienberg 1983): cases binned by
  predicted probability; per bin the mean prediction, the observed fraction of positives and
  the count. Bins as scikit-learn's ``calibration_curve``: ``uniform`` = equal widths on
  [0, 1], ``quantile`` = equal counts; a probability on an inner edge falls in the lower bin.
* Expected calibration error (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017):
  ECE = sum_b (n_b / N) |fraction_positive_b - mean_predicted_b|.
* Brier score (Brier 1950): mean (p - y)^2.
* Recalibration of a binary classifier's logits z, fitted by maximum likelihood on held-out
  data: temperature scaling (Guo et al. 2017), p = sigmoid(z / T), which keeps the ranking and
  the 0.5 point; and Platt scaling (Platt 1999), p = sigmoid(a z + b), which also moves the
  base rate (what a loss with ``pos_weight`` distorts). Platt's targets are smoothed
  ((n+ + 1)/(n+ + 2), 1/(n- + 2)) so that a separable validation split cannot drive a to infinity.
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


@dataclass(frozen=True)
class LogitCalibration(DictMixin):
    """p = sigmoid(scale * logit + offset); temperature scaling has offset 0 and scale 1/T."""

    method: str  # "temperature" | "platt" | "identity"
    scale: float
    offset: float
    n: int
    n_pos: int
    nll_before: float
    nll_after: float

    def apply(self, logits: ArrayLike) -> np.ndarray:
        return self.scale * np.asarray(logits, dtype=np.float64) + self.offset


def _nll(z: np.ndarray, t: np.ndarray) -> float:
    # mean binary cross-entropy of sigmoid(z) against soft targets t, computed stably
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def _newton_fit(logits: np.ndarray, targets: np.ndarray, with_offset: bool, max_iter: int = 100) -> tuple[float, float]:
    """Maximum-likelihood (scale, offset) by damped Newton steps on the mean NLL."""
    scale, offset = 1.0, 0.0
    for _ in range(max_iter):
        z = scale * logits + offset
        p = 1.0 / (1.0 + np.exp(-z))
        r = p - targets
        w = p * (1 - p)
        grad = np.array([np.mean(r * logits), np.mean(r)])
        hess = np.array([[np.mean(w * logits * logits), np.mean(w * logits)], [np.mean(w * logits), np.mean(w)]])
        if not with_offset:
            grad, hess = grad[:1], hess[:1, :1]
        hess = hess + np.eye(len(grad)) * 1e-9
        step = np.linalg.solve(hess, grad)
        current = _nll(z, targets)
        damping = 1.0
        while damping > 1e-6:  # backtrack until the likelihood improves
            new_scale = scale - damping * step[0]
            new_offset = offset - damping * step[1] if with_offset else 0.0
            if _nll(new_scale * logits + new_offset, targets) <= current + 1e-12:
                break
            damping /= 2
        if damping <= 1e-6:
            break
        scale, offset = new_scale, new_offset
        if np.max(np.abs(damping * step)) < 1e-10:
            break
    return float(scale), float(offset)


def fit_logit_calibration(y_true: ArrayLike, logits: ArrayLike, method: str = "platt") -> LogitCalibration:
    """Fit temperature or Platt scaling to held-out ``logits`` and 0/1 ``y_true``.

    Needs both classes. ``scale`` is kept positive (a recalibration must not reverse the ranking);
    should the fit want otherwise (no signal at all), it falls back to the identity.
    """
    y = binary_truth(y_true).astype(np.float64)
    z = np.asarray(logits, dtype=np.float64)
    if z.shape != y.shape:
        raise ValueError(f"logits must have one value per case ({y.shape[0]}), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    n_pos = int(y.sum())
    n_neg = int(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("calibration needs positive and negative cases")
    if method == "temperature":
        targets = y
        scale, offset = _newton_fit(z, targets, with_offset=False)
    elif method == "platt":
        targets = np.where(y > 0.5, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        scale, offset = _newton_fit(z, targets, with_offset=True)
    else:
        raise ValueError(f"unknown calibration method {method!r}; use 'temperature' or 'platt'")
    before = _nll(z, y)
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(offset)):
        return LogitCalibration("identity", 1.0, 0.0, len(y), n_pos, before, before)
    return LogitCalibration(method, scale, offset, len(y), n_pos, before, _nll(scale * z + offset, y))
