"""Intervals that stay honest on few cases: exact binomial CIs and a conservative AUC interval.

Proportions: the Clopper-Pearson (1934) interval inverts two one-sided binomial tests,

    lower = Beta(a/2; k, n - k + 1),   upper = Beta(1 - a/2; k + 1, n - k),

and never covers less than its nominal level. :func:`proportion_interval` uses it where the
normal approximation behind the Wilson score interval is doubtful (fewer than
``NORMAL_APPROXIMATION_MIN`` successes or failures, the usual ``np >= 5`` rule), Wilson elsewhere.

AUC: DeLong's interval is a Wald interval around an estimate of the variance from the placement
values; with few positive or negative cases, or an empirical AUC of 0 or 1 (variance estimate 0),
it is unreliable (e.g. "1.000 (1.000-1.000)" from one negative case). There the conservative
interval inverts the Birnbaum-Klose (1957) bound on the variance of the Mann-Whitney statistic,
Var(AUC) <= A (1 - A) / min(m, n): the A with (AUC - A)^2 <= z^2 A (1 - A) / min(m, n), a
Wilson-type interval on min(m, n) "trials". It is wide, which is the point.
"""

from __future__ import annotations

import math

from radreview.metrics.distributions import beta_ppf, normal_ppf
from radreview.metrics.operating_points import Proportion, check_binomial, wilson_interval

MIN_CASES_PER_CLASS = 10  # fewer positive or negative cases than this: a figure is flagged
NORMAL_APPROXIMATION_MIN = 5


def clopper_pearson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion; ``(nan, nan)`` when ``n == 0``."""
    check_binomial(successes, n, confidence)
    if n == 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    lower = 0.0 if successes == 0 else beta_ppf(alpha / 2.0, successes, n - successes + 1)
    upper = 1.0 if successes == n else beta_ppf(1.0 - alpha / 2.0, successes + 1, n - successes)
    return lower, upper


def normal_approximation_holds(successes: int, n: int) -> bool:
    return min(successes, n - successes) >= NORMAL_APPROXIMATION_MIN


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[Proportion, str]:
    """(proportion, method): Wilson where the normal approximation holds, Clopper-Pearson elsewhere."""
    exact = not normal_approximation_holds(successes, n)
    lower, upper = (clopper_pearson_interval if exact else wilson_interval)(successes, n, confidence)
    return (Proportion(successes / n if n else math.nan, lower, upper, int(successes), int(n)),
            "clopper-pearson" if exact else "wilson")


def delong_unreliable_reason(auc: float, n_positive: int, n_negative: int) -> str:
    """Why a DeLong interval should not be trusted here ("" when it can be)."""
    reasons = []
    if min(n_positive, n_negative) < MIN_CASES_PER_CLASS:
        reasons.append(f"{n_positive} positive and {n_negative} negative cases (< {MIN_CASES_PER_CLASS} of each)")
    if auc in (0.0, 1.0):
        reasons.append(f"an empirical AUC of {auc:g}, where DeLong's variance estimate is 0")
    return "; ".join(reasons)


def auc_conservative_interval(auc: float, n_positive: int, n_negative: int,
                              confidence: float = 0.95) -> tuple[float, float]:
    """The interval from the Birnbaum-Klose maximum variance (see the module docstring)."""
    trials = min(n_positive, n_negative)
    if trials <= 0 or not math.isfinite(auc):
        return math.nan, math.nan
    z = float(normal_ppf(0.5 + confidence / 2.0))
    denom = 1.0 + z * z / trials
    centre = (auc + z * z / (2.0 * trials)) / denom
    half = z / denom * math.sqrt(max(auc * (1.0 - auc), 0.0) / trials + z * z / (4.0 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)
