"""Reading: what a signed-in reader can see and save.

:func:`sign_in` returns a :class:`ReaderSession`. It is the whole of a reader's access: it shows
only the reader's own assignment (the current case, its images, the AI when the design reveals
it) and the reader's own reads. It has no method that returns the truth, another reader's reads
or the coordinator's identifiers; asking for another reader's row raises :class:`AccessDenied`.

Saving follows three rules:
- one committed transaction per save (the read and its audit entry), so a crash loses at most
  the read being typed;
- a save is idempotent: it carries a ``client_token``; repeating a save whose commit already
  happened returns the stored read instead of creating a second one;
- nothing is updated in place: :meth:`ReaderSession.revise` adds a row pointing at the old one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from radreview.readerstudy.db import Database
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
from radreview.readerstudy.security import verify_pin

PHASES = ("unaided", "aided")
PHASES_BY_ARM = {"unaided": ("unaided",), "aided": ("aided",), "sequential": ("unaided", "aided")}
AGREEMENT = ("agree", "disagree")


class ReadingError(RuntimeError):
    """A save or request that the study design does not allow; the message says why."""


class AuthenticationError(ReadingError):
    pass


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


def sign_in(db: Database, study_name: str, reader_code: str, pin: str,
            clock: Callable[[], datetime] = _now) -> ReaderSession:
    """Check the reader's PIN and return their session; failures are logged and refused."""
    with db.transaction() as session:
        study = session.scalar(select(StudyRow).where(StudyRow.name == study_name))
        reader = None
        if study is not None:
            reader = session.scalar(
                select(ReaderRow).where(ReaderRow.study_id == study.id, ReaderRow.code == reader_code)
            )
        ok = reader is not None and verify_pin(pin, reader.pin_hash)
        session.add(AuditRow(
            study_id=study.id if study else None, at=clock(), actor=f"reader:{reader_code}",
            action="sign-in" if ok else "sign-in refused", detail={},
        ))
    if not ok:
        raise AuthenticationError("unknown study or reader, or wrong PIN")
    assert study is not None and reader is not None
    return ReaderSession(db, study.id, reader.id, reader.code, clock)


class ReaderSession:
    """One signed-in reader's view of a study. Obtain it from :func:`sign_in`."""

    def __init__(self, db: Database, study_id: int, reader_id: int, reader_code: str,
                 clock: Callable[[], datetime]) -> None:
        self._db = db
        self._study_id = study_id
        self._reader_id = reader_id
        self._clock = clock
        self.reader_code = reader_code
        self._assignments: dict[int, _Assignment] | None = None
        with db.transaction() as session:
            study = session.get(StudyRow, study_id)
            assert study is not None
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
                select(ReadRow, CaseRow.code).join(CaseRow, CaseRow.id == ReadRow.case_id)
                .where(ReadRow.reader_id == self._reader_id).order_by(ReadRow.id)
            ).all()
            return [_saved(row, code) for row, code in rows]

    def read(self, read_id: int) -> SavedRead:
        """One of this reader's own reads; another reader's raises AccessDenied."""
        with self._db.transaction(readonly=True) as session:
            row = self._own_read(session, read_id)
            return _saved(row, session.get(CaseRow, row.case_id).code)  # type: ignore[union-attr]

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
        with self._db.transaction() as session:
            old = self._own_read(session, read_id)
            assignment_id, phase = old.assignment_id, old.phase
        return self._save(assignment_id, phase, read_id, int(bool(decision)), confidence, rating,
                          comment, ai_agreement, time_to_first_decision_ms, total_time_ms, telemetry,
                          client_token)

    # -- internals -----------------------------------------------------------------------------

    def _save(self, assignment_id, phase, revises_id, decision, confidence, rating, comment,  # type: ignore[no-untyped-def]
              ai_agreement, ttfd, total, telemetry, client_token) -> SavedRead:
        token = client_token or uuid.uuid4().hex
        self._check_values(phase, confidence, rating, ai_agreement)
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
                latest_by_phase: dict[str, ReadRow] = {}
                for row in session.scalars(
                    select(ReadRow).where(ReadRow.assignment_id == assigned.id).order_by(ReadRow.revision)
                ):
                    latest_by_phase[row.phase] = row
                latest = latest_by_phase.get(phase)
                unaided = None
                if assigned.arm == "sequential":
                    unaided = latest_by_phase.get("unaided")
                    if phase == "unaided" and unaided is not None and unaided.client_token != token:
                        raise ReadLocked("the unaided read is locked once saved: the AI has been shown")
                    if phase == "aided" and unaided is None:
                        raise ReadLocked("lock the unaided read before the aided read")
                if latest is not None and latest.client_token == token:  # the same save, retried
                    return _saved(latest, assigned.case_code)
                if revises_id is None and latest is not None:
                    raise ReadingError(f"case {assigned.case_code} already has a {phase} read; revise it instead")
                if revises_id is not None and (latest is None or latest.id != revises_id):
                    raise ReadingError("only the latest revision of a read can be revised")
                shows_ai = phase == "aided"
                sham = None
                if shows_ai:
                    sham = bool(session.scalar(
                        select(func.count(AIOutputRow.id))
                        .where(AIOutputRow.case_id == assigned.case_id, AIOutputRow.sham.is_(True))
                    ))
                elif ai_agreement is not None:
                    raise ReadingError("agree/disagree applies only to reads with the AI shown")
                row = ReadRow(
                    assignment_id=assigned.id, reader_id=self._reader_id, case_id=assigned.case_id,
                    phase=phase, revision=0 if latest is None else latest.revision + 1,
                    revises_id=revises_id, decision=decision, confidence=confidence, rating=rating,
                    comment=comment or "", ai_agreement=ai_agreement,
                    changed=None if unaided is None else decision != unaided.decision,
                    ai_shown_sham=sham, time_to_first_decision_ms=ttfd, total_time_ms=total,
                    telemetry=list(telemetry), client_token=token, created_at=self._clock(),
                )
                session.add(row)
                session.flush()
                session.add(AuditRow(
                    study_id=self._study_id, at=row.created_at, actor=f"reader:{self.reader_code}",
                    action="read revised" if revises_id else "read saved",
                    detail={"read_id": row.id, "case": assigned.case_code, "phase": phase},
                ))
                return _saved(row, assigned.case_code)
        except IntegrityError:
            # A concurrent or repeated save of the same token/revision won: return it if it is ours.
            with self._db.transaction() as session:
                existing = session.scalar(select(ReadRow).where(ReadRow.client_token == token))
                if existing is not None and existing.reader_id == self._reader_id:
                    return _saved(existing, session.get(CaseRow, existing.case_id).code)  # type: ignore[union-attr]
            raise ReadingError("this read was saved concurrently by another save; reload") from None

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

    def _own_read(self, session: Session, read_id: int) -> ReadRow:
        row = session.get(ReadRow, read_id)
        if row is None or row.reader_id != self._reader_id:
            raise AccessDenied("this read is not yours")
        return row

    def _latest(self, session: Session, assignment_id: int, phase: str) -> ReadRow | None:
        return session.scalar(
            select(ReadRow).where(ReadRow.assignment_id == assignment_id, ReadRow.phase == phase)
            .order_by(ReadRow.revision.desc()).limit(1)
        )

    def _case_view(self, session: Session, sess: SessionRow, arm: ArmRow, assignment_id: int,
                   case_id: int, position: int, code: str, phase: str, total: int) -> CaseView:
        images = tuple(session.scalars(
            select(CaseImageRow.path).where(CaseImageRow.case_id == case_id)
            .order_by(CaseImageRow.position)
        ))
        ai: tuple[AIView, ...] = ()
        if phase == "aided":
            ai = tuple(
                _ai_view(o, len(images)) for o in session.scalars(
                    select(AIOutputRow).where(AIOutputRow.case_id == case_id)
                    .order_by(AIOutputRow.model)
                )
            )
        unaided = None
        if arm.name == "sequential" and phase == "aided":
            row = self._latest(session, assignment_id, "unaided")
            unaided = _saved(row, code) if row is not None else None
        return CaseView(assignment_id, code, images, phase, sess.number, position + 1, total, ai, unaided)


def _ai_view(row: AIOutputRow, n_images: int) -> AIView:
    """What the reader is shown of one AI output: on sham cases the altered results."""
    payload = row.result if isinstance(row.result, dict) else None
    images: list[dict[str, Any] | None] = [None] * n_images if payload else []
    problems = [""] * len(images)
    for item in (payload or {}).get("shown_images" if row.sham else "images", []):
        position = item.get("position") if isinstance(item, dict) else None
        if isinstance(position, int) and 0 <= position < n_images:
            images[position] = item.get("result")
            problems[position] = str(item.get("problem") or "")
    return AIView(row.model, row.label, row.shown_probability, row.heatmap_path, row.in_scope,
                  row.shown_tier or "", tuple(images), tuple(problems))


def _saved(row: ReadRow, code: str) -> SavedRead:
    return SavedRead(
        id=row.id, assignment_id=row.assignment_id, case_code=code, phase=row.phase,
        revision=row.revision, revises_id=row.revises_id, decision=row.decision,
        confidence=row.confidence, rating=row.rating, comment=row.comment,
        ai_agreement=row.ai_agreement, changed=row.changed,
        time_to_first_decision_ms=row.time_to_first_decision_ms, total_time_ms=row.total_time_ms,
        telemetry=tuple(row.telemetry or ()), created_at=_aware(row.created_at),
    )
