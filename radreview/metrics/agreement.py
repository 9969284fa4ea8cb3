"""Agreement between raters: percent agreement, Cohen's kappa (weighted), Fleiss' kappa.

Cohen's kappa (Cohen 1960; weighted, Cohen 1968) from the k x k table of proportions p_ij
(rater a's category i, rater b's category j), with agreement weights w_ij (1 on the diagonal):

    p_o = sum w_ij p_ij,  p_e = sum w_ij p_i. p_.j,  kappa = (p_o - p_e) / (1 - p_e).

``linear``: w_ij = 1 - |i - j| / (k - 1); ``quadratic``: w_ij = 1 - (i - j)^2 / (k - 1)^2, with
i, j the positions of the categories in sorted order (as scikit-learn's
``cohen_kappa_score``). The large-sample standard error is that of Fleiss, Cohen & Everitt
(1969), as SAS PROC FREQ prints it ("ASE"):

    var = [sum p_ij (w_ij - (wbar_i. + wbar_.j)(1 - kappa))^2 - (kappa - p_e (1 - kappa))^2] / (n (1 - p_e)^2),

wbar_i. = sum_j p_.j w_ij, wbar_.j = sum_i p_i. w_ij; and under H0 (kappa = 0)

    var0 = [sum p_i. p_.j (w_ij - (wbar_i. + wbar_.j))^2 - p_e^2] / (n (1 - p_e)^2).

Fleiss' kappa (Fleiss 1971) for N subjects each rated by the same number n of raters into k
categories, from counts n_ij: P_i = (sum_j n_ij^2 - n) / (n (n - 1)), p_j = sum_i n_ij / (N n),
kappa = (mean P_i - sum p_j^2) / (1 - sum p_j^2); its standard error under H0 is that of
Fleiss, Nee & Landis (1979):

    se0 = sqrt(2 / (N n (n - 1))) * sqrt((sum p_j q_j)^2 - sum p_j q_j (q_j - p_j)) / sum p_j q_j.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics.operating_points import Proportion, proportion
from radreview.metrics._serialize import DictMixin
from radreview.metrics.distributions import normal_ppf, normal_sf


@dataclass(frozen=True)
class KappaResult(DictMixin):
    kappa: float
    se: float  # large-sample SE (Fleiss, Cohen & Everitt 1969); NaN for Fleiss' kappa
    lower: float
    upper: float
    se0: float  # SE under H0: kappa = 0
    z: float  # kappa / se0
    p_value: float  # two-sided, H0: kappa = 0
    observed_agreement: float  # p_o (weighted when weights are used)
    expected_agreement: float  # p_e
    n: int  # cases (subjects)
    weights: str  # "none" | "linear" | "quadratic"
    confidence: float
    categories: list[Any]


def percent_agreement(rater_a: ArrayLike, rater_b: ArrayLike) -> float:
    """Share of cases on which two raters give the same category."""
    a, b = _pair(rater_a, rater_b)
    return float(np.mean(a == b))


def agreement_proportion(rater_a: ArrayLike, rater_b: ArrayLike, confidence: float = 0.95) -> Proportion:
    """Percent agreement as a proportion with a Wilson CI (e.g. reader agrees with the AI)."""
    a, b = _pair(rater_a, rater_b)
    return proportion(int(np.count_nonzero(a == b)), int(a.size), confidence)


def _pair(rater_a: ArrayLike, rater_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(rater_a), np.asarray(rater_b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"the two raters must rate the same cases: shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("agreement needs at least one case")
    return a, b


def agreement_weights(k: int, weights: str | None) -> np.ndarray:
    """k x k agreement weights (1 = full agreement) for ``None``, ``linear`` or ``quadratic``."""
    i, j = np.indices((k, k))
    if weights in (None, "none"):
        return (i == j).astype(np.float64)
    if k < 2:
        return np.ones((k, k))
    if weights == "linear":
        return 1.0 - np.abs(i - j) / (k - 1)
    if weights == "quadratic":
        return 1.0 - (i - j) ** 2 / (k - 1) ** 2
    raise ValueError(f"unknown kappa weights {weights!r}; use None, 'linear' or 'quadratic'")


def cohen_kappa(
    rater_a: ArrayLike,
    rater_b: ArrayLike,
    weights: str | None = None,
    categories: Sequence[Any] | None = None,
    confidence: float = 0.95,
) -> KappaResult:
    """Cohen's kappa of two raters' categorical ratings of the same cases, with SE and CI.

    ``categories`` fixes the ordered category list (needed for weights when a category is
    unused, e.g. a 5-point scale where nobody chose 1); by default the sorted observed values.
    """
    a, b = _pair(rater_a, rater_b)
    cats = list(categories) if categories is not None else sorted(set(a.tolist()) | set(b.tolist()))
    index = {c: i for i, c in enumerate(cats)}
    unknown = [v for v in set(a.tolist()) | set(b.tolist()) if v not in index]
    if unknown:
        raise ValueError(f"ratings {sorted(map(str, unknown))[:5]} are not among the categories {cats}")
    table = np.zeros((len(cats), len(cats)))
    np.add.at(table, ([index[v] for v in a.tolist()], [index[v] for v in b.tolist()]), 1.0)
    return cohen_kappa_from_table(table, weights, confidence, cats)


def cohen_kappa_from_table(
    table: ArrayLike, weights: str | None = None, confidence: float = 0.95, categories: Sequence[Any] | None = None
) -> KappaResult:
    """Cohen's kappa from a k x k contingency table of counts (rows rater a, columns rater b)."""
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"the kappa table must be square, got shape {counts.shape}")
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("the kappa table is empty")
    k = counts.shape[0]
    w = agreement_weights(k, weights)
    p = counts / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    po = float((w * p).sum())
    pe = float((w * np.outer(row, col)).sum())
    z_crit = normal_ppf(0.5 + confidence / 2.0)
    if pe >= 1.0:
        # Both raters used one category only: kappa is undefined (0/0).
        kappa = se = se0 = z = p_value = lower = upper = math.nan
    else:
        kappa = (po - pe) / (1.0 - pe)
        wi = w @ col  # wbar_i.
        wj = row @ w  # wbar_.j
        s = wi[:, None] + wj[None, :]
        var = ((p * (w - s * (1.0 - kappa)) ** 2).sum() - (kappa - pe * (1.0 - kappa)) ** 2) / (n * (1.0 - pe) ** 2)
        var0 = ((np.outer(row, col) * (w - s) ** 2).sum() - pe**2) / (n * (1.0 - pe) ** 2)
        se, se0 = math.sqrt(max(var, 0.0)), math.sqrt(max(var0, 0.0))
        z = kappa / se0 if se0 > 0 else math.nan
        p_value = 2.0 * normal_sf(abs(z)) if se0 > 0 else math.nan
        lower, upper = kappa - z_crit * se, kappa + z_crit * se
    return KappaResult(
        kappa=kappa,
        se=se,
        lower=lower,
        upper=upper,
        se0=se0,
        z=z,
        p_value=p_value,
        observed_agreement=po,
        expected_agreement=pe,
        n=int(round(n)),
        weights=weights or "none",
        confidence=confidence,
        categories=list(categories) if categories is not None else list(range(k)),
    )


def ratings_to_counts(ratings: ArrayLike, categories: Sequence[Any] | None = None) -> tuple[np.ndarray, list[Any]]:
    """Subjects x raters ratings into the subjects x categories count table Fleiss' kappa takes."""
    r = np.asarray(ratings)
    if r.ndim != 2:
        raise ValueError(f"ratings must be a subjects x raters table, got shape {r.shape}")
    cats = list(categories) if categories is not None else sorted(set(r.ravel().tolist()))
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((r.shape[0], len(cats)), dtype=np.int64)
    for s, row in enumerate(r.tolist()):
        for value in row:
            if value not in index:
                raise ValueError(f"rating {value!r} of subject {s} is not among the categories {cats}")
            counts[s, index[value]] += 1
    return counts, cats


def fleiss_kappa(
    counts: ArrayLike,
    confidence: float = 0.95,
    categories: Sequence[Any] | None = None,
    n_resamples: int = 0,
    seed: int | None = 0,
) -> KappaResult:
    """Fleiss' kappa from a subjects x categories table of rater counts (equal raters per subject).

    Use :func:`ratings_to_counts` for a subjects x raters table. ``se0``/``z``/``p_value``
    test kappa = 0 (Fleiss, Nee & Landis 1979). There is no closed-form SE away from 0:
    with ``n_resamples > 0`` ``se``, ``lower`` and ``upper`` come from a seeded percentile
    bootstrap over subjects; otherwise they are NaN.
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"counts must be a subjects x categories table, got shape {x.shape}")
    if np.any(x < 0):
        raise ValueError("counts must be non-negative")
    raters = x.sum(axis=1)
    if not np.allclose(raters, raters[0]):
        raise ValueError("Fleiss' kappa needs the same number of ratings for every subject")
    n = float(raters[0])
    if n < 2:
        raise ValueError("Fleiss' kappa needs at least two ratings per subject")
    subjects = x.shape[0]
    pj = x.sum(axis=0) / (subjects * n)
    pi = ((x**2).sum(axis=1) - n) / (n * (n - 1.0))
    p_bar, pe = float(pi.mean()), float((pj**2).sum())
    pq = pj * (1.0 - pj)
    if pe >= 1.0:
        kappa = se0 = z = p_value = math.nan
    else:
        kappa = (p_bar - pe) / (1.0 - pe)
        sum_pq = float(pq.sum())
        se0 = math.sqrt(2.0 / (subjects * n * (n - 1.0))) * math.sqrt(sum_pq**2 - float((pq * (1.0 - 2.0 * pj)).sum())) / sum_pq
        z = kappa / se0
        p_value = 2.0 * normal_sf(abs(z))
    se = lower = upper = math.nan
    if n_resamples > 0 and math.isfinite(kappa):
        from radreview.metrics.bootstrap import bootstrap_ci  # local: bootstrap is optional here

        boot = bootstrap_ci(_fleiss_point, x, n_resamples=n_resamples, confidence=confidence, seed=seed)
        se, lower, upper = boot.se, boot.lower, boot.upper
    return KappaResult(
        kappa=kappa,
        se=se,
        lower=lower,
        upper=upper,
        se0=se0,
        z=z,
        p_value=p_value,
        observed_agreement=p_bar,
        expected_agreement=pe,
        n=subjects,
        weights="none",
        confidence=confidence,
        categories=list(categories) if categories is not None else list(range(x.shape[1])),
    )


def _fleiss_point(counts: np.ndarray) -> float:
    n = counts[0].sum()
    pj = counts.sum(axis=0) / (counts.shape[0] * n)
    pe = float((pj**2).sum())
    if pe >= 1.0:
        return math.nan
    p_bar = float((((counts**2).sum(axis=1) - n) / (n * (n - 1.0))).mean())
    return (p_bar - pe) / (1.0 - pe)


@dataclass(frozen=True)
class DecisionChanges(DictMixin):
    """How second (e.g. AI-aided) decisions differ from first (unaided) ones on the same cases."""

    n: int
    changed: Proportion  # share of cases whose decision changed
    towards_truth: int  # wrong before, right after
    away_from_truth: int  # right before, wrong after
    changed_towards_truth: Proportion  # of the changed decisions, the share that became right
    accuracy_before: Proportion
    accuracy_after: Proportion



def decision_changes(before: ArrayLike, after: ArrayLike, truth: ArrayLike, confidence: float = 0.95) -> DecisionChanges:
    """Counts of changed binary (or categorical) decisions, towards and away from the truth."""
    b, a = _pair(before, after)
    t = np.asarray(truth)
    if t.shape != b.shape:
        raise ValueError(f"truth must have one value per case ({b.size}), got shape {t.shape}")
    changed = b != a
    towards = int(np.count_nonzero(changed & (b != t) & (a == t)))
    away = int(np.count_nonzero(changed & (b == t) & (a != t)))
    n_changed = int(np.count_nonzero(changed))
    return DecisionChanges(
        n=int(b.size),
        changed=proportion(n_changed, int(b.size), confidence),
        towards_truth=towards,
        away_from_truth=away,
        changed_towards_truth=proportion(towards, n_changed, confidence),
        accuracy_before=proportion(int(np.count_nonzero(b == t)), int(b.size), confidence),
        accuracy_after=proportion(int(np.count_nonzero(a == t)), int(b.size), confidence),
    )
