"""Study-level results: the mean of the per-view probabilities, as the MURA and LERA studies did."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from radreview.inference.card import OperatingPoints
from radreview.inference.engine import ImageResult


@dataclass
class StudyLabelResult:
    study: str  # the study key the caller chose (pseudonymous in exports)
    model: str
    version: str
    label: str
    task: str
    probability: float  # mean over the views that have this label
    views: int
    tier: str


def aggregate_studies(items: Iterable[tuple[str, ImageResult]]) -> list[StudyLabelResult]:
    """(study key, image result) pairs -> one row per study and label, in first-seen order."""
    sums: dict[tuple[str, str, str], list] = {}
    for study, result in items:
        for r in result.labels:
            key = (study, r.model, r.label)
            entry = sums.setdefault(key, [r, 0.0, 0])
            entry[1] += r.probability
            entry[2] += 1
    rows = []
    for (study, _, _), (first, total, views) in sums.items():
        mean = total / views
        tier = ""
        if first.possible is not None and first.likely is not None:
            tier = OperatingPoints(first.possible, first.likely).tier(mean)
        rows.append(StudyLabelResult(study, first.model, first.version, first.label, first.task, mean, views, tier))
    return rows
