"""Result types shared by the OR and DBM analyses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


from radreview.metrics._serialize import DictMixin as _ToDict
from radreview.metrics.distributions import chi2_sf, f_sf, t_ppf, t_sf


@dataclass(frozen=True)
class Comparison(_ToDict):
    """Difference of (reader-averaged) AUCs of two modalities, ``a - b``."""

    modality_a: Any
    modality_b: Any
    difference: float
    se: float
    df: float  # inf for a normal (z) reference distribution
    statistic: float  # t (or z)
    p_value: float
    lower: float
    upper: float


@dataclass(frozen=True)
class ModalityEstimate(_ToDict):
    """Reader-averaged AUC of one modality with its CI (from that modality's data alone)."""

    modality: Any
    auc: float
    se: float
    df: float
    lower: float
    upper: float


@dataclass(frozen=True)
class ReaderComparison(_ToDict):
    """One reader's AUC difference between two modalities (fixed-readers analysis)."""

    reader: Any
    comparison: Comparison


@dataclass(frozen=True)
class MrmcTest(_ToDict):
    """The global test of equal modality AUCs for one generalisation (readers/cases random or fixed)."""

    analysis: str  # "random readers, random cases" | "fixed readers, random cases" | "random readers, fixed cases"
    statistic_name: str  # "F" or "X2"
    statistic: float
    ndf: float
    ddf: float  # inf for the chi-square test
    p_value: float
    comparisons: list[Comparison] = field(default_factory=list)
    modalities: list[ModalityEstimate] = field(default_factory=list)
    readers: list[ReaderComparison] = field(default_factory=list)


def interval(estimate: float, se: float, df: float, confidence: float) -> tuple[float, float, float, float]:
    """(statistic, two-sided p, lower, upper) with a t(df) reference, or normal when df is inf."""
    q = t_ppf(0.5 + confidence / 2.0, df)  # the normal quantile when df is inf
    if se > 0:
        statistic = estimate / se
        p = 2.0 * t_sf(abs(statistic), df)
    else:
        statistic, p = (0.0, 1.0) if estimate == 0 else (math.copysign(math.inf, estimate), 0.0)
    return statistic, p, estimate - q * se, estimate + q * se


def comparison(a: Any, b: Any, difference: float, se: float, df: float, confidence: float) -> Comparison:
    statistic, p, lower, upper = interval(difference, se, df, confidence)
    return Comparison(a, b, difference, se, df, statistic, p, lower, upper)


def modality_estimate(modality: Any, auc: float, se: float, df: float, confidence: float) -> ModalityEstimate:
    _, _, lower, upper = interval(auc, se, df, confidence)
    return ModalityEstimate(modality, auc, se, df, lower, upper)


def f_p_value(f: float, ndf: float, ddf: float) -> float:
    if math.isnan(f):
        return math.nan
    return chi2_sf(f * ndf, ndf) if math.isinf(ddf) else f_sf(f, ndf, ddf)


def hillis_df(numerator_ms: float, ms: float, df_ms: float) -> float:
    """Satterthwaite-type df of Hillis (2007): denominator^2 / (MS^2 / df)."""
    if ms <= 0:
        return math.inf
    return float(numerator_ms**2 / (ms**2 / df_ms))
