"""the reading record enforced by the database: read rules, hash-chained audit log, reader roles

Revision ID: 0002
Revises: 0001

Both dialects:
- triggers on ``reads``: a read matches its assignment (reader, case), its phase is one the arm
  has, values are in range, a revision follows the latest read of its phase, the unaided read of a
  sequential sitting is locked once saved, an unaided read cannot be added or revised once the
  same reader has an aided read of the case in this or a later-numbered sitting (crossover
  included), an aided sequential read needs the unaided one, and ``changed``/``ai_shown_sham``
  agree with the reads and AI outputs;
- ``audit_log.prev_hash``/``hash``: existing entries are chained here, and every new entry must
  extend the chain;
- ``readers.db_role`` and ``reader_sign_ins`` (PostgreSQL reader roles and their sign-ins).

PostgreSQL only: the trigger functions run as the schema owner (SECURITY DEFINER, fixed
search_path); the audit trigger assigns ids and hashes under an advisory lock; sign-in functions
check the PIN digest and the lockout without ever returning the stored hash; row-level security on
every table confines a reader's role, once signed in, to its own study, sessions, assignments,
cases (code only), revealed AI outputs and reads. Column privileges are granted per role by
:mod:`radreview.readerstudy.roles` when the coordinator adds a reader.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Messages start with the table name so that the application can tell a rule from a race.
MSG_ASSIGNMENT = "reads: the reader and case do not match the assignment"
MSG_PHASE = "reads: this arm has no such phase"
MSG_VALUES = "reads: a value is outside its allowed range"
MSG_REVISION = "reads: a revision must follow the latest read of its phase"
MSG_SEQUENTIAL = "reads: the unaided read is locked once saved: the AI has been shown"
MSG_AI_SEEN = "reads: the unaided read is locked: this reader has seen the AI for this case"
MSG_AIDED_FIRST = "reads: lock the unaided read before the aided read"
MSG_DERIVED = "reads: changed/ai_shown_sham do not match the reads and AI outputs"
MSG_CHAIN = "audit_log: a new entry must extend the hash chain"
CHAIN_STARTED = "audit chain started"
AUDIT_LOCK = (7345201, 1)
SIGN_IN_LOCK = 7345202

# The assignment's arm and sitting number, for NEW (SQLite triggers).
_ARM = ("(SELECT ar.name FROM assignments a JOIN sessions s ON s.id = a.session_id "
        "JOIN arms ar ON ar.id = s.arm_id WHERE a.id = NEW.assignment_id)")
_NUMBER = ("(SELECT s.number FROM assignments a JOIN sessions s ON s.id = a.session_id "
           "WHERE a.id = NEW.assignment_id)")
_LATEST_UNAIDED = ("(SELECT r.decision FROM reads r WHERE r.assignment_id = NEW.assignment_id "
                   "AND r.phase = 'unaided' ORDER BY r.revision DESC LIMIT 1)")

SQLITE_READ_TRIGGERS = {
    "reads_match_assignment": (
        "NOT EXISTS (SELECT 1 FROM assignments a JOIN sessions s ON s.id = a.session_id "
        "WHERE a.id = NEW.assignment_id AND a.case_id = NEW.case_id AND s.reader_id = NEW.reader_id)",
        MSG_ASSIGNMENT),
    "reads_phase_of_arm": (
        f"NEW.phase NOT IN ('unaided', 'aided') OR {_ARM} IS NULL "
        f"OR NOT ({_ARM} = 'sequential' OR {_ARM} = NEW.phase)", MSG_PHASE),
    "reads_values": (
        "NEW.decision NOT IN (0, 1) "
        "OR (NEW.confidence IS NOT NULL AND NOT (NEW.confidence BETWEEN 0 AND 100)) "
        "OR (NEW.rating IS NOT NULL AND NEW.rating NOT IN (1, 2, 3, 4, 5)) "
        "OR (NEW.ai_agreement IS NOT NULL AND (NEW.phase <> 'aided' "
        "OR NEW.ai_agreement NOT IN ('agree', 'disagree')))", MSG_VALUES),
    "reads_revision_chain": (
        "NEW.revision IS NOT (SELECT count(*) FROM reads r WHERE r.assignment_id = NEW.assignment_id "
        "AND r.phase = NEW.phase) "
        "OR NEW.revises_id IS NOT (SELECT r.id FROM reads r WHERE r.assignment_id = NEW.assignment_id "
        "AND r.phase = NEW.phase AND r.revision = NEW.revision - 1)", MSG_REVISION),
    "reads_sequential_unaided_locked": (
        f"NEW.phase = 'unaided' AND {_ARM} = 'sequential' AND EXISTS (SELECT 1 FROM reads r "
        "WHERE r.assignment_id = NEW.assignment_id AND r.phase = 'unaided')", MSG_SEQUENTIAL),
    "reads_unaided_locked_after_ai": (
        "NEW.phase = 'unaided' AND EXISTS (SELECT 1 FROM reads r "
        "JOIN assignments a ON a.id = r.assignment_id JOIN sessions s ON s.id = a.session_id "
        "WHERE s.reader_id = NEW.reader_id AND a.case_id = NEW.case_id AND r.phase = 'aided' "
        f"AND s.number >= {_NUMBER})", MSG_AI_SEEN),
    "reads_aided_after_unaided": (
        f"NEW.phase = 'aided' AND {_ARM} = 'sequential' AND NOT EXISTS (SELECT 1 FROM reads r "
        "WHERE r.assignment_id = NEW.assignment_id AND r.phase = 'unaided')", MSG_AIDED_FIRST),
    "reads_derived_fields": (
        f"NEW.changed IS NOT (CASE WHEN NEW.phase = 'aided' AND {_ARM} = 'sequential' "
        f"THEN NEW.decision <> {_LATEST_UNAIDED} ELSE NULL END) "
        "OR NEW.ai_shown_sham IS NOT (CASE WHEN NEW.phase = 'aided' THEN EXISTS (SELECT 1 "
        "FROM ai_outputs o WHERE o.case_id = NEW.case_id AND o.sham) ELSE NULL END)", MSG_DERIVED),
}
SQLITE_AUDIT_CHAIN = (
    "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log "
    "WHEN NEW.hash IS NULL OR NEW.id <= coalesce((SELECT max(id) FROM audit_log), 0) "
    "OR NEW.prev_hash IS NOT (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) "
    f"BEGIN SELECT RAISE(ABORT, '{MSG_CHAIN}'); END"
)


def _schema_changes() -> None:
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("hash", sa.String(length=64), nullable=True))
    op.add_column("readers", sa.Column("db_role", sa.String(length=63), nullable=True))
    op.create_index(op.f("ix_readers_db_role"), "readers", ["db_role"], unique=True)
    op.create_table(
        "reader_sign_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.Column("xact", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_reader_sign_ins_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_sign_ins")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_reader_sign_ins_token_sha256")),
    )
    op.create_index(op.f("ix_reader_sign_ins_reader_id"), "reader_sign_ins", ["reader_id"], unique=False)


def _reads_before(bind) -> int:  # type: ignore[no-untyped-def]
    return int(bind.execute(sa.text("SELECT coalesce(max(id), 0) FROM reads")).scalar())


# -- SQLite -----------------------------------------------------------------------------------

def _upgrade_sqlite() -> None:
    from radreview.readerstudy.audit import entry_hash

    bind = op.get_bind()
    for name, (condition, message) in SQLITE_READ_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON reads WHEN {condition} "
                   f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    # Chain the entries written before this migration, then mark where the chain (and read
    # digests) start. The append-only trigger is lifted for this one backfill only.
    op.execute("DROP TRIGGER audit_log_no_update")
    prev = None
    rows = bind.execute(sa.text(
        "SELECT id, study_id, at, actor, action, CAST(detail AS TEXT) FROM audit_log ORDER BY id")).all()
    last_id = 0
    for entry_id, study_id, at, actor, action, detail_text in rows:
        moment = datetime.fromisoformat(at) if isinstance(at, str) else at
        digest = entry_hash(prev, entry_id, study_id, moment, actor, action, detail_text)
        bind.execute(sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :i"),
                     {"p": prev, "h": digest, "i": entry_id})
        prev, last_id = digest, entry_id
    op.execute("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
               "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
    op.execute(SQLITE_AUDIT_CHAIN)
    now = datetime.now(UTC)
    detail_text = json.dumps({"reads_before": _reads_before(bind), "migration": revision})
    entry_id = last_id + 1
    bind.execute(sa.text(
        "INSERT INTO audit_log (id, study_id, at, actor, action, detail, prev_hash, hash) "
        "VALUES (:i, NULL, :at, 'radreview', :action, :detail, :p, :h)"),
        {"i": entry_id, "at": now.strftime("%Y-%m-%d %H:%M:%S.%f"), "action": CHAIN_STARTED,
         "detail": detail_text, "p": prev,
         "h": entry_hash(prev, entry_id, None, now, "radreview", CHAIN_STARTED, detail_text)})


def _downgrade_sqlite() -> None:
    for name in (*SQLITE_READ_TRIGGERS, "audit_log_chain"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


# -- PostgreSQL -------------------------------------------------------------------------------

def _pg_functions(schema: str) -> list[str]:
    definer = f"SECURITY DEFINER SET search_path = {schema}, pg_temp"
    check = "USING ERRCODE = 'check_violation'"
    return [
        # The audit hash, the same text as radreview.readerstudy.audit.entry_hash.
        "CREATE FUNCTION radreview_field(value text) RETURNS text LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT length(value)::text || ':' || value || ';' $$",
        "CREATE FUNCTION radreview_audit_hash(p_prev text, p_id integer, p_study integer, p_at timestamptz, "
        "p_actor text, p_action text, p_detail text) RETURNS text LANGUAGE sql STABLE "
        f"SET search_path = {schema}, pg_temp AS $$ SELECT encode(sha256(convert_to(coalesce(p_prev, '') "
        "|| radreview_field(p_id::text) || radreview_field(coalesce(p_study::text, '')) "
        "|| radreview_field(to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')) "
        "|| radreview_field(p_actor) || radreview_field(p_action) || radreview_field(p_detail), 'UTF8')), 'hex') $$",
        f"CREATE FUNCTION radreview_audit_chain() RETURNS trigger LANGUAGE plpgsql {definer} AS $$ "
        "DECLARE last_id integer; last_hash text; "
        f"BEGIN PERFORM pg_advisory_xact_lock({AUDIT_LOCK[0]}, {AUDIT_LOCK[1]}); "
        "SELECT id, hash INTO last_id, last_hash FROM audit_log ORDER BY id DESC LIMIT 1; "
        "NEW.id := coalesce(last_id, 0) + 1; NEW.prev_hash := last_hash; "
        "NEW.hash := radreview_audit_hash(NEW.prev_hash, NEW.id, NEW.study_id, NEW.at, NEW.actor, "
        "NEW.action, NEW.detail::text); RETURN NEW; END $$",
        # The rules on every new read (the SQLite triggers' conditions, in one function), and
        # ai_shown_sham, which a reader's role cannot see the inputs of.
        f"CREATE FUNCTION radreview_reads_rules() RETURNS trigger LANGUAGE plpgsql {definer} AS $$ "
        "DECLARE v_arm text; v_number integer; v_reader integer; v_case integer; v_count integer; "
        "v_prev integer; v_unaided integer; v_changed boolean; "
        "BEGIN "
        "SELECT ar.name, s.number, s.reader_id, a.case_id INTO v_arm, v_number, v_reader, v_case "
        "FROM assignments a JOIN sessions s ON s.id = a.session_id JOIN arms ar ON ar.id = s.arm_id "
        "WHERE a.id = NEW.assignment_id; "
        "IF NOT FOUND OR v_reader IS DISTINCT FROM NEW.reader_id OR v_case IS DISTINCT FROM NEW.case_id THEN "
        f"RAISE EXCEPTION '{MSG_ASSIGNMENT}' {check}; END IF; "
        "IF NEW.phase NOT IN ('unaided', 'aided') OR NOT (v_arm = 'sequential' OR v_arm = NEW.phase) THEN "
        f"RAISE EXCEPTION '{MSG_PHASE}' {check}; END IF; "
        "IF NEW.decision NOT IN (0, 1) OR NOT coalesce(NEW.confidence BETWEEN 0 AND 100, true) "
        "OR NOT coalesce(NEW.rating BETWEEN 1 AND 5, true) OR (NEW.ai_agreement IS NOT NULL "
        "AND (NEW.phase <> 'aided' OR NEW.ai_agreement NOT IN ('agree', 'disagree'))) THEN "
        f"RAISE EXCEPTION '{MSG_VALUES}' {check}; END IF; "
        "SELECT count(*) INTO v_count FROM reads WHERE assignment_id = NEW.assignment_id AND phase = NEW.phase; "
        "SELECT id INTO v_prev FROM reads WHERE assignment_id = NEW.assignment_id AND phase = NEW.phase "
        "AND revision = NEW.revision - 1; "
        "IF NEW.revision IS DISTINCT FROM v_count OR NEW.revises_id IS DISTINCT FROM v_prev THEN "
        f"RAISE EXCEPTION '{MSG_REVISION}' {check}; END IF; "
        "IF NEW.phase = 'unaided' THEN "
        "  IF v_arm = 'sequential' AND v_count > 0 THEN "
        f"  RAISE EXCEPTION '{MSG_SEQUENTIAL}' {check}; END IF; "
        "  IF EXISTS (SELECT 1 FROM reads r JOIN assignments a ON a.id = r.assignment_id "
        "  JOIN sessions s ON s.id = a.session_id WHERE s.reader_id = NEW.reader_id "
        "  AND a.case_id = NEW.case_id AND r.phase = 'aided' AND s.number >= v_number) THEN "
        f"  RAISE EXCEPTION '{MSG_AI_SEEN}' {check}; END IF; "
        "ELSIF v_arm = 'sequential' THEN "
        "  SELECT decision INTO v_unaided FROM reads WHERE assignment_id = NEW.assignment_id "
        "  AND phase = 'unaided' ORDER BY revision DESC LIMIT 1; "
        f"  IF NOT FOUND THEN RAISE EXCEPTION '{MSG_AIDED_FIRST}' {check}; END IF; "
        "  v_changed := NEW.decision <> v_unaided; "
        "END IF; "
        f"IF NEW.changed IS DISTINCT FROM v_changed THEN RAISE EXCEPTION '{MSG_DERIVED}' {check}; END IF; "
        "NEW.ai_shown_sham := CASE WHEN NEW.phase = 'aided' THEN EXISTS (SELECT 1 FROM ai_outputs o "
        "WHERE o.case_id = NEW.case_id AND o.sham) END; "
        "RETURN NEW; END $$",
        # The signed-in reader of this connection: its role is the reader's own and the token it
        # presents (radreview.token) belongs to a committed successful sign-in.
        f"CREATE FUNCTION radreview_token_reader() RETURNS integer LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT r.id FROM readers r JOIN reader_sign_ins g ON g.reader_id = r.id "
        "WHERE r.db_role = session_user AND g.outcome = 'ok' AND g.token_sha256 = encode(sha256(convert_to("
        "coalesce(current_setting('radreview.token', true), ''), 'UTF8')), 'hex') "
        "AND coalesce(pg_xact_status(g.xact::text::xid8)::text, 'committed') = 'committed' LIMIT 1 $$",
        f"CREATE FUNCTION radreview_current_study() RETURNS integer LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT study_id FROM readers WHERE id = radreview_token_reader() $$",
        f"CREATE FUNCTION radreview_is_reader_role() RETURNS boolean LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT EXISTS (SELECT 1 FROM readers WHERE db_role = session_user) $$",
        # The AI output of a case is visible once every unaided read that must come before it is saved.
        f"CREATE FUNCTION radreview_ai_revealed(p_case integer) RETURNS boolean LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT EXISTS (SELECT 1 FROM assignments a JOIN sessions s ON s.id = a.session_id "
        "JOIN arms ar ON ar.id = s.arm_id WHERE s.reader_id = radreview_token_reader() "
        "AND a.case_id = p_case AND ar.shows_ai AND NOT EXISTS (SELECT 1 FROM assignments a2 "
        "JOIN sessions s2 ON s2.id = a2.session_id JOIN arms ar2 ON ar2.id = s2.arm_id "
        "WHERE s2.reader_id = s.reader_id AND a2.case_id = p_case AND ar2.name IN ('unaided', 'sequential') "
        "AND s2.number <= s.number AND NOT EXISTS (SELECT 1 FROM reads r WHERE r.assignment_id = a2.id "
        "AND r.phase = 'unaided'))) $$",
        # Study names a role may sign in to: all for the coordinator, its own for a reader's role.
        f"CREATE FUNCTION radreview_study_names() RETURNS SETOF text LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT name FROM studies WHERE has_table_privilege(session_user, 'studies', 'SELECT') "
        "UNION SELECT s.name FROM studies s JOIN readers r ON r.study_id = s.id WHERE r.db_role = session_user $$",
        # The stored PIN hash without its digest (the client computes the digest); a made-up salt
        # for an unknown reader, so that the answer does not say which readers exist.
        f"CREATE FUNCTION radreview_pin_salt(p_study text, p_reader text) RETURNS text LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT coalesce((SELECT regexp_replace(r.pin_hash, '[$][^$]*$', '') FROM readers r "
        "JOIN studies s ON s.id = r.study_id WHERE s.name = p_study AND r.code = p_reader), "
        "'scrypt$16384$8$1$' || encode(substr(sha256(convert_to(p_study || '/' || p_reader, 'UTF8')), 1, 16), 'base64')) $$",
        # One sign-in attempt, recorded before anything is answered; the outcome is read back by
        # radreview_sign_in_outcome only after this transaction committed, so rolling back does
        # not erase a failure. The rule is security.SignInPolicy.decide.
        f"CREATE FUNCTION radreview_sign_in(p_study text, p_reader text, p_digest text, p_token_sha256 text) "
        f"RETURNS void LANGUAGE plpgsql VOLATILE {definer} AS $$ "
        "DECLARE v_study studies%ROWTYPE; v_reader readers%ROWTYPE; v_actor text; v_reset integer; "
        "v_failures integer; v_last timestamptz; v_wait double precision := 0; v_outcome text; "
        "v_security json; v_lock integer; v_after integer; v_delay double precision; v_max double precision; "
        "BEGIN "
        "v_actor := 'reader:' || CASE WHEN p_reader ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$' "
        "THEN p_reader ELSE '(invalid id)' END; "
        "SELECT * INTO v_study FROM studies WHERE name = p_study; "
        "IF FOUND THEN SELECT * INTO v_reader FROM readers WHERE study_id = v_study.id AND code = p_reader; END IF; "
        "IF v_reader.id IS NULL THEN v_outcome := 'refused'; "
        "ELSIF EXISTS (SELECT 1 FROM readers WHERE db_role = session_user) "
        "AND v_reader.db_role IS DISTINCT FROM session_user THEN v_outcome := 'wrong role'; "
        "ELSE "
        f"  PERFORM pg_advisory_xact_lock({SIGN_IN_LOCK}, v_reader.id); "
        "  SELECT max(id) INTO v_reset FROM audit_log WHERE study_id = v_study.id "
        "  AND ((actor = v_actor AND action = 'sign-in') OR (action = 'reader unlocked' "
        "  AND detail->>'reader' = p_reader)); "
        "  SELECT count(*), max(at) INTO v_failures, v_last FROM audit_log WHERE study_id = v_study.id "
        "  AND actor = v_actor AND action = 'sign-in refused' AND id > coalesce(v_reset, 0); "
        "  v_security := v_study.settings -> 'security'; "
        "  v_lock := coalesce((v_security ->> 'lock_after')::integer, 10); "
        "  v_after := coalesce((v_security ->> 'delay_after')::integer, 3); "
        "  v_delay := coalesce((v_security ->> 'delay_s')::double precision, 1.0); "
        "  v_max := coalesce((v_security ->> 'delay_max_s')::double precision, 300.0); "
        "  IF v_failures >= v_lock THEN v_outcome := 'locked'; "
        "  ELSE "
        "    IF v_failures >= v_after AND v_delay > 0 AND v_last IS NOT NULL THEN "
        "      v_wait := least(v_max, v_delay * 2.0 ^ least(v_failures - v_after, 60)) "
        "      - extract(epoch FROM clock_timestamp() - v_last); "
        "    END IF; "
        "    IF v_wait > 0 THEN v_outcome := 'throttled'; "
        "    ELSIF split_part(v_reader.pin_hash, '$', 6) = p_digest THEN v_outcome := 'ok'; v_wait := 0; "
        "    ELSE v_outcome := 'refused'; v_wait := 0; END IF; "
        "  END IF; "
        "END IF; "
        "INSERT INTO audit_log (study_id, at, actor, action, detail) VALUES (v_study.id, clock_timestamp(), "
        "v_actor, CASE v_outcome WHEN 'ok' THEN 'sign-in' WHEN 'refused' THEN 'sign-in refused' "
        "WHEN 'throttled' THEN 'sign-in throttled' WHEN 'locked' THEN 'sign-in locked' "
        "ELSE 'sign-in refused (another reader''s role)' END, '{}'::json); "
        "INSERT INTO reader_sign_ins (token_sha256, reader_id, outcome, wait_s, xact, at) VALUES "
        "(p_token_sha256, v_reader.id, v_outcome, greatest(v_wait, 0), pg_current_xact_id()::text::bigint, "
        "clock_timestamp()); "
        "END $$",
        f"CREATE FUNCTION radreview_sign_in_outcome(p_token_sha256 text) RETURNS TABLE(o_outcome text, "
        f"o_study integer, o_reader integer, o_wait double precision) LANGUAGE sql STABLE {definer} AS $$ "
        "SELECT g.outcome, r.study_id, g.reader_id, g.wait_s FROM reader_sign_ins g "
        "LEFT JOIN readers r ON r.id = g.reader_id WHERE g.token_sha256 = p_token_sha256 "
        "AND coalesce(pg_xact_status(g.xact::text::xid8)::text, 'committed') = 'committed' $$",
    ]


PG_FUNCTION_NAMES = (
    "radreview_sign_in_outcome(text)", "radreview_sign_in(text, text, text, text)",
    "radreview_pin_salt(text, text)", "radreview_study_names()", "radreview_ai_revealed(integer)",
    "radreview_is_reader_role()", "radreview_current_study()", "radreview_token_reader()",
    "radreview_reads_rules()", "radreview_audit_chain()",
    "radreview_audit_hash(text, integer, integer, timestamptz, text, text, text)", "radreview_field(text)",
)
_MY_CASES = ("(SELECT a.case_id FROM assignments a JOIN sessions s ON s.id = a.session_id "
             "WHERE s.reader_id = (SELECT radreview_token_reader()))")
# (table, policy, command, USING or WITH CHECK expression); TO PUBLIC: the owner (the
# coordinator) is not subject to them, every other role sees only what they allow.
PG_POLICIES = (
    ("studies", "reader_own_study", "SELECT", "id = (SELECT radreview_current_study())"),
    ("readers", "reader_self", "SELECT", "id = (SELECT radreview_token_reader())"),
    ("arms", "reader_own_study", "SELECT", "study_id = (SELECT radreview_current_study())"),
    ("sessions", "reader_own", "SELECT", "reader_id = (SELECT radreview_token_reader())"),
    ("assignments", "reader_own", "SELECT",
     "session_id IN (SELECT id FROM sessions WHERE reader_id = (SELECT radreview_token_reader()))"),
    ("cases", "reader_assigned", "SELECT", f"id IN {_MY_CASES}"),
    ("case_images", "reader_assigned", "SELECT", f"case_id IN {_MY_CASES}"),
    ("ai_outputs", "reader_revealed", "SELECT", "radreview_ai_revealed(case_id)"),
    ("reads", "reader_own", "SELECT", "reader_id = (SELECT radreview_token_reader())"),
    ("reads", "reader_insert_own", "INSERT", "reader_id = (SELECT radreview_token_reader())"),
    ("audit_log", "reader_insert_own", "INSERT",
     "study_id = (SELECT radreview_current_study()) AND action IN ('read saved', 'read revised') "
     "AND actor = (SELECT 'reader:' || code FROM readers WHERE id = (SELECT radreview_token_reader())) "
     "AND (detail ->> 'read_id') IN (SELECT id::text FROM reads WHERE reader_id = (SELECT radreview_token_reader()))"),
)
PG_RLS_TABLES = ("studies", "readers", "arms", "sessions", "assignments", "cases", "case_images",
                 "ai_outputs", "reads", "audit_log", "reader_sign_ins")


def _quoted_schema(bind) -> str:  # type: ignore[no-untyped-def]
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar()
    return schema if re.fullmatch(r"[a-z_][a-z0-9_]*", schema) else '"' + schema.replace('"', '""') + '"'


def _upgrade_postgresql() -> None:
    bind = op.get_bind()
    for statement in _pg_functions(_quoted_schema(bind)):
        op.execute(sa.text(statement))
    # Chain the existing entries (the append-only trigger is lifted for this backfill only).
    op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    op.execute(sa.text(
        "DO $$ DECLARE e record; prev text := NULL; h text; BEGIN "
        "FOR e IN SELECT * FROM audit_log ORDER BY id LOOP "
        "h := radreview_audit_hash(prev, e.id, e.study_id, e.at, e.actor, e.action, e.detail::text); "
        "UPDATE audit_log SET prev_hash = prev, hash = h WHERE id = e.id; prev := h; END LOOP; END $$"))
    op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    op.execute("CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log "
               "FOR EACH ROW EXECUTE FUNCTION radreview_audit_chain()")
    op.execute("CREATE TRIGGER reads_rules BEFORE INSERT ON reads "
               "FOR EACH ROW EXECUTE FUNCTION radreview_reads_rules()")
    bind.execute(sa.text(
        "INSERT INTO audit_log (study_id, at, actor, action, detail) "
        "VALUES (NULL, clock_timestamp(), 'radreview', :action, CAST(:detail AS json))"),
        {"action": CHAIN_STARTED,
         "detail": json.dumps({"reads_before": _reads_before(bind), "migration": revision})})
    for table in PG_RLS_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    for table, name, command, expression in PG_POLICIES:
        clause = "WITH CHECK" if command == "INSERT" else "USING"
        op.execute(sa.text(f"CREATE POLICY {name} ON {table} FOR {command} TO PUBLIC {clause} ({expression})"))


def _downgrade_postgresql() -> None:
    for table, name, _, _ in PG_POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    for table in PG_RLS_TABLES:
        op.execute(f"ALTER TABLE IF EXISTS {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP TRIGGER IF EXISTS reads_rules ON reads")
    op.execute("DROP TRIGGER IF EXISTS audit_log_chain ON audit_log")
    for function in PG_FUNCTION_NAMES:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")


def upgrade() -> None:
    _schema_changes()
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _downgrade_sqlite()
    elif dialect == "postgresql":
        _downgrade_postgresql()
    op.drop_index(op.f("ix_reader_sign_ins_reader_id"), table_name="reader_sign_ins")
    op.drop_table("reader_sign_ins")
    op.drop_index(op.f("ix_readers_db_role"), table_name="readers")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch rebuild would drop the
    # append-only triggers of audit_log with the old table.
    for table, column in (("readers", "db_role"), ("audit_log", "hash"), ("audit_log", "prev_hash")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
