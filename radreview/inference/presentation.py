"""What the AI says about an image, in words: one presentation for every place that shows it.

The viewer's AI panel, the reading window's aided read, ``radreview predict`` and the DICOM
results all show the AI through :func:`present_image` (and :func:`present_study`), so that a
probability, a tier, a cut-off or a scope verdict reads the same wherever a reader meets it.
The numbers come from :mod:`radreview.inference.engine` (calibrated probabilities, tiers from the
card's operating points, each model's scope verdict); this module only decides how they read.

Verdict, per image or study, as commercial fracture AI shows it: *positive* when a finding is
"likely", *doubt* when one is "possible", *negative* when every finding with a tier is below its
cut-offs, *outside scope* when the models call the image outside what they were trained on, and
*no AI result* when nothing gives a tier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from radreview import RESEARCH_USE_NOTICE
from radreview.inference.engine import REGION_TASK, ImageResult, LabelResult
from radreview.inference.scope import ScopeVerdict

OUT_OF_SCOPE_MESSAGE = "Outside this model's scope — no findings shown"
NO_SCOPE_CHECK = "no scope check"
TIER_WORDS = {
    "likely": "likely",
    "possible": "possible",
    "below": "below cut-off",
    "out_of_scope": "outside scope",
    "": "no tier",
}
TIER_RANK = {"likely": 0, "possible": 1, "below": 2, "": 3, "out_of_scope": 4}
VERDICT_WORDS = {
    "positive": "Positive",
    "doubt": "Doubt",
    "negative": "Negative",
    "out_of_scope": "Outside scope",
    "none": "No AI result",
}


def format_probability(p: float | None) -> str:
    """Three decimals, never rounding a near-certainty to a certainty ("> 0.999", "< 0.001")."""
    if p is None or not math.isfinite(p):
        return "—"
    if p > 0.999:
        return "> 0.999"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


def format_cutoff(threshold: float) -> str:
    """A cut-off with three significant digits (0.00342, 0.456), so that small ones stay readable."""
    return f"{threshold:.3g}"


def cutoffs_text(label: LabelResult) -> str:
    """"possible ≥ 0.0123 · likely ≥ 0.456", or why the label has no tier."""
    if label.tier_note:
        return label.tier_note
    if label.possible is None or label.likely is None:
        return "the model card gives no operating points"
    return f"possible ≥ {format_cutoff(label.possible)} · likely ≥ {format_cutoff(label.likely)}"


@dataclass(frozen=True)
class Finding:
    """One label of one model, as every surface shows it."""

    key: str  # "model/label"
    model: str
    version: str
    label: str
    display_name: str
    task: str
    probability: float
    probability_text: str
    tier: str  # likely / possible / below / out_of_scope / ""
    tier_in_scope: str  # the operating points' tier, even when the image is out of scope
    tier_text: str
    cutoffs_text: str
    in_scope: bool | None
    note: str = ""

    @property
    def shown(self) -> bool:
        """Whether a surface shows it as an answer (not when its model calls the image out of scope)."""
        return self.in_scope is not False


@dataclass(frozen=True)
class ScopeLine:
    model: str
    status: str  # in_scope / out_of_scope / no_check
    distance: float | None
    threshold: float | None
    text: str


@dataclass(frozen=True)
class ImagePresentation:
    findings: tuple[Finding, ...]  # non-region labels, most important first
    regions: tuple[Finding, ...]
    region_line: str
    scopes: tuple[ScopeLine, ...]
    scope_text: str
    in_scope: bool | None  # False: outside some model's scope; None: no model can tell
    verdict: str  # positive / doubt / negative / out_of_scope / none
    verdict_text: str
    notice: str = RESEARCH_USE_NOTICE

    @property
    def shown_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.shown)

    def finding(self, key: str) -> Finding | None:
        return next((f for f in (*self.findings, *self.regions) if f.key == key), None)


def finding_of(label: LabelResult) -> Finding:
    tier = label.tier
    return Finding(
        key=label.key, model=label.model, version=label.version, label=label.label,
        display_name=label.display_name, task=label.task, probability=label.probability,
        probability_text=format_probability(label.probability), tier=tier, tier_in_scope=label.tier_in_scope,
        tier_text=TIER_WORDS.get(tier, tier), cutoffs_text=cutoffs_text(label), in_scope=label.in_scope,
        note=label.tier_note,
    )


def scope_line(verdict: ScopeVerdict) -> ScopeLine:
    if verdict.status == "no_check":
        text = f"{verdict.model}: {NO_SCOPE_CHECK}" + (f" ({verdict.note})" if verdict.note else "")
    elif verdict.status == "out_of_scope":
        text = (f"{verdict.model}: outside scope (distance {verdict.distance:.2f} > limit {verdict.threshold:.2f})"
                if verdict.distance is not None and math.isfinite(verdict.distance) else
                f"{verdict.model}: outside scope")
    else:
        text = f"{verdict.model}: in scope (distance {verdict.distance:.2f} ≤ limit {verdict.threshold:.2f})"
    return ScopeLine(verdict.model, verdict.status, verdict.distance, verdict.threshold, text)


def verdict_of(findings: Sequence[Finding], scopes: Sequence[ScopeLine] = ()) -> tuple[str, str]:
    """(verdict, one line) from the findings a surface shows."""
    shown = [f for f in findings if f.shown]
    if findings and not shown:
        return "out_of_scope", OUT_OF_SCOPE_MESSAGE
    if not findings and any(s.status == "out_of_scope" for s in scopes):
        return "out_of_scope", OUT_OF_SCOPE_MESSAGE
    for tier, verdict in (("likely", "positive"), ("possible", "doubt")):
        hits = [f for f in shown if f.tier == tier]
        if hits:
            names = ", ".join(f"{f.display_name} ({f.tier_text})" for f in hits)
            return verdict, f"{VERDICT_WORDS[verdict]}: {names}"
    if any(f.tier == "below" for f in shown):
        return "negative", f"{VERDICT_WORDS['negative']}: no finding at or above its cut-offs"
    return "none", f"{VERDICT_WORDS['none']}: no finding has operating points"


def present_image(result: ImageResult | None) -> ImagePresentation:
    """The presentation of one image's results (``None``: nothing to show yet)."""
    if result is None:
        return ImagePresentation((), (), "", (), "", None, "none", VERDICT_WORDS["none"])
    findings = sorted((finding_of(r) for r in result.labels if r.task != REGION_TASK),
                      key=lambda f: (not f.shown, TIER_RANK.get(f.tier, 9), -f.probability))
    regions = sorted((finding_of(r) for r in result.labels if r.task == REGION_TASK), key=lambda f: -f.probability)
    scopes = tuple(scope_line(v) for v in result.scopes.values())
    in_scope = result.in_scope
    if in_scope is False:
        scope_text = OUT_OF_SCOPE_MESSAGE
    elif in_scope is None:
        scope_text = "No scope check" if scopes else ""
    else:
        scope_text = "; ".join(s.text for s in scopes)
    verdict, verdict_text = verdict_of(findings, scopes)
    return ImagePresentation(tuple(findings), tuple(regions), region_line(result, regions), scopes, scope_text,
                             in_scope, verdict, verdict_text)


def region_line(result: ImageResult, regions: Iterable[Finding]) -> str:
    """"Region: Hand (0.998)" — the chain's regions with their probabilities."""
    by_name = {f.label: f for f in regions}
    if not by_name:
        return ""
    if not result.regions or all(f.in_scope is False for f in by_name.values()):
        return "Region: — (outside the region model's scope)"
    parts = [f"{by_name[r].display_name} ({by_name[r].probability_text})" if r in by_name else r
             for r in result.regions]
    return "Region: " + ", ".join(parts)


def present_study(rows: Iterable) -> tuple[str, str]:
    """(verdict, one line) of a study from :func:`radreview.inference.aggregate.aggregate_studies` rows."""
    findings = [Finding(key=f"{r.model}/{r.label}", model=r.model, version=r.version, label=r.label,
                        display_name=getattr(r, "display_name", "") or r.label, task=r.task,
                        probability=r.probability, probability_text=format_probability(r.probability),
                        tier=r.tier, tier_in_scope=r.tier, tier_text=TIER_WORDS.get(r.tier, r.tier), cutoffs_text="",
                        in_scope=False if r.tier == "out_of_scope" else True)
                for r in rows if r.task != REGION_TASK]
    return verdict_of(findings)
