"""The hash-chained audit log, and the check that the reading record was not changed.

Every audit entry stores ``prev_hash`` (the hash of the entry before it, in id order) and
``hash`` = SHA-256 over ``prev_hash`` and its own content (:func:`entry_hash`). Changing,
removing or reordering an entry breaks the chain from there on, and :func:`verify_study_record`
says where. Each saved read's audit entry also carries ``read_sha256``, a digest of the read as
saved (:func:`read_digest`), so a read changed in the database after it was saved shows too.

Who computes the hashes:
- SQLite: :func:`append_audit`, inside the writer's ``BEGIN IMMEDIATE`` transaction (one writer at
  a time), and a trigger refuses an entry that does not extend the chain;
- PostgreSQL: a ``BEFORE INSERT`` trigger (``radreview_audit_chain``, migration 0002) under an
  advisory lock, so that readers' own database roles, which cannot see the audit log, still
  write correctly chained entries.

A chain proves nothing against someone who rewrites the whole log: the head (entry count and
last hash) is printed by ``radreview study verify`` and written into every export, so that a
later check can be compared with a head recorded earlier, outside the database.

The hashed text must never change, or stored hashes stop verifying: fields are written as
``<length>:<text>;`` (so no field can borrow characters from its neighbour), times as UTC
``YYYY-MM-DDTHH:MM:SS.ffffff``, and the detail as the JSON text exactly as stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, Text, bindparam, cast, select, text
from sqlalchemy.orm import Session

from radreview.readerstudy.schema import AuditRow, ReadRow

if TYPE_CHECKING:
    from radreview.readerstudy.db import Database

READ_ACTIONS = ("read saved", "read revised")
# Written by migration 0002: reads with ids up to detail["reads_before"] predate read digests.
CHAIN_STARTED = "audit chain started"
# The database-side protections verify_study_record expects to find (migrations 0001 and 0002).
SQLITE_TRIGGERS = (
    "reads_no_update", "reads_no_delete", "audit_log_no_update", "audit_log_no_delete",
    "reads_match_assignment", "reads_phase_of_arm", "reads_values", "reads_revision_chain",
    "reads_sequential_unaided_locked", "reads_unaided_locked_after_ai", "reads_aided_after_unaided",
    "reads_derived_fields", "audit_log_chain",
)
POSTGRES_TRIGGERS = ("reads_append_only", "audit_log_append_only", "reads_rules", "audit_log_chain")
POSTGRES_RLS_TABLES = (
    "studies", "readers", "arms", "sessions", "assignments", "cases", "case_images", "ai_outputs",
    "reads", "audit_log", "reader_sign_ins",
)


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value (as SQLite returns them) is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_text(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _fields(*values: str) -> str:
    return "".join(f"{len(v)}:{v};" for v in values)


def entry_hash(prev_hash: str | None, entry_id: int, study_id: int | None, at: datetime, actor: str,
               action: str, detail_text: str) -> str:
    """The hash of one audit entry (the same text as the SQL ``radreview_audit_hash``)."""
    payload = (prev_hash or "") + _fields(
        str(entry_id), "" if study_id is None else str(study_id), time_text(at), actor, action, detail_text
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _number(value: Any) -> str:
    return "" if value is None else repr(float(value))


def _integer(value: Any) -> str:
    return "" if value is None else str(int(value))


def read_digest(read: Mapping[str, Any]) -> str:
    """SHA-256 of a read's recorded content (every column but ``ai_shown_sham``, which PostgreSQL
    fills in itself). Takes a mapping of column name to value, as saved or as read back."""
    telemetry = json.dumps(read.get("telemetry") or [], sort_keys=True, separators=(",", ":"))
    changed = read.get("changed")
    payload = _fields(
        _integer(read["id"]), _integer(read["assignment_id"]), _integer(read["reader_id"]),
        _integer(read["case_id"]), str(read["phase"]), _integer(read["revision"]),
        _integer(read.get("revises_id")), _integer(read["decision"]), _number(read.get("confidence")),
        _integer(read.get("rating")), str(read.get("comment") or ""), str(read.get("ai_agreement") or ""),
        "" if changed is None else str(int(bool(changed))),
        _integer(read.get("time_to_first_decision_ms")), _integer(read.get("total_time_ms")),
        telemetry, str(read["client_token"]), time_text(read["created_at"]),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# Built once: a save is one human action, but the load tests save thousands.
_LAST_ENTRY = select(AuditRow.id, AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)
# The detail is bound as text, stored as is (not re-serialised by the JSON type), so the hash
# covers exactly the stored text.
_INSERT_SQLITE = text(
    "INSERT INTO audit_log (id, study_id, at, actor, action, detail, prev_hash, hash) "
    "VALUES (:id, :study_id, :at, :actor, :action, :detail, :prev_hash, :hash)"
).bindparams(bindparam("at", type_=DateTime(timezone=True)))
# PostgreSQL: the trigger assigns the id and the hashes under its lock. Plain SQL, because an
# insert() construct would add RETURNING id, and a reader's role may add entries but not read them.
_INSERT_POSTGRESQL = text(
    "INSERT INTO audit_log (study_id, at, actor, action, detail) "
    "VALUES (:study_id, :at, :actor, :action, CAST(:detail AS json))"
)


def append_audit(session: Session, study_id: int | None, actor: str, action: str,
                 detail: Mapping[str, Any] | None = None, at: datetime | None = None) -> None:
    """Append one entry to the audit log in ``session``'s transaction, extending the chain."""
    at = utc(at or datetime.now(UTC))
    detail = dict(detail or {})
    session.flush()  # earlier pending rows (a read) go in first
    detail_text = json.dumps(detail)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_INSERT_POSTGRESQL, {"study_id": study_id, "at": at, "actor": actor,
                                             "action": action, "detail": detail_text})
        return
    last = session.execute(_LAST_ENTRY).first()
    entry_id = (last[0] if last else 0) + 1
    prev_hash = last[1] if last else None
    session.execute(_INSERT_SQLITE, {
        "id": entry_id, "study_id": study_id, "at": at, "actor": actor, "action": action,
        "detail": detail_text, "prev_hash": prev_hash,
        "hash": entry_hash(prev_hash, entry_id, study_id, at, actor, action, detail_text),
    })


@dataclass
class RecordCheck:
    """What :func:`verify_study_record` found."""

    entries: int = 0
    head: str | None = None  # the last entry's hash
    reads_checked: int = 0
    reads_unchecked: int = 0  # saved before reads carried a digest (older databases)
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.intact:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"TAMPERED: {self.problems[0]}{more}"
        unchecked = f", {self.reads_unchecked} older reads without a digest" if self.reads_unchecked else ""
        return (f"intact: {self.entries} audit entries, {self.reads_checked} reads match their audit "
                f"entries{unchecked}; head {self.head or '-'}")

    def to_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "entries": self.entries, "head": self.head,
                "reads_checked": self.reads_checked, "reads_unchecked": self.reads_unchecked,
                "problems": list(self.problems)}


def _check_protections(session: Session, dialect: str, problems: list[str]) -> None:
    if dialect == "sqlite":
        present = set(session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
        missing = [t for t in SQLITE_TRIGGERS if t not in present]
    elif dialect == "postgresql":
        present = set(session.scalars(text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'")))
        missing = [t for t in POSTGRES_TRIGGERS if t not in present]
        no_rls = list(session.scalars(text(
            "SELECT relname FROM pg_class WHERE relname = ANY(:names) AND NOT relrowsecurity "
            "AND relnamespace = current_schema()::regnamespace"), {"names": list(POSTGRES_RLS_TABLES)}))
        problems += [f"row-level security is switched off on table {name}" for name in sorted(no_rls)]
    else:
        return
    problems += [f"the database trigger {name} is missing or disabled" for name in missing]


def verify_study_record(db: Database) -> RecordCheck:
    """Check the audit chain, every read against its audit entry, and the database protections."""
    check = RecordCheck()
    with db.transaction(readonly=True) as session:
        _check_protections(session, db.dialect, check.problems)
        digests: dict[int, str] = {}
        reads_before: int | None = None
        prev_hash: str | None = None
        for entry_id, study_id, at, actor, action, detail_text, stored_prev, stored_hash in session.execute(
            select(AuditRow.id, AuditRow.study_id, AuditRow.at, AuditRow.actor, AuditRow.action,
                   cast(AuditRow.detail, Text), AuditRow.prev_hash, AuditRow.hash).order_by(AuditRow.id)
        ):
            check.entries += 1
            if stored_prev != prev_hash:
                check.problems.append(f"audit entry {entry_id} does not follow the entry before it "
                                      "(an entry was removed, inserted or reordered)")
            if stored_hash != entry_hash(stored_prev, entry_id, study_id, at, actor, action, detail_text):
                check.problems.append(f"audit entry {entry_id} ({action}) was changed after it was written")
            prev_hash = stored_hash
            if action == CHAIN_STARTED and reads_before is None:
                reads_before = int(json.loads(detail_text).get("reads_before", 0))
            if action in READ_ACTIONS:
                try:
                    detail = json.loads(detail_text)
                    if detail.get("read_sha256"):
                        read_id = int(detail["read_id"])
                        if read_id in digests:
                            check.problems.append(f"audit entry {entry_id} claims read {read_id}, "
                                                  "which an earlier entry recorded")
                        else:
                            digests[read_id] = str(detail["read_sha256"])
                except (ValueError, TypeError, KeyError, AttributeError):
                    check.problems.append(f"audit entry {entry_id} has an unreadable detail")
        check.head = prev_hash
        columns = [c for c in ReadRow.__table__.columns if c.name != "ai_shown_sham"]
        for row in session.execute(select(*columns).order_by(ReadRow.id)).mappings():
            expected = digests.pop(row["id"], None)
            if expected is None and reads_before is not None and row["id"] > reads_before:
                check.problems.append(f"read {row['id']} has no audit entry (inserted past the application)")
            elif expected is None:
                check.reads_unchecked += 1
            elif expected != read_digest(row):
                check.problems.append(f"read {row['id']} differs from what was saved")
            else:
                check.reads_checked += 1
        check.problems += [f"read {read_id} has an audit entry but is missing" for read_id in sorted(digests)]
        if reads_before is None:
            check.problems.append(f"the audit log has no '{CHAIN_STARTED}' entry (its start was removed)")
    return check
