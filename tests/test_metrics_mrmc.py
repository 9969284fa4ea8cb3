"""MRMC analyses reproduce the published Van Dyke et al. (1993) results.

Expected figures are quoted in ``../shared/data/mrmc/README.md`` from OR-DBM MRMC 2.51
([ORDBM]), the MRMCaov user guide ([MRMCaov]) and the RJafroc book ([RJafrocBook]); each is
compared to the number of digits printed there (half a unit in the last printed digit).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from radreview.metrics.mrmc import MrmcData, dbm_analysis, or_analysis, read_mrmc_csv, reader_averaged_auc


def close(printed: str) -> object:
    """Equal to a published figure (given as printed) to the digits it was printed with."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return pytest.approx(float(printed), abs=0.5 * 10.0**-decimals * (1 + 1e-9))


@pytest.fixture(scope="module")
def vandyke(mrmc_dir) -> MrmcData:
    return read_mrmc_csv(mrmc_dir / "vandyke.csv", modality="treatment", score="rating")


@pytest.fixture(scope="module")
def or_jk(vandyke):
    return or_analysis(vandyke, covariance="jackknife")


@pytest.fixture(scope="module")
def or_dl(vandyke):
    return or_analysis(vandyke, covariance="delong")


@pytest.fixture(scope="module")
def dbm(vandyke):
    return dbm_analysis(vandyke)


def test_data_shape(vandyke) -> None:
    assert vandyke.shape == (2, 5, 114)
    assert vandyke.modalities == ("1", "2")
    assert int(vandyke.truth.sum()) == 45


def test_per_reader_aucs_ordbm(or_jk) -> None:
    expected = [
        ["0.91964573", "0.85877617", "0.90386473", "0.97310789", "0.82979066"],
        ["0.94782609", "0.90531401", "0.92173913", "0.99935588", "0.92995169"],
    ]
    for got_row, row in zip(or_jk.aucs, expected, strict=True):
        for got, want in zip(got_row, row, strict=True):
            assert got == close(want)
    assert or_jk.modality_means[0] == close("0.89703704")
    assert or_jk.modality_means[1] == close("0.94083736")
    assert or_jk.modality_means[0] - or_jk.modality_means[1] == close("-0.04380032")


def test_or_jackknife_random_readers_random_cases(or_jk) -> None:
    # [MRMCaov] (more digits than [ORDBM], which agrees).
    assert or_jk.ms_t == close("0.004796171")
    assert or_jk.ms_tr == close("0.0005510306")
    assert or_jk.ms_r == close("0.00383620")
    c = or_jk.components
    assert or_jk.var_r == close("0.0015349993")
    assert or_jk.var_tr == close("0.0002004025")
    assert c.var == close("0.0008022883")
    assert c.cov1 == close("0.0003466137")
    assert c.cov2 == close("0.0003440748")
    assert c.cov3 == close("0.0002390284")
    assert c.correlations == (close("0.4320314"), close("0.4288668"), close("0.2979333"))
    test = or_jk.random_readers_random_cases
    assert test.statistic == close("4.456319")
    assert test.ndf == 1
    assert test.ddf == close("15.25967")
    assert test.p_value == close("0.05166569")
    (cmp,) = test.comparisons
    assert cmp.difference == close("-0.04380032")
    assert cmp.se == close("0.02074862")
    assert cmp.statistic == close("-2.110999")
    assert (cmp.lower, cmp.upper) == (close("-0.0879594986"), close("0.0003588544"))
    m1, m2 = test.modalities
    assert (m1.auc, m1.se, m1.df, m1.lower, m1.upper) == (close("0.8970370"), close("0.03317360"), close("12.74465"), close("0.8252236"), close("0.9688505"))
    assert (m2.auc, m2.se, m2.df, m2.lower, m2.upper) == (close("0.9408374"), close("0.02156637"), close("12.71019"), close("0.8941378"), close("0.9875369"))
    assert or_jk.ms_r_per_modality.tolist() == [close("0.003082629"), close("0.001304602")]


def test_or_delong_random_readers_random_cases(or_dl) -> None:
    # [MRMCaov], cov = DeLong.
    c = or_dl.components
    assert or_dl.var_r == close("0.0015364254")
    assert or_dl.var_tr == close("0.0002045840")
    assert c.var == close("0.0007921325")
    assert c.cov1 == close("0.0003420090")
    assert c.cov2 == close("0.0003395265")
    assert c.cov3 == close("0.0002358497")
    assert c.correlations == (close("0.4317573"), close("0.4286234"), close("0.2977402"))
    test = or_dl.random_readers_random_cases
    assert (test.statistic, test.ddf, test.p_value) == (close("4.484854"), close("15.06611"), close("0.05123303"))
    (cmp,) = test.comparisons
    assert (cmp.se, cmp.statistic) == (close("0.0206825"), close("-2.117747"))
    assert (cmp.lower, cmp.upper) == (close("-0.0878671960"), close("0.0002665519"))
    m1, m2 = test.modalities
    assert (m1.se, m1.df, m1.lower, m1.upper) == (close("0.03307642"), close("12.59597"), close("0.8253461"), close("0.9687280"))
    assert (m2.se, m2.df, m2.lower, m2.upper) == (close("0.02150464"), close("12.56530"), close("0.8942155"), close("0.9874592"))


def test_or_jackknife_fixed_readers(or_jk) -> None:
    test = or_jk.fixed_readers_random_cases
    assert test.statistic_name == "X2"
    assert (test.statistic, test.p_value) == (close("5.475953"), close("0.01927984"))
    (cmp,) = test.comparisons
    assert (cmp.se, cmp.statistic, cmp.lower, cmp.upper) == (close("0.01871748"), close("-2.340075"), close("-0.08048591"), close("-0.00711473"))
    m1, m2 = test.modalities  # [ORDBM]
    assert (m1.se, m1.lower, m1.upper) == (close("0.02428971"), close("0.84943008"), close("0.94464399"))
    assert (m2.se, m2.lower, m2.upper) == (close("0.01677632"), close("0.90795637"), close("0.97371835"))
    expected = [  # [ORDBM] single reader (1 - 2): difference, StdErr, z, p, CI
        ("-0.02818", "0.02551", "-1.10", "0.2693", "-0.07818", "0.02182"),
        ("-0.04654", "0.02630", "-1.77", "0.0768", "-0.09809", "0.00501"),
        ("-0.01787", "0.03121", "-0.57", "0.5668", "-0.07904", "0.04330"),
        ("-0.02625", "0.01729", "-1.52", "0.1290", "-0.06014", "0.00764"),
        ("-0.10016", "0.04406", "-2.27", "0.0230", "-0.18651", "-0.01381"),
    ]
    assert [rc.reader for rc in test.readers] == ["1", "2", "3", "4", "5"]
    for rc, row in zip(test.readers, expected, strict=True):
        c = rc.comparison
        assert (c.difference, c.se, c.statistic, c.p_value, c.lower, c.upper) == tuple(close(v) for v in row)


def test_or_random_readers_fixed_cases(or_jk) -> None:
    test = or_jk.random_readers_fixed_cases
    assert (test.statistic, test.ndf, test.ddf) == (close("8.704"), 1, 4)
    assert test.p_value == close("0.04195875")
    (cmp,) = test.comparisons
    assert (cmp.se, cmp.lower, cmp.upper) == (close("0.01485"), close("-0.08502022"), close("-0.00258042"))


def test_dbm_mean_squares_and_components(dbm) -> None:
    ms = dbm.mean_squares  # [RJafrocBook] UtilMeanSquares(dataset02)
    got = (ms.t, ms.r, ms.c, ms.tr, ms.tc, ms.rc, ms.trc)
    want = ("0.5467634", "0.4373268", "0.3968699", "0.06281749", "0.09984808", "0.06450106", "0.0399716")
    assert got == tuple(close(v) for v in want)
    c = dbm.components  # [ORDBM]
    got = (c.var_r, c.var_c, c.var_tr, c.var_tc, c.var_rc, c.var_trc_error)
    want = ("0.00153500", "0.02724923", "0.00020040", "0.01197530", "0.01226473", "0.03997160")
    assert got == tuple(close(v) for v in want)


def test_dbm_tests(dbm) -> None:
    test = dbm.random_readers_random_cases  # [RJafrocBook]
    assert (test.statistic, test.ddf, test.p_value) == (close("4.4563187"), close("15.259675"), close("0.051665686"))
    (cmp,) = test.comparisons
    assert (cmp.lower, cmp.difference, cmp.upper) == (close("-0.087959499"), close("-0.043800322"), close("0.00035885444"))
    fixed_readers = dbm.fixed_readers_random_cases
    assert fixed_readers.ddf == 113
    assert fixed_readers.p_value == close("0.021034969")
    (cmp,) = fixed_readers.comparisons
    assert (cmp.lower, cmp.upper) == (close("-0.080883031"), close("-0.0067176131"))
    fixed_cases = dbm.random_readers_fixed_cases
    assert fixed_cases.p_value == close("0.041958752")
    (cmp,) = fixed_cases.comparisons
    assert (cmp.lower, cmp.upper) == (close("-0.085020224"), close("-0.0025804202"))


def test_dbm_equals_or_jackknife_for_single_modalities(dbm, or_jk) -> None:
    # Hillis (2007): DBM with centred pseudovalues is OR with jackknife covariances.
    for a, b in zip(dbm.random_readers_random_cases.modalities, or_jk.random_readers_random_cases.modalities, strict=True):
        assert (a.se, a.df, a.lower, a.upper) == pytest.approx((b.se, b.df, b.lower, b.upper), rel=1e-10)


def test_results_serialise(or_dl, dbm) -> None:
    for result in (or_dl, dbm):
        d = result.to_dict()
        text = json.dumps(d, allow_nan=False)
        assert "random readers, random cases" in text
    assert or_dl.to_dict()["random_readers_random_cases"]["comparisons"][0]["modality_a"] == "1"


def test_relabelled_and_shuffled_input_gives_same_result(vandyke) -> None:
    t, r, k = vandyke.shape
    rows = [
        (f"R{j}", ["cine", "se"][i], f"case-{c}", int(vandyke.truth[c]), float(vandyke.scores[i, j, c]))
        for i in range(t) for j in range(r) for c in range(k)
    ]
    rng = np.random.default_rng(1)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    data = MrmcData.from_columns(*zip(*rows, strict=True))
    res = or_analysis(data, "delong")
    assert res.random_readers_random_cases.statistic == close("4.484854")


def test_three_modalities_runs_and_pairs(vandyke) -> None:
    # A third modality made from the second with a reader-specific shift of ratings is still
    # a valid design; the analysis reports all three pairwise comparisons.
    scores = np.concatenate([vandyke.scores, vandyke.scores[1:2] + 0.5 * (vandyke.scores[0:1] > 3)], axis=0)
    data = MrmcData(("a", "b", "c"), vandyke.readers, vandyke.cases, vandyke.truth, scores)
    res = or_analysis(data)
    assert res.random_readers_random_cases.ndf == 2
    assert [(c.modality_a, c.modality_b) for c in res.random_readers_random_cases.comparisons] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert 0.0 <= res.random_readers_random_cases.p_value <= 1.0
    assert math.isfinite(dbm_analysis(data).random_readers_random_cases.statistic)


def test_modality_order_and_records(mrmc_dir) -> None:
    import csv

    with (mrmc_dir / "vandyke.csv").open() as fh:
        rows = [{"reader": r["reader"], "modality": r["treatment"], "case": r["case"], "truth": r["truth"], "score": r["rating"]} for r in csv.DictReader(fh)]
    data = MrmcData.from_records(rows, modality_order=[2, 1])  # numbers name the text codes too
    assert data.modalities == ("2", "1")
    (cmp,) = or_analysis(data).random_readers_random_cases.comparisons
    assert (cmp.modality_a, cmp.modality_b, cmp.difference) == ("2", "1", close("0.04380032"))
    with pytest.raises(ValueError, match="must list each modality once"):
        MrmcData.from_records(rows, modality_order=["1", "3"])
    with pytest.raises(ValueError, match="at least two readers"):
        MrmcData.from_records([r for r in rows if r["reader"] == "1"])


def test_bad_designs_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="not fully crossed"):
        MrmcData.from_columns(["1", "1", "2"], ["a", "a", "a"], ["c1", "c2", "c1"], [0, 1, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="conflicting truth"):
        MrmcData.from_columns(["1", "2"], ["a", "a"], ["c1", "c1"], [0, 1], [1, 2])
    with pytest.raises(ValueError, match="more than once"):
        MrmcData.from_columns(["1", "1"], ["a", "a"], ["c1", "c1"], [0, 0], [1, 2])
    bad = tmp_path / "reads.csv"
    bad.write_text("reader,modality,case,truth,score\n1,a,c1,0,high\n")
    with pytest.raises(ValueError, match=r"reads\.csv, line 2: score 'high'"):
        read_mrmc_csv(bad)
    bad.write_text("reader,arm,case,truth,score\n1,a,c1,0,1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_mrmc_csv(bad)


def test_reader_averaged_auc_matches_or_per_modality(vandyke, or_dl) -> None:
    for est, ref in zip(reader_averaged_auc(vandyke, "delong"), or_dl.random_readers_random_cases.modalities, strict=True):
        assert (est.auc, est.se, est.df, est.lower, est.upper) == pytest.approx((ref.auc, ref.se, ref.df, ref.lower, ref.upper))
    # One modality alone (an unaided-only study) gives the same figures for it.
    single = MrmcData(vandyke.modalities[:1], vandyke.readers, vandyke.cases, vandyke.truth, vandyke.scores[:1])
    (only,) = reader_averaged_auc(single, "delong")
    assert (only.se, only.df, only.lower, only.upper) == (close("0.03307642"), close("12.59597"), close("0.8253461"), close("0.9687280"))


def test_ai_as_a_modality_read_identically_by_every_reader(vandyke) -> None:
    # Readers vs AI: the AI's scores repeated for every reader form a modality without reader
    # variance. The OR analysis still applies (no division by zero) and the AI modality's
    # reader-averaged AUC is the AI's AUC, with a CI from case variation alone.
    ai = vandyke.scores[1].mean(axis=0)  # a "model" that averages the readers' ratings
    scores = np.stack([vandyke.scores[0], np.broadcast_to(ai, vandyke.scores[0].shape)])
    data = MrmcData(("readers", "AI"), vandyke.readers, vandyke.cases, vandyke.truth, scores)
    res = or_analysis(data, "delong")
    from radreview.metrics import auc_ci, roc_auc

    assert res.modality_means[1] == pytest.approx(roc_auc(vandyke.truth, ai))
    ai_est = res.random_readers_random_cases.modalities[1]
    assert ai_est.df == math.inf
    assert ai_est.se == pytest.approx(auc_ci(vandyke.truth, ai).se)  # the DeLong SE of the AI's AUC
    test = res.random_readers_random_cases
    assert 0.0 < test.p_value < 1.0 and test.ddf > 0
