"""Input checks shared by the metrics modules: clear messages instead of silent NaNs."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def binary_truth(y_true: ArrayLike, *, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a bool array; accepts 0/1, bools or floats that are exactly 0/1."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {y.shape}")
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must be 0/1 or boolean, got dtype {y.dtype}")
    values = np.unique(y)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"{name} must hold only 0 and 1 (1 = positive), found {values[:5].tolist()}")
    return y == 1


def scores_like(scores: ArrayLike, n: int, *, name: str = "scores") -> np.ndarray:
    """Return finite float scores of length ``n``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"{name} must be one-dimensional with {n} values (one per case), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return s


def both_classes(y: np.ndarray, *, what: str = "AUC") -> tuple[int, int]:
    """Number of positives and negatives; both must be present."""
    n_pos = int(np.count_nonzero(y))
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"{what} needs both positive and negative cases (got {n_pos} positive, {n_neg} negative)")
    return n_pos, n_neg
