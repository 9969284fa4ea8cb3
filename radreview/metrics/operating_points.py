"""Sensitivity, specificity, PPV and NPV at a threshold, and how to choose the threshold.

A case is called positive when ``score >= threshold`` (the convention of
:func:`radreview.metrics.roc.roc_curve`), so every threshold reported here is one of the
ROC curve's thresholds: an observed score, or ``+inf`` (call nothing positive).

Proportions carry Wilson score intervals (Wilson 1927; recommended over the Wald interval
by Newcombe 1998 and Brown, Cai & DasGupta 2001):

    centre = (p + z^2/(2n)) / (1 + z^2/n)
    half   = z / (1 + z^2/n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

Threshold choice:

* Youden (1950): maximise J = sensitivity + specificity - 1 (ties: the highest threshold).
* fixed sensitivity: the highest threshold whose sensitivity >= target (so the best
  specificity among those reaching the target);
* fixed specificity: the lowest threshold whose specificity >= target (so the best
  sensitivity among those reaching the target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics._validation import binary_truth, scores_like
from radreview.metrics.roc import roc_curve
from radreview.metrics._serialize import DictMixin, json_safe
from radreview.metrics.distributions import normal_ppf


@dataclass(frozen=True)
class Proportion(DictMixin):
    """``successes / n`` with a Wilson score interval (NaN when ``n == 0``)."""

    estimate: float
    lower: float
    upper: float
    successes: int
    n: int



@dataclass(frozen=True)
class ConfusionCounts(DictMixin):
    """The 2x2 table of calls (``score >= threshold``) against the truth."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def table(self) -> np.ndarray:
        """``[[tn, fp], [fn, tp]]``: rows truth (neg, pos), columns call (neg, pos), as scikit-learn."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])



@dataclass(frozen=True)
class OperatingPoint(DictMixin):
    """Diagnostic figures at one threshold, each with a Wilson CI."""

    threshold: float
    counts: ConfusionCounts
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy: Proportion
    confidence: float

    @property
    def youden_j(self) -> float:
        return self.sensitivity.estimate + self.specificity.estimate - 1.0

    def to_dict(self) -> dict:
        return {**super().to_dict(), "youden_j": json_safe(self.youden_j)}


def check_binomial(successes: int, n: int, confidence: float) -> None:
    """Refuse counts and confidence levels no binomial interval can take."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(nan, nan)`` when ``n == 0``."""
    check_binomial(successes, n, confidence)
    if n == 0:
        return math.nan, math.nan
    z = normal_ppf(0.5 + confidence / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # Clamp rounding noise: the exact interval touches 0 (or 1) when p is 0 (or 1).
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int, confidence: float = 0.95) -> Proportion:
    lower, upper = wilson_interval(successes, n, confidence)
    estimate = successes / n if n else math.nan
    return Proportion(estimate, lower, upper, int(successes), int(n))


def confusion_counts(y_true: ArrayLike, scores: ArrayLike, threshold: float) -> ConfusionCounts:
    """Counts of calls ``score >= threshold`` against the truth."""
    y = binary_truth(y_true)
    s = scores_like(scores, y.shape[0])
    called = s >= threshold
    return ConfusionCounts(
        tp=int(np.count_nonzero(called & y)),
        fp=int(np.count_nonzero(called & ~y)),
        tn=int(np.count_nonzero(~called & ~y)),
        fn=int(np.count_nonzero(~called & y)),
    )


def operating_point_from_counts(counts: ConfusionCounts, threshold: float = math.nan, confidence: float = 0.95) -> OperatingPoint:
    """Figures for a 2x2 table (e.g. binary reads that have no score)."""
    c = counts
    return OperatingPoint(
        threshold=float(threshold),
        counts=c,
        sensitivity=proportion(c.tp, c.tp + c.fn, confidence),
        specificity=proportion(c.tn, c.tn + c.fp, confidence),
        ppv=proportion(c.tp, c.tp + c.fp, confidence),
        npv=proportion(c.tn, c.tn + c.fn, confidence),
        accuracy=proportion(c.tp + c.tn, c.n, confidence),
        confidence=confidence,
    )


def operating_point(y_true: ArrayLike, scores: ArrayLike, threshold: float, confidence: float = 0.95) -> OperatingPoint:
    """Sensitivity, specificity, PPV, NPV and accuracy at ``threshold`` with Wilson CIs."""
    return operating_point_from_counts(confusion_counts(y_true, scores, threshold), threshold, confidence)


def youden_threshold(y_true: ArrayLike, scores: ArrayLike, confidence: float = 0.95) -> OperatingPoint:
    """The operating point maximising Youden's J (ties: the highest threshold)."""
    curve = roc_curve(y_true, scores)
    best = int(np.argmax(curve.tpr - curve.fpr))  # argmax takes the first = highest threshold
    return operating_point(y_true, scores, float(curve.thresholds[best]), confidence)


def threshold_for_sensitivity(y_true: ArrayLike, scores: ArrayLike, target: float, confidence: float = 0.95) -> OperatingPoint:
    """The highest threshold whose sensitivity reaches ``target`` (best specificity at that target)."""
    _check_target(target, "sensitivity")
    curve = roc_curve(y_true, scores)
    # tpr is non-decreasing as the threshold falls: the first index reaching the target.
    index = int(np.argmax(curve.tpr >= target - 1e-12))
    return operating_point(y_true, scores, float(curve.thresholds[index]), confidence)


def threshold_for_specificity(y_true: ArrayLike, scores: ArrayLike, target: float, confidence: float = 0.95) -> OperatingPoint:
    """The lowest threshold whose specificity reaches ``target`` (best sensitivity at that target)."""
    _check_target(target, "specificity")
    curve = roc_curve(y_true, scores)
    ok = np.nonzero(1.0 - curve.fpr >= target - 1e-12)[0]
    # fpr is non-decreasing as the threshold falls; index 0 (+inf, specificity 1) always qualifies.
    return operating_point(y_true, scores, float(curve.thresholds[ok[-1]]), confidence)


def _check_target(target: float, what: str) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target {what} must lie in [0, 1], got {target}")
