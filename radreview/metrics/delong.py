"""DeLong's nonparametric variance and covariance of empirical AUCs, CIs and tests.

DeLong ER, DeLong DM, Clarke-Pearson DL (1988). Comparing the areas under two or more
correlated receiver operating characteristic curves: a nonparametric approach.
Biometrics 44:837-845. Computed with the mid-rank algorithm of Sun X, Xu W (2014), Fast
implementation of DeLong's algorithm for comparing the areas under correlated receiver
operating characteristic curves, IEEE Signal Process Lett 21:1389-1393, in O(N log N).

For modality (or reader, or model) r with m positive-case scores X and n negative-case scores Y,
the structural components (placement values) are

    V10_r(X_i) = 1/n sum_j psi(X_i, Y_j)      V01_r(Y_j) = 1/m sum_i psi(X_i, Y_j)

so that AUC_r = mean(V10_r) = mean(V01_r). With S10 and S01 the sample covariance matrices
(denominators m-1 and n-1) of the V10 and V01 vectors across modalities,

    Cov(AUC) = S10 / m + S01 / n.

All scores must be for the same cases (paired design), as in a reader study or when two
models are scored on the same test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics._validation import binary_truth, both_classes
from radreview.metrics._serialize import DictMixin
from radreview.metrics.distributions import average_ranks, chi2_sf, normal_ppf, normal_sf


@dataclass(frozen=True)
class PlacementValues(DictMixin):
    """DeLong structural components for K score vectors on the same cases."""

    v10: np.ndarray  # (K, m): one row per score vector, one column per positive case
    v01: np.ndarray  # (K, n): one row per score vector, one column per negative case

    @property
    def aucs(self) -> np.ndarray:
        return self.v10.mean(axis=1)


@dataclass(frozen=True)
class AucInterval(DictMixin):
    """An AUC with its DeLong standard error and confidence interval."""

    auc: float
    se: float
    lower: float
    upper: float
    confidence: float
    method: str  # "delong" (Wald, clipped to [0, 1]) or "logit"
    n_positive: int
    n_negative: int



@dataclass(frozen=True)
class DeLongTest(DictMixin):
    """Paired (or unpaired) DeLong test of AUC_a = AUC_b."""

    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    se: float
    z: float
    p_value: float  # two-sided
    lower: float  # CI of the difference
    upper: float
    confidence: float
    correlation: float  # of the two AUC estimates (0 when unpaired)



def _score_matrix(y: np.ndarray, scores: ArrayLike) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] != y.shape[0]:
        raise ValueError(f"scores must have shape (K, {y.shape[0]}) or ({y.shape[0]},), got {np.shape(scores)}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return s


def placement_values(y_true: ArrayLike, scores: ArrayLike) -> PlacementValues:
    """DeLong structural components of one (N,) or several (K, N) score vectors."""
    y = binary_truth(y_true)
    m, n = both_classes(y)
    s = _score_matrix(y, scores)
    pos, neg = s[:, y], s[:, ~y]
    # Sun & Xu: mid-ranks within each class and in the pooled sample; their differences count
    # the cases of the other class below (ties 1/2).
    rank_all = average_ranks(s, axis=1)
    rank_pos = average_ranks(pos, axis=1)
    rank_neg = average_ranks(neg, axis=1)
    v10 = (rank_all[:, y] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, ~y] - rank_neg) / m
    return PlacementValues(v10=v10, v01=v01)


def delong_covariance(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (K,) and their DeLong covariance matrix (K, K) for score vectors on the same cases."""
    pv = placement_values(y_true, scores)
    m, n = pv.v10.shape[1], pv.v01.shape[1]
    s10 = np.atleast_2d(np.cov(pv.v10)) if m > 1 else np.zeros((pv.v10.shape[0],) * 2)
    s01 = np.atleast_2d(np.cov(pv.v01)) if n > 1 else np.zeros((pv.v01.shape[0],) * 2)
    return pv.aucs, s10 / m + s01 / n


def delong_variance(y_true: ArrayLike, scores: ArrayLike) -> float:
    """DeLong variance of one empirical AUC."""
    _, cov = delong_covariance(y_true, scores)
    if cov.shape != (1, 1):
        raise ValueError("delong_variance takes one score vector; use delong_covariance for several")
    return float(cov[0, 0])


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return normal_ppf(0.5 + confidence / 2.0)


def auc_ci(y_true: ArrayLike, scores: ArrayLike, confidence: float = 0.95, method: str = "delong") -> AucInterval:
    """AUC with a DeLong CI.

    ``method="delong"``: AUC +/- z * SE, clipped to [0, 1] (as pROC's ``ci.auc``).
    ``method="logit"``: the interval for logit(AUC) with SE / (AUC (1 - AUC)) by the delta
    method, mapped back (Pepe 2003, sec. 5.2.3); it stays inside (0, 1) and behaves better
    near 1. An AUC of exactly 0 or 1 gives the degenerate interval [AUC, AUC].
    """
    z = _z(confidence)
    y = binary_truth(y_true)
    m, n = both_classes(y)
    aucs, cov = delong_covariance(y, scores)
    auc, se = float(aucs[0]), math.sqrt(max(float(cov[0, 0]), 0.0))
    if method == "delong":
        lower, upper = max(0.0, auc - z * se), min(1.0, auc + z * se)
    elif method == "logit":
        if auc in (0.0, 1.0):
            lower = upper = auc
        else:
            centre = math.log(auc / (1.0 - auc))
            half = z * se / (auc * (1.0 - auc))
            lower, upper = _expit(centre - half), _expit(centre + half)
    else:
        raise ValueError(f"unknown CI method {method!r}; use 'delong' or 'logit'")
    return AucInterval(auc, se, lower, upper, confidence, method, m, n)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def delong_test(y_true: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, confidence: float = 0.95) -> DeLongTest:
    """Paired DeLong test for two correlated AUCs (two score vectors on the same cases)."""
    y = binary_truth(y_true)
    aucs, cov = delong_covariance(y, np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)]))
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    denom = math.sqrt(cov[0, 0] * cov[1, 1])
    corr = float(cov[0, 1] / denom) if denom > 0 else math.nan
    return _difference_test(float(aucs[0]), float(aucs[1]), var, confidence, corr)


def delong_test_unpaired(
    y_true_a: ArrayLike, scores_a: ArrayLike, y_true_b: ArrayLike, scores_b: ArrayLike, confidence: float = 0.95
) -> DeLongTest:
    """DeLong test for two AUCs from independent samples (e.g. internal vs external test set)."""
    aucs_a, cov_a = delong_covariance(y_true_a, scores_a)
    aucs_b, cov_b = delong_covariance(y_true_b, scores_b)
    return _difference_test(float(aucs_a[0]), float(aucs_b[0]), float(cov_a[0, 0] + cov_b[0, 0]), confidence, 0.0)


def _difference_test(auc_a: float, auc_b: float, var: float, confidence: float, corr: float) -> DeLongTest:
    z_crit = _z(confidence)
    diff = auc_a - auc_b
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        z = diff / se
        p = 2.0 * normal_sf(abs(z))
    else:  # identical rankings: no evidence of a difference
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    return DeLongTest(auc_a, auc_b, diff, se, z, p, diff - z_crit * se, diff + z_crit * se, confidence, corr)


@dataclass(frozen=True)
class DeLongGlobalTest(DictMixin):
    """Chi-square test that K correlated AUCs are all equal (DeLong et al. 1988, eq. 5)."""

    aucs: np.ndarray
    chi2: float
    df: int
    p_value: float


def delong_global_test(y_true: ArrayLike, scores: ArrayLike) -> DeLongGlobalTest:
    """Test H0: AUC_1 = ... = AUC_K with contrasts L = [I | -1] and chi2 = (L a)' (L S L')^-1 (L a)."""
    aucs, cov = delong_covariance(y_true, scores)
    k = aucs.shape[0]
    if k < 2:
        raise ValueError("the global test needs at least two score vectors")
    contrasts = np.hstack([np.eye(k - 1), -np.ones((k - 1, 1))])
    d = contrasts @ aucs
    s = contrasts @ cov @ contrasts.T
    df = int(np.linalg.matrix_rank(s))
    stat = float(d @ np.linalg.pinv(s) @ d) if df else 0.0
    return DeLongGlobalTest(aucs, stat, df, chi2_sf(stat, df) if df else 1.0)
