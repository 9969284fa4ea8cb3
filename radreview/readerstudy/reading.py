"""Reading: what a signed-in reader can see and save.

:func:`sign_in` returns a :class:`ReaderSession`; it is the only way to get one (the session's
constructor takes a one-use grant that only a successful sign-in issues). It is the whole of a
reader's access: it shows only the reader's own assignment (the current case, its images, the AI
when the design reveals it) and the reader's own reads. It has no method that returns the truth,
another reader's reads or the coordinator's identifiers; asking for another reader's row raises
:class:`AccessDenied`. Its database handle is marked as the reader's, so the coordinator's tools
refuse it. Every query names its columns, because on PostgreSQL a reader's own role has no
privilege on the others (truth, PIN hashes, sham flags: see :mod:`radreview.readerstudy.roles`).

Sign-in counts failures from the audit log (:class:`~radreview.readerstudy.security.SignInPolicy`):
after a few, each attempt must wait longer; after more, the reader is locked until the coordinator
unlocks them. On SQLite the rule runs here, in the writer's transaction; on PostgreSQL in the
``radreview_sign_in`` database function, which records the attempt in a transaction of its own
before the outcome can be read, so that a client rolling back cannot erase a failure.

Saving follows three rules:
- one committed transaction per save (the read and its audit entry), so a crash loses at most
  the read being typed;
- a save is idempotent: it carries a ``client_token``; repeating a save whose commit already
  happened returns the stored read instead of creating a second one;
- nothing is updated in place: :meth:`ReaderSession.revise` adds a row pointing at the old one;
- an unaided read is locked once the reader has seen the AI for the case: in sequential mode as
  soon as it is saved, in crossover once the aided read of the case exists in the same or a later
  sitting. The database refuses such a row too (migration 0002), whoever writes it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radreview.readerstudy.audit import append_audit, read_digest, utc
from radreview.readerstudy.db import Database
from radreview.readerstudy.identifiers import is_reader_code
from radreview.readerstudy.schema import (
    AIOutputRow,
    ArmRow,
    AssignmentRow,
    AuditRow,
    CaseImageRow,
    CaseRow,
    ReaderRow,
    ReadRow,
    SessionRow,
    StudyRow,
)
from radreview.readerstudy.security import SignInPolicy, pin_digest, verify_pin

PHASES = ("unaided", "aided")
PHASES_BY_ARM = {"unaided": ("unaided",), "aided": ("aided",), "sequential": ("unaided", "aided")}
AGREEMENT = ("agree", "disagree")


class ReadingError(RuntimeError):
    """A save or request that the study design does not allow; the message says why."""


class AuthenticationError(ReadingError):
    pass


class SignInThrottled(AuthenticationError):
    """Too many failed sign-ins: the next attempt is answered only after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReaderLocked(AuthenticationError):
    """Locked after repeated failures, until the coordinator unlocks the reader."""


class AccessDenied(ReadingError, PermissionError):
    pass


class ReadLocked(ReadingError):
    pass


class WashoutPending(ReadingError):
    def __init__(self, message: str, available_at: datetime) -> None:
        super().__init__(message)
        self.available_at = available_at


@dataclass(frozen=True)
class _Assignment:
    id: int
    session_number: int
    arm: str
    case_id: int
    case_code: str


@dataclass(frozen=True)
class StudyInfo:
    """What a reader may know about the study (no truth, no identifiers, no seeds)."""

    name: str
    question: str
    confidence_scale: str
    mode: str
    ai_models: tuple[str, ...]


@dataclass(frozen=True)
class AIView:
    """An AI output as the reader is shown it (on sham cases, the altered one)."""

    model: str
    label: str
    probability: float
    heatmap_path: str | None
    in_scope: bool | None = None  # False: the model calls the case outside its scope (no findings shown)
    tier: str = ""  # the tier shown
    # Per image of the case (by position): the engine result as radreview.inference.serialize
    # writes it, the study's label first; None where the AI has none. Empty: a probability only.
    images: tuple[dict[str, Any] | None, ...] = ()
    problems: tuple[str, ...] = ()  # per image: why there is no result ("" where there is)

    @property
    def shows_findings(self) -> bool:
        """Whether the reader is shown an answer (not when the case is outside the model's scope)."""
        return self.in_scope is not False


@dataclass(frozen=True)
class SavedRead:
    id: int
    assignment_id: int
    case_code: str
    phase: str
    revision: int
    revises_id: int | None
    decision: int
    confidence: float | None
    rating: int | None
    comment: str
    ai_agreement: str | None
    changed: bool | None
    time_to_first_decision_ms: int | None
    total_time_ms: int | None
    telemetry: tuple[dict[str, Any], ...]
    created_at: datetime


@dataclass(frozen=True)
class CaseView:
    """The case a reader must read now, and in which phase."""

    assignment_id: int
    case_code: str
    image_paths: tuple[str, ...]
    phase: str
    session_number: int
    position: int  # 1-based within the session
    total: int
    ai: tuple[AIView, ...]  # empty unless this phase shows the AI
    unaided_read: SavedRead | None  # sequential mode: the reader's own locked unaided read


@dataclass(frozen=True)
class Progress:
    done: int  # cases finished in all sessions
    total: int
    session_number: int
    sessions: int


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


SIGN_IN_ACTIONS = {"ok": "sign-in", "refused": "sign-in refused", "throttled": "sign-in throttled",
                   "locked": "sign-in locked"}
UNLOCKED = "reader unlocked"
# Columns of a read that a reader may see (on PostgreSQL the role has no privilege on the others).
READ_COLUMNS = tuple(c for c in ReadRow.__table__.columns if c.name != "ai_shown_sham")


def _actor(reader_code: str) -> str:
    # An attempted code goes into the log only if it is a well-formed one.
    return f"reader:{reader_code if is_reader_code(reader_code) else '(invalid id)'}"


def failed_sign_ins(session: Session, study_id: int, reader_code: str) -> tuple[int, datetime | None]:
    """Failed sign-ins since the reader's last success or unlock, and when the last one was."""
    actor = _actor(reader_code)
    reset = session.scalar(
        select(func.max(AuditRow.id)).where(
            AuditRow.study_id == study_id,
            ((AuditRow.actor == actor) & (AuditRow.action == SIGN_IN_ACTIONS["ok"]))
            | ((AuditRow.action == UNLOCKED) & (AuditRow.detail["reader"].as_string() == reader_code)),
        )
    )
    count, last = session.execute(
        select(func.count(AuditRow.id), func.max(AuditRow.at)).where(
            AuditRow.study_id == study_id, AuditRow.actor == actor,
            AuditRow.action == SIGN_IN_ACTIONS["refused"], AuditRow.id > (reset or 0),
        )
    ).one()
    return int(count), (_aware(last) if last is not None else None)


@dataclass(frozen=True, eq=False)
class _SignInGrant:
    """What a successful sign-in hands to :class:`ReaderSession` (once)."""

    db: Database
    study_id: int
    reader_id: int
    reader_code: str
    clock: Callable[[], datetime]


# Grants issued by sign_in() and not yet used: a ReaderSession is built only from one of these.
_ISSUED: weakref.WeakSet[_SignInGrant] = weakref.WeakSet()


def _refuse(outcome: str, reader_code: str, wait_s: float, policy: SignInPolicy | None) -> AuthenticationError:
    if outcome == "locked":
        return ReaderLocked(
            f"reader {reader_code} is locked after {policy.lock_after if policy else 'repeated'} failed "
            "sign-ins; the study coordinator can unlock it (radreview study unlock-reader)"
        )
    if outcome == "throttled":
        return SignInThrottled(
            f"too many failed sign-ins: wait {max(1, round(wait_s))} s before trying again", wait_s
        )
    return AuthenticationError("unknown study or reader, or wrong PIN")


def sign_in(db: Database, study_name: str, reader_code: str, pin: str,
            clock: Callable[[], datetime] = _now) -> ReaderSession:
    """Check the reader's PIN and return their session; every attempt is logged.

    Raises :class:`SignInThrottled` while repeated failures make the reader wait,
    :class:`ReaderLocked` once locked, :class:`AuthenticationError` for a wrong PIN or an unknown
    study or reader. ``clock`` is the time used on SQLite (tests inject one; on PostgreSQL the
    server's clock decides, since a reader's workstation is not trusted to tell the time).
    """
    if db.reader is not None:
        raise AccessDenied("sign in from the study database, not from another reader's handle")
    if db.dialect == "postgresql":
        return _sign_in_postgresql(db, study_name, reader_code, pin, clock)
    with db.transaction() as session:
        # BEGIN IMMEDIATE: one sign-in at a time per study file, so the count below is exact
        # across processes.
        now = utc(clock())
        study = session.execute(
            select(StudyRow.id, StudyRow.settings).where(StudyRow.name == study_name)
        ).first()
        reader = None
        if study is not None:
            reader = session.execute(
                select(ReaderRow.id, ReaderRow.pin_hash)
                .where(ReaderRow.study_id == study.id, ReaderRow.code == reader_code)
            ).first()
        policy = SignInPolicy.from_settings(study.settings) if study is not None else None
        outcome, wait_s = "refused", 0.0
        if reader is not None and policy is not None:
            failures, last = failed_sign_ins(session, study.id, reader_code)
            decided, wait_s = policy.decide(failures, last, now)
            outcome = decided or ("ok" if verify_pin(pin, reader.pin_hash) else "refused")
        append_audit(session, study.id if study is not None else None, _actor(reader_code),
                     SIGN_IN_ACTIONS[outcome], {"wait_s": round(wait_s, 3)} if wait_s else {}, now)
    if outcome != "ok":
        raise _refuse(outcome, reader_code, wait_s, policy)
    assert study is not None and reader is not None
    grant = _SignInGrant(db.reader_handle(reader_code), study.id, reader.id, reader_code, clock)
    _ISSUED.add(grant)
    return ReaderSession(grant)


def _sign_in_postgresql(db: Database, study_name: str, reader_code: str, pin: str,
                        clock: Callable[[], datetime]) -> ReaderSession:
    """The PIN digest goes to ``radreview_sign_in``, which never hands out a stored hash; the
    attempt commits before its outcome is asked for (``radreview_sign_in_outcome``)."""
    with db.transaction(readonly=True) as session:
        salt = session.execute(text("SELECT radreview_pin_salt(:s, :r)"),
                               {"s": study_name, "r": reader_code}).scalar_one()
    try:
        digest = pin_digest(pin, salt)
    except (ValueError, TypeError):
        raise AuthenticationError("unknown study or reader, or wrong PIN") from None
    token = secrets.token_urlsafe(32)
    token_sha256 = hashlib.sha256(token.encode()).hexdigest()
    with db.transaction() as session:
        session.execute(text("SELECT radreview_sign_in(:s, :r, :d, :t)"),
                        {"s": study_name, "r": reader_code, "d": digest, "t": token_sha256})
    with db.transaction(readonly=True) as session:
        outcome, study_id, reader_id, wait_s = session.execute(
            text("SELECT * FROM radreview_sign_in_outcome(:t)"), {"t": token_sha256}).one()
    if outcome != "ok":
        # (The threshold is not named: a reader's role cannot read the study's settings.)
        raise _refuse(outcome, reader_code, float(wait_s or 0.0), None)
    grant = _SignInGrant(db.reader_handle(reader_code, token), study_id, reader_id, reader_code, clock)
    _ISSUED.add(grant)
    return ReaderSession(grant)


def sign_in_study_name(db: Database, requested: str | None = None) -> str:
    """The study a reader signs in to: the one named, or the only one they may see.

    On PostgreSQL a reader's role sees no study before signing in; ``radreview_study_names``
    lists the ones it is a reader of.
    """
    with db.transaction(readonly=True) as session:
        if db.dialect == "postgresql":
            names = sorted(session.scalars(text("SELECT radreview_study_names()")))
        else:
            names = sorted(session.scalars(select(StudyRow.name)))
    if requested:
        if requested not in names:
            raise ReadingError(f"{db}: no study named {requested!r}")
        return requested
    if len(names) != 1:
        raise ReadingError(f"{db}: {'no study' if not names else 'several studies'} found; name one with --study")
    return names[0]


class ReaderSession:
    """One signed-in reader's view of a study. Only :func:`sign_in` makes one."""

    def __init__(self, grant: _SignInGrant) -> None:
        if not isinstance(grant, _SignInGrant) or grant not in _ISSUED:
            raise AccessDenied("a reader session is opened only by sign_in() with the reader's PIN")
        _ISSUED.discard(grant)  # one session per sign-in
        self._db = grant.db
        self._study_id = grant.study_id
        self._reader_id = grant.reader_id
        self._clock = grant.clock
        self.reader_code = grant.reader_code
        self._assignments: dict[int, _Assignment] | None = None
        with self._db.transaction(readonly=True) as session:
            study = session.execute(
                select(StudyRow.name, StudyRow.question, StudyRow.confidence_scale, StudyRow.mode,
                       StudyRow.ai_models, StudyRow.washout_days).where(StudyRow.id == self._study_id)
            ).one()
            self.study = StudyInfo(study.name, study.question, study.confidence_scale, study.mode,
                                   tuple(study.ai_models))
            self._washout = timedelta(days=study.washout_days)

    # -- what the reader sees -------------------------------------------------------------

    def current(self) -> CaseView | None:
        """The case to read now (resuming where the reader stopped), or None when finished.

        Raises :class:`WashoutPending` when the next session is not open yet.
        """
        with self._db.transaction(readonly=True) as session:
            for sess, arm in self._sessions(session):
                needed = self._phases_for(arm)
                phases = func.count(func.distinct(ReadRow.phase))
                first_open = session.execute(
                    select(AssignmentRow.id, AssignmentRow.case_id, AssignmentRow.position, CaseRow.code)
                    .join(CaseRow, CaseRow.id == AssignmentRow.case_id)
                    .outerjoin(ReadRow, ReadRow.assignment_id == AssignmentRow.id)
                    .where(AssignmentRow.session_id == sess.id)
                    .group_by(AssignmentRow.id, AssignmentRow.case_id, AssignmentRow.position, CaseRow.code)
                    .having(phases < len(needed))
                    .order_by(AssignmentRow.position).limit(1)
                ).first()
                if first_open is None:
                    continue
                if sess.number > 1:
                    self._check_washout(session, sess.number)
                assignment_id, case_id, position, code = first_open
                done = set(session.scalars(
                    select(ReadRow.phase).where(ReadRow.assignment_id == assignment_id)
                ))
                phase = next(p for p in needed if p not in done)
                total = session.scalar(
                    select(func.count(AssignmentRow.id)).where(AssignmentRow.session_id == sess.id)
                ) or 0
                return self._case_view(session, sess, arm, assignment_id, case_id, position, code,
                                       phase, total)
            return None

    def worklist(self) -> list[tuple[int, str, int, tuple[str, ...]]]:
        """This reader's assignments in reading order: (assignment id, case code, session, phases
        still to read). Only the reader's own; nothing about truth or the AI."""
        with self._db.transaction(readonly=True) as session:
            result = []
            for sess, arm in self._sessions(session):
                done = self._phases_done(session, sess.id)
                for assignment_id, code in session.execute(
                    select(AssignmentRow.id, CaseRow.code)
                    .join(CaseRow, CaseRow.id == AssignmentRow.case_id)
                    .where(AssignmentRow.session_id == sess.id).order_by(AssignmentRow.position)
                ):
                    missing = tuple(p for p in self._phases_for(arm) if p not in done.get(assignment_id, ()))
                    result.append((assignment_id, code, sess.number, missing))
            return result

    def progress(self) -> Progress:
        with self._db.transaction(readonly=True) as session:
            sessions = self._sessions(session)
            total = done = 0
            current = len(sessions)
            for sess, arm in sessions:
                count = session.scalar(
                    select(func.count(AssignmentRow.id)).where(AssignmentRow.session_id == sess.id)
                ) or 0
                needed = set(self._phases_for(arm))
                finished = sum(1 for phases in self._phases_done(session, sess.id).values()
                               if needed <= phases)
                total += count
                done += finished
                if finished < count and current == len(sessions):
                    current = sess.number
            return Progress(done, total, current, len(sessions))

    def my_reads(self) -> list[SavedRead]:
        """All of this reader's reads, every revision, oldest first."""
        with self._db.transaction(readonly=True) as session:
            rows = session.execute(
                select(*READ_COLUMNS, CaseRow.code.label("case_code"))
                .join(CaseRow, CaseRow.id == ReadRow.case_id)
                .where(ReadRow.reader_id == self._reader_id).order_by(ReadRow.id)
            ).mappings().all()
            return [_saved(row, row["case_code"]) for row in rows]

    def read(self, read_id: int) -> SavedRead:
        """One of this reader's own reads; another reader's raises AccessDenied."""
        with self._db.transaction(readonly=True) as session:
            row = self._own_read(session, read_id)
            return _saved(row, self._case_code(session, row["case_id"]))

    # -- saving -----------------------------------------------------------------------------

    def save_read(
        self,
        assignment_id: int,
        phase: str,
        decision: int | bool,
        *,
        confidence: float | None = None,
        rating: int | None = None,
        comment: str = "",
        ai_agreement: str | None = None,
        time_to_first_decision_ms: int | None = None,
        total_time_ms: int | None = None,
        telemetry: Sequence[dict[str, Any]] = (),
        client_token: str | None = None,
    ) -> SavedRead:
        """Save the first read of a phase of an assigned case (one committed transaction)."""
        return self._save(assignment_id, phase, None, int(bool(decision)), confidence, rating, comment,
                          ai_agreement, time_to_first_decision_ms, total_time_ms, telemetry,
                          client_token)

    def revise(
        self,
        read_id: int,
        decision: int | bool,
        *,
        confidence: float | None = None,
        rating: int | None = None,
        comment: str = "",
        ai_agreement: str | None = None,
        time_to_first_decision_ms: int | None = None,
        total_time_ms: int | None = None,
        telemetry: Sequence[dict[str, Any]] = (),
        client_token: str | None = None,
    ) -> SavedRead:
        """Record a corrected read as a new row pointing at ``read_id`` (which must be the latest)."""
        with self._db.transaction(readonly=True) as session:
            old = self._own_read(session, read_id)
            assignment_id, phase = old["assignment_id"], old["phase"]
        return self._save(assignment_id, phase, read_id, int(bool(decision)), confidence, rating,
                          comment, ai_agreement, time_to_first_decision_ms, total_time_ms, telemetry,
                          client_token)

    # -- internals -----------------------------------------------------------------------------

    def _save(self, assignment_id, phase, revises_id, decision, confidence, rating, comment,  # type: ignore[no-untyped-def]
              ai_agreement, ttfd, total, telemetry, client_token) -> SavedRead:
        token = client_token or uuid.uuid4().hex
        self._check_values(phase, confidence, rating, ai_agreement)
        # Stored as JSON; normalised now so that the digest below matches what is read back.
        telemetry = json.loads(json.dumps(list(telemetry)))
        try:
            with self._db.transaction() as session:
                # A retry of a save that already committed hits a unique key (token or revision)
                # and is answered from the stored row below.
                assigned = self._own_assignment(session, assignment_id)
                if phase not in PHASES_BY_ARM[assigned.arm]:
                    raise ReadingError(f"the {assigned.arm} arm has no {phase} read")
                if assigned.session_number > 1:
                    self._check_washout(session, assigned.session_number)
                # One query for the latest revision of each phase of this assignment.
                latest_by_phase: dict[str, Mapping[str, Any]] = {}
                for row in session.execute(
                    select(*READ_COLUMNS).where(ReadRow.assignment_id == assigned.id).order_by(ReadRow.revision)
                ).mappings():
                    latest_by_phase[row["phase"]] = row
                latest = latest_by_phase.get(phase)
                unaided = None
                if assigned.arm == "sequential":
                    unaided = latest_by_phase.get("unaided")
                    if phase == "unaided" and unaided is not None and unaided["client_token"] != token:
                        raise ReadLocked("the unaided read is locked once saved: the AI has been shown")
                    if phase == "aided" and unaided is None:
                        raise ReadLocked("lock the unaided read before the aided read")
                if latest is not None and latest["client_token"] == token:  # the same save, retried
                    return _saved(latest, assigned.case_code)
                if phase == "unaided" and self._ai_seen(session, assigned):
                    raise ReadLocked("the unaided read is locked: you have seen the AI for this case")
                if revises_id is None and latest is not None:
                    raise ReadingError(f"case {assigned.case_code} already has a {phase} read; revise it instead")
                if revises_id is not None and (latest is None or latest["id"] != revises_id):
                    raise ReadingError("only the latest revision of a read can be revised")
                sham = None
                if phase == "aided" and self._db.dialect != "postgresql":
                    # (On PostgreSQL the database fills this in: a reader's role cannot see it.)
                    sham = bool(session.scalar(
                        select(func.count(AIOutputRow.id))
                        .where(AIOutputRow.case_id == assigned.case_id, AIOutputRow.sham.is_(True))
                    ))
                elif phase != "aided" and ai_agreement is not None:
                    raise ReadingError("agree/disagree applies only to reads with the AI shown")
                row = ReadRow(
                    assignment_id=assigned.id, reader_id=self._reader_id, case_id=assigned.case_id,
                    phase=phase, revision=0 if latest is None else latest["revision"] + 1,
                    revises_id=revises_id, decision=decision, confidence=confidence, rating=rating,
                    comment=comment or "", ai_agreement=ai_agreement,
                    changed=None if unaided is None else decision != unaided["decision"],
                    ai_shown_sham=sham, time_to_first_decision_ms=ttfd, total_time_ms=total,
                    telemetry=telemetry, client_token=token, created_at=utc(self._clock()),
                )
                session.add(row)
                session.flush()
                values = {c.name: getattr(row, c.name) for c in READ_COLUMNS}
                append_audit(
                    session, self._study_id, f"reader:{self.reader_code}",
                    "read revised" if revises_id else "read saved",
                    {"read_id": row.id, "case": assigned.case_code, "phase": phase,
                     "read_sha256": read_digest(values)},
                    row.created_at,
                )
                return _saved(values, assigned.case_code)
        except IntegrityError as exc:
            # A concurrent or repeated save of the same token/revision won: return it if it is ours.
            with self._db.transaction(readonly=True) as session:
                existing = session.execute(
                    select(*READ_COLUMNS).where(ReadRow.client_token == token)
                ).mappings().first()
                if existing is not None and existing["reader_id"] == self._reader_id:
                    return _saved(existing, self._case_code(session, existing["case_id"]))
            rule = _database_rule(exc)
            if rule is not None:  # the database's own reading rules refused the row
                raise (ReadLocked if "locked" in rule else ReadingError)(rule) from None
            raise ReadingError("this read was saved concurrently by another save; reload") from None

    def _ai_seen(self, session: Session, assigned: _Assignment) -> bool:
        """Whether this reader has an aided read of the case in this or a later sitting (crossover:
        the unaided arm came first and the AI has been seen since)."""
        cache = self._assignments or {}
        for assignment_id in session.scalars(
            select(ReadRow.assignment_id).where(ReadRow.reader_id == self._reader_id,
                                                ReadRow.case_id == assigned.case_id, ReadRow.phase == "aided")
        ):
            other = cache.get(assignment_id)
            if other is not None and other.session_number >= assigned.session_number:
                return True
        return False

    def _case_code(self, session: Session, case_id: int) -> str:
        return session.execute(select(CaseRow.code).where(CaseRow.id == case_id)).scalar_one()

    def _check_values(self, phase: str, confidence: float | None, rating: int | None,
                      ai_agreement: str | None) -> None:
        if phase not in PHASES:
            raise ReadingError(f"phase {phase!r} is not one of {PHASES}")
        scale = self.study.confidence_scale
        if scale in ("0-100", "both"):
            if confidence is None or not 0.0 <= confidence <= 100.0:
                raise ReadingError("give a confidence between 0 and 100")
        if scale in ("5-point", "both"):
            if rating is None or rating not in (1, 2, 3, 4, 5):
                raise ReadingError("give a rating from 1 to 5")
        if ai_agreement is not None and ai_agreement not in AGREEMENT:
            raise ReadingError(f"agreement must be one of {AGREEMENT}")

    def _sessions(self, session: Session) -> list[tuple[SessionRow, ArmRow]]:
        rows = session.execute(
            select(SessionRow, ArmRow).join(ArmRow, ArmRow.id == SessionRow.arm_id)
            .where(SessionRow.reader_id == self._reader_id).order_by(SessionRow.number)
        ).all()
        return [(s, a) for s, a in rows]

    @staticmethod
    def _phases_for(arm: ArmRow) -> tuple[str, ...]:
        return PHASES_BY_ARM[arm.name]

    def _phases_done(self, session: Session, session_id: int) -> dict[int, set[str]]:
        done: dict[int, set[str]] = {}
        for assignment_id, phase in session.execute(
            select(ReadRow.assignment_id, ReadRow.phase).distinct()
            .join(AssignmentRow, AssignmentRow.id == ReadRow.assignment_id)
            .where(AssignmentRow.session_id == session_id, ReadRow.reader_id == self._reader_id)
        ):
            done.setdefault(assignment_id, set()).add(phase)
        return done

    def _check_washout(self, session: Session, number: int) -> None:
        """The previous session must be finished and the washout over."""
        previous = session.scalar(
            select(SessionRow).where(SessionRow.reader_id == self._reader_id,
                                     SessionRow.number == number - 1)
        )
        if previous is None:
            return
        last = session.scalar(
            select(func.max(ReadRow.created_at))
            .join(AssignmentRow, AssignmentRow.id == ReadRow.assignment_id)
            .where(AssignmentRow.session_id == previous.id)
        )
        if last is None:
            raise WashoutPending("the previous session is not finished", self._clock())
        opens = _aware(last) + self._washout
        if self._clock() < opens:
            raise WashoutPending(
                f"session {number} opens after the washout, on {opens:%Y-%m-%d %H:%M} UTC", opens
            )

    def _own_assignment(self, session: Session, assignment_id: int) -> _Assignment:
        """This reader's assignment, from a cache of all of them (assignments never change once
        the reader is added); anything else is refused."""
        if self._assignments is None:
            rows = session.execute(
                select(AssignmentRow.id, SessionRow.number, ArmRow.name, CaseRow.id, CaseRow.code)
                .join(SessionRow, SessionRow.id == AssignmentRow.session_id)
                .join(ArmRow, ArmRow.id == SessionRow.arm_id)
                .join(CaseRow, CaseRow.id == AssignmentRow.case_id)
                .where(SessionRow.reader_id == self._reader_id)
            ).all()
            self._assignments = {row[0]: _Assignment(*row) for row in rows}
        assigned = self._assignments.get(assignment_id)
        if assigned is None:
            raise AccessDenied("this case is not assigned to you")
        return assigned

    def _own_read(self, session: Session, read_id: int) -> Mapping[str, Any]:
        row = session.execute(select(*READ_COLUMNS).where(ReadRow.id == read_id)).mappings().first()
        if row is None or row["reader_id"] != self._reader_id:
            raise AccessDenied("this read is not yours")
        return row

    def _latest(self, session: Session, assignment_id: int, phase: str) -> Mapping[str, Any] | None:
        return session.execute(
            select(*READ_COLUMNS).where(ReadRow.assignment_id == assignment_id, ReadRow.phase == phase)
            .order_by(ReadRow.revision.desc()).limit(1)
        ).mappings().first()

    def _case_view(self, session: Session, sess: SessionRow, arm: ArmRow, assignment_id: int,
                   case_id: int, position: int, code: str, phase: str, total: int) -> CaseView:
        images = tuple(session.scalars(
            select(CaseImageRow.path).where(CaseImageRow.case_id == case_id)
            .order_by(CaseImageRow.position)
        ))
        ai: tuple[AIView, ...] = ()
        if phase == "aided":
            ai = tuple(
                # only the columns a reader's database role may read (roles.READER_SELECT)
                _ai_view(o, len(images)) for o in session.execute(
                    select(AIOutputRow.model, AIOutputRow.label, AIOutputRow.shown_probability,
                           AIOutputRow.heatmap_path, AIOutputRow.in_scope, AIOutputRow.shown_tier,
                           AIOutputRow.shown_result)
                    .where(AIOutputRow.case_id == case_id).order_by(AIOutputRow.model)
                )
            )
        unaided = None
        if arm.name == "sequential" and phase == "aided":
            row = self._latest(session, assignment_id, "unaided")
            unaided = _saved(row, code) if row is not None else None
        return CaseView(assignment_id, code, images, phase, sess.number, position + 1, total, ai, unaided)


def _ai_view(row: Any, n_images: int) -> AIView:
    """What the reader is shown of one AI output (``shown_result``: on sham cases the altered results)."""
    payload = row.shown_result if isinstance(row.shown_result, dict) else None
    images: list[dict[str, Any] | None] = [None] * n_images if payload else []
    problems = [""] * len(images)
    for item in (payload or {}).get("images", []):
        position = item.get("position") if isinstance(item, dict) else None
        if isinstance(position, int) and 0 <= position < n_images:
            images[position] = item.get("result")
            problems[position] = str(item.get("problem") or "")
    return AIView(row.model, row.label, row.shown_probability, row.heatmap_path, row.in_scope,
                  row.shown_tier or "", tuple(images), tuple(problems))


def _saved(row: Mapping[str, Any], code: str) -> SavedRead:
    return SavedRead(
        id=row["id"], assignment_id=row["assignment_id"], case_code=code, phase=row["phase"],
        revision=row["revision"], revises_id=row["revises_id"], decision=row["decision"],
        confidence=row["confidence"], rating=row["rating"], comment=row["comment"],
        ai_agreement=row["ai_agreement"], changed=row["changed"],
        time_to_first_decision_ms=row["time_to_first_decision_ms"], total_time_ms=row["total_time_ms"],
        telemetry=tuple(row["telemetry"] or ()), created_at=_aware(row["created_at"]),
    )


def _database_rule(exc: IntegrityError) -> str | None:
    """The message of a reading rule the database enforced (migration 0002), if that was the cause."""
    message = str(getattr(exc, "orig", exc))
    for line in message.splitlines():
        if "reads: " in line:
            return line[line.index("reads: "):].strip()
    return None
