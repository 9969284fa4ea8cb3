"""Logits to probabilities per the card's activations, per-label AUC and operating points.

numpy only (shared by training, evaluation and export); the statistics come from
:mod:`radreview.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from radreview.metrics import roc_auc, threshold_for_sensitivity, threshold_for_specificity, youden_threshold

# "possible" aims at this sensitivity, "likely" at this specificity (the high-sensitivity /
# high-specificity pair the card asks for).
POSSIBLE_SENSITIVITY = 0.95
LIKELY_SPECIFICITY = 0.95


def label_probabilities(logits: np.ndarray, labels: Sequence[Any]) -> np.ndarray:
    """Sigmoid per sigmoid label; softmax over the labels of one softmax task."""
    logits = np.asarray(logits, dtype=np.float64)
    probs = 1.0 / (1.0 + np.exp(-logits))
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if _get(label, "activation") == "softmax":
            groups.setdefault(_get(label, "task"), []).append(i)
    for cols in groups.values():
        z = logits[:, cols] - logits[:, cols].max(axis=1, keepdims=True)
        e = np.exp(z)
        probs[:, cols] = e / e.sum(axis=1, keepdims=True)
    return probs


def _get(label: Any, key: str) -> Any:
    return label[key] if isinstance(label, dict) else getattr(label, key)


def _both_classes(y: np.ndarray) -> bool:
    return bool(np.any(y >= 0.5) and np.any(y < 0.5))


def per_label_auc(targets: np.ndarray, probs: np.ndarray, labels: Sequence[Any]) -> dict[str, float]:
    """AUC per label name (NaN where the split lacks positives or negatives)."""
    out = {}
    for i, label in enumerate(labels):
        y = targets[:, i] >= 0.5
        out[_get(label, "name")] = float(roc_auc(y.astype(int), probs[:, i])) if _both_classes(y) else math.nan
    return out


def choose_operating_points(targets: np.ndarray, probs: np.ndarray, labels: Sequence[Any]) -> dict[str, dict[str, float]]:
    """Per label: ``possible`` (sensitivity >= 0.95), ``likely`` (specificity >= 0.95), ``youden``.

    Thresholds are chosen on validation data and reported on the test split, so the test
    figures at these thresholds are honest. ``possible <= likely`` is enforced (the card needs it).
    """
    points: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        y = (targets[:, i] >= 0.5).astype(int)
        if not _both_classes(y):
            continue
        scores = probs[:, i]
        possible = float(threshold_for_sensitivity(y, scores, POSSIBLE_SENSITIVITY).threshold)
        likely = float(threshold_for_specificity(y, scores, LIKELY_SPECIFICITY).threshold)
        youden = float(youden_threshold(y, scores).threshold)
        possible, likely = (_clip01(possible), _clip01(likely))
        if possible > likely:
            possible, likely = likely, possible
        points[_get(label, "name")] = {"possible": possible, "likely": likely, "youden": _clip01(youden)}
    return points


def _clip01(value: float) -> float:
    if math.isinf(value) or math.isnan(value):
        return 1.0 if value > 0 else 0.0
    return min(1.0, max(0.0, value))
