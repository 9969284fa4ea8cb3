"""McNemar's test for two paired proportions (e.g. one reader's sensitivity unaided vs aided).

McNemar Q (1947). With b = cases right under A and wrong under B and c = the reverse
(the discordant pairs):

* chi-square (asymptotic): X2 = (b - c)^2 / (b + c) on 1 df, or with Edwards' continuity
  correction (|b - c| - 1)^2 / (b + c);
* exact: two-sided binomial test of b successes in b + c trials with p = 1/2.

The difference of the two proportions, (b - c) / n, gets a Wald CI with the paired variance
[(b + c) - (b - c)^2 / n] / n^2 (Agresti 2002, sec. 10.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from radreview.metrics._serialize import DictMixin
from radreview.metrics.distributions import binomial_two_sided_half, chi2_sf, normal_ppf


@dataclass(frozen=True)
class McNemarResult(DictMixin):
    n: int
    a_only: int  # b: right (or positive) under A only
    b_only: int  # c: right (or positive) under B only
    difference: float  # proportion under A minus proportion under B
    lower: float
    upper: float
    statistic: float  # X2 (NaN for the exact test)
    p_value: float
    method: str  # "exact", "chi2" or "chi2-corrected"



def mcnemar_test(outcome_a: ArrayLike, outcome_b: ArrayLike, method: str = "exact", confidence: float = 0.95) -> McNemarResult:
    """Test that two paired binary outcomes (True = e.g. correct call) have the same rate."""
    a = np.asarray(outcome_a).astype(bool)
    b = np.asarray(outcome_b).astype(bool)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"McNemar's test needs two equally long non-empty outcome vectors, got {a.shape} and {b.shape}")
    n = int(a.size)
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    return mcnemar_from_counts(only_a, only_b, n, method, confidence)


def mcnemar_from_counts(a_only: int, b_only: int, n: int, method: str = "exact", confidence: float = 0.95) -> McNemarResult:
    """McNemar's test from the discordant counts and the number of pairs."""
    if a_only < 0 or b_only < 0 or a_only + b_only > n:
        raise ValueError(f"need non-negative discordant counts summing to at most n, got {a_only}, {b_only}, n={n}")
    discordant = a_only + b_only
    if discordant == 0:
        statistic, p = (math.nan if method == "exact" else 0.0), 1.0
    elif method == "exact":
        statistic, p = math.nan, binomial_two_sided_half(a_only, discordant)
    elif method == "chi2":
        statistic = (a_only - b_only) ** 2 / discordant
        p = chi2_sf(statistic, 1)
    elif method == "chi2-corrected":
        statistic = max(abs(a_only - b_only) - 1, 0) ** 2 / discordant
        p = chi2_sf(statistic, 1)
    else:
        raise ValueError(f"unknown McNemar method {method!r}; use 'exact', 'chi2' or 'chi2-corrected'")
    diff = (a_only - b_only) / n
    se = math.sqrt(max(discordant - (a_only - b_only) ** 2 / n, 0.0)) / n
    z = normal_ppf(0.5 + confidence / 2.0)
    return McNemarResult(n, a_only, b_only, diff, diff - z * se, diff + z * se, statistic, p, method)
