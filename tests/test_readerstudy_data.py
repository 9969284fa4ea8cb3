"""The reader-study data layer: schema and migrations, design, reading rules, access control."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime, timedelta

import pytest
from _readerstudy_support import PIN, answer_key, make_study, postgres_database
from sqlalchemy import text

from radreview.readerstudy.db import HEAD_REVISION, current_revision, head_revision, open_database
from radreview.readerstudy.design import StudyDesignError, add_reader, read_case_list
from radreview.readerstudy.reading import (
    AccessDenied,
    AuthenticationError,
    ReaderSession,
    ReadingError,
    ReadLocked,
    WashoutPending,
    sign_in,
)
from radreview.readerstudy.scripted_reader import read_all


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    url = str(tmp_path / "study.db") if request.param == "sqlite" else postgres_database(request)
    database = open_database(url)
    yield database
    database.close()


def test_migrations_create_exactly_the_models(db) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from radreview.readerstudy.schema import Base

    assert current_revision(db) == head_revision() == HEAD_REVISION
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_reads_are_append_only_in_the_database(db, tmp_path, fracatlas_dir) -> None:
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=1)
    reader = sign_in(db, "wrist-2026", "R1", PIN)
    read_all(reader, limit=1)
    for statement in ("UPDATE reads SET decision = 1 - decision", "DELETE FROM reads",
                      "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            with db.transaction() as session:
                session.execute(text(statement))
    assert len(coordinator.reads()) == 1


def test_sequential_reading_locks_then_reveals_ai_and_records_change(db, tmp_path, fracatlas_dir) -> None:
    make_study(db, tmp_path, fracatlas_dir, readers=1, confidence_scale="both")
    reader = sign_in(db, "wrist-2026", "R1", PIN)
    view = reader.current()
    assert view is not None and view.phase == "unaided" and view.ai == () and view.position == 1
    with pytest.raises(ReadLocked):
        reader.save_read(view.assignment_id, "aided", 1, confidence=80, rating=5, ai_agreement="agree")
    with pytest.raises(ReadingError, match="rating"):
        reader.save_read(view.assignment_id, "unaided", 1, confidence=80)
    unaided = reader.save_read(view.assignment_id, "unaided", 0, confidence=20, rating=2,
                               time_to_first_decision_ms=900, total_time_ms=4000,
                               telemetry=[{"t_ms": 10, "kind": "zoom", "scale": 2.0}])
    aided_view = reader.current()
    assert aided_view.assignment_id == view.assignment_id and aided_view.phase == "aided"
    assert len(aided_view.ai) == 1 and 0 <= aided_view.ai[0].probability <= 1
    assert aided_view.unaided_read == unaided
    with pytest.raises(ReadLocked):  # the unaided read cannot change once the AI was shown
        reader.revise(unaided.id, 1, confidence=90, rating=5)
    aided = reader.save_read(view.assignment_id, "aided", 1, confidence=75, rating=4, ai_agreement="agree")
    assert aided.changed is True
    revised = reader.revise(aided.id, 0, confidence=40, rating=2, ai_agreement="disagree")
    assert (revised.revision, revised.revises_id, revised.changed) == (1, aided.id, False)
    with pytest.raises(ReadingError, match="latest"):
        reader.revise(aided.id, 1, confidence=60, rating=3)
    assert [r.id for r in reader.my_reads()] == [unaided.id, aided.id, revised.id]
    assert reader.current().position == 2


def test_saves_are_idempotent(db, tmp_path, fracatlas_dir) -> None:
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=1, mode="unaided")
    reader = sign_in(db, "wrist-2026", "R1", PIN)
    view = reader.current()
    first = reader.save_read(view.assignment_id, "unaided", 1, confidence=70, client_token="tok-1")
    again = reader.save_read(view.assignment_id, "unaided", 1, confidence=70, client_token="tok-1")
    assert again.id == first.id
    with pytest.raises(ReadingError, match="already has"):
        reader.save_read(view.assignment_id, "unaided", 0, confidence=10, client_token="tok-2")
    assert len(coordinator.reads(all_revisions=True)) == 1


def test_reader_session_exposes_no_truth_and_no_other_readers_rows(db, tmp_path, fracatlas_dir) -> None:
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=2)
    r1 = sign_in(db, "wrist-2026", "R1", PIN)
    r2 = sign_in(db, "wrist-2026", "R2", PIN)
    read_all(r1, answer_key(coordinator, "R1"), limit=6)
    read_all(r2, answer_key(coordinator, "R2"), limit=2)
    r2_reads = r2.my_reads()
    assert len(r1.my_reads()) == 6 and len(r2_reads) == 2
    assert {r.id for r in r1.my_reads()}.isdisjoint(r.id for r in r2_reads)
    with pytest.raises(AccessDenied):
        r1.read(r2_reads[0].id)
    with pytest.raises(AccessDenied):
        r1.revise(r2_reads[0].id, 1, confidence=99)
    with pytest.raises(AccessDenied):  # writing into another reader's assignment
        r1.save_read(r2.current().assignment_id, "unaided", 1, confidence=50)
    assert all(a[0] not in {w[0] for w in r2.worklist()} for a in r1.worklist())
    # Nothing a reader can obtain carries the truth, the source ids or the sham flag.
    forbidden = {"truth", "source_id", "sham", "ai_shown_sham", "seed", "pin_hash"}
    for obj in (r1.study, r1.current(), r1.my_reads()[0], r1.progress(), *r1.current().ai):
        names = {f.name for f in dataclasses.fields(obj)}
        assert not names & forbidden, (type(obj).__name__, names & forbidden)
    public = {n for n, _ in inspect.getmembers(ReaderSession) if not n.startswith("_")}
    assert public == {"current", "progress", "worklist", "my_reads", "read", "save_read", "revise"}


def test_sign_in_checks_the_pin_hash(db, tmp_path, fracatlas_dir) -> None:
    make_study(db, tmp_path, fracatlas_dir, readers=1)
    with pytest.raises(AuthenticationError):
        sign_in(db, "wrist-2026", "R1", "0000")
    with pytest.raises(AuthenticationError):
        sign_in(db, "wrist-2026", "nobody", PIN)
    with db.transaction() as session:
        stored = session.execute(text("SELECT pin_hash FROM readers")).scalar_one()
    assert PIN not in stored and stored.startswith("scrypt$")
    with pytest.raises(StudyDesignError, match="already exists"):
        add_reader(db, 1, "R1", "935871")


def test_crossover_randomises_arm_order_and_enforces_the_washout(db, tmp_path, fracatlas_dir) -> None:
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=6, n=10, mode="crossover", washout_days=28)
    orders = {tuple(r["arm_order"]) for r in coordinator.design()["readers"]}
    assert orders == {("unaided", "aided"), ("aided", "unaided")}
    case_orders = [[code for _, code, _, _ in sign_in(db, "wrist-2026", f"R{i}", PIN).worklist()]
                   for i in (1, 2)]
    assert case_orders[0] != case_orders[1]  # each reader has their own randomised order
    assert all(len(set(order)) == 10 for order in case_orders) and len(case_orders[0]) == 20
    now = [datetime.now(UTC)]
    reader = sign_in(db, "wrist-2026", "R1", PIN, clock=lambda: now[0])
    assert read_all(reader) == 10  # session 1 done, session 2 closed
    with pytest.raises(WashoutPending) as pending:
        reader.current()
    assert pending.value.available_at - now[0] <= timedelta(days=28)
    now[0] += timedelta(days=28, minutes=1)
    view = reader.current()
    assert view.session_number == 2
    first_arm = coordinator.design()["readers"][0]["arm_order"][0]
    assert view.phase == ("aided" if first_arm == "unaided" else "unaided")
    assert read_all(reader) == 10 and reader.current() is None
    reads = coordinator.reads()
    assert {(r["case"], r["modality"]) for r in reads} == {(c.code, m) for c in coordinator.cases()
                                                          for m in ("unaided", "aided")}


def test_sham_ai_alters_the_recorded_share(db, tmp_path, fracatlas_dir) -> None:
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=1, mode="aided", sham_share=0.25)
    outputs = coordinator.ai_outputs()
    sham = [o for o in outputs if o.sham]
    assert len(sham) == 10 and coordinator.design()["sham_cases"] == 10
    assert all(abs(o.shown_probability - (1 - o.probability)) < 1e-9 for o in sham)
    assert all(o.shown_probability == o.probability for o in outputs if not o.sham)


def test_case_list_errors_name_file_and_line(tmp_path) -> None:
    bad = tmp_path / "cases.csv"
    bad.write_text("case_id,images,truth\nA,a.png,1\nB,b.png,maybe\n")
    with pytest.raises(StudyDesignError, match=r"cases.csv, line 3: truth 'maybe'"):
        read_case_list(bad)
    bad.write_text("case_id,truth\nA,1\n")
    with pytest.raises(StudyDesignError, match="images"):
        read_case_list(bad)


def test_ai_outputs_from_a_predict_file_map_images_to_cases(tmp_path) -> None:
    import json

    from radreview.readerstudy.design import CaseSpec, read_ai_outputs

    a, b, c = (str(tmp_path / f"{n}.png") for n in "abc")
    cases = [CaseSpec("case-1", (a, b), 1), CaseSpec("case-2", (c,), 0)]
    rows = [
        {"level": "image", "model": "m", "task": "fracture", "label": "fracture", "probability": 0.2, "path": a},
        {"level": "image", "model": "m", "task": "fracture", "label": "fracture", "probability": 0.9, "path": b},
        {"level": "image", "model": "m", "task": "region", "label": "hand", "probability": 0.7, "path": b},
        {"level": "image", "model": "m", "task": "hardware", "label": "hardware", "probability": 0.1, "path": b},
        {"level": "image", "model": "m", "task": "fracture", "label": "fracture", "probability": 0.4, "path": c},
        {"level": "image", "model": "m", "error": "cannot decode", "path": c},
        {"level": "study", "model": "m", "label": "fracture", "probability": 0.9},
    ]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps({"images": rows, "studies": []}))
    with pytest.raises(StudyDesignError, match="several labels"):
        read_ai_outputs(path, cases)
    outputs = {o.source_id: o.probability for o in read_ai_outputs(path, cases, label="fracture")}
    assert outputs == {"case-1": 0.9, "case-2": 0.4}  # the highest view per case
    # a region label is the chain's first link, not a finding to choose from
    path.write_text(json.dumps({"images": [r for r in rows if r.get("task") != "hardware"], "studies": []}))
    assert {o.source_id: o.label for o in read_ai_outputs(path, cases)} == {"case-1": "fracture", "case-2": "fracture"}
