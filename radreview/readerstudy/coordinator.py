"""The coordinator's view of a study: design, progress, every read, truth and AI outputs.

This is separate from :class:`radreview.readerstudy.reading.ReaderSession` on purpose: only the
coordinator's tools (``radreview study status|export|report``) use it. It refuses a signed-in
reader's handle, and on PostgreSQL a connection made with a reader's own database role (which
could not read the truth anyway: that role has no privilege on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from radreview.readerstudy.audit import RecordCheck, verify_study_record
from radreview.readerstudy.db import Database
from radreview.readerstudy.design import study_id_by_name
from radreview.readerstudy.heatmap_use import heatmap_use
from radreview.readerstudy.reading import failed_sign_ins
from radreview.readerstudy.security import SignInPolicy
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


@dataclass(frozen=True)
class ReaderStatus:
    reader: str
    sessions: int
    cases_done: int
    cases_total: int
    reads: int  # rows, revisions included
    last_read_at: datetime | None
    failed_sign_ins: int = 0  # since the last success or unlock
    locked: bool = False

    @property
    def fraction(self) -> float:
        return self.cases_done / self.cases_total if self.cases_total else 0.0


@dataclass(frozen=True)
class CaseRecord:
    code: str
    source_id: str
    truth: int
    side: str | None
    region: str | None
    images: tuple[str, ...]


@dataclass(frozen=True)
class AIRecord:
    case: str
    model: str
    label: str
    probability: float
    shown_probability: float
    sham: bool
    in_scope: bool | None = None  # None: the model has no scope check (or the source gave none)
    tier: str = ""
    shown_tier: str = ""
    with_results: bool = False  # per-image results (tiers, cut-offs, heatmaps) shown to readers


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CoordinatorRefused(PermissionError):
    """The coordinator's view was asked for on a reader's handle or database role."""


class Coordinator:
    """Read access to everything in one study, for the people running it."""

    def __init__(self, db: Database, study: str | None = None) -> None:
        if db.reader is not None:
            raise CoordinatorRefused(f"this database handle belongs to reader {db.reader}: the coordinator's "
                                     "view needs the coordinator's own")
        if db.dialect == "postgresql":
            from radreview.readerstudy.roles import is_reader_connection

            with db.transaction(readonly=True) as session:
                if is_reader_connection(session):
                    raise CoordinatorRefused(f"{db}: this is a reader's database role; the coordinator's "
                                             "view needs the coordinator's role")
        self.db = db
        self.study_id = study_id_by_name(db, study)

    def verify(self) -> RecordCheck:
        """The audit chain, each read against its audit entry, and the database's protections
        (the whole database, not only this study: the chain runs through all of it)."""
        return verify_study_record(self.db)

    def design(self) -> dict[str, Any]:
        with self.db.transaction(readonly=True) as session:
            study = session.get(StudyRow, self.study_id)
            assert study is not None
            arms = session.scalars(select(ArmRow).where(ArmRow.study_id == self.study_id)).all()
            n_cases = session.scalar(select(func.count(CaseRow.id)).where(CaseRow.study_id == self.study_id))
            n_pos = session.scalar(select(func.count(CaseRow.id))
                                   .where(CaseRow.study_id == self.study_id, CaseRow.truth == 1))
            n_sham = session.scalar(
                select(func.count(func.distinct(AIOutputRow.case_id)))
                .join(CaseRow, CaseRow.id == AIOutputRow.case_id)
                .where(CaseRow.study_id == self.study_id, AIOutputRow.sham.is_(True))
            )
            readers = session.scalars(select(ReaderRow).where(ReaderRow.study_id == self.study_id)
                                      .order_by(ReaderRow.id)).all()
            arm_order = {}
            for reader in readers:
                arm_order[reader.code] = list(session.scalars(
                    select(ArmRow.name).join(SessionRow, SessionRow.arm_id == ArmRow.id)
                    .where(SessionRow.reader_id == reader.id).order_by(SessionRow.number)
                ))
            return {
                "name": study.name,
                "question": study.question,
                "confidence_scale": study.confidence_scale,
                "mode": study.mode,
                "threshold": study.threshold,
                "washout_days": study.washout_days,
                "sham_share": study.sham_share,
                "sham_cases": n_sham,
                "seed": study.seed,
                "ai_models": list(study.ai_models),
                "arms": [{"name": a.name, "shows_ai": a.shows_ai} for a in arms],
                "cases": n_cases,
                "positive_cases": n_pos,
                "readers": [{"reader": r.code, "seed": r.seed, "arm_order": arm_order[r.code]}
                            for r in readers],
                "created_at": _aware(study.created_at).isoformat(),  # type: ignore[union-attr]
            }

    def readers(self) -> list[str]:
        with self.db.transaction(readonly=True) as session:
            return list(session.scalars(select(ReaderRow.code).where(ReaderRow.study_id == self.study_id)
                                        .order_by(ReaderRow.id)))

    def status(self) -> list[ReaderStatus]:
        """Progress per reader: a case is done when every phase its arm asks for is saved."""
        result = []
        with self.db.transaction(readonly=True) as session:
            readers = session.scalars(select(ReaderRow).where(ReaderRow.study_id == self.study_id)
                                      .order_by(ReaderRow.id)).all()
            policy = SignInPolicy.from_settings(session.get(StudyRow, self.study_id).settings)  # type: ignore[union-attr]
            for reader in readers:
                failures, _ = failed_sign_ins(session, self.study_id, reader.code)
                sessions = session.execute(
                    select(SessionRow, ArmRow).join(ArmRow, ArmRow.id == SessionRow.arm_id)
                    .where(SessionRow.reader_id == reader.id)
                ).all()
                total = done = 0
                for sess, arm in sessions:
                    needed = 2 if arm.name == "sequential" else 1
                    total += session.scalar(select(func.count(AssignmentRow.id))
                                            .where(AssignmentRow.session_id == sess.id)) or 0
                    per_assignment = session.execute(
                        select(ReadRow.assignment_id, func.count(func.distinct(ReadRow.phase)))
                        .join(AssignmentRow, AssignmentRow.id == ReadRow.assignment_id)
                        .where(AssignmentRow.session_id == sess.id).group_by(ReadRow.assignment_id)
                    ).all()
                    done += sum(1 for _, phases in per_assignment if phases >= needed)
                reads, last = session.execute(
                    select(func.count(ReadRow.id), func.max(ReadRow.created_at))
                    .where(ReadRow.reader_id == reader.id)
                ).one()
                result.append(ReaderStatus(reader.code, len(sessions), done, total, reads, _aware(last),
                                           failures, failures >= policy.lock_after))
        return result

    def cases(self) -> list[CaseRecord]:
        with self.db.transaction(readonly=True) as session:
            rows = session.scalars(select(CaseRow).where(CaseRow.study_id == self.study_id)
                                   .order_by(CaseRow.code)).all()
            images: dict[int, list[str]] = {}
            for case_id, path in session.execute(
                select(CaseImageRow.case_id, CaseImageRow.path)
                .join(CaseRow, CaseRow.id == CaseImageRow.case_id)
                .where(CaseRow.study_id == self.study_id).order_by(CaseImageRow.position)
            ):
                images.setdefault(case_id, []).append(path)
            return [CaseRecord(r.code, r.source_id, r.truth, r.side, r.region, tuple(images.get(r.id, ())))
                    for r in rows]

    def ai_outputs(self) -> list[AIRecord]:
        with self.db.transaction(readonly=True) as session:
            rows = session.execute(
                select(AIOutputRow, CaseRow.code).join(CaseRow, CaseRow.id == AIOutputRow.case_id)
                .where(CaseRow.study_id == self.study_id).order_by(CaseRow.code, AIOutputRow.model)
            ).all()
            return [AIRecord(code, o.model, o.label, o.probability, o.shown_probability, o.sham,
                             o.in_scope, o.tier or "", o.shown_tier or "", isinstance(o.result, dict))
                    for o, code in rows]

    def reads(self, *, all_revisions: bool = False) -> list[dict[str, Any]]:
        """One dict per read (the latest revision of each unless ``all_revisions``), tidy columns."""
        with self.db.transaction(readonly=True) as session:
            rows = session.execute(
                select(ReadRow, ReaderRow.code, CaseRow, SessionRow.number, ArmRow.name,
                       AssignmentRow.position)
                .join(ReaderRow, ReaderRow.id == ReadRow.reader_id)
                .join(CaseRow, CaseRow.id == ReadRow.case_id)
                .join(AssignmentRow, AssignmentRow.id == ReadRow.assignment_id)
                .join(SessionRow, SessionRow.id == AssignmentRow.session_id)
                .join(ArmRow, ArmRow.id == SessionRow.arm_id)
                .where(ReaderRow.study_id == self.study_id)
                .order_by(ReaderRow.id, SessionRow.number, AssignmentRow.position, ReadRow.phase.desc(),
                          ReadRow.revision)
            ).all()
            shown: dict[int, tuple[float, bool | None, str | None]] = {}
            for case_id, probability, in_scope, tier in session.execute(
                select(AIOutputRow.case_id, AIOutputRow.shown_probability, AIOutputRow.in_scope,
                       AIOutputRow.shown_tier)
                .join(CaseRow, CaseRow.id == AIOutputRow.case_id)
                .where(CaseRow.study_id == self.study_id).order_by(AIOutputRow.model.desc())
            ):
                shown[case_id] = (probability, in_scope, tier)  # first model in name order wins
        latest: dict[tuple[int, str], int] = {}
        for read, *_ in rows:
            key = (read.assignment_id, read.phase)
            latest[key] = max(latest.get(key, -1), read.revision)
        records = []
        for read, reader, case, session_number, arm, position in rows:
            if not all_revisions and read.revision != latest[(read.assignment_id, read.phase)]:
                continue
            ai = shown.get(case.id) if read.phase == "aided" else None
            records.append({
                "read_id": read.id,
                "reader": reader,
                "case": case.code,
                "case_source_id": case.source_id,
                "truth": case.truth,
                "side": case.side,
                "region": case.region,
                "modality": read.phase,
                "arm": arm,
                "session": session_number,
                "position": position + 1,
                "revision": read.revision,
                "revises_id": read.revises_id,
                "decision": read.decision,
                "confidence": read.confidence,
                "rating": read.rating,
                "comment": read.comment,
                "ai_agreement": read.ai_agreement,
                "changed": read.changed,
                "ai_shown_probability": ai[0] if ai else None,
                "ai_in_scope": ai[1] if ai else None,
                "ai_tier_shown": (ai[2] or "") if ai else None,
                "ai_sham": read.ai_shown_sham,
                **heatmap_use(read.telemetry or (), read.total_time_ms),
                "time_to_first_decision_ms": read.time_to_first_decision_ms,
                "total_time_ms": read.total_time_ms,
                "telemetry_events": len(read.telemetry or ()),
                "telemetry": list(read.telemetry or ()),
                "created_at": _aware(read.created_at).isoformat(),  # type: ignore[union-attr]
            })
        return records

    def audit(self) -> list[dict[str, Any]]:
        with self.db.transaction(readonly=True) as session:
            return [
                {"at": _aware(a.at).isoformat(), "actor": a.actor, "action": a.action, "detail": a.detail}  # type: ignore[union-attr]
                for a in session.scalars(select(AuditRow).where(AuditRow.study_id == self.study_id)
                                         .order_by(AuditRow.id))
            ]
