"""ROC curve and AUC against scikit-learn, on continuous and heavily tied data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from radreview.metrics import roc_auc, roc_curve


def _cases(seed: int, n: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    s = rng.normal(size=n) + 0.8 * y
    if tied:
        s = np.round(s)  # a handful of distinct values, like a 5-point rating scale
    return y, s


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn(seed: int, tied: bool) -> None:
    y, s = _cases(seed, 200 + 37 * seed, tied)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_curve_matches_sklearn(seed: int, tied: bool) -> None:
    y, s = _cases(seed, 150, tied)
    curve = roc_curve(y, s)
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_array_equal(curve.thresholds, thr)
    # The trapezoidal area under the curve is the Mann-Whitney AUC.
    assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(roc_auc(y, s), abs=1e-12)


def test_ties_count_half() -> None:
    # One positive and one negative with equal scores: psi = 1/2.
    assert roc_auc([0, 1], [0.3, 0.3]) == 0.5
    assert roc_auc([0, 0, 1, 1], [1, 2, 2, 3]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_bool_truth_and_perfect_separation() -> None:
    assert roc_auc(np.array([False, True, True]), [0.1, 0.9, 0.8]) == 1.0
    assert roc_auc([1, 0], [0.1, 0.9]) == 0.0


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="one per case"):
        roc_curve([0, 1], [0.1, 0.2, 0.3])


def test_curve_to_dict_is_json_safe() -> None:
    import json

    d = roc_curve([0, 1, 1], [0.2, 0.4, 0.9]).to_dict()
    assert d["thresholds"][0] == "inf"
    json.dumps(d, allow_nan=False)
