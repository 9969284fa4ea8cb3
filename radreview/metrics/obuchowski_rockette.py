"""Obuchowski-Rockette (OR) analysis of reader-averaged AUCs, with Hillis' degrees of freedom.

Model (Obuchowski & Rockette 1995): the AUC of modality i and reader j is

    A_ij = mu + tau_i + R_j + (tau R)_ij + e_ij,

with the error e_ij's covariance over cases summarised by Var (same i, j), Cov1 (same
reader, different modality), Cov2 (different reader, same modality) and Cov3 (different
reader and modality), each the average of the matching entries of the covariance matrix of
the t*r AUC estimates (jackknife or DeLong). With t modalities and r readers:

* random readers and cases (Hillis 2007, "ddf_H"; Hillis, Berbaum & Metz 2008):
  F = MS(T) / [MS(T*R) + r max(Cov2 - Cov3, 0)], ndf = t - 1,
  ddf = [MS(T*R) + r max(Cov2 - Cov3, 0)]^2 / {MS(T*R)^2 / [(t - 1)(r - 1)]};
  SE of a difference = sqrt(2/r [MS(T*R) + r max(Cov2 - Cov3, 0)]);
  one modality alone: SE = sqrt(1/r [MS(R_i) + r max(Cov2_i, 0)]),
  df = [MS(R_i) + r max(Cov2_i, 0)]^2 / [MS(R_i)^2 / (r - 1)].
* fixed readers, random cases: X2 = (t - 1) MS(T) / [Var - Cov1 + (r - 1) max(Cov2 - Cov3, 0)]
  on t - 1 df; per reader, SE of a difference = sqrt(2 (Var_j - Cov1_j)).
* random readers, fixed cases: F = MS(T) / MS(T*R) on (t - 1, (t - 1)(r - 1)) df.

These are the formulas OR-DBM MRMC 2.5 prints and MRMCaov implements; the tests reproduce
their published Van Dyke results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from radreview.metrics._mrmc_results import (
    Comparison,
    ModalityEstimate,
    MrmcTest,
    ReaderComparison,
    _ToDict,
    comparison,
    f_p_value,
    hillis_df,
    modality_estimate,
)
from radreview.metrics.mrmc_data import MrmcData


@dataclass(frozen=True)
class CovarianceComponents(_ToDict):
    """OR error variance and covariances, averaged from the AUC covariance matrix."""

    var: float
    cov1: float
    cov2: float
    cov3: float

    @property
    def correlations(self) -> tuple[float, float, float]:
        return (self.cov1 / self.var, self.cov2 / self.var, self.cov3 / self.var) if self.var > 0 else (math.nan,) * 3


@dataclass(frozen=True)
class ORResult(_ToDict):
    """Everything an OR analysis reports; ``to_dict()`` gives plain JSON-ready values."""

    modalities: tuple[Any, ...]
    readers: tuple[Any, ...]
    n_cases: int
    n_diseased: int
    covariance_method: str
    confidence: float
    aucs: np.ndarray  # (t, r)
    modality_means: np.ndarray  # (t,)
    ms_t: float
    ms_r: float
    ms_tr: float
    ms_r_per_modality: np.ndarray  # (t,)
    components: CovarianceComponents
    var_r: float  # reader variance component
    var_tr: float  # modality x reader variance component
    random_readers_random_cases: MrmcTest
    fixed_readers_random_cases: MrmcTest
    random_readers_fixed_cases: MrmcTest


def _average_components(cov: np.ndarray, t: int, r: int) -> CovarianceComponents:
    """Average the (t r) x (t r) covariance (modality-major) into Var, Cov1, Cov2, Cov3."""
    c = cov.reshape(t, r, t, r)
    same_mod = np.eye(t, dtype=bool)[:, None, :, None]
    same_rdr = np.eye(r, dtype=bool)[None, :, None, :]
    def mean(mask: np.ndarray) -> float:
        mask = np.broadcast_to(mask, c.shape)
        return float(c[mask].mean()) if mask.any() else math.nan
    return CovarianceComponents(
        var=mean(same_mod & same_rdr),
        cov1=mean(~same_mod & same_rdr),
        cov2=mean(same_mod & ~same_rdr),
        cov3=mean(~same_mod & ~same_rdr),
    )


def _mean_squares(aucs: np.ndarray) -> tuple[float, float, float]:
    t, r = aucs.shape
    grand = aucs.mean()
    mod = aucs.mean(axis=1)
    rdr = aucs.mean(axis=0)
    ms_t = r * float(((mod - grand) ** 2).sum()) / (t - 1) if t > 1 else math.nan
    ms_r = t * float(((rdr - grand) ** 2).sum()) / (r - 1)
    inter = aucs - mod[:, None] - rdr[None, :] + grand
    ms_tr = float((inter**2).sum()) / ((t - 1) * (r - 1)) if t > 1 else math.nan
    return ms_t, ms_r, ms_tr


def or_analysis(data: MrmcData, covariance: str = "jackknife", confidence: float = 0.95) -> ORResult:
    """Obuchowski-Rockette analysis with Hillis ddf; ``covariance`` is ``jackknife`` or ``delong``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    t, r, k = data.shape
    if t < 2:
        raise ValueError("an OR comparison needs at least two modalities")
    aucs = data.aucs()
    cov = data.covariance(covariance)
    comp = _average_components(cov, t, r)
    ms_t, ms_r, ms_tr = _mean_squares(aucs)
    means = aucs.mean(axis=1)
    pairs = list(combinations(range(t), 2))

    # Per modality: that modality's data alone (its own reader MS and Cov2).
    ms_r_i = np.array([float(((aucs[i] - aucs[i].mean()) ** 2).sum()) / (r - 1) for i in range(t)])
    blocks = [cov[i * r : (i + 1) * r, i * r : (i + 1) * r] for i in range(t)]
    var_i = np.array([float(np.diag(b).mean()) for b in blocks])
    cov2_i = np.array([float((b.sum() - np.trace(b)) / (r * (r - 1))) for b in blocks])

    # Random readers, random cases (Hillis ddf).
    denom = ms_tr + r * max(comp.cov2 - comp.cov3, 0.0)
    ddf = hillis_df(denom, ms_tr, (t - 1) * (r - 1))
    f = ms_t / denom if denom > 0 else math.nan
    se_diff = math.sqrt(2.0 / r * denom)
    rrrc = MrmcTest(
        analysis="random readers, random cases",
        statistic_name="F",
        statistic=f,
        ndf=t - 1,
        ddf=ddf,
        p_value=f_p_value(f, t - 1, ddf),
        comparisons=[_cmp(data, a, b, means, se_diff, ddf, confidence) for a, b in pairs],
        modalities=[
            modality_estimate(
                data.modalities[i],
                float(means[i]),
                math.sqrt((ms_r_i[i] + r * max(cov2_i[i], 0.0)) / r),
                hillis_df(ms_r_i[i] + r * max(cov2_i[i], 0.0), ms_r_i[i], r - 1),
                confidence,
            )
            for i in range(t)
        ],
    )

    # Fixed readers, random cases: chi-square on t - 1 df.
    denom_fr = comp.var - comp.cov1 + (r - 1) * max(comp.cov2 - comp.cov3, 0.0)
    x2 = (t - 1) * ms_t / denom_fr if denom_fr > 0 else math.nan
    per_reader = []
    for j in range(r):
        idx = [i * r + j for i in range(t)]
        block = cov[np.ix_(idx, idx)]
        var_j = float(np.diag(block).mean())
        cov1_j = float((block.sum() - np.trace(block)) / (t * (t - 1)))
        se_j = math.sqrt(max(2.0 * (var_j - cov1_j), 0.0))
        for a, b in pairs:
            c = comparison(data.modalities[a], data.modalities[b], float(aucs[a, j] - aucs[b, j]), se_j, math.inf, confidence)
            per_reader.append(ReaderComparison(data.readers[j], c))
    frrc = MrmcTest(
        analysis="fixed readers, random cases",
        statistic_name="X2",
        statistic=x2,
        ndf=t - 1,
        ddf=math.inf,
        p_value=f_p_value(x2 / (t - 1), t - 1, math.inf),
        comparisons=[_cmp(data, a, b, means, math.sqrt(2.0 / r * denom_fr), math.inf, confidence) for a, b in pairs],
        modalities=[
            modality_estimate(
                data.modalities[i], float(means[i]), math.sqrt((var_i[i] + (r - 1) * max(cov2_i[i], 0.0)) / r), math.inf, confidence
            )
            for i in range(t)
        ],
        readers=per_reader,
    )

    # Random readers, fixed cases: the conventional two-way ANOVA of the AUCs.
    df_tr = (t - 1) * (r - 1)
    f_fc = ms_t / ms_tr if ms_tr > 0 else math.nan
    rrfc = MrmcTest(
        analysis="random readers, fixed cases",
        statistic_name="F",
        statistic=f_fc,
        ndf=t - 1,
        ddf=df_tr,
        p_value=f_p_value(f_fc, t - 1, df_tr),
        comparisons=[_cmp(data, a, b, means, math.sqrt(2.0 * ms_tr / r), df_tr, confidence) for a, b in pairs],
        modalities=[modality_estimate(data.modalities[i], float(means[i]), math.sqrt(ms_r_i[i] / r), r - 1, confidence) for i in range(t)],
    )

    var_tr = ms_tr - comp.var + comp.cov1 + comp.cov2 - comp.cov3
    var_r = (ms_r - var_tr - comp.var - (t - 1) * comp.cov1 + comp.cov2 + (t - 1) * comp.cov3) / t
    return ORResult(
        modalities=data.modalities,
        readers=data.readers,
        n_cases=k,
        n_diseased=int(data.truth.sum()),
        covariance_method=covariance,
        confidence=confidence,
        aucs=aucs,
        modality_means=means,
        ms_t=ms_t,
        ms_r=ms_r,
        ms_tr=ms_tr,
        ms_r_per_modality=ms_r_i,
        components=comp,
        var_r=var_r,
        var_tr=var_tr,
        random_readers_random_cases=rrrc,
        fixed_readers_random_cases=frrc,
        random_readers_fixed_cases=rrfc,
    )


def reader_averaged_auc(data: MrmcData, covariance: str = "jackknife", confidence: float = 0.95) -> list[ModalityEstimate]:
    """Reader-averaged AUC per modality with its random-readers, random-cases CI (Hillis 2007).

    Works with a single modality (a study with unaided reads only); each modality uses its
    own data alone: SE = sqrt([MS(R_i) + r max(Cov2_i, 0)] / r) with Hillis' df.
    """
    t, r, _ = data.shape
    aucs = data.aucs()
    cov = data.covariance(covariance)
    out = []
    for i in range(t):
        block = cov[i * r : (i + 1) * r, i * r : (i + 1) * r]
        ms_r = float(((aucs[i] - aucs[i].mean()) ** 2).sum()) / (r - 1)
        cov2 = float((block.sum() - np.trace(block)) / (r * (r - 1)))
        denom = ms_r + r * max(cov2, 0.0)
        out.append(modality_estimate(data.modalities[i], float(aucs[i].mean()), math.sqrt(denom / r), hillis_df(denom, ms_r, r - 1), confidence))
    return out


def _cmp(data: MrmcData, a: int, b: int, means: np.ndarray, se: float, df: float, confidence: float) -> Comparison:
    return comparison(data.modalities[a], data.modalities[b], float(means[a] - means[b]), se, df, confidence)
