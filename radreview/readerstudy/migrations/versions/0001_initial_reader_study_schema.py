"""initial reader-study schema, with triggers keeping reads and the audit log append-only

Revision ID: 0001
Revises: 
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

APPEND_ONLY_TABLES = ("reads", "audit_log")


def _create_append_only_triggers() -> None:
    """Refuse UPDATE and DELETE on reads and the audit log inside the database itself."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION radreview_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION radreview_append_only()"
            )


def _drop_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    elif dialect == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS radreview_append_only()")


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('studies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('confidence_scale', sa.String(length=20), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('washout_days', sa.Integer(), nullable=False),
    sa.Column('sham_share', sa.Float(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('ai_models', sa.JSON(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_studies')),
    sa.UniqueConstraint('name', name=op.f('uq_studies_name'))
    )
    op.create_table('arms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('shows_ai', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_arms_study_id_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_arms')),
    sa.UniqueConstraint('study_id', 'name', name=op.f('uq_arms_study_id_name'))
    )
    with op.batch_alter_table('arms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_arms_study_id'), ['study_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('action', sa.String(length=80), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_audit_log_study_id_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_study_id'), ['study_id'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('source_id', sa.String(length=200), nullable=False),
    sa.Column('truth', sa.Integer(), nullable=False),
    sa.Column('side', sa.String(length=20), nullable=True),
    sa.Column('region', sa.String(length=80), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_cases_study_id_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('study_id', 'code', name=op.f('uq_cases_study_id_code')),
    sa.UniqueConstraint('study_id', 'source_id', name=op.f('uq_cases_study_id_source_id'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_study_id'), ['study_id'], unique=False)

    op.create_table('readers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=80), nullable=False),
    sa.Column('pin_hash', sa.String(length=400), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_readers_study_id_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_readers')),
    sa.UniqueConstraint('study_id', 'code', name=op.f('uq_readers_study_id_code'))
    )
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_readers_study_id'), ['study_id'], unique=False)

    op.create_table('ai_outputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('label', sa.String(length=80), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('shown_probability', sa.Float(), nullable=False),
    sa.Column('sham', sa.Boolean(), nullable=False),
    sa.Column('heatmap_path', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_ai_outputs_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ai_outputs')),
    sa.UniqueConstraint('case_id', 'model', name=op.f('uq_ai_outputs_case_id_model'))
    )
    with op.batch_alter_table('ai_outputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ai_outputs_case_id'), ['case_id'], unique=False)

    op.create_table('case_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_images_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_images')),
    sa.UniqueConstraint('case_id', 'position', name=op.f('uq_case_images_case_id_position'))
    )
    with op.batch_alter_table('case_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_images_case_id'), ['case_id'], unique=False)

    op.create_table('sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('arm_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['arm_id'], ['arms.id'], name=op.f('fk_sessions_arm_id_arms')),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], name=op.f('fk_sessions_reader_id_readers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    sa.UniqueConstraint('reader_id', 'number', name=op.f('uq_sessions_reader_id_number'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_reader_id'), ['reader_id'], unique=False)

    op.create_table('assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_assignments_case_id_cases')),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_assignments_session_id_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assignments')),
    sa.UniqueConstraint('session_id', 'case_id', name=op.f('uq_assignments_session_id_case_id')),
    sa.UniqueConstraint('session_id', 'position', name=op.f('uq_assignments_session_id_position'))
    )
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_assignments_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_assignments_session_id'), ['session_id'], unique=False)

    op.create_table('reads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('assignment_id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.String(length=20), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('revises_id', sa.Integer(), nullable=True),
    sa.Column('decision', sa.Integer(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('ai_agreement', sa.String(length=20), nullable=True),
    sa.Column('changed', sa.Boolean(), nullable=True),
    sa.Column('ai_shown_sham', sa.Boolean(), nullable=True),
    sa.Column('time_to_first_decision_ms', sa.Integer(), nullable=True),
    sa.Column('total_time_ms', sa.Integer(), nullable=True),
    sa.Column('telemetry', sa.JSON(), nullable=False),
    sa.Column('client_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assignment_id'], ['assignments.id'], name=op.f('fk_reads_assignment_id_assignments')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_reads_case_id_cases')),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], name=op.f('fk_reads_reader_id_readers')),
    sa.ForeignKeyConstraint(['revises_id'], ['reads.id'], name=op.f('fk_reads_revises_id_reads')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reads')),
    sa.UniqueConstraint('assignment_id', 'phase', 'revision', name=op.f('uq_reads_assignment_id_phase_revision')),
    sa.UniqueConstraint('client_token', name=op.f('uq_reads_client_token'))
    )
    with op.batch_alter_table('reads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reads_assignment_id'), ['assignment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reads_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reads_reader_id'), ['reader_id'], unique=False)


    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table('reads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reads_reader_id'))
        batch_op.drop_index(batch_op.f('ix_reads_case_id'))
        batch_op.drop_index(batch_op.f('ix_reads_assignment_id'))

    op.drop_table('reads')
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_assignments_session_id'))
        batch_op.drop_index(batch_op.f('ix_assignments_case_id'))

    op.drop_table('assignments')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_reader_id'))

    op.drop_table('sessions')
    with op.batch_alter_table('case_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_images_case_id'))

    op.drop_table('case_images')
    with op.batch_alter_table('ai_outputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ai_outputs_case_id'))

    op.drop_table('ai_outputs')
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_readers_study_id'))

    op.drop_table('readers')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_study_id'))

    op.drop_table('cases')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_study_id'))

    op.drop_table('audit_log')
    with op.batch_alter_table('arms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_arms_study_id'))

    op.drop_table('arms')
    op.drop_table('studies')
