"""Bootstrap confidence intervals for any statistic of paired per-case arrays.

Cases (rows) are resampled with replacement, jointly across the arrays given, so paired
data stay paired (Efron & Tibshirani 1993, ch. 6). ``strata`` resamples within each stratum
separately (e.g. ``strata=y_true`` keeps the numbers of positives and negatives fixed, so
that every resample has both classes for an AUC).

Intervals (Efron & Tibshirani 1993, ch. 13-14):

* ``percentile``: the alpha/2 and 1 - alpha/2 quantiles of the bootstrap distribution;
* ``basic``: 2 theta_hat minus those quantiles (reversed);
* ``bca``: bias-corrected and accelerated. z0 = Phi^-1(#{theta* < theta_hat} / B) (ties count
  half), acceleration a = sum(d^3) / (6 (sum d^2)^(3/2)) with d = mean(theta_(i)) - theta_(i)
  from the leave-one-case-out jackknife, and the quantile levels
  Phi(z0 + (z0 + z_q) / (1 - a (z0 + z_q))) for z_q = Phi^-1(alpha/2), Phi^-1(1 - alpha/2).

Quantiles are interpolated linearly (numpy's default), as ``scipy.stats.bootstrap`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics._serialize import DictMixin
from radreview.metrics.distributions import normal_cdf, normal_ppf

Statistic = Callable[..., float]


@dataclass(frozen=True)
class BootstrapResult(DictMixin):
    estimate: float  # the statistic on the original data
    lower: float
    upper: float
    se: float  # standard deviation of the bootstrap distribution
    confidence: float
    method: str
    n_resamples: int
    n_failed: int  # resamples where the statistic was not finite (left out)
    seed: int | None
    distribution: np.ndarray  # the finite bootstrap replicates

    def to_dict(self) -> dict:
        """All but the replicates themselves (keep a JSON small)."""
        d = super().to_dict()
        del d["distribution"]
        return d


def bootstrap_indices(n: int, n_resamples: int, rng: np.random.Generator, strata: ArrayLike | None = None) -> np.ndarray:
    """Resampled case indices, shape (n_resamples, n); within each stratum when given."""
    if strata is None:
        return rng.integers(0, n, size=(n_resamples, n))
    labels = np.asarray(strata)
    if labels.shape != (n,):
        raise ValueError(f"strata must have one label per case ({n}), got shape {labels.shape}")
    out = np.empty((n_resamples, n), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        out[:, members] = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
    return out


def bootstrap_ci(
    statistic: Statistic,
    *data: ArrayLike,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
    seed: int | None = 0,
    strata: ArrayLike | None = None,
) -> BootstrapResult:
    """Bootstrap CI of ``statistic(*data)``; each array in ``data`` has one entry (row) per case.

    Example: ``bootstrap_ci(roc_auc, y, scores, strata=y, method="bca")``.
    Resamples where the statistic raises ``ValueError`` or is not finite are dropped and counted.
    """
    if not data:
        raise ValueError("bootstrap_ci needs at least one data array")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if method not in ("percentile", "basic", "bca"):
        raise ValueError(f"unknown bootstrap method {method!r}; use 'percentile', 'basic' or 'bca'")
    if n_resamples < 2:
        raise ValueError("n_resamples must be at least 2")
    arrays = [np.asarray(a) for a in data]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("all data arrays must have the same number of cases (first dimension)")
    estimate = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    replicates = np.array([_safe(statistic, [a[idx] for a in arrays]) for idx in bootstrap_indices(n, n_resamples, rng, strata)])
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 2:
        raise ValueError("the statistic could not be computed on the bootstrap resamples (too few cases of a class?)")
    alpha = 1.0 - confidence
    levels = np.array([alpha / 2.0, 1.0 - alpha / 2.0])
    if method == "bca":
        levels = _bca_levels(statistic, arrays, finite, estimate, levels)
    lower, upper = (float(v) for v in np.quantile(finite, levels))
    if method == "basic":
        lower, upper = 2.0 * estimate - upper, 2.0 * estimate - lower
    return BootstrapResult(
        estimate=estimate,
        lower=lower,
        upper=upper,
        se=float(finite.std(ddof=1)),
        confidence=confidence,
        method=method,
        n_resamples=n_resamples,
        n_failed=int(replicates.size - finite.size),
        seed=seed,
        distribution=finite,
    )


def _safe(statistic: Statistic, arrays: list[np.ndarray]) -> float:
    try:
        return float(statistic(*arrays))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return math.nan


def _bca_levels(statistic: Statistic, arrays: list[np.ndarray], replicates: np.ndarray, estimate: float, levels: np.ndarray) -> np.ndarray:
    below = np.count_nonzero(replicates < estimate) + 0.5 * np.count_nonzero(replicates == estimate)
    z0 = normal_ppf(below / replicates.size)
    n = arrays[0].shape[0]
    keep = np.ones(n, dtype=bool)
    jack = np.empty(n)
    for i in range(n):
        keep[i] = False
        jack[i] = _safe(statistic, [a[keep] for a in arrays])
        keep[i] = True
    jack = jack[np.isfinite(jack)]
    d = jack.mean() - jack
    denom = 6.0 * float((d**2).sum()) ** 1.5
    accel = float((d**3).sum()) / denom if denom > 0 else 0.0
    if not math.isfinite(z0):
        # Every replicate on one side of the estimate: BCa is undefined; fall back to percentile.
        return levels
    zq = normal_ppf(levels)
    return normal_cdf(z0 + (z0 + zq) / (1.0 - accel * (z0 + zq)))
