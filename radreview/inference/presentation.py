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

Heatmaps read the same way: :func:`present_heatmap` says whether a label's map may be drawn
(not for an image outside the model's scope unless the reader asked, not below the gate), with
which colour scale, and labels the colour bar in probability — a local logit ``z`` of the
label's calibrated scale reads as ``sigmoid(z)`` — never in logits. :func:`legend_lines` is the
legend an exported view carries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from radreview import RESEARCH_USE_NOTICE
from radreview.inference.cam import DEFAULT_SPAN_LOGITS, CamDisplay, gate_probability, logit
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

    @property
    def revealed_tier_text(self) -> str:
        """The tier once a reader asked to see an out-of-scope finding anyway: marked, with what
        its cut-offs would say ("outside scope (cut-offs: likely)")."""
        if self.tier != "out_of_scope":
            return self.tier_text
        return f"{TIER_WORDS['out_of_scope']} (cut-offs: {TIER_WORDS.get(self.tier_in_scope, self.tier_in_scope)})"

    def line(self, revealed: bool = False) -> str:
        """"Fractured: p 0.912, likely (possible ≥ 0.2 · likely ≥ 0.6)" — one finding in one line."""
        tier = self.revealed_tier_text if revealed else self.tier_text
        return f"{self.display_name}: p {self.probability_text}, {tier} ({self.cutoffs_text})"


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


def study_line(rows: Iterable) -> str:
    """"Study, 2 views: Positive: Fractured (likely)" — a study's verdict in one line ("" if no rows)."""
    rows = list(rows)
    if not rows:
        return ""
    # a row whose views are all outside scope counts them in ``views`` as well (see aggregate)
    views = max(r.views + (0 if r.tier == "out_of_scope" else r.out_of_scope_views) for r in rows)
    outside = max(r.out_of_scope_views for r in rows)
    count = f"{views} view{'s' if views != 1 else ''}" + (f", {outside} outside scope" if outside else "")
    return f"Study, {count}: {present_study(rows)[1]}"


def present_study(rows: Iterable) -> tuple[str, str]:
    """(verdict, one line) of a study from :func:`radreview.inference.aggregate.aggregate_studies` rows."""
    findings = [Finding(key=f"{r.model}/{r.label}", model=r.model, version=r.version, label=r.label,
                        display_name=getattr(r, "display_name", "") or r.label, task=r.task,
                        probability=r.probability, probability_text=format_probability(r.probability),
                        tier=r.tier, tier_in_scope=r.tier, tier_text=TIER_WORDS.get(r.tier, r.tier), cutoffs_text="",
                        in_scope=False if r.tier == "out_of_scope" else True)
                for r in rows if r.task != REGION_TASK]
    return verdict_of(findings)


# -- heatmaps ---------------------------------------------------------------------------------
GATE_WORDS = {"likely": "likely cut-off", "possible": "possible cut-off"}
SPAN_SOURCE_WORDS = {"model card": "from the model card", "user": "set by you", "default": "default"}


def gate_text(label: LabelResult | None, gate: str = "likely") -> str:
    """"likely cut-off p 0.31" — the gate of a label's heatmap, as the colour bar's low end says it."""
    threshold = gate_probability(label, gate) if label is not None else 0.5
    uses_card = (label is not None and not label.tier_note and gate in GATE_WORDS
                 and getattr(label, gate, None) is not None)
    return f"{GATE_WORDS[gate]} p {format_cutoff(threshold)}" if uses_card else f"p {format_cutoff(threshold)}"


def scale_texts(display: CamDisplay, threshold: float | None = None, local=None) -> tuple[str, str]:
    """The colour bar's ends in probability: the gate, and the probability that the top of the
    scale stands for (sigmoid of the local logit there)."""
    low, high = display.scale_probabilities(local, threshold)
    top = f"p {format_probability(high)}"
    return f"p {format_cutoff(low)}", top + (" (image max)" if display.mode == "minmax" else "")


@dataclass(frozen=True)
class HeatmapLegend:
    """Whether and how one label's heatmap is drawn, and what its colour bar says."""

    key: str
    title: str  # "Fractured", marked when the model calls the image outside its scope
    mode: str  # absolute / minmax / relative
    gate: float  # the probability below which nothing is drawn
    span_logits: float  # absolute scale: local logits from the gate to the top of the colour bar
    span_source: str  # "model card", "user" or "default"
    low_text: str  # "likely cut-off p 0.31"
    high_text: str  # "p 0.993"
    drawn: bool  # False: draw nothing (outside scope and not revealed, below the gate, no map)
    note: str = ""  # why nothing is drawn
    out_of_scope: bool = False
    display: CamDisplay | None = None
    probability: float = math.nan

    def intensity(self, local: np.ndarray) -> np.ndarray:
        """0..1 intensities (float32, the shape of ``local``); all zero when not drawn."""
        local = np.asarray(local, dtype=np.float32)
        if not self.drawn or self.display is None:
            return np.zeros_like(local)
        if self.mode == "relative":  # Grad-CAM family: already 0..1 per image, gated above
            return np.clip(local, 0.0, 1.0)
        return self.display.intensity(local, self.probability)

    @property
    def span_text(self) -> str:
        """"3 logits, from the model card" — where the absolute scale's span comes from."""
        return f"{self.span_logits:g} logits, {SPAN_SOURCE_WORDS.get(self.span_source, self.span_source)}"

    @property
    def colour_bar_text(self) -> str:
        return f"{self.low_text} … {self.high_text}" if self.low_text or self.high_text else ""


NO_HEATMAP = HeatmapLegend("", "", "absolute", 0.5, DEFAULT_SPAN_LOGITS, "default", "", "", False)


def resolve_span(label: LabelResult | None, span: float | None = None) -> tuple[float, str]:
    """The colour span: the user's when set (> 0), else the model card's, else the default."""
    if span is not None and span > 0:
        return float(span), "user"
    if label is not None and label.cam_span:
        return float(label.cam_span), "model card"
    return DEFAULT_SPAN_LOGITS, "default"


def present_heatmap(label: LabelResult | None, scale: str = "absolute", gate: str = "likely",
                    span: float | None = None, revealed: bool = False) -> HeatmapLegend:
    """How a label's heatmap is shown (``revealed``: the reader asked to see out-of-scope findings)."""
    if label is None:
        return NO_HEATMAP
    span_logits, source = resolve_span(label, span)
    out_of_scope = label.in_scope is False
    marked = out_of_scope and revealed
    title = label.display_name + (f" — {TIER_WORDS['out_of_scope']}, shown on request" if marked else "")
    threshold = gate_probability(label, gate)
    common = dict(key=label.key, title=title, gate=threshold, span_logits=span_logits, span_source=source,
                  out_of_scope=out_of_scope, probability=label.probability)
    if out_of_scope and not revealed:
        return HeatmapLegend(mode=scale, low_text="", high_text="", drawn=False, note=OUT_OF_SCOPE_MESSAGE, **common)
    if label.cam is None or label.geometry is None:
        return HeatmapLegend(mode=scale, low_text="", high_text="", drawn=False,
                             note="the model gave no activation map", **common)
    low_text = gate_text(label, gate)
    below = (f"nothing drawn: p {format_probability(label.probability)} is below "
             f"{'the ' if 'cut-off' in low_text else ''}{low_text}")
    if label.cam_units == "relative":
        drawn = label.probability >= threshold
        # a Grad-CAM-family map has no absolute scale: the gate hides it, it does not set its colours
        return HeatmapLegend(mode="relative", low_text="relative (per image)", high_text="image max",
                             drawn=drawn, note="" if drawn else below, display=CamDisplay(gate=threshold), **common)
    top = float(label.cam.max()) if scale == "minmax" else None
    display = CamDisplay(mode="minmax" if scale == "minmax" else "absolute", span_logits=span_logits,
                         gate=threshold, top=top)
    _, high_text = scale_texts(display)
    drawn, note = True, ""
    if label.probability < threshold:
        drawn, note = False, below
    elif float(label.cam.max()) <= logit(threshold):
        drawn, note = False, f"nothing drawn: no region reaches {'the ' if 'cut-off' in low_text else ''}{low_text}"
    return HeatmapLegend(mode=display.mode, low_text=low_text, high_text=high_text, drawn=drawn, note=note,
                         display=display, **common)


def legend_lines(image: ImagePresentation, heatmap: HeatmapLegend | None = None, revealed: bool = False,
                 study: str = "", models: str = "") -> list[str]:
    """The legend of an exported view: verdict, study, region, scope, findings, heatmap, notice."""
    lines = [f"AI: {image.verdict_text}"]
    lines += [text for text in (study, image.region_line) if text]
    scope = "; ".join(s.text for s in image.scopes) or image.scope_text
    if scope:
        lines.append(f"Scope: {scope}")
    findings = image.findings if revealed else image.shown_findings
    lines += [f.line(revealed) for f in findings]
    if heatmap is not None and heatmap.key:
        if heatmap.drawn:
            lines.append(f"Heatmap: {heatmap.title} ({heatmap.mode} scale, {heatmap.colour_bar_text})")
        else:
            lines.append(f"Heatmap: {heatmap.title} — {heatmap.note}")
    if models:
        lines.append(models)
    lines.append(image.notice)
    return lines
