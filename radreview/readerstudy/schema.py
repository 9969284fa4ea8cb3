"""The reader-study tables (SQLAlchemy 2.0 declarative models).

The same schema is created on SQLite and PostgreSQL by the Alembic migrations in
``readerstudy/migrations``; ``tests/test_readerstudy_data.py`` checks that the migrations and these
models agree. The rules that shape it:

- ``reads`` and ``audit_log`` are append-only. A changed read is a new row whose ``revises_id``
  points at the row it replaces; the data layer has no UPDATE/DELETE path and database triggers
  refuse one (migration 0001).
- The reading record is checked by the database itself on every insert (migration 0002): a read
  matches its assignment, a revision follows the latest read of its phase, and an unaided read
  cannot be added or revised once the same reader has an AI-aided read of the case (in the same
  sitting, or in an earlier-numbered sitting that came after it).
- A save is idempotent: ``(assignment_id, phase, revision)`` and ``client_token`` are unique, so a
  retry after a crash cannot create a second copy of a read.
- The audit log is hash-chained (``prev_hash``, ``hash``; see :mod:`radreview.readerstudy.audit`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names so that migrations are portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class StudyRow(Base):
    """One reader study: its question, reading mode and every design choice."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    question: Mapped[str] = mapped_column(Text)
    # "0-100", "5-point" or "both"
    confidence_scale: Mapped[str] = mapped_column(String(20))
    # "unaided", "aided", "sequential" or "crossover"
    mode: Mapped[str] = mapped_column(String(20))
    # Decision threshold on the 0-100 scale used for the AI (probability x 100).
    threshold: Mapped[float] = mapped_column(Float, default=50.0)
    washout_days: Mapped[int] = mapped_column(Integer, default=0)
    sham_share: Mapped[float] = mapped_column(Float, default=0.0)
    seed: Mapped[int] = mapped_column(Integer)
    ai_models: Mapped[list] = mapped_column(JSON, default=list)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CaseRow(Base):
    """A case under a pseudonymous code; ``source_id`` is the coordinator's own identifier."""

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("study_id", "code"), UniqueConstraint("study_id", "source_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(200))
    truth: Mapped[int] = mapped_column(Integer)
    side: Mapped[str | None] = mapped_column(String(20), nullable=True)
    region: Mapped[str | None] = mapped_column(String(80), nullable=True)
    position: Mapped[int] = mapped_column(Integer)


class CaseImageRow(Base):
    __tablename__ = "case_images"
    __table_args__ = (UniqueConstraint("case_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)


class ReaderRow(Base):
    """A reader; the PIN is kept only as a salted scrypt hash."""

    __tablename__ = "readers"
    __table_args__ = (UniqueConstraint("study_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    code: Mapped[str] = mapped_column(String(80))
    pin_hash: Mapped[str] = mapped_column(String(400))
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # PostgreSQL: the reader's own login role, which row-level security confines to this reader.
    db_role: Mapped[str | None] = mapped_column(String(63), nullable=True, unique=True, index=True)


class ArmRow(Base):
    """A reading condition: AI shown or not."""

    __tablename__ = "arms"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    # "unaided", "aided" or "sequential" (unaided then aided in one sitting)
    name: Mapped[str] = mapped_column(String(40))
    shows_ai: Mapped[bool] = mapped_column(Boolean)


class SessionRow(Base):
    """One sitting of a reader: crossover has two per reader, other modes one."""

    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("reader_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), index=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id"))
    number: Mapped[int] = mapped_column(Integer)


class AssignmentRow(Base):
    """A case placed at a position in a reader's session (the randomised reading order)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("session_id", "position"),
        UniqueConstraint("session_id", "case_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)


class ReadRow(Base):
    """One saved read (append-only). ``phase`` is "unaided" or "aided"."""

    __tablename__ = "reads"
    __table_args__ = (UniqueConstraint("assignment_id", "phase", "revision"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    phase: Mapped[str] = mapped_column(String(20))
    revision: Mapped[int] = mapped_column(Integer)
    revises_id: Mapped[int | None] = mapped_column(ForeignKey("reads.id"), nullable=True)
    decision: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # 0-100
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1-5
    comment: Mapped[str] = mapped_column(Text, default="")
    # Aided reads: "agree"/"disagree" with the AI shown, and whether the decision changed
    # from the reader's own unaided read (sequential mode).
    ai_agreement: Mapped[str | None] = mapped_column(String(20), nullable=True)
    changed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ai_shown_sham: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    time_to_first_decision_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total_time_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    telemetry: Mapped[list] = mapped_column(JSON, default=list)
    client_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AIOutputRow(Base):
    """What a model said about a case, and what the readers were shown (differs on sham cases)."""

    __tablename__ = "ai_outputs"
    __table_args__ = (UniqueConstraint("case_id", "model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(80), default="")
    probability: Mapped[float] = mapped_column(Float)
    shown_probability: Mapped[float] = mapped_column(Float)
    sham: Mapped[bool] = mapped_column(Boolean, default=False)
    heatmap_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The model's scope verdict for the case (null: no scope check), the label's tier at the case
    # probability and the tier shown (they differ on sham cases), and the per-image results the
    # reading window shows (readerstudy.ai_inputs.STUDY_AI_FORMAT; null: a probability only).
    in_scope: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    tier: Mapped[str | None] = mapped_column(String(20), nullable=True)
    shown_tier: Mapped[str | None] = mapped_column(String(20), nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # what the reader is shown of ``result`` ({"images": [...]}: on sham cases the altered answers);
    # the only results column a reader's database role may read
    shown_result: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class AuditRow(Base):
    """Append-only log of what happened: study created, readers added, sign-ins, saves."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), nullable=True, index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(80))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    # The previous entry's hash and this entry's own (audit.entry_hash); null only in a database
    # changed behind radreview's back.
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReaderSignInRow(Base):
    """PostgreSQL sign-in attempts, keyed by the SHA-256 of the token the client chose.

    Written only by the ``radreview_sign_in`` database function; a reader's role cannot read it.
    A successful, committed attempt is the grant that row-level security asks for: the reader's
    connection presents the token (``radreview.token``) and sees its own rows only then. The table
    exists on SQLite too (one schema for both) but stays empty there.
    """

    __tablename__ = "reader_sign_ins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(20))  # ok, refused, throttled, locked, wrong role
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    # The transaction that made the attempt (pg_current_xact_id): a grant counts once it committed.
    xact: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
