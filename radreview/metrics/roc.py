"""Empirical ROC curve and area under it.

The curve follows scikit-learn's ``roc_curve(..., drop_intermediate=False)``: one point per
distinct score, a case is called positive when ``score >= threshold``, tied scores move
the curve diagonally, and a first point (0, 0) with threshold ``+inf`` is prepended.

The AUC is the Mann-Whitney (Wilcoxon) statistic, equal to the trapezoidal area under the
empirical curve (Bamber 1975; Hanley & McNeil 1982):

    AUC = 1/(m n) * sum_i sum_j psi(X_i, Y_j),  psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise,

with X the m positive-case scores and Y the n negative-case scores. It is computed from
mid-ranks in O(N log N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics._serialize import DictMixin
from radreview.metrics.distributions import average_ranks
from radreview.metrics._validation import binary_truth, both_classes, scores_like


@dataclass(frozen=True)
class RocCurve(DictMixin):
    """Points of an empirical ROC curve, thresholds decreasing (first is ``+inf``)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_positive: int
    n_negative: int


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> RocCurve:
    """Empirical ROC curve; ``y_true`` is 0/1 (1 = diseased), higher score = more suspicious."""
    y = binary_truth(y_true)
    s = scores_like(scores, y.shape[0])
    n_pos, n_neg = both_classes(y, what="a ROC curve")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # The last index of each run of equal scores: the curve moves once per distinct score.
    last_of_run = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.shape[0] - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    return RocCurve(
        fpr=np.r_[0.0, fps / n_neg],
        tpr=np.r_[0.0, tps / n_pos],
        thresholds=np.r_[np.inf, s_sorted[last_of_run]],
        n_positive=n_pos,
        n_negative=n_neg,
    )


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Empirical (Mann-Whitney) AUC; ties between a positive and a negative count 1/2."""
    y = binary_truth(y_true)
    s = scores_like(scores, y.shape[0])
    n_pos, n_neg = both_classes(y)
    ranks = average_ranks(s)  # mid-ranks give ties half credit
    rank_sum = float(ranks[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
