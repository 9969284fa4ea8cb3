"""PostgreSQL: one database login role per reader, confined by privileges and row-level security.

The coordinator's role owns the tables (it ran the migrations) and is not subject to row-level
security. A reader's role gets, from :func:`grant_reader_privileges`:

- SELECT on the columns a reader needs, and nothing else: never ``cases.truth``/``source_id``,
  ``readers.pin_hash``/``seed``, ``studies.seed``/``sham_share``/``settings``,
  ``ai_outputs.probability``/``sham``, ``reads.ai_shown_sham``, the audit log or the sign-ins;
- INSERT on ``reads`` and ``audit_log`` (no UPDATE, DELETE, TRUNCATE, DDL or TRIGGER: it does not
  own the tables, so it cannot drop or disable a trigger either);
- row-level security (migration 0002) then shows it only its own study, sessions, assignments,
  assigned cases, revealed AI outputs and reads, and only once it has signed in with the PIN in
  that connection: the role alone sees nothing.

:func:`provision_reader_role` creates the role (the coordinator needs CREATEROLE) or takes one the
site made (``--db-role``: LDAP, certificates), refusing a role that could bypass all this
(superuser, BYPASSRLS, or a member of the table owner).
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")
READER_SELECT = {
    "alembic_version": ("version_num",),
    "studies": ("id", "name", "question", "confidence_scale", "mode", "washout_days", "ai_models"),
    "readers": ("id", "study_id", "code"),
    "arms": ("id", "study_id", "name", "shows_ai"),
    "sessions": ("id", "reader_id", "arm_id", "number"),
    "assignments": ("id", "session_id", "case_id", "position"),
    "cases": ("id", "study_id", "code"),
    "case_images": ("id", "case_id", "position", "path"),
    "ai_outputs": ("id", "case_id", "model", "label", "shown_probability", "heatmap_path", "in_scope", "shown_tier",
                   "shown_result"),
    "reads": ("id", "assignment_id", "reader_id", "case_id", "phase", "revision", "revises_id",
              "decision", "confidence", "rating", "comment", "ai_agreement", "changed",
              "time_to_first_decision_ms", "total_time_ms", "telemetry", "client_token", "created_at"),
}
READER_INSERT = {
    "reads": ("assignment_id", "reader_id", "case_id", "phase", "revision", "revises_id", "decision",
              "confidence", "rating", "comment", "ai_agreement", "changed", "ai_shown_sham",
              "time_to_first_decision_ms", "total_time_ms", "telemetry", "client_token", "created_at"),
    "audit_log": ("study_id", "at", "actor", "action", "detail"),
}


class RoleError(RuntimeError):
    """A reader's database role cannot be created or used; the message says why and what to do."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def default_role_name(session: Session, study_id: int, reader_code: str) -> str:
    """``rr_<reader>_<10 hex>``: roles are shared by the whole server, so the name carries a
    digest of the database and the study."""
    database = session.execute(text("SELECT current_database()")).scalar_one()
    digest = hashlib.sha256(f"{database}/{study_id}".encode()).hexdigest()[:10]
    return f"rr_{reader_code}_{digest}"


def is_reader_connection(session: Session) -> bool:
    """Whether this PostgreSQL connection logged in as some reader's role."""
    return bool(session.execute(text("SELECT radreview_is_reader_role()")).scalar())


def provision_reader_role(session: Session, study_id: int, reader_code: str, role: str | None = None,
                          password: str | None = None) -> str:
    """Create (or adopt) the reader's login role, grant it the reader's privileges; return its name.

    Runs in the caller's transaction (``CREATE ROLE`` is transactional on PostgreSQL), so a
    reader row and its role appear together or not at all.
    """
    role = role or default_role_name(session, study_id, reader_code)
    if ROLE_NAME.fullmatch(role) is None:
        raise RoleError(f"database role name {role!r} is not allowed (letters, digits, _ . -; at most 63)")
    existing = session.execute(text(
        "SELECT rolsuper, rolbypassrls, pg_has_role(rolname, (SELECT tableowner FROM pg_tables "
        "WHERE schemaname = current_schema() AND tablename = 'reads'), 'MEMBER') "
        "FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
    if existing is not None:
        superuser, bypass, owner = existing
        if superuser or bypass or owner:
            raise RoleError(f"database role {role!r} can bypass row-level security (superuser, BYPASSRLS "
                            "or a member of the tables' owner): a reader needs a role of their own")
    else:
        try:
            with session.begin_nested():
                # The password travels as a bound parameter into a transaction-local setting,
                # and format(%L) quotes it on the server: it is never spliced into SQL text here.
                session.execute(text("SELECT set_config('radreview.new_role', :role, true), "
                                     "set_config('radreview.new_password', :password, true)"),
                                {"role": role, "password": password or ""})
                session.execute(text(
                    "DO $$ BEGIN EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    "NOREPLICATION NOBYPASSRLS NOINHERIT', current_setting('radreview.new_role')); "
                    "IF current_setting('radreview.new_password') <> '' THEN "
                    "EXECUTE format('ALTER ROLE %I PASSWORD %L', current_setting('radreview.new_role'), "
                    "current_setting('radreview.new_password')); END IF; END $$"))
                session.execute(text("SELECT set_config('radreview.new_password', '', true)"))
        except DBAPIError as exc:
            raise RoleError(
                f"cannot create the database role {role!r} ({str(exc.orig).strip().splitlines()[0]}): the "
                "coordinator's role needs CREATEROLE, or a database administrator creates the role and you "
                "pass it with --db-role"
            ) from None
    grant_reader_privileges(session, role)
    return role


def grant_reader_privileges(session: Session, role: str) -> None:
    """Grant ``role`` exactly the reader's privileges (idempotent)."""
    who = _ident(role)
    session.execute(text("SELECT set_config('radreview.new_role', :role, true)"), {"role": role})
    session.execute(text("DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', "
                         "current_database(), current_setting('radreview.new_role')); "
                         "EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), "
                         "current_setting('radreview.new_role')); END $$"))
    try:
        with session.begin_nested():
            # A reader's connection left idle inside a transaction would hold up the audit chain
            # (and so every other save); the server ends such a transaction after 5 minutes.
            session.execute(text(
                "DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET "
                "idle_in_transaction_session_timeout = %L', current_setting('radreview.new_role'), "
                "current_database(), '300s'); END $$"))
    except DBAPIError:  # the coordinator may not alter a role the site made: not essential
        pass
    for table, columns in READER_SELECT.items():
        session.execute(text(f"GRANT SELECT ({', '.join(columns)}) ON {table} TO {who}"))
    for table, columns in READER_INSERT.items():
        session.execute(text(f"GRANT INSERT ({', '.join(columns)}) ON {table} TO {who}"))
        sequence = session.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar_one()
        session.execute(text(f"GRANT USAGE ON SEQUENCE {sequence} TO {who}"))
