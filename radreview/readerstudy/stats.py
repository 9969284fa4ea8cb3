"""Statistics of a reader study, computed with :mod:`radreview.metrics` from the latest reads.

Per reader and modality (unaided / aided), and for each AI model as one more reader, all on the
same cases: those every reader who has read has read in every modality (a reader still reading
shrinks them; the notes say so and how many reads were left out):
- AUC with its DeLong CI. A reader's score is the 0-100 confidence, or the 5-point rating when
  the study has no 0-100 scale; the AI's score is its real (not sham) probability. Where DeLong is
  unreliable (fewer than 10 positive or negative cases, or an AUC of 0 or 1) the interval shown is
  the conservative one of :mod:`radreview.metrics.small_sample`, and the figure is flagged;
- sensitivity and specificity of the reader's explicit decision, and of the AI's call as the
  reading window words it (``ai_call``: tier "likely" positive, "below" negative; the "possible"
  tier and outputs without cut-offs at the study threshold, probability x 100 >= threshold):
  Wilson CIs, or exact Clopper-Pearson ones where the normal approximation fails (fewer than 5
  successes or failures);
- Cohen's kappa of the decision against the truth and against the AI's call *as shown* (on sham
  cases the altered output; in the unaided modality the output that would have been shown), and
  the rate of agreement with that call, over the cases where the AI showed a call (not the cases
  it called outside its scope, where readers were shown no finding);
Across readers: Fleiss' kappa of the decisions per modality. Between modalities: how often the
aided decision differed from the same reader's unaided one, towards or away from the truth (and
on sham cases, towards the sham AI). Reader-averaged AUC aided vs unaided: Obuchowski-Rockette
with DeLong covariances and Hillis' denominator degrees of freedom (random readers and cases).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radreview.metrics import (
    MrmcData,
    auc_ci,
    cohen_kappa,
    decision_changes,
    fleiss_kappa,
    operating_point,
    or_analysis,
    ratings_to_counts,
)
from radreview.metrics.agreement import agreement_proportion
from radreview.metrics.small_sample import (
    MIN_CASES_PER_CLASS,
    auc_conservative_interval,
    delong_unreliable_reason,
    proportion_interval,
)
from radreview.readerstudy.coordinator import Coordinator

MODALITIES = ("unaided", "aided")
AI_MODALITY = "AI"


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@dataclass
class ReaderFigures:
    """One reader (or the AI) in one modality."""

    reader: str
    modality: str
    is_ai: bool
    n_cases: int
    auc: Any  # metrics.AucInterval
    operating_point: Any  # metrics.OperatingPoint (sensitivity, specificity with CIs)
    kappa_truth: Any  # metrics.KappaResult
    kappa_ai: Any | None
    agreement_with_ai: Any | None  # metrics.Proportion
    mean_time_ms: float | None = None
    roc_scores: tuple[list[int], list[float]] = field(default=([], []), repr=False)
    # The AUC interval shown: DeLong's, or the conservative one where DeLong is unreliable.
    auc_lower: float = math.nan
    auc_upper: float = math.nan
    auc_ci_method: str = "delong"
    ci_methods: dict[str, str] = field(default_factory=dict)  # sensitivity/specificity -> method
    warning: str = ""  # why the figure rests on too few cases ("" when it does not)

    @property
    def n_positive(self) -> int:
        return int(self.auc.n_positive)

    @property
    def n_negative(self) -> int:
        return int(self.auc.n_negative)

    def to_dict(self) -> dict[str, Any]:
        return _plain({
            "reader": self.reader, "modality": self.modality, "is_ai": self.is_ai,
            "n_cases": self.n_cases, "n_positive": self.n_positive, "n_negative": self.n_negative,
            "auc": self.auc, "auc_ci": {"lower": self.auc_lower, "upper": self.auc_upper,
                                        "method": self.auc_ci_method},
            "operating_point": self.operating_point, "ci_methods": self.ci_methods,
            "kappa_truth": self.kappa_truth, "kappa_ai": self.kappa_ai,
            "agreement_with_ai": self.agreement_with_ai, "mean_time_ms": self.mean_time_ms,
            "warning": self.warning,
        })


@dataclass
class StudyStatistics:
    design: dict[str, Any]
    score: str  # "confidence" or "rating"
    readers: list[ReaderFigures]
    fleiss: dict[str, Any]  # modality -> KappaResult
    changes: dict[str, Any]  # reader (and "all") -> DecisionChanges
    sham_followed: dict[str, dict[str, int]]  # reader -> counts on sham cases
    mrmc: Any | None  # metrics.ORResult
    notes: list[str]
    warnings: list[str] = field(default_factory=list)  # figures resting on too few cases
    cases_used: list[str] = field(default_factory=list)  # the cases every figure of the table uses

    def to_dict(self) -> dict[str, Any]:
        mrmc = None
        if self.mrmc is not None:
            test = self.mrmc.random_readers_random_cases
            mrmc = {
                "method": "Obuchowski-Rockette, DeLong covariance, Hillis ddf (random readers, random cases)",
                "F": test.statistic, "ndf": test.ndf, "ddf": test.ddf, "p_value": test.p_value,
                "comparisons": test.comparisons, "modalities": test.modalities,
                "full": self.mrmc,
            }
        return _plain({
            "design": self.design, "score": self.score,
            "readers": [r.to_dict() for r in self.readers],
            "fleiss_kappa": self.fleiss, "decision_changes": self.changes,
            "sham_followed": self.sham_followed, "mrmc": mrmc, "notes": self.notes,
            "warnings": self.warnings, "cases_used": self.cases_used,
        })


def ai_call(probability: float, tier: str | None, threshold: float) -> int:
    """The AI's yes/no call as readers saw it: its tier where it showed one ("likely", shown as
    *Positive*: 1; "below" its cut-off, *Negative*: 0), else its probability at the study threshold
    (0-100): the "possible" tier (*Doubt*) and outputs without cut-offs."""
    if tier == "likely":
        return 1
    if tier == "below":
        return 0
    return int(probability * 100.0 >= threshold)


def compute_statistics(coordinator: Coordinator, confidence: float = 0.95) -> StudyStatistics:
    """All the figures of the study from the latest revision of every read."""
    design = coordinator.design()
    threshold = float(design["threshold"])
    score_key = "rating" if design["confidence_scale"] == "5-point" else "confidence"
    cases = {c.code: c for c in coordinator.cases()}
    outputs = coordinator.ai_outputs()
    models = sorted({o.model for o in outputs})
    shown_call: dict[str, int] = {}  # the AI's call as shown, where it showed one
    sham_cases = set()
    out_of_scope = set()
    if models:
        for o in outputs:
            if o.model == models[0]:
                if o.in_scope is False:
                    out_of_scope.add(o.case)
                else:
                    shown_call[o.case] = ai_call(o.shown_probability, o.shown_tier, threshold)
                if o.sham:
                    sham_cases.add(o.case)
    reads = coordinator.reads()
    notes: list[str] = []
    warnings: list[str] = []
    figures: list[ReaderFigures] = []
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for read in reads:
        by_key.setdefault((read["reader"], read["modality"]), {})[read["case"]] = read
    readers = coordinator.readers()
    used = _common_cases(by_key, cases, outputs, notes)
    for modality in MODALITIES:
        for reader in readers:
            rows = by_key.get((reader, modality))
            if not rows:
                continue
            rows = {c: r for c, r in rows.items() if c in used}
            figure = _reader_figures(reader, modality, rows, cases, shown_call, score_key, confidence, notes)
            if figure is not None:
                figures.append(figure)
    for model in models:
        mine = [o for o in outputs if o.model == model and o.case in used]
        y = [cases[o.case].truth for o in mine]
        probs = [o.probability for o in mine]
        calls = [ai_call(o.probability, o.tier, threshold) for o in mine]
        if len(set(y)) < 2:
            notes.append(f"AI {model}: the cases need both truths for an AUC")
            continue
        outside = sum(1 for o in mine if o.in_scope is False)
        if outside:
            notes.append(f"AI {model}: {outside} of {len(mine)} cases outside its scope (readers were shown no "
                         "finding there); its probabilities on them count in its AUC and operating point, not in "
                         "agreement with the AI")
        figures.append(_with_small_sample_intervals(ReaderFigures(
            reader=model, modality=AI_MODALITY, is_ai=True, n_cases=len(mine),
            auc=auc_ci(y, probs, confidence), operating_point=operating_point(y, calls, 0.5, confidence),
            kappa_truth=cohen_kappa(calls, y, categories=[0, 1], confidence=confidence),
            kappa_ai=None, agreement_with_ai=None, roc_scores=(y, probs),
        ), confidence))
    warnings += [f"{f.reader}{' (AI)' if f.is_ai else ''}, {f.modality}: {f.warning}" for f in figures if f.warning]
    if out_of_scope:
        notes.append(f"{len(out_of_scope)} case(s) outside the AI's scope: no AI call was shown there, so they are "
                     "left out of kappa and agreement with the AI")
    fleiss = {}
    for modality in MODALITIES:
        present = [r for r in readers if (r, modality) in by_key]
        if len(present) < 2:
            continue
        common = sorted(set.intersection(*(set(by_key[(r, modality)]) for r in present)))
        if not common:
            continue
        table = [[by_key[(r, modality)][c]["decision"] for r in present] for c in common]
        counts, cats = ratings_to_counts(table, categories=[0, 1])
        fleiss[modality] = fleiss_kappa(counts, confidence, categories=cats)
    changes: dict[str, Any] = {}
    sham_followed: dict[str, dict[str, int]] = {}
    all_before, all_after, all_truth = [], [], []
    for reader in readers:
        unaided, aided = by_key.get((reader, "unaided"), {}), by_key.get((reader, "aided"), {})
        common = sorted(set(unaided) & set(aided))
        if not common:
            continue
        before = [unaided[c]["decision"] for c in common]
        after = [aided[c]["decision"] for c in common]
        truth = [cases[c].truth for c in common]
        changes[reader] = decision_changes(before, after, truth, confidence)
        all_before += before
        all_after += after
        all_truth += truth
        on_sham = [c for c in common if c in sham_cases]
        if on_sham:
            sham_followed[reader] = {
                "sham_cases_read": len(on_sham),
                "changed_towards_sham_ai": sum(
                    1 for c in on_sham
                    if unaided[c]["decision"] != aided[c]["decision"] and aided[c]["decision"] == shown_call.get(c)
                ),
                "aided_agrees_with_sham_ai": sum(1 for c in on_sham if aided[c]["decision"] == shown_call.get(c)),
            }
    if all_before:
        changes["all readers"] = decision_changes(all_before, all_after, all_truth, confidence)
    mrmc = _mrmc(readers, by_key, cases, score_key, notes, warnings)
    return StudyStatistics(design, score_key, figures, fleiss, changes, sham_followed, mrmc, notes, warnings,
                           sorted(used))


def _common_cases(by_key, cases, outputs, notes: list[str]) -> set[str]:  # type: ignore[no-untyped-def]
    """The cases every reader-modality with reads has read (all cases with AI when none has)."""
    if not by_key:
        return {o.case for o in outputs} or set(cases)
    common = set.intersection(*(set(rows) for rows in by_key.values()))
    left = sum(len(set(rows) - common) for rows in by_key.values())
    if left:
        behind = ", ".join(f"{r} {m} {len(rows)}" for (r, m), rows in sorted(by_key.items()) if len(rows) > len(common))
        notes.append(f"reader and AI figures use the {len(common)} case(s) every reader has read in every modality; "
                     f"{left} read(s) of other cases are left out until the others catch up (reads per reader and "
                     f"modality where more: {behind})")
    return common


def _with_small_sample_intervals(figure: ReaderFigures, confidence: float) -> ReaderFigures:
    """The AUC interval and sensitivity/specificity CIs that hold on this figure's number of cases."""
    auc = figure.auc
    reason = delong_unreliable_reason(auc.auc, auc.n_positive, auc.n_negative)
    lower, upper, method = auc.lower, auc.upper, "delong"
    if reason:
        lower, upper = auc_conservative_interval(auc.auc, auc.n_positive, auc.n_negative, confidence)
        method = "conservative (Birnbaum-Klose bound)"
    op = figure.operating_point
    sensitivity, sens_method = proportion_interval(op.sensitivity.successes, op.sensitivity.n, confidence)
    specificity, spec_method = proportion_interval(op.specificity.successes, op.specificity.n, confidence)
    warning = ""
    if min(auc.n_positive, auc.n_negative) < MIN_CASES_PER_CLASS:
        warning = (f"rests on {auc.n_positive} positive and {auc.n_negative} negative cases (fewer than "
                   f"{MIN_CASES_PER_CLASS} of each): AUC, sensitivity and specificity are unreliable")
    elif reason:
        warning = f"DeLong's interval is unreliable ({reason}): the conservative interval is shown"
    return dataclasses.replace(
        figure, operating_point=dataclasses.replace(op, sensitivity=sensitivity, specificity=specificity),
        auc_lower=lower, auc_upper=upper, auc_ci_method=method,
        ci_methods={"sensitivity": sens_method, "specificity": spec_method}, warning=warning)


def _reader_figures(reader: str, modality: str, rows: dict[str, dict[str, Any]], cases, shown_call,  # type: ignore[no-untyped-def]
                    score_key: str, confidence: float, notes: list[str]) -> ReaderFigures | None:
    codes = sorted(rows)
    y = [cases[c].truth for c in codes]
    scores = [float(rows[c][score_key]) for c in codes]
    decisions = [int(rows[c]["decision"]) for c in codes]
    if len(set(y)) < 2:
        notes.append(f"reader {reader}, {modality}: only one truth among the cases read; no AUC")
        return None
    kappa_ai = agreement = None
    with_ai = [c for c in codes if c in shown_call]
    if with_ai:
        mine = [int(rows[c]["decision"]) for c in with_ai]
        ai = [shown_call[c] for c in with_ai]
        kappa_ai = cohen_kappa(mine, ai, categories=[0, 1], confidence=confidence)
        agreement = agreement_proportion(mine, ai, confidence)
    times = [rows[c]["total_time_ms"] for c in codes if rows[c]["total_time_ms"] is not None]
    return _with_small_sample_intervals(ReaderFigures(
        reader=reader, modality=modality, is_ai=False, n_cases=len(codes),
        auc=auc_ci(y, scores, confidence),
        operating_point=operating_point(y, decisions, 0.5, confidence),
        kappa_truth=cohen_kappa(decisions, y, categories=[0, 1], confidence=confidence),
        kappa_ai=kappa_ai, agreement_with_ai=agreement,
        mean_time_ms=float(np.mean(times)) if times else None,
        roc_scores=(y, scores),
    ), confidence)


def mrmc_records(readers, by_key, cases, score_key: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Reader x modality x case records of the fully crossed part of the study."""
    present = [r for r in readers if all((r, m) in by_key for m in MODALITIES)]
    if len(present) < 2:
        return []
    common = set.intersection(*(set(by_key[(r, m)]) for r in present for m in MODALITIES))
    return [
        {"reader": r, "modality": m, "case": c, "truth": cases[c].truth,
         "score": float(by_key[(r, m)][c][score_key])}
        for m in MODALITIES for r in present for c in sorted(common)
    ]


def _mrmc(readers, by_key, cases, score_key: str, notes: list[str], warnings: list[str] | None = None):  # type: ignore[no-untyped-def]
    records = mrmc_records(readers, by_key, cases, score_key)
    if not records:
        notes.append("no MRMC comparison: it needs two or more readers with unaided and aided reads")
        return None
    n_cases = len({r["case"] for r in records})
    if n_cases < len(cases):
        notes.append(f"MRMC analysis on the {n_cases} of {len(cases)} cases that every reader read in both modalities")
    truths = [cases[c].truth for c in {r["case"] for r in records}]
    n_pos, n_neg = sum(truths), len(truths) - sum(truths)
    if warnings is not None and min(n_pos, n_neg) < MIN_CASES_PER_CLASS:
        warnings.append(f"MRMC comparison rests on {n_pos} positive and {n_neg} negative cases (fewer than "
                        f"{MIN_CASES_PER_CLASS} of each): its F test and intervals are unreliable")
    try:
        return or_analysis(MrmcData.from_records(records), covariance="delong")
    except ValueError as exc:
        notes.append(f"no MRMC comparison: {exc}")
        return None
