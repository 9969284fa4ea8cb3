"""The Van Dyke et al. (1993) five-reader, two-modality study recorded as a radreview reader
study (crossover, 5-point ratings) reproduces the published Obuchowski-Rockette analysis with
DeLong covariances and Hillis' df (MRMCaov output quoted in the shared data's README, §3)."""

from __future__ import annotations

import csv

import pytest

from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.db import open_database
from radreview.readerstudy.design import AIOutputSpec, CaseSpec, StudyDesign, add_reader, create_study
from radreview.readerstudy.reading import sign_in
from radreview.readerstudy.stats import compute_statistics

# Treatment 1 is recorded as the "unaided" modality and 2 as "aided" (the labels are arbitrary).
MODALITY = {"1": "unaided", "2": "aided"}


def test_van_dyke_through_the_reader_study_matches_mrmcaov(mrmc_dir) -> None:
    rows = list(csv.DictReader((mrmc_dir / "vandyke.csv").open()))
    truth = {r["case"]: int(r["truth"]) for r in rows}
    rating = {(r["reader"], r["case"], MODALITY[r["treatment"]]): int(r["rating"]) for r in rows}
    db = open_database("sqlite://")  # in memory: 1,140 saves without an fsync each
    cases = [CaseSpec(case, (f"/nonexistent/{case}.dcm",), t) for case, t in truth.items()]
    # The crossover design needs an AI output per case to show in the "aided" arm; this study had
    # none, so a model answering by the case's rank stands in. It plays no part in the OR analysis.
    ai = [AIOutputSpec(case, "rank-model", (i + 0.5) / len(cases)) for i, case in enumerate(truth)]
    study_id = create_study(db, StudyDesign("vandyke", mode="crossover", confidence_scale="5-point",
                                            seed=1993), cases, ai)
    for reader in sorted({r["reader"] for r in rows}):
        add_reader(db, study_id, reader, "vd-1993")
    coordinator = Coordinator(db)
    source = {c.code: c.source_id for c in coordinator.cases()}
    for reader in coordinator.readers():
        session = sign_in(db, "vandyke", reader, "vd-1993")
        for assignment_id, code, _, missing in session.worklist():
            for phase in missing:
                value = rating[(reader, source[code], phase)]
                session.save_read(assignment_id, phase, value >= 3, rating=value,
                                  ai_agreement=None)
    stats = compute_statistics(coordinator)
    test = stats.mrmc.random_readers_random_cases
    assert test.statistic == pytest.approx(4.484854, rel=1e-5)
    assert test.ddf == pytest.approx(15.06611, rel=1e-5)
    assert test.p_value == pytest.approx(0.05123303, rel=1e-5)
    (comparison,) = test.comparisons
    sign = 1.0 if comparison.modality_a == "unaided" else -1.0  # published: 1 - 2
    assert sign * comparison.difference == pytest.approx(-0.04380032, rel=1e-5)
    assert comparison.se == pytest.approx(0.0206825, rel=1e-5)
    means = {m.modality: m.auc for m in test.modalities}
    assert means == {"unaided": pytest.approx(0.8970370, rel=1e-6), "aided": pytest.approx(0.9408374, rel=1e-6)}
    db.close()
