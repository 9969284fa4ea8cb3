"""A scripted sequential study (3 readers x 40 FracAtlas cases) through the CLI and the data
layer: exports are complete and pseudonymous, statistics agree with scikit-learn."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from _readerstudy_support import PIN, answer_key, write_study_inputs
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from radreview.cli import main
from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.db import open_database
from radreview.readerstudy.reading import sign_in
from radreview.readerstudy.scripted_reader import read_all
from radreview.readerstudy.stats import compute_statistics


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, fracatlas_dir):
    tmp = tmp_path_factory.mktemp("study")
    cases_csv, ai_csv = write_study_inputs(tmp, fracatlas_dir)
    db_path = tmp / "study.db"
    assert main(["study", "create", "--db", str(db_path), "--name", "wrist", "--cases", str(cases_csv),
                 "--ai", str(ai_csv), "--mode", "sequential", "--scale", "both", "--sham-share", "0.1",
                 "--seed", "3"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADREVIEW_READER_PIN", PIN)
        for reader in ("R1", "R2", "R3"):
            assert main(["study", "add-reader", "--db", str(db_path), "--reader", reader]) == 0
    db = open_database(db_path)
    coordinator = Coordinator(db)
    for reader in ("R1", "R2", "R3"):
        read_all(sign_in(db, "wrist", reader, PIN), answer_key(coordinator, reader))
    yield tmp, db_path, coordinator
    db.close()


def test_status_and_exports_are_complete_and_pseudonymous(finished_study, capsys) -> None:
    tmp, db_path, coordinator = finished_study
    assert main(["study", "status", "--db", str(db_path)]) == 0
    assert capsys.readouterr().out.count("40      40   100%      80") == 3
    out = tmp / "export"
    assert main(["study", "export", "--db", str(db_path), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "reads.csv").open()))
    assert len(rows) == 3 * 40 * 2
    assert len({(r["reader"], r["case"], r["modality"]) for r in rows}) == len(rows)
    aided = [r for r in rows if r["modality"] == "aided"]
    assert all(r["ai_agreement"] in ("agree", "disagree") and r["changed"] in ("0", "1") for r in aided)
    source_ids = [c.source_id for c in coordinator.cases()]
    for name in ("reads.csv", "study.json", "study.imrmc", "mrmc_long.csv", "report.html"):
        text = (out / name).read_text()
        leaked = [s for s in source_ids if s in text]
        assert not leaked and "fracatlas" not in text.lower(), (name, leaked[:3])
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    document = json.loads((out / "study.json").read_text())
    assert len(document["reads"]) == 240 and document["design"]["mode"] == "sequential"
    assert document["statistics"]["mrmc"]["ddf"] > 0

    with_ids = tmp / "export-ids"
    assert main(["study", "export", "--db", str(db_path), "--out", str(with_ids), "--identifiers"]) == 0
    text = (with_ids / "reads.csv").read_text()
    assert all(s in text for s in source_ids)


def test_imrmc_and_long_format_carry_the_same_reads(finished_study) -> None:
    tmp, _, coordinator = finished_study
    from radreview.readerstudy.export import write_imrmc, write_mrmc_long

    imrmc = write_imrmc(coordinator, tmp / "x.imrmc").read_text().splitlines()
    header = dict(line.split(": ") for line in imrmc if line[:3] in ("NR:", "N0:", "N1:", "NM:"))
    assert header == {"NR": "3", "N0": "20", "N1": "20", "NM": "2"}
    data = [line.split(",") for line in imrmc[imrmc.index("BEGIN DATA:") + 1:]]
    truth = {case: int(score) for reader, case, _, score in data if reader == "-1"}
    scores = [(r, c, m, float(s)) for r, c, m, s in data if r != "-1"]
    assert len(truth) == 40 and len(scores) == 240
    long_rows = list(csv.DictReader((write_mrmc_long(coordinator, tmp / "long.csv")).open()))
    assert list(long_rows[0]) == ["reader", "treatment", "case", "truth", "rating"]
    # Reader 1, modality 2 (aided) in iMRMC equals R1's aided rows in the long format.
    imrmc_auc = roc_auc_score([truth[c] for r, c, m, _ in scores if (r, m) == ("1", "2")],
                              [s for r, _, m, s in scores if (r, m) == ("1", "2")])
    mine = [row for row in long_rows if row["reader"] == "R1" and row["treatment"] == "aided"]
    long_auc = roc_auc_score([int(r["truth"]) for r in mine], [float(r["rating"]) for r in mine])
    assert imrmc_auc == pytest.approx(long_auc)


def test_statistics_match_an_independent_computation(finished_study) -> None:
    _, _, coordinator = finished_study
    stats = compute_statistics(coordinator)
    reads = coordinator.reads()
    truth = {c.code: c.truth for c in coordinator.cases()}
    shown = {o.case: int(o.shown_probability >= 0.5) for o in coordinator.ai_outputs()}
    for figure in stats.readers:
        if figure.is_ai:
            outputs = coordinator.ai_outputs()
            y = [truth[o.case] for o in outputs]
            assert figure.auc.auc == pytest.approx(roc_auc_score(y, [o.probability for o in outputs]))
            continue
        mine = [r for r in reads if r["reader"] == figure.reader and r["modality"] == figure.modality]
        y = [truth[r["case"]] for r in mine]
        decisions = [r["decision"] for r in mine]
        assert figure.auc.auc == pytest.approx(roc_auc_score(y, [r["confidence"] for r in mine]))
        tp = sum(1 for t, d in zip(y, decisions) if t and d)
        assert figure.operating_point.sensitivity.estimate == pytest.approx(tp / sum(y))
        assert figure.kappa_truth.kappa == pytest.approx(cohen_kappa_score(decisions, y))
        ai = [shown[r["case"]] for r in mine]
        assert figure.kappa_ai.kappa == pytest.approx(cohen_kappa_score(decisions, ai))
        assert figure.agreement_with_ai.estimate == pytest.approx(np.mean(np.equal(decisions, ai)))
    # Fleiss' kappa by its definition, on the aided decisions.
    table = {}
    for r in reads:
        if r["modality"] == "aided":
            table.setdefault(r["case"], []).append(r["decision"])
    counts = np.array([[v.count(0), v.count(1)] for v in table.values()], dtype=float)
    n = 3
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_j = counts.sum(axis=0) / counts.sum()
    expected = (p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum())
    assert stats.fleiss["aided"].kappa == pytest.approx(expected)
    # Decision changes: count them directly.
    by = {(r["reader"], r["case"], r["modality"]): r["decision"] for r in reads}
    changed = sum(1 for (rd, c, m), d in by.items() if m == "aided" and d != by[(rd, c, "unaided")])
    assert stats.changes["all readers"].changed.successes == changed
    assert sum(r["changed"] for r in reads if r["modality"] == "aided") == changed
    test = stats.mrmc.random_readers_random_cases
    assert test.ndf == 1 and test.ddf > 1 and 0 <= test.p_value <= 1
    aucs = {(f.reader, f.modality): f.auc.auc for f in stats.readers if not f.is_ai}
    diff = np.mean([aucs[(r, "aided")] - aucs[(r, "unaided")] for r in ("R1", "R2", "R3")])
    assert test.comparisons[0].difference == pytest.approx(diff if test.comparisons[0].modality_a == "aided" else -diff)


def test_cli_reports_bad_input_clearly(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere" / "study.db"
    assert main(["study", "status", "--db", str(missing)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["study", "read", "--db", str(missing)]) == 2
    assert main(["study", "export", "--db", str(tmp_path / "absent.db"), "--out", str(tmp_path)]) == 2
    assert "no study database" in capsys.readouterr().err and not (tmp_path / "absent.db").exists()
    not_a_db = tmp_path / "cases_by_mistake.csv"
    not_a_db.write_text("a,b\n1,2\n")
    assert main(["study", "status", "--db", str(not_a_db)]) == 2
    err = capsys.readouterr().err  # the driver's words, not SQLAlchemy's wrapping and its web link
    assert "cases_by_mistake.csv: cannot open the study database: file is not a database" in err
    assert "sqlalche.me" not in err and "Background on this error" not in err
    bad = tmp_path / "cases.csv"
    bad.write_text("case_id,images,truth\nA,a.png,1\nB,b.png;missing.jpg,0\n")
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    assert main(["study", "create", "--db", str(tmp_path / "s.db"), "--name", "x", "--cases", str(bad),
                 "--mode", "unaided"]) == 2  # readers would meet the missing image mid-study
    assert f"1 image file(s) not found: case 'B': {tmp_path / 'missing.jpg'}" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()
    (tmp_path / "missing.jpg").write_bytes(b"")
    assert main(["study", "create", "--db", str(tmp_path / "s.db"), "--name", "x", "--cases", str(bad),
                 "--mode", "aided"]) == 2
    assert "shows the AI" in capsys.readouterr().err


def test_add_reader_without_a_terminal_names_the_variable_to_set(tmp_path, capsys, monkeypatch) -> None:
    """A script with no PIN variable and nothing to type into gets a message, not a traceback."""
    import getpass

    (tmp_path / "a.png").write_bytes(b"")
    cases = tmp_path / "cases.csv"
    cases.write_text("case_id,images,truth\nA,a.png,1\n")
    db = tmp_path / "s.db"
    assert main(["study", "create", "--db", str(db), "--name", "x", "--cases", str(cases), "--mode", "unaided"]) == 0
    monkeypatch.delenv("RADREVIEW_READER_PIN", raising=False)

    def no_terminal(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", no_terminal)
    assert main(["study", "add-reader", "--db", str(db), "--reader", "R1"]) == 2
    assert "no terminal to type it in: set RADREVIEW_READER_PIN instead" in capsys.readouterr().err
    assert main(["study", "export", "--db", str(db), "--out", str(cases)]) == 2  # a file where a folder goes
    assert f"radreview study export: {cases}: File exists" in capsys.readouterr().err  # not "[Errno 17] ..."
