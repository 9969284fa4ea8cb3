"""Kappa against scikit-learn, SAS PROC FREQ printouts and Fleiss' (1971) worked example."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from radreview.metrics import (
    agreement_proportion,
    cohen_kappa,
    cohen_kappa_from_table,
    decision_changes,
    fleiss_kappa,
    percent_agreement,
    ratings_to_counts,
)

# A 3x3 table whose SAS PROC FREQ (AGREE) output is quoted in statsmodels' test suite
# (statsmodels/stats/tests/test_inter_rater.py, "comparison to printout of a SAS example").
SAS_TABLE = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]

# Fleiss (1971) Table 1: 30 psychiatric patients, 6 diagnoses each into 5 categories
# (as given in subjects x raters form by R's irr package, dataset ``diagnoses``).
FLEISS_1971 = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
])

# Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
WIKIPEDIA = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", range(4))
def test_kappa_matches_sklearn(seed: int, weights: str | None) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 80)
    b = np.clip(a + rng.integers(-1, 2, 80) * (rng.random(80) < 0.5), 1, 5)
    ours = cohen_kappa(a, b, weights=weights).kappa
    assert ours == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)


def test_kappa_matches_sklearn_with_string_labels() -> None:
    a = ["fracture", "normal", "normal", "fracture", "normal", "normal"]
    b = ["fracture", "normal", "fracture", "fracture", "normal", "normal"]
    assert cohen_kappa(a, b).kappa == pytest.approx(cohen_kappa_score(a, b))
    assert percent_agreement(a, b) == pytest.approx(5 / 6)
    assert agreement_proportion(a, b).successes == 5


def test_unweighted_kappa_matches_sas() -> None:
    res = cohen_kappa_from_table(SAS_TABLE)
    got = (res.kappa, res.se, res.lower, res.upper, res.se0, res.z, res.p_value)
    want = (0.4842, 0.1380, 0.2137, 0.7547, 0.1484, 3.2626, 0.0011)
    assert got == pytest.approx(want, abs=5e-5)


def test_weighted_kappa_matches_sas() -> None:
    # SAS's default Cicchetti-Allison weights are the linear weights here (equally spaced scores).
    res = cohen_kappa_from_table(SAS_TABLE, weights="linear")
    got = (res.kappa, res.se, res.lower, res.upper, res.se0, res.z, res.p_value)
    want = (0.4701, 0.1457, 0.1845, 0.7558, 0.1426, 3.2971, 0.0010)
    assert got == pytest.approx(want, abs=5e-5)


def test_from_ratings_equals_from_table() -> None:
    a = np.repeat([0, 0, 0, 1, 1, 1, 2, 2, 2], np.ravel(SAS_TABLE))
    b = np.repeat([0, 1, 2, 0, 1, 2, 0, 1, 2], np.ravel(SAS_TABLE))
    assert cohen_kappa(a, b).se == pytest.approx(cohen_kappa_from_table(SAS_TABLE).se)


def test_unused_categories_change_weighted_kappa_only_when_declared() -> None:
    a, b = [2, 3, 3, 4, 5, 5], [2, 3, 4, 4, 5, 4]
    declared = cohen_kappa(a, b, weights="linear", categories=[1, 2, 3, 4, 5])
    assert declared.kappa == pytest.approx(cohen_kappa_score(a, b, weights="linear", labels=[1, 2, 3, 4, 5]))
    assert declared.categories == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="not among the categories"):
        cohen_kappa(a, b, categories=[2, 3, 4])


def test_kappa_undefined_when_one_category_only() -> None:
    res = cohen_kappa([1, 1, 1], [1, 1, 1])
    assert np.isnan(res.kappa)
    import json

    json.dumps(res.to_dict(), allow_nan=False)


def test_fleiss_1971_example() -> None:
    counts, cats = ratings_to_counts(FLEISS_1971)
    assert cats == [1, 2, 3, 4, 5]
    assert counts.sum(axis=0).tolist() == [26, 26, 30, 55, 43]  # column totals of Fleiss' Table 1
    res = fleiss_kappa(counts)
    assert res.kappa == pytest.approx(0.430, abs=5e-4)  # Fleiss (1971)
    assert res.kappa == pytest.approx(0.4302445, abs=5e-8)  # R irr::kappam.fleiss
    assert res.z == pytest.approx(17.65183, abs=5e-6)  # irr, Fleiss-Nee-Landis SE under H0


def test_fleiss_bootstrap_ci() -> None:
    counts, _ = ratings_to_counts(FLEISS_1971)
    res = fleiss_kappa(counts, n_resamples=1000, seed=1)
    assert res.lower < res.kappa < res.upper
    assert res.to_dict()["se"] == res.se
    assert fleiss_kappa(counts, n_resamples=1000, seed=1).upper == res.upper  # seeded
    # Four times the subjects (same pattern): the bootstrap SE about halves.
    bigger = fleiss_kappa(np.tile(counts, (4, 1)), n_resamples=1000, seed=1)
    assert bigger.kappa == pytest.approx(res.kappa)
    assert bigger.se == pytest.approx(res.se / 2, rel=0.15)
    assert np.isnan(fleiss_kappa(counts).se)


def test_fleiss_wikipedia_example() -> None:
    assert fleiss_kappa(WIKIPEDIA).kappa == pytest.approx(0.210, abs=5e-4)


def test_fleiss_with_two_raters_is_scotts_pi() -> None:
    rng = np.random.default_rng(3)
    r = rng.integers(0, 3, (50, 2))
    counts, _ = ratings_to_counts(r)
    # Scott's pi: expected agreement from the pooled marginals.
    pooled = np.bincount(r.ravel(), minlength=3) / r.size
    po = np.mean(r[:, 0] == r[:, 1])
    pi = (po - (pooled**2).sum()) / (1 - (pooled**2).sum())
    assert fleiss_kappa(counts).kappa == pytest.approx(pi)


def test_fleiss_rejects_unequal_raters() -> None:
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[2, 0], [1, 2]])


def test_decision_changes() -> None:
    truth = [1, 1, 0, 0, 1, 0]
    before = [0, 1, 1, 0, 0, 0]
    after = [1, 1, 0, 1, 0, 0]
    res = decision_changes(before, after, truth)
    assert (res.changed.successes, res.towards_truth, res.away_from_truth) == (3, 2, 1)
    assert res.accuracy_before.successes == 3 and res.accuracy_after.successes == 4
    assert res.changed_towards_truth.estimate == pytest.approx(2 / 3)
