"""Operating points: counts against scikit-learn, Wilson CIs against Newcombe (1998)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from radreview.metrics import (
    confusion_counts,
    operating_point,
    threshold_for_sensitivity,
    threshold_for_specificity,
    wilson_interval,
    youden_threshold,
)


@pytest.mark.parametrize(
    ("successes", "n", "lower", "upper"),
    [
        # Newcombe RG (1998) Stat Med 17:857-872, Table I, method 3 (Wilson score, no continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe(successes: int, n: int, lower: float, upper: float) -> None:
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert hi == pytest.approx(upper, abs=5e-5)


@pytest.mark.parametrize(("successes", "n"), [(0, 7), (3, 7), (7, 7), (40, 90), (999, 1000)])
def test_wilson_is_the_score_test_inversion(successes: int, n: int) -> None:
    # Independent form: the interval ends are where |p_hat - p| = z sqrt(p (1 - p) / n),
    # i.e. the roots of (1 + z^2/n) p^2 - (2 p_hat + z^2/n) p + p_hat^2 = 0.
    z = 1.959963984540054
    p_hat = successes / n
    a, b, c = 1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat
    roots = sorted(np.roots([a, b, c]).real)
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(max(roots[0], 0.0), abs=1e-12)
    assert hi == pytest.approx(min(roots[1], 1.0), abs=1e-12)


def test_wilson_edge_cases() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
    lo90, hi90 = wilson_interval(30, 100, confidence=0.90)
    lo95, hi95 = wilson_interval(30, 100)
    assert lo95 < lo90 < 0.3 < hi90 < hi95


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 1.2 * y, 1)
    return y, s


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 0.3, 0.55, 2.0])
def test_counts_match_sklearn_confusion_matrix(threshold: float) -> None:
    y, s = _data()
    counts = confusion_counts(y, s, threshold)
    np.testing.assert_array_equal(counts.table(), confusion_matrix(y, (s >= threshold).astype(int)))
    op = operating_point(y, s, threshold)
    tn, fp, fn, tp = confusion_matrix(y, (s >= threshold).astype(int)).ravel()
    assert op.sensitivity.estimate == pytest.approx(tp / (tp + fn))
    assert op.specificity.estimate == pytest.approx(tn / (tn + fp))
    assert op.ppv.estimate == pytest.approx(tp / (tp + fp))
    assert op.npv.estimate == pytest.approx(tn / (tn + fn))
    assert (op.sensitivity.lower, op.sensitivity.upper) == wilson_interval(int(tp), int(tp + fn))


def _brute_force_points(y: np.ndarray, s: np.ndarray) -> list[tuple[float, float, float]]:
    out = []
    for t in np.r_[np.inf, np.unique(s)[::-1]]:
        called = s >= t
        out.append((t, called[y == 1].mean(), (~called[y == 0]).mean()))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_threshold_choices_against_brute_force(seed: int) -> None:
    y, s = _data(seed)
    points = _brute_force_points(y, s)
    best_j = max(se + sp - 1 for _, se, sp in points)
    youden = youden_threshold(y, s)
    assert youden.youden_j == pytest.approx(best_j)
    assert youden.threshold == max(t for t, se, sp in points if abs(se + sp - 1 - best_j) < 1e-12)

    for target in (0.8, 0.9, 0.95, 1.0):
        op = threshold_for_sensitivity(y, s, target)
        assert op.threshold == max(t for t, se, _ in points if se >= target)
        assert op.sensitivity.estimate >= target
        op = threshold_for_specificity(y, s, target)
        assert op.threshold == min(t for t, _, sp in points if sp >= target)
        assert op.specificity.estimate >= target


def test_operating_point_to_dict() -> None:
    import json

    # The top score is a negative case, so only "+inf" (call nothing positive) reaches specificity 1.
    d = threshold_for_specificity([1, 0, 1], [0.5, 0.9, 0.3], 1.0).to_dict()
    json.dumps(d, allow_nan=False)  # an undefined PPV (nothing called positive) becomes null
    assert d["ppv"]["estimate"] is None and d["threshold"] == "inf"
    assert set(d) >= {"threshold", "counts", "sensitivity", "specificity", "ppv", "npv"}
