"""The reading record trusts nothing: one test per attack (issue 12).

Each attack is made the way an attacker would: through the API, and where the API refuses,
through raw SQL on the same connection, and on PostgreSQL through the reader's own database role.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from _readerstudy_support import PIN, as_role, postgres_database
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from radreview.cli import main
from radreview.readerstudy.coordinator import Coordinator, CoordinatorRefused
from radreview.readerstudy.db import open_database
from radreview.readerstudy.design import (
    AIOutputSpec,
    CaseSpec,
    StudyDesign,
    StudyDesignError,
    add_reader,
    create_study,
    read_case_list,
    unlock_reader,
)
from radreview.readerstudy.export import ExportError, export_all, write_imrmc
from radreview.readerstudy.reading import (
    AccessDenied,
    AuthenticationError,
    ReaderLocked,
    ReaderSession,
    ReadLocked,
    SignInThrottled,
    sign_in,
    sign_in_study_name,
)
from radreview.readerstudy.security import SignInPolicy, pin_digest, pin_problem


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    url = str(tmp_path / "study.db") if request.param == "sqlite" else postgres_database(request)
    database = open_database(url)
    yield database
    database.close()


def _study(db, mode: str = "crossover", n: int = 4, readers: int = 2, name: str = "xo",  # type: ignore[no-untyped-def]
           seed: int = 4, **design) -> Coordinator:
    """Cases with placeholder image paths (reading never opens an image). With seed 4 and two
    readers in crossover, R0 reads aided first and R1 unaided first."""
    cases = [CaseSpec(f"S{i:03d}", (f"/nonexistent/{i}.png",), i % 2) for i in range(n)]
    ai = [AIOutputSpec(c.source_id, "m", 0.2 + 0.6 * c.truth) for c in cases] if mode != "unaided" else []
    study_id = create_study(db, StudyDesign(name, mode=mode, seed=seed, **design), cases, ai)
    for r in range(readers):
        add_reader(db, study_id, f"R{r}", PIN)
    return Coordinator(db, name)


def _read_session(reader: ReaderSession, number: int, decision: int, limit: int | None = None) -> list:  # type: ignore[type-arg]
    saved = []
    for assignment_id, _, session_number, missing in reader.worklist():
        if session_number != number:
            continue
        for phase in missing:
            if limit is not None and len(saved) >= limit:
                return saved
            saved.append(reader.save_read(
                assignment_id, phase, decision, confidence=80.0 if decision else 20.0,
                ai_agreement="agree" if phase == "aided" else None))
    return saved


_FORGED_READ = (
    "INSERT INTO reads (assignment_id, reader_id, case_id, phase, revision, revises_id, decision, "
    "confidence, rating, comment, ai_agreement, changed, ai_shown_sham, time_to_first_decision_ms, "
    "total_time_ms, telemetry, client_token, created_at) VALUES (:assignment, :reader, :case, :phase, "
    ":revision, :revises, :decision, 95, NULL, '', NULL, :changed, :sham, NULL, NULL, '[]', :token, "
    "CURRENT_TIMESTAMP)"
)


def _forge(db, read_id: int, **changes) -> None:  # type: ignore[no-untyped-def]
    """INSERT a revision of ``read_id`` through raw SQL, bypassing the application."""
    with db.transaction(readonly=True) as session:
        old = session.execute(text("SELECT assignment_id, reader_id, case_id, phase, revision FROM reads "
                                   "WHERE id = :id"), {"id": read_id}).one()
    values = {"assignment": old.assignment_id, "reader": old.reader_id, "case": old.case_id,
              "phase": old.phase, "revision": old.revision + 1, "revises": read_id, "decision": 1,
              "changed": None, "sham": None, "token": f"forged-{read_id}-{len(str(changes))}"} | changes
    with db.transaction() as session:
        session.execute(text(_FORGED_READ), values)


# -- the unaided read cannot change after the AI ---------------------------------------------

def test_crossover_unaided_read_cannot_be_revised_after_the_ai(db, tmp_path) -> None:
    coordinator = _study(db)
    assert [r["arm_order"] for r in coordinator.design()["readers"]] == [["aided", "unaided"],
                                                                          ["unaided", "aided"]]
    reader = sign_in(db, "xo", "R1", PIN)  # unaided first
    unaided = {r.case_code: r for r in _read_session(reader, 1, decision=0)}
    (aided,) = _read_session(reader, 2, decision=1, limit=1)  # the AI of one case is now seen
    seen, not_seen = unaided[aided.case_code], next(r for c, r in unaided.items() if c != aided.case_code)
    with pytest.raises(ReadLocked, match="seen the AI"):
        reader.revise(seen.id, 1, confidence=90.0)
    # The database itself refuses the same revision written past the application.
    with pytest.raises(IntegrityError, match="reads: the unaided read is locked: this reader has seen the AI"):
        _forge(db, seen.id)
    # ... and a fresh unaided "first read" squeezed in under another revision number.
    with pytest.raises(IntegrityError, match="reads: "):
        _forge(db, seen.id, revision=0, revises=None)
    # A case whose AI has not been shown yet can still be corrected.
    corrected = reader.revise(not_seen.id, 1, confidence=70.0)
    assert (corrected.revision, corrected.revises_id) == (1, not_seen.id)
    # Exports carry the original unaided read of the case whose AI was seen.
    export_all(coordinator, tmp_path / "export")
    rows = list(csv.DictReader((tmp_path / "export" / "reads.csv").open()))
    mine = {(r["case"], r["modality"]): r for r in rows if r["reader"] == "R1"}
    assert (mine[(seen.case_code, "unaided")]["decision"], mine[(seen.case_code, "unaided")]["revision"]) == ("0", "0")
    assert (mine[(not_seen.case_code, "unaided")]["decision"], mine[(not_seen.case_code, "unaided")]["revision"]) == ("1", "1")
    long_rows = list(csv.DictReader((tmp_path / "export" / "mrmc_long.csv").open()))
    assert [r["rating"] for r in long_rows if (r["reader"], r["case"], r["treatment"])
            == ("R1", seen.case_code, "unaided")] == ["20.0"]
    assert coordinator.verify().intact


def test_aided_first_crossover_reader_may_correct_the_later_unaided_read(db) -> None:
    _study(db)
    reader = sign_in(db, "xo", "R0", PIN)  # aided first: the unaided sitting comes after the AI anyway
    _read_session(reader, 1, decision=1)
    (unaided,) = _read_session(reader, 2, decision=0, limit=1)
    assert reader.revise(unaided.id, 1, confidence=60.0).revision == 1


def test_forged_reads_are_refused_by_the_database(db) -> None:
    coordinator = _study(db, mode="sequential", n=2)
    r0, r1 = sign_in(db, "xo", "R0", PIN), sign_in(db, "xo", "R1", PIN)
    (unaided,) = _read_session(r0, 1, decision=0, limit=1)
    (other,) = _read_session(r1, 1, decision=0, limit=1)
    with pytest.raises(IntegrityError, match="reads: the unaided read is locked once saved"):
        _forge(db, unaided.id)  # sequential: even before the aided read
    with pytest.raises(IntegrityError, match="reads: a revision must follow"):
        _forge(db, unaided.id, phase="aided", revision=7, revises=None, changed=True, sham=False)
    with pytest.raises(IntegrityError, match="reads: the reader and case do not match"):
        _forge(db, other.id, reader=r0._reader_id, phase="aided", revision=0, revises=None,
               changed=True, sham=False)  # R0's name on R1's assignment
    with pytest.raises(IntegrityError, match="reads: "):
        _forge(db, unaided.id, phase="aided", revision=0, revises=None, decision=7)
    assert len(coordinator.reads(all_revisions=True)) == 2 and coordinator.verify().intact


# -- no session without sign-in; the coordinator's view only on the coordinator's handle ------

def test_reader_session_exists_only_through_sign_in(db) -> None:
    _study(db, mode="unaided", n=2)
    with pytest.raises(TypeError):
        ReaderSession(db, 1, 1, "R0", lambda: datetime.now(UTC))  # type: ignore[call-arg]
    from radreview.readerstudy.reading import _SignInGrant

    forged = _SignInGrant(db, 1, 1, "R0", lambda: datetime.now(UTC))
    with pytest.raises(AccessDenied, match="only by sign_in"):
        ReaderSession(forged)
    reader = sign_in(db, "xo", "R0", PIN)
    with pytest.raises(AccessDenied):  # a reader's handle cannot sign in someone else
        sign_in(reader._db, "xo", "R1", PIN)
    assert reader.current() is not None


def test_coordinator_refuses_a_readers_handle(db) -> None:
    coordinator = _study(db, mode="unaided", n=2)
    reader = sign_in(db, "xo", "R0", PIN)
    assert reader._db.reader == "R0"
    with pytest.raises(CoordinatorRefused, match="belongs to reader R0"):
        Coordinator(reader._db)
    assert len(coordinator.cases()) == 2  # the coordinator's own handle still works


# -- PostgreSQL: the reader's own role -------------------------------------------------------

def _refused(engine_db, statement: str, params: dict | None = None, match: str = "permission denied") -> None:  # type: ignore[type-arg]
    with pytest.raises(DBAPIError, match=match):
        with engine_db.transaction() as session:
            session.execute(text(statement), params or {})


@pytest.mark.postgres
def test_reader_role_sees_no_truth_and_cannot_forge(request) -> None:
    url = postgres_database(request)
    admin = open_database(url)
    coordinator = _study(admin)
    with admin.transaction(readonly=True) as session:
        roles = dict(session.execute(text("SELECT code, db_role FROM readers")).all())
        assert not session.execute(text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :r"),
                                   {"r": roles["R1"]}).scalar()
    reader_db = open_database(as_role(url, roles["R1"]))
    # The role alone, without the PIN, sees nothing at all.
    with reader_db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM sessions")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM readers")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM cases")).scalar() == 0
    with pytest.raises(CoordinatorRefused, match="reader's database role"):
        Coordinator(reader_db)
    _study(admin, mode="unaided", n=1, readers=1, name="other")
    assert sign_in_study_name(reader_db) == "xo"  # the reading window's study, before sign-in
    with admin.transaction(readonly=True) as session:  # the coordinator may open every study
        assert sorted(session.execute(text("SELECT radreview_study_names()")).scalars()) == ["other", "xo"]
    with pytest.raises(AuthenticationError):  # another reader's role cannot sign in as R0
        sign_in(reader_db, "xo", "R0", PIN)
    reader = sign_in(reader_db, "xo", "R1", PIN)
    unaided = _read_session(reader, 1, decision=0)
    (aided,) = _read_session(reader, 2, decision=1, limit=1)
    handle = reader._db
    with handle.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*), count(DISTINCT reader_id) FROM reads")).one() == (5, 1)
        assert session.execute(text("SELECT count(*) FROM sessions")).scalar() == 2
        assert session.execute(text("SELECT count(*) FROM readers")).scalar() == 1
        assert session.execute(text("SELECT code FROM cases ORDER BY code")).scalars().all() == \
            sorted(c.code for c in coordinator.cases())
    for secret in ("SELECT truth FROM cases", "SELECT source_id FROM cases", "SELECT pin_hash FROM readers",
                   "SELECT seed FROM studies", "SELECT probability FROM ai_outputs", "SELECT sham FROM ai_outputs",
                   "SELECT ai_shown_sham FROM reads", "SELECT * FROM audit_log", "SELECT * FROM reader_sign_ins"):
        _refused(handle, secret)
    _refused(handle, "UPDATE reads SET decision = 1")
    _refused(handle, "DELETE FROM reads")
    _refused(handle, "DROP TRIGGER reads_rules ON reads", match="must be owner")
    _refused(handle, "DROP TRIGGER reads_append_only ON reads", match="must be owner")
    _refused(handle, "ALTER TABLE reads DISABLE TRIGGER ALL", match="must be owner")
    seen = next(r for r in unaided if r.case_code == aided.case_code)
    with pytest.raises(IntegrityError, match="reads: the unaided read is locked: this reader has seen the AI"):
        _forge(handle, seen.id)
    # A read in R0's name: row-level security refuses it before any trigger.
    with admin.transaction(readonly=True) as session:
        r0_assignment, r0_id, r0_case = session.execute(text(
            "SELECT a.id, s.reader_id, a.case_id FROM assignments a JOIN sessions s ON s.id = a.session_id "
            "JOIN readers r ON r.id = s.reader_id WHERE r.code = 'R0' LIMIT 1")).one()
    _refused(handle, _FORGED_READ, {"assignment": r0_assignment, "reader": r0_id, "case": r0_case,
                                    "phase": "aided", "revision": 0, "revises": None, "decision": 1,
                                    "changed": None, "sham": None, "token": "forged-r0"},
             match="row-level security")
    # Audit entries: only for the reader's own reads, and a false digest for one shows.
    forged_entry = ("INSERT INTO audit_log (study_id, at, actor, action, detail) VALUES "
                    "(:s, now(), 'reader:R1', 'read saved', CAST(:d AS json))")
    _refused(handle, forged_entry, {"s": coordinator.study_id, "d": '{"read_id": 99999}'},
             match="row-level security")
    with handle.transaction() as session:
        session.execute(text(forged_entry), {"s": coordinator.study_id,
                                             "d": '{"read_id": %d, "read_sha256": "0"}' % aided.id})
    assert coordinator.verify().problems == [f"audit entry {coordinator.verify().entries} claims read "
                                             f"{aided.id}, which an earlier entry recorded"]
    # A guess cannot be tested inside a transaction that is then rolled back (erasing the
    # failure): neither the outcome nor the grant counts before the attempt has committed.
    probe = hashlib.sha256(b"probe").hexdigest()
    with reader_db.engine.connect() as connection:
        attempt = connection.begin()
        salt = connection.execute(text("SELECT radreview_pin_salt('xo', 'R1')")).scalar_one()
        connection.execute(text("SELECT radreview_sign_in('xo', 'R1', :d, :t)"),
                           {"d": pin_digest(PIN, salt), "t": probe})  # the right PIN
        connection.execute(text("SELECT set_config('radreview.token', 'probe', false)"))
        assert connection.execute(text("SELECT count(*) FROM radreview_sign_in_outcome(:t)"), {"t": probe}).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM sessions")).scalar() == 0
        attempt.rollback()
    assert len(coordinator.reads(all_revisions=True)) == 5
    assert coordinator.verify().reads_checked == 5
    reader_db.close()
    admin.close()


@pytest.mark.postgres
def test_ai_is_hidden_from_the_readers_role_until_the_unaided_read_is_locked(request) -> None:
    url = postgres_database(request)
    admin = open_database(url)
    _study(admin, mode="sequential", n=2, readers=1)
    with admin.transaction(readonly=True) as session:
        role = session.execute(text("SELECT db_role FROM readers")).scalar_one()
    reader_db = open_database(as_role(url, role))
    reader = sign_in(reader_db, "xo", "R0", PIN)
    view = reader.current()
    with reader._db.transaction(readonly=True) as session:
        count = "SELECT count(*) FROM ai_outputs WHERE case_id = (SELECT case_id FROM assignments WHERE id = :a)"
        assert session.execute(text(count), {"a": view.assignment_id}).scalar() == 0
    reader.save_read(view.assignment_id, "unaided", 0, confidence=10.0)
    assert len(reader.current().ai) == 1  # revealed once the unaided read is locked
    reader_db.close()
    admin.close()


@pytest.mark.postgres
def test_reader_role_gets_the_password_as_a_scram_verifier(request) -> None:
    url = postgres_database(request)
    admin = open_database(url)
    study_id = create_study(admin, StudyDesign("p", mode="unaided", seed=1),
                            [CaseSpec("A1", ("/nonexistent/a.png",), 1)])
    add_reader(admin, study_id, "R9", PIN, db_password="correct horse battery")
    with admin.transaction(readonly=True) as session:
        stored = session.execute(text("SELECT rolpassword FROM pg_authid a JOIN readers r ON r.db_role = a.rolname")).scalar()
    assert stored.startswith("SCRAM-SHA-256$") and "horse" not in stored
    with pytest.raises(StudyDesignError, match="bypass row-level security"):
        add_reader(admin, study_id, "R8", PIN, db_role=admin.engine.url.username)  # the superuser
    admin.close()


# -- the audit log is hash-chained -----------------------------------------------------------

def _finished(db) -> Coordinator:  # type: ignore[no-untyped-def]
    coordinator = _study(db, mode="unaided", n=4, readers=1)
    _read_session(sign_in(db, "xo", "R0", PIN), 1, decision=1)
    return coordinator


def test_tampered_audit_log_is_detected_on_sqlite(tmp_path, capsys) -> None:
    path = tmp_path / "study.db"
    db = open_database(path)
    coordinator = _finished(db)
    check = coordinator.verify()
    assert check.intact and check.reads_checked == 4 and check.entries >= 8
    assert main(["study", "verify", "--db", str(path)]) == 0
    assert "reading record: intact" in capsys.readouterr().out
    # The trusted operator (anyone who can open the file) lifts the triggers and edits.
    with db.transaction() as session:
        session.execute(text("DROP TRIGGER reads_no_update"))
        session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(text("DROP TRIGGER audit_log_no_delete"))
        first_read = session.execute(text("SELECT min(id) FROM reads")).scalar()
        session.execute(text("UPDATE reads SET decision = 0 WHERE id = :i"), {"i": first_read})
        signed_in = session.execute(text("SELECT id FROM audit_log WHERE action = 'sign-in'")).scalar()
        session.execute(text("UPDATE audit_log SET actor = 'reader:R7' WHERE id = :i"), {"i": signed_in})
        added = session.execute(text("SELECT id FROM audit_log WHERE action = 'reader added'")).scalar()
        session.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": added})
    problems = coordinator.verify().problems
    assert any("reads_no_update is missing" in p for p in problems)
    assert f"read {first_read} differs from what was saved" in problems
    assert any(f"audit entry {signed_in} (sign-in) was changed" in p for p in problems)
    assert any(f"audit entry {added + 1} does not follow" in p for p in problems)
    assert main(["study", "verify", "--db", str(path)]) == 1
    assert "TAMPERED" in capsys.readouterr().out
    assert main(["study", "status", "--db", str(path)]) == 0
    assert "reading record: TAMPERED" in capsys.readouterr().out
    db.close()


def test_a_read_inserted_past_the_application_is_detected(tmp_path) -> None:
    db = open_database(tmp_path / "study.db")
    coordinator = _study(db, mode="unaided", n=2, readers=1)
    reader = sign_in(db, "xo", "R0", PIN)
    view = reader.current()
    with db.transaction() as session:  # a valid-looking first read with no audit entry
        reader_id, case_id = session.execute(text(
            "SELECT s.reader_id, a.case_id FROM assignments a JOIN sessions s ON s.id = a.session_id "
            "WHERE a.id = :a"), {"a": view.assignment_id}).one()
        session.execute(text(_FORGED_READ), {"assignment": view.assignment_id, "reader": reader_id,
                                             "case": case_id, "phase": "unaided", "revision": 0,
                                             "revises": None, "decision": 1, "changed": None,
                                             "sham": None, "token": "forged"})
    (problem,) = coordinator.verify().problems
    assert "has no audit entry" in problem
    db.close()


def test_audit_entries_must_extend_the_chain(db) -> None:
    _finished(db)
    with pytest.raises(DBAPIError, match="append-only"):
        with db.transaction() as session:
            session.execute(text("UPDATE audit_log SET detail = '{}'"))
    if db.dialect == "sqlite":  # on PostgreSQL the trigger computes the chain itself
        with pytest.raises(IntegrityError, match="must extend the hash chain"):
            with db.transaction() as session:
                session.execute(text("INSERT INTO audit_log (id, at, actor, action, detail, hash) "
                                     "VALUES (999, CURRENT_TIMESTAMP, 'x', 'y', '{}', 'f00')"))


@pytest.mark.postgres
def test_tampered_audit_log_is_detected_on_postgresql(request) -> None:
    db = open_database(postgres_database(request))
    coordinator = _finished(db)
    assert coordinator.verify().intact
    with db.transaction() as session:  # the owner (or a superuser) lifts the trigger and edits
        session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        session.execute(text("UPDATE audit_log SET detail = '{\"reader\": \"R5\"}' WHERE action = 'reader added'"))
    problems = coordinator.verify().problems
    assert any("audit_log_append_only is missing or disabled" in p for p in problems)
    assert any("(reader added) was changed after it was written" in p for p in problems)
    db.close()


def test_migration_chains_an_existing_audit_log(tmp_path) -> None:
    from alembic import command

    from radreview.readerstudy.db import _alembic_config, upgrade

    db = open_database(tmp_path / "old.db", upgrade_schema=False)
    with db.engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
    with db.engine.begin() as connection:
        for i, action in enumerate(("study created", "reader added", "sign-in"), start=1):
            connection.execute(text("INSERT INTO audit_log (study_id, at, actor, action, detail) VALUES "
                                    "(NULL, :at, 'coordinator', :action, :detail)"),
                               {"at": f"2025-01-0{i} 10:00:00.000000", "action": action, "detail": '{"n": %d}' % i})
    upgrade(db)
    check = Coordinator.__new__(Coordinator)
    from radreview.readerstudy.audit import verify_study_record

    check = verify_study_record(db)
    assert check.intact and check.entries == 4, check.problems
    with db.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER audit_log_no_update"))
        connection.execute(text("UPDATE audit_log SET detail = '{\"n\": 5}' WHERE id = 2"))
    assert "audit entry 2 (reader added) was changed after it was written" in verify_study_record(db).problems
    db.close()


# -- exports ----------------------------------------------------------------------------------

def test_neutralise_cell_rule() -> None:
    from radreview.csv_safety import neutralise as neutralise_cell

    for text_value in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y")'):
        assert neutralise_cell(text_value) == "'" + text_value
    for value in ("R1", "C001", "", " =x", "1-2", -1, 2.5, None):
        assert neutralise_cell(value) == value


def test_formula_cells_are_neutralised_in_reads_csv(tmp_path) -> None:
    db = open_database(tmp_path / "study.db")
    cases = [CaseSpec(f"A{i}", (f"/nonexistent/{i}.png",), i % 2, side="=1+1", region="@SUM(A1)")
             for i in range(4)]
    study_id = create_study(db, StudyDesign("f", mode="unaided", seed=1), cases)
    for r in ("R0", "R1"):
        add_reader(db, study_id, r, PIN)
    comments = ['=HYPERLINK("http://evil","click")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "=x"]
    for r in ("R0", "R1"):
        reader = sign_in(db, "f", r, PIN)
        for (assignment_id, _, _, _), comment in zip(reader.worklist(), comments[: 4] if r == "R0" else comments[4:]):
            reader.save_read(assignment_id, "unaided", 1, confidence=60.0, comment=comment)
    out = tmp_path / "export"
    export_all(Coordinator(db), out, identifiers=True)
    rows = list(csv.DictReader((out / "reads.csv").open(newline="")))
    assert sorted(r["comment"] for r in rows) == sorted(
        "'" + c if c[0] in "=+-@\t\r" else c for c in comments)
    assert {r["side"] for r in rows} == {"'=1+1"} and {r["region"] for r in rows} == {"'@SUM(A1)"}
    assert {r["confidence"] for r in rows} == {"60.0"}  # numbers untouched
    # The analysis formats stay exact: nothing in them needed escaping.
    assert "'" not in (out / "mrmc_long.csv").read_text()
    imrmc = (out / "study.imrmc").read_text().splitlines()
    assert imrmc[2] == "readers 1 = R0, 2 = R1" and "'" not in "".join(imrmc[1:])
    db.close()


def test_identifiers_are_validated_when_added(tmp_path, capsys, monkeypatch) -> None:
    db = open_database(tmp_path / "study.db")
    study_id = create_study(db, StudyDesign("v", mode="unaided", seed=1), [CaseSpec("A1", ("/x.png",), 1)])
    for bad in ("R1\nBEGIN DATA:\n1,1,1,100", "=R0+1", "@R", "R 1", "x" * 33, "R1\r", "", "Ré"):
        with pytest.raises(StudyDesignError, match="reader id|needs an id"):
            add_reader(db, study_id, bad, PIN)
    for good in ("R1", "dr.smith", "reader_02", "A-b"):
        add_reader(db, study_id, good, PIN)
    for bad in ("=HYPERLINK(1)", "+1", "@x", "-x", "a\nb"):
        with pytest.raises(StudyDesignError, match="case id"):
            create_study(db, StudyDesign(f"w{len(bad)}", mode="unaided"), [CaseSpec(bad, ("/x.png",), 1)])
    cases_csv = tmp_path / "cases.csv"
    cases_csv.write_text('case_id,images,truth\nA1,a.png,1\n"=cmd|\' /C calc\'!A0",b.png,0\n')
    with pytest.raises(StudyDesignError, match=r"cases.csv, line 3: case id"):
        read_case_list(cases_csv)
    with pytest.raises(StudyDesignError, match="control character"):
        create_study(db, StudyDesign("bad\nname", mode="unaided"), [CaseSpec("A1", ("/x.png",), 1)])
    monkeypatch.setenv("RADREVIEW_READER_PIN", PIN)
    assert main(["study", "add-reader", "--db", str(tmp_path / "study.db"), "--reader", "R9\nBEGIN DATA:"]) == 2
    assert "is not allowed" in capsys.readouterr().err
    db.close()


def test_imrmc_header_injection_from_an_older_database_is_refused(tmp_path) -> None:
    db = open_database(tmp_path / "study.db")
    coordinator = _finished(db)
    with db.transaction() as session:  # a reader code written before codes were validated
        session.execute(text(
            "INSERT INTO readers (study_id, code, pin_hash, seed, created_at) VALUES "
            "(:s, :code, 'x', 1, CURRENT_TIMESTAMP)"), {"s": coordinator.study_id, "code": "R9\nBEGIN DATA:\n-1,1,0,1"})
    target = tmp_path / "x.imrmc"
    with pytest.raises(ExportError, match=r"x.imrmc: reader id 'R9\\nBEGIN DATA:.*the file was not written"):
        write_imrmc(coordinator, target)
    assert not target.exists()
    with pytest.raises(ExportError, match="study.imrmc"):
        export_all(coordinator, tmp_path / "export")
    assert (tmp_path / "export" / "reads.csv").exists() and not (tmp_path / "export" / "study.imrmc").exists()
    db.close()


# -- PIN guessing -----------------------------------------------------------------------------

_GUESSER = """
import sys
from datetime import datetime, timedelta, timezone
from radreview.readerstudy.db import open_database
from radreview.readerstudy.reading import AuthenticationError, sign_in
db = open_database(sys.argv[1], must_exist=True)
start = datetime.fromisoformat(sys.argv[2])
for i, pin in enumerate(sys.argv[3:]):
    try:
        sign_in(db, "xo", "R0", pin, clock=lambda: start + timedelta(hours=i))
        print("signed in")
    except AuthenticationError as exc:
        print(type(exc).__name__)
db.close()
"""


def _guess(path, start: datetime, pins: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    done = subprocess.run([sys.executable, "-c", _GUESSER, str(path), start.isoformat(), *pins],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_pin_guessing_slows_down_then_locks_across_processes(tmp_path, capsys) -> None:
    path = tmp_path / "study.db"
    db = open_database(path)
    _study(db, mode="unaided", n=2, readers=1)
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    at = lambda seconds: (lambda: t0 + timedelta(seconds=seconds))  # noqa: E731
    for second in (0, 1, 2):
        with pytest.raises(AuthenticationError, match="wrong PIN"):
            sign_in(db, "xo", "R0", "000111", clock=at(second))
    # The 4th attempt must wait 1 s after the 3rd failure; even the right PIN is not checked.
    with pytest.raises(SignInThrottled) as throttled:
        sign_in(db, "xo", "R0", PIN, clock=at(2.4))
    assert throttled.value.retry_after_s == pytest.approx(0.6)
    with pytest.raises(AuthenticationError, match="wrong PIN"):
        sign_in(db, "xo", "R0", "000111", clock=at(3.1))
    with pytest.raises(SignInThrottled) as throttled:  # after 4 failures: 2 s
        sign_in(db, "xo", "R0", PIN, clock=at(4.1))
    assert throttled.value.retry_after_s == pytest.approx(1.0)
    # Two other processes go on guessing (each attempt an hour later, past every delay).
    first = _guess(path, t0 + timedelta(hours=1), ["000112", "000113", "000114"])
    second = _guess(path, t0 + timedelta(hours=10), ["000115", "000116", "000117", PIN])
    assert first == ["AuthenticationError"] * 3
    assert second == ["AuthenticationError"] * 3 + ["ReaderLocked"]  # 10 failures: the right PIN is refused
    with pytest.raises(ReaderLocked, match="coordinator can unlock"):
        sign_in(db, "xo", "R0", PIN, clock=at(86400 * 30))  # a lock does not time out
    (status,) = Coordinator(db).status()
    assert status.locked and status.failed_sign_ins == 10
    assert main(["study", "status", "--db", str(path)]) == 0
    assert "LOCKED" in capsys.readouterr().out
    assert main(["study", "unlock-reader", "--db", str(path), "--reader", "R0"]) == 0
    assert sign_in(db, "xo", "R0", PIN, clock=at(86400 * 31)).current() is not None
    actions = [a["action"] for a in Coordinator(db).audit()]
    assert actions.count("sign-in refused") == 10 and actions.count("sign-in throttled") == 2
    assert actions.count("sign-in locked") == 2 and "reader unlocked" in actions
    assert Coordinator(db).verify().intact
    db.close()


@pytest.mark.postgres
def test_pin_guessing_is_limited_by_the_server_on_postgresql(request) -> None:
    url = postgres_database(request)
    admin = open_database(url)
    _study(admin, mode="unaided", n=1, readers=1, name="lock",
           sign_in=SignInPolicy(lock_after=3, delay_after=3, delay_s=0.0))
    _study(admin, mode="unaided", n=1, readers=1, name="slow",
           sign_in=SignInPolicy(lock_after=10, delay_after=1, delay_s=60.0))
    with admin.transaction(readonly=True) as session:
        role = session.execute(text("SELECT r.db_role FROM readers r JOIN studies s ON s.id = r.study_id "
                                    "WHERE s.name = 'lock'")).scalar_one()
    reader_db = open_database(as_role(url, role))  # guessing through the reader's own role
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="wrong PIN"):
            sign_in(reader_db, "lock", "R0", "000111")
    with pytest.raises(ReaderLocked):
        sign_in(reader_db, "lock", "R0", PIN)
    study_id = Coordinator(admin, "lock").study_id
    assert unlock_reader(admin, study_id, "R0") == 3
    sign_in(reader_db, "lock", "R0", PIN)
    with pytest.raises(AuthenticationError, match="wrong PIN"):
        sign_in(admin, "slow", "R0", "000111")
    with pytest.raises(SignInThrottled) as throttled:  # the server's clock: no client can skip it
        sign_in(admin, "slow", "R0", PIN)
    assert 50 < throttled.value.retry_after_s <= 60
    reader_db.close()
    admin.close()


def test_weak_pins_are_refused(tmp_path) -> None:
    db = open_database(tmp_path / "study.db")
    study_id = create_study(db, StudyDesign("p", mode="unaided", seed=1), [CaseSpec("A1", ("/x.png",), 1)])
    for weak in ("1234", "12345", "123456", "000000", "654321", "121212", "123123", "qwerty", "abcdef",
                 "890123", "password"):
        with pytest.raises(StudyDesignError, match="PIN"):
            add_reader(db, study_id, "R1", weak)
    with pytest.raises(StudyDesignError, match="reader's id"):
        add_reader(db, study_id, "smith", "smith2026")
    add_reader(db, study_id, "R1", "482916")
    strict = create_study(db, StudyDesign("q", mode="unaided", seed=1, sign_in=SignInPolicy(pin_min_length=10)),
                          [CaseSpec("A1", ("/x.png",), 1)])
    with pytest.raises(StudyDesignError, match="at least 10"):
        add_reader(db, strict, "R1", "482916")
    with pytest.raises(StudyDesignError, match="between 4"):
        create_study(db, StudyDesign("r", sign_in=SignInPolicy(pin_min_length=3)), [CaseSpec("A1", ("/x.png",), 1)])
    assert pin_problem("vd-1993", reader_code="1") is None
    assert dataclasses.asdict(SignInPolicy.from_settings({})) == dataclasses.asdict(SignInPolicy())
    db.close()
