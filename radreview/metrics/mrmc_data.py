"""A fully crossed multi-reader multi-case (MRMC) ROC data set and its per-case AUC pieces.

Every reader reads every case in every modality (the factorial design that the
Obuchowski-Rockette and Dorfman-Berbaum-Metz analyses assume). The input is a tidy table,
one row per read: (reader, modality, case, truth, score).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radreview.metrics.delong import delong_covariance, placement_values


@dataclass(frozen=True)
class MrmcData:
    """Scores as an array (modality, reader, case), truth per case (True = diseased)."""

    modalities: tuple[Any, ...]
    readers: tuple[Any, ...]
    cases: tuple[Any, ...]
    truth: np.ndarray  # (K,) bool
    scores: np.ndarray  # (t, r, K) float

    def __post_init__(self) -> None:
        truth = np.asarray(self.truth).astype(bool)
        scores = np.asarray(self.scores, dtype=np.float64)
        expected = (len(self.modalities), len(self.readers), len(self.cases))
        if scores.shape != expected:
            raise ValueError(f"MRMC scores must have shape (modalities, readers, cases) = {expected}, got {scores.shape}")
        if truth.shape != (expected[2],):
            raise ValueError(f"MRMC truth must have one value per case ({expected[2]}), got shape {truth.shape}")
        if not np.all(np.isfinite(scores)):
            raise ValueError("MRMC scores contain NaN or infinite values")
        object.__setattr__(self, "truth", truth)
        object.__setattr__(self, "scores", scores)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.scores.shape  # type: ignore[return-value]

    @classmethod
    def from_columns(
        cls,
        reader: Sequence[Any],
        modality: Sequence[Any],
        case: Sequence[Any],
        truth: Sequence[Any],
        score: Sequence[float],
        modality_order: Sequence[Any] | None = None,
    ) -> MrmcData:
        """Build from parallel columns; checks the design is fully crossed and truth is per case.

        Modalities, readers and cases are sorted (numbers numerically); ``modality_order``
        fixes the modality order instead, e.g. ``("aided", "unaided")`` so that differences
        read aided - unaided.
        """
        n = len(reader)
        if not all(len(col) == n for col in (modality, case, truth, score)):
            raise ValueError("MRMC columns reader, modality, case, truth and score must have the same length")
        if n == 0:
            raise ValueError("MRMC data is empty")
        modalities = tuple(sorted(set(modality), key=_sort_key))
        if modality_order is not None:
            if sorted(map(str, modality_order)) != sorted(map(str, modalities)) or len(set(modality_order)) != len(modality_order):
                raise ValueError(f"modality_order {list(modality_order)} must list each modality once: {list(modalities)}")
            # Match by text so that 1 and "1" name the same modality (CSV columns are text).
            by_text = {str(m): m for m in modalities}
            modalities = tuple(by_text[str(m)] for m in modality_order)
        readers = tuple(sorted(set(reader), key=_sort_key))
        cases = tuple(sorted(set(case), key=_sort_key))
        mi = {v: i for i, v in enumerate(modalities)}
        ri = {v: i for i, v in enumerate(readers)}
        ci = {v: i for i, v in enumerate(cases)}
        scores = np.full((len(modalities), len(readers), len(cases)), np.nan)
        truth_by_case: dict[int, int] = {}
        for rd, md, cs, tr, sc in zip(reader, modality, case, truth, score, strict=True):
            k = ci[cs]
            t = _truth_value(tr, cs)
            if truth_by_case.setdefault(k, t) != t:
                raise ValueError(f"case {cs!r} has conflicting truth values")
            cell = (mi[md], ri[rd], k)
            if not np.isnan(scores[cell]):
                raise ValueError(f"reader {rd!r} read case {cs!r} in modality {md!r} more than once")
            value = float(sc)
            if not np.isfinite(value):
                raise ValueError(f"reader {rd!r}, case {cs!r}, modality {md!r}: score is not a finite number")
            scores[cell] = value
        missing = np.argwhere(np.isnan(scores))
        if missing.size:
            i, j, k = missing[0]
            raise ValueError(
                f"MRMC design is not fully crossed: {len(missing)} reads missing, e.g. reader {readers[j]!r}, "
                f"case {cases[k]!r}, modality {modalities[i]!r}"
            )
        y = np.array([truth_by_case[k] for k in range(len(cases))], dtype=bool)
        if y.all() or not y.any():
            raise ValueError("MRMC data needs both diseased and non-diseased cases")
        if len(readers) < 2:
            raise ValueError(f"MRMC analysis needs at least two readers, got {len(readers)}")
        return cls(modalities, readers, cases, y, scores)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], modality_order: Sequence[Any] | None = None) -> MrmcData:
        """Build from mappings with keys reader, modality, case, truth, score (e.g. ``csv.DictReader``)."""
        rows = list(records)
        try:
            return cls.from_columns(
                [r["reader"] for r in rows],
                [r["modality"] for r in rows],
                [r["case"] for r in rows],
                [r["truth"] for r in rows],
                [float(r["score"]) for r in rows],
                modality_order,
            )
        except KeyError as exc:
            raise ValueError(f"MRMC records need the keys reader, modality, case, truth, score; missing {exc}") from None

    def flat_scores(self) -> np.ndarray:
        """Scores as (t * r, K), modality-major (row = modality * r + reader)."""
        t, r, k = self.scores.shape
        return self.scores.reshape(t * r, k)

    def aucs(self) -> np.ndarray:
        """Empirical (Wilcoxon) AUC per modality and reader, shape (t, r)."""
        t, r, _ = self.scores.shape
        return placement_values(self.truth, self.flat_scores()).aucs.reshape(t, r)

    def jackknife_aucs(self) -> np.ndarray:
        """Leave-one-case-out AUCs, shape (t, r, K).

        Removing diseased case i takes its placement value out of the mean:
        AUC_(i) = (m AUC - V10_i) / (m - 1); for non-diseased case j, (n AUC - V01_j) / (n - 1).
        Exact for the Wilcoxon AUC, and O(N log N) instead of N AUC computations.
        """
        t, r, k = self.scores.shape
        pv = placement_values(self.truth, self.flat_scores())
        auc = pv.aucs[:, None]
        m, n = pv.v10.shape[1], pv.v01.shape[1]
        if m < 2 or n < 2:
            raise ValueError("the jackknife needs at least two diseased and two non-diseased cases")
        out = np.empty((t * r, k))
        out[:, self.truth] = (m * auc - pv.v10) / (m - 1)
        out[:, ~self.truth] = (n * auc - pv.v01) / (n - 1)
        return out.reshape(t, r, k)

    def covariance(self, method: str = "jackknife") -> np.ndarray:
        """Covariance of the (t * r) AUC estimates over cases (modality-major order).

        ``jackknife``: (K - 1)/K * sum_k (A_(k) - mean)(A_(k) - mean)' (Efron 1982), as OR-DBM MRMC
        and MRMCaov compute it; ``delong``: DeLong et al. (1988).
        """
        if method == "jackknife":
            jk = self.jackknife_aucs()
            t, r, k = jk.shape
            flat = jk.reshape(t * r, k)
            dev = flat - flat.mean(axis=1, keepdims=True)
            return (k - 1) / k * (dev @ dev.T)
        if method == "delong":
            return delong_covariance(self.truth, self.flat_scores())[1]
        raise ValueError(f"unknown covariance method {method!r}; use 'jackknife' or 'delong'")


def _truth_value(value: Any, case: Any) -> int:
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"case {case!r}: truth {value!r} is not 0/1") from None
    if number not in (0.0, 1.0):
        raise ValueError(f"case {case!r}: truth {value!r} is not 0/1")
    return int(number)


def _sort_key(value: Any) -> tuple[int, Any]:
    # Numbers in numeric order, anything else by its text, numbers first.
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))
