"""Study-level results: the mean of the per-view probabilities, as the MURA and LERA studies did.

Only views inside the model's scope count towards a study's answer: a chest film filed in a hand
study must not dilute (or inflate) the hand's fracture probability. A study whose views are all
outside the scope keeps the mean of their probabilities, with the tier ``out_of_scope``.
"""

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
    probability: float  # mean over the in-scope views that have this label (all views if none is)
    views: int  # views that count (in scope, or all when none is)
    tier: str
    display_name: str = ""
    out_of_scope_views: int = 0


def aggregate_studies(items: Iterable[tuple[str, ImageResult]]) -> list[StudyLabelResult]:
    """(study key, image result) pairs -> one row per study and label, in first-seen order."""
    groups: dict[tuple[str, str, str], dict] = {}
    for study, result in items:
        for r in result.labels:
            entry = groups.setdefault((study, r.model, r.label), {"first": r, "inside": [], "outside": []})
            entry["outside" if r.in_scope is False else "inside"].append(r)
    rows = []
    for (study, _, _), entry in groups.items():
        first, inside, outside = entry["first"], entry["inside"], entry["outside"]
        counted = inside or outside
        mean = sum(r.probability for r in counted) / len(counted)
        tier = ""
        if not inside:
            tier = "out_of_scope"
        elif first.possible is not None and first.likely is not None and not first.tier_note:
            tier = OperatingPoints(first.possible, first.likely).tier(mean)
        rows.append(StudyLabelResult(study, first.model, first.version, first.label, first.task, mean, len(counted),
                                     tier, first.display_name, len(outside)))
    return rows
