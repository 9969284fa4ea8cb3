"""Dorfman-Berbaum-Metz (DBM) analysis: ANOVA of jackknife pseudovalues, Hillis ddf.

Dorfman DD, Berbaum KS, Metz CE (1992). Receiver operating characteristic rating analysis:
generalization to the population of readers and patients with the jackknife method.
Invest Radiol 27:723-731; with the denominator and degrees of freedom of Hillis SL (2007),
A comparison of denominator degrees of freedom methods for multiple observer ROC analysis,
Stat Med 26:596-619, and Hillis, Berbaum & Metz (2008), Acad Radiol 15:647-661.

Pseudovalues Y_ijk = K A_ij - (K - 1) A_ij(k) for modality i, reader j, case k, shifted per
(i, j) so that their mean over cases equals A_ij (as OR-DBM MRMC and RJafroc do; this makes
the DBM and OR-jackknife analyses identical). The modality x reader x case ANOVA without
replication gives MS(T), MS(R), MS(C), MS(TR), MS(TC), MS(RC), MS(TRC), and:

* random readers and cases: F = MS(T) / [MS(TR) + max(MS(TC) - MS(TRC), 0)],
  ddf_H = [MS(TR) + max(MS(TC) - MS(TRC), 0)]^2 / {MS(TR)^2 / [(t - 1)(r - 1)]},
  SE of a difference = sqrt(2/(r K) [MS(TR) + max(MS(TC) - MS(TRC), 0)]);
* fixed readers: F = MS(T) / MS(TC) on (t - 1, (t - 1)(K - 1)) df;
* fixed cases: F = MS(T) / MS(TR) on (t - 1, (t - 1)(r - 1)) df.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from radreview.metrics._mrmc_results import MrmcTest, _ToDict, comparison, f_p_value, hillis_df, modality_estimate
from radreview.metrics.mrmc_data import MrmcData


@dataclass(frozen=True)
class DbmMeanSquares(_ToDict):
    t: float
    r: float
    c: float
    tr: float
    tc: float
    rc: float
    trc: float


@dataclass(frozen=True)
class DbmVarianceComponents(_ToDict):
    """DBM variance components (Dorfman et al. 1992, table 2 expectations)."""

    var_r: float
    var_c: float
    var_tr: float
    var_tc: float
    var_rc: float
    var_trc_error: float


@dataclass(frozen=True)
class DbmResult(_ToDict):
    modalities: tuple[Any, ...]
    readers: tuple[Any, ...]
    n_cases: int
    confidence: float
    aucs: np.ndarray  # (t, r)
    modality_means: np.ndarray
    mean_squares: DbmMeanSquares
    components: DbmVarianceComponents
    random_readers_random_cases: MrmcTest
    fixed_readers_random_cases: MrmcTest
    random_readers_fixed_cases: MrmcTest


def pseudovalues(data: MrmcData) -> np.ndarray:
    """Centred jackknife pseudovalues of the Wilcoxon AUC, shape (t, r, K)."""
    k = data.shape[2]
    aucs = data.aucs()
    pv = k * aucs[:, :, None] - (k - 1) * data.jackknife_aucs()
    return pv + (aucs - pv.mean(axis=2))[:, :, None]


def _anova3(y: np.ndarray) -> DbmMeanSquares:
    t, r, k = y.shape
    g = y.mean()
    m_t, m_r, m_c = y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=(0, 1))
    m_tr, m_tc, m_rc = y.mean(axis=2), y.mean(axis=1), y.mean(axis=0)
    tr = m_tr - m_t[:, None] - m_r[None, :] + g
    tc = m_tc - m_t[:, None] - m_c[None, :] + g
    rc = m_rc - m_r[:, None] - m_c[None, :] + g
    trc = y - m_tr[:, :, None] - m_tc[:, None, :] - m_rc[None, :, :] + m_t[:, None, None] + m_r[None, :, None] + m_c[None, None, :] - g
    def ms(ss: float, df: int) -> float:
        return ss / df if df > 0 else math.nan
    return DbmMeanSquares(
        t=ms(r * k * float(((m_t - g) ** 2).sum()), t - 1),
        r=ms(t * k * float(((m_r - g) ** 2).sum()), r - 1),
        c=ms(t * r * float(((m_c - g) ** 2).sum()), k - 1),
        tr=ms(k * float((tr**2).sum()), (t - 1) * (r - 1)),
        tc=ms(r * float((tc**2).sum()), (t - 1) * (k - 1)),
        rc=ms(t * float((rc**2).sum()), (r - 1) * (k - 1)),
        trc=ms(float((trc**2).sum()), (t - 1) * (r - 1) * (k - 1)),
    )


def _anova2(y: np.ndarray) -> tuple[float, float, float]:
    """MS(R), MS(C), MS(RC) of one modality's reader x case pseudovalues."""
    r, k = y.shape
    g = y.mean()
    m_r, m_c = y.mean(axis=1), y.mean(axis=0)
    resid = y - m_r[:, None] - m_c[None, :] + g
    return (
        k * float(((m_r - g) ** 2).sum()) / (r - 1),
        r * float(((m_c - g) ** 2).sum()) / (k - 1),
        float((resid**2).sum()) / ((r - 1) * (k - 1)),
    )


def dbm_analysis(data: MrmcData, confidence: float = 0.95) -> DbmResult:
    """DBM analysis of the empirical AUC with Hillis ddf, for the three generalisations."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    t, r, k = data.shape
    if t < 2:
        raise ValueError("a DBM comparison needs at least two modalities")
    y = pseudovalues(data)
    ms = _anova3(y)
    aucs = data.aucs()
    means = aucs.mean(axis=1)
    pairs = list(combinations(range(t), 2))
    mods = data.modalities

    def comparisons(se: float, df: float) -> list:
        return [comparison(mods[a], mods[b], float(means[a] - means[b]), se, df, confidence) for a, b in pairs]

    per_mod = [_anova2(y[i]) for i in range(t)]

    denom = ms.tr + max(ms.tc - ms.trc, 0.0)
    ddf = hillis_df(denom, ms.tr, (t - 1) * (r - 1))
    f = ms.t / denom if denom > 0 else math.nan
    rrrc = MrmcTest(
        "random readers, random cases", "F", f, t - 1, ddf, f_p_value(f, t - 1, ddf),
        comparisons(math.sqrt(2.0 * denom / (r * k)), ddf),
        [
            modality_estimate(
                mods[i], float(means[i]),
                math.sqrt((msr + max(msc - msrc, 0.0)) / (r * k)),
                hillis_df(msr + max(msc - msrc, 0.0), msr, r - 1),
                confidence,
            )
            for i, (msr, msc, msrc) in enumerate(per_mod)
        ],
    )
    df_tc = (t - 1) * (k - 1)
    f_fr = ms.t / ms.tc if ms.tc > 0 else math.nan
    frrc = MrmcTest(
        "fixed readers, random cases", "F", f_fr, t - 1, df_tc, f_p_value(f_fr, t - 1, df_tc),
        comparisons(math.sqrt(2.0 * ms.tc / (r * k)), df_tc),
        [modality_estimate(mods[i], float(means[i]), math.sqrt(msc / (r * k)), k - 1, confidence) for i, (_, msc, _) in enumerate(per_mod)],
    )
    df_tr = (t - 1) * (r - 1)
    f_fc = ms.t / ms.tr if ms.tr > 0 else math.nan
    rrfc = MrmcTest(
        "random readers, fixed cases", "F", f_fc, t - 1, df_tr, f_p_value(f_fc, t - 1, df_tr),
        comparisons(math.sqrt(2.0 * ms.tr / (r * k)), df_tr),
        [modality_estimate(mods[i], float(means[i]), math.sqrt(msr / (r * k)), r - 1, confidence) for i, (msr, _, _) in enumerate(per_mod)],
    )
    components = DbmVarianceComponents(
        var_r=(ms.r - ms.tr - ms.rc + ms.trc) / (t * k),
        var_c=(ms.c - ms.tc - ms.rc + ms.trc) / (t * r),
        var_tr=(ms.tr - ms.trc) / k,
        var_tc=(ms.tc - ms.trc) / r,
        var_rc=(ms.rc - ms.trc) / t,
        var_trc_error=ms.trc,
    )
    return DbmResult(mods, data.readers, k, confidence, aucs, means, ms, components, rrrc, frrc, rrfc)
