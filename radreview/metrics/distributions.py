"""The few distribution functions the statistics need, in plain Python and numpy (no scipy).

Why not scipy: the metrics are the only scipy users in the viewer, and scipy with its
libraries is a fifth of the frozen app (installer/README.md). These functions are written from
the published algorithms and checked against scipy to about 1e-13 relative
(tests/test_metrics_distributions.py), far below what a p-value or CI is reported to.

* normal: cdf and sf from ``math.erfc`` (as scipy's ``ndtr``); quantile by Wichura's
  AS 241 (PPND16, Applied Statistics 37:477, 1988), accurate to about 1e-16;
* chi-square: the regularized upper incomplete gamma Q(df/2, x/2), by its series or its
  continued fraction (Numerical Recipes, 3rd ed., sec. 6.2);
* Student t and F: the regularized incomplete beta I_x(a, b) by its continued fraction
  (modified Lentz; Numerical Recipes sec. 6.4), with the log of its prefactor computed
  without cancellation for large a + b; the t quantile by safeguarded Newton on the t tail;
* the exact two-sided binomial test for p = 1/2 (McNemar's exact test), in integers;
* mid-ranks ("average" ranks, as ``scipy.stats.rankdata``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

_EPS = 1e-16
_TINY = 1e-300
_MAX_TERMS = 100_000  # continued fractions converge in O(sqrt(max(a, b))) terms
_SQRT2 = math.sqrt(2.0)


# -- normal ---------------------------------------------------------------------------------
def _normal_sf_scalar(x: float) -> float:
    return 0.5 * math.erfc(x / _SQRT2)


def normal_sf(x: ArrayLike) -> float | np.ndarray:
    """P(Z > x) for a standard normal Z."""
    if np.ndim(x) == 0:
        return _normal_sf_scalar(float(x))  # type: ignore[arg-type]
    return np.vectorize(_normal_sf_scalar, otypes=[float])(x)


def normal_cdf(x: ArrayLike) -> float | np.ndarray:
    """P(Z <= x) for a standard normal Z."""
    if np.ndim(x) == 0:
        return _normal_sf_scalar(-float(x))  # type: ignore[arg-type]
    return np.vectorize(lambda v: _normal_sf_scalar(-v), otypes=[float])(x)


# AS 241 PPND16 coefficients (Wichura 1988), numerator / denominator, lowest order first.
_A = (3.3871328727963666080e0, 1.3314166789178437745e2, 1.9715909503065514427e3, 1.3731693765509461125e4,
      4.5921953931549871457e4, 6.7265770927008700853e4, 3.3430575583588128105e4, 2.5090809287301226727e3)
_B = (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2, 5.3941960214247511077e3,
      2.1213794301586595867e4, 3.9307895800092710610e4, 2.8729085735721942674e4, 5.2264952788528545610e3)
_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0, 3.64784832476320460504e0,
      1.27045825245236838258e0, 2.41780725177450611770e-1, 2.27238449892691845833e-2, 7.74545014278341407640e-4)
_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
      1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4, 1.05075007164441684324e-9)
_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0, 2.96560571828504891230e-1,
      2.65321895265761230930e-2, 1.24266094738807843860e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7)
_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
      7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7, 2.04426310338993978564e-15)


def _polynomial(coefficients: tuple[float, ...], x: float) -> float:
    result = 0.0
    for c in reversed(coefficients):
        result = result * x + c
    return result


def _normal_ppf_scalar(p: float) -> float:
    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _polynomial(_A, r) / _polynomial(_B, r)
    r = math.sqrt(-math.log(min(p, 1.0 - p)))
    if r <= 5.0:
        r -= 1.6
        value = _polynomial(_C, r) / _polynomial(_D, r)
    else:
        r -= 5.0
        value = _polynomial(_E, r) / _polynomial(_F, r)
    return -value if q < 0.0 else value


def normal_ppf(p: ArrayLike) -> float | np.ndarray:
    """The standard normal quantile: x with P(Z <= x) = p (-inf at 0, inf at 1, nan outside)."""
    if np.ndim(p) == 0:
        return _normal_ppf_scalar(float(p))  # type: ignore[arg-type]
    return np.vectorize(_normal_ppf_scalar, otypes=[float])(p)


# -- incomplete gamma: chi-square -----------------------------------------------------------
def _gamma_prefactor(a: float, x: float) -> float:
    """x^a e^-x / Gamma(a), in logs."""
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _lower_gamma_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_TERMS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * _gamma_prefactor(a, x)


def _upper_gamma_fraction(a: float, x: float) -> float:
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h * _gamma_prefactor(a, x)


def gamma_upper_regularized(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a) for a > 0, x >= 0."""
    if a <= 0 or x < 0 or math.isnan(a) or math.isnan(x):
        return math.nan
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:  # the series converges fast here, and Q is not small
        return 1.0 - _lower_gamma_series(a, x)
    return _upper_gamma_fraction(a, x)


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for X ~ chi-square with ``df`` degrees of freedom."""
    if df <= 0 or math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    return gamma_upper_regularized(df / 2.0, x / 2.0)


# -- incomplete beta: Student t and F --------------------------------------------------------
def _stirling_correction(x: float) -> float:
    """lgamma(x) - [(x - 1/2) ln x - x + ln sqrt(2 pi)] for x >= 10 (the Stirling series;
    the first omitted term, 1/(156 x^13), is below 1e-15 there)."""
    coefficients = (1.0 / 12.0, -1.0 / 360.0, 1.0 / 1260.0, -1.0 / 1680.0, 1.0 / 1188.0, -691.0 / 360360.0)
    return _polynomial(coefficients, 1.0 / (x * x)) / x


def _log_beta(a: float, b: float) -> float:
    """ln B(a, b), without the cancellation of lgamma(a) + lgamma(b) - lgamma(a + b) when a + b is large."""
    small, large = min(a, b), max(a, b)
    if large < 10.0:
        return math.lgamma(small) + math.lgamma(large) - math.lgamma(small + large)
    total = small + large
    # lgamma(large) - lgamma(total) = -(large - 1/2) log1p(small / large) - small ln(total) + small
    #                                 + correction(large) - correction(total)
    return (math.lgamma(small) - (large - 0.5) * math.log1p(small / large) - small * math.log(total) + small
            + _stirling_correction(large) - _stirling_correction(total))


def _beta_fraction(a: float, b: float, x: float, y: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz); ``y = 1 - x``."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    # 1 - (a + b) x / (a + 1), written with y: near x = 1 the direct form cancels.
    d = ((1.0 - b) + qab * y) / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def beta_regularized(a: float, b: float, x: float, y: float | None = None) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1; pass ``y = 1 - x`` when it is known more exactly."""
    y = 1.0 - x if y is None else y
    if a <= 0 or b <= 0 or math.isnan(x) or x < 0 or y < 0:
        return math.nan
    if x == 0:
        return 0.0
    if y == 0:
        return 1.0
    # ln x from y (and ln y from x) where that one is small: x = 1 - 1e-6 has lost digits.
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = a * log_x + b * log_y - _log_beta(a, b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x, y) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y, x) / b


def beta_ppf(p: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = p (the beta distribution's quantile), by bisection: I_x is monotone
    in x, and 200 halvings reach the last bit of a double (Clopper-Pearson limits need it)."""
    if not 0.0 <= p <= 1.0 or a <= 0 or b <= 0:
        return math.nan
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if beta_regularized(a, b, middle) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def t_sf(t: float, df: float) -> float:
    """P(T > t) for T ~ Student t with ``df`` (> 0, may be fractional or inf) degrees of freedom."""
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(df):
        return _normal_sf_scalar(t)
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    t2 = t * t
    # x = df / (df + t^2) and 1 - x = t^2 / (df + t^2), both without cancellation.
    half_tail = 0.5 * beta_regularized(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))
    return half_tail if t >= 0 else 1.0 - half_tail


def _t_pdf(t: float, df: float) -> float:
    log_pdf = (-(df + 1.0) / 2.0 * math.log1p(t * t / df) - 0.5 * math.log(df) - _log_beta(df / 2.0, 0.5))
    return math.exp(log_pdf)


def t_ppf(p: float, df: float) -> float:
    """The Student t quantile: t with P(T <= t) = p."""
    if math.isnan(p) or math.isnan(df) or df <= 0 or p < 0 or p > 1:
        return math.nan
    if math.isinf(df):
        return _normal_ppf_scalar(p)
    if p == 0.5:
        return 0.0
    # Solve in the smaller tail, which a float holds exactly (1 - 1e-6 is already rounded).
    return _t_isf(1.0 - p, df) if p > 0.5 else -_t_isf(p, df)


def _t_isf(tail: float, df: float) -> float:
    """t > 0 with P(T > t) = tail, for 0 <= tail < 1/2: safeguarded Newton on the tail."""
    if tail == 0.0:
        return math.inf
    # Bracket the root, starting from the normal quantile (heavier tails: the root lies beyond).
    lower, upper = 0.0, max(1.0, -_normal_ppf_scalar(tail))
    while t_sf(upper, df) > tail:
        lower, upper = upper, upper * 2.0
        if math.isinf(upper):
            return math.inf
    t = upper
    for _ in range(200):
        excess = t_sf(t, df) - tail  # decreasing in t
        if excess > 0:
            lower = t
        else:
            upper = t
        candidate = t + excess / _t_pdf(t, df)
        if not lower < candidate < upper:  # Newton left the bracket: bisect
            candidate = 0.5 * (lower + upper)
        if abs(candidate - t) <= 4 * _EPS * abs(candidate) or upper - lower <= 4 * _EPS * upper:
            return candidate
        t = candidate
    return t


def f_sf(f: float, dfn: float, dfd: float) -> float:
    """P(F > f) for F ~ F(dfn, dfd); ``dfd`` may be fractional."""
    if math.isnan(f) or dfn <= 0 or dfd <= 0:
        return math.nan
    if f <= 0:
        return 1.0
    if math.isinf(dfd):
        return chi2_sf(f * dfn, dfn)
    denominator = dfd + dfn * f
    return beta_regularized(dfd / 2.0, dfn / 2.0, dfd / denominator, dfn * f / denominator)


# -- binomial --------------------------------------------------------------------------------
def binomial_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials with p = 1/2.

    The distribution is symmetric, so the outcomes at most as likely as k are the two tails
    beyond min(k, n - k): p = min(1, 2 P(X <= min(k, n - k))), summed in integers.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    low = min(k, n - k)
    if 2 * low == n:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(low + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


# -- ranks -----------------------------------------------------------------------------------
def average_ranks(values: ArrayLike, axis: int = -1) -> np.ndarray:
    """Ranks from 1 along ``axis``, ties sharing the mean of their ranks (values must not be NaN)."""
    a = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    n = a.shape[-1]
    if a.size == 0:
        return np.zeros(np.shape(values), dtype=np.float64)
    flat = a.reshape(-1, n)
    ranks = np.empty(flat.shape, dtype=np.float64)
    for row, out in zip(flat, ranks):
        order = np.argsort(row, kind="mergesort")
        ordered = row[order]
        starts_run = np.r_[True, ordered[1:] != ordered[:-1]]
        run = np.cumsum(starts_run) - 1
        bounds = np.r_[np.nonzero(starts_run)[0], n]
        # A run occupying sorted positions [start, end) shares rank (start + 1 + end) / 2.
        mean_rank = (bounds[:-1] + 1 + bounds[1:]) / 2.0
        out[order] = mean_rank[run]
    return np.moveaxis(ranks.reshape(a.shape), -1, axis)
