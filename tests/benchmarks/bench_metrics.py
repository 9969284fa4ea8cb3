"""Timings of the metrics: DeLong by mid-ranks (Sun & Xu 2014) against the O(m n) pairwise
formula, and the MRMC analyses. Prints figures and ratios measured in the same run."""

from __future__ import annotations

import time

import numpy as np

from radreview.metrics import delong_covariance, or_analysis
from radreview.metrics.dbm import dbm_analysis
from radreview.metrics.mrmc_data import MrmcData


def pairwise_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook O(K m n) computation (DeLong et al. 1988), the baseline."""
    x, z = scores[:, y], scores[:, ~y]
    psi = (x[:, :, None] > z[:, None, :]) + 0.5 * (x[:, :, None] == z[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    return v10.mean(axis=1), np.cov(v10) / x.shape[1] + np.cov(v01) / z.shape[1]


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    for n, k in ((1000, 5), (4000, 5)):
        y = rng.random(n) < 0.3
        s = rng.normal(size=(k, n)) + y
        fast = best_of(lambda: delong_covariance(y, s))
        slow = best_of(lambda: pairwise_delong(y, s), repeat=1)
        a1, c1 = delong_covariance(y, s)
        a2, c2 = pairwise_delong(y, s)
        assert np.allclose(a1, a2) and np.allclose(c1, c2)
        print(f"DeLong covariance, {k} score vectors x {n} cases: mid-ranks {fast * 1e3:.2f} ms, pairwise {slow * 1e3:.1f} ms, speed-up x{slow / fast:.0f}")
    # An MRMC study the size of a large reader study: 3 modalities, 12 readers, 400 cases.
    t, r, kc = 3, 12, 400
    truth = np.arange(kc) % 3 == 0
    scores = rng.normal(size=(t, r, kc)) + truth
    data = MrmcData(tuple(range(t)), tuple(range(r)), tuple(range(kc)), truth, scores)
    jk = best_of(lambda: or_analysis(data, "jackknife"))
    dl = best_of(lambda: or_analysis(data, "delong"))
    dbm = best_of(lambda: dbm_analysis(data))
    print(f"OR analysis {t}x{r}x{kc}: jackknife {jk * 1e3:.1f} ms, DeLong {dl * 1e3:.1f} ms (x{jk / dl:.2f}); DBM {dbm * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
