"""radreview.metrics: ROC/AUC, DeLong, operating points, bootstrap, agreement, calibration, MRMC.

Pure numpy/scipy functions shared by training, model evaluation and reader studies.
"""

from radreview.metrics.operating_points import (
    ConfusionCounts,
    OperatingPoint,
    Proportion,
    confusion_counts,
    operating_point,
    operating_point_from_counts,
    proportion,
    threshold_for_sensitivity,
    threshold_for_specificity,
    wilson_interval,
    youden_threshold,
)
from radreview.metrics.roc import RocCurve, roc_auc, roc_curve

__all__ = [
    "ConfusionCounts",
    "OperatingPoint",
    "Proportion",
    "RocCurve",
    "confusion_counts",
    "operating_point",
    "operating_point_from_counts",
    "proportion",
    "roc_auc",
    "roc_curve",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "wilson_interval",
    "youden_threshold",
]
