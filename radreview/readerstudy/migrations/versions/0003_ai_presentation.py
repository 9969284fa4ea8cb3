"""the AI as the reading window shows it: scope verdict, tiers and per-image results per AI output

Revision ID: 0003_ai_presentation
Revises: 0002

Adds nullable columns to ``ai_outputs`` (existing rows keep a probability only): ``in_scope``,
``tier``, ``shown_tier``, ``result`` (JSON: readerstudy.ai_inputs.STUDY_AI_FORMAT) and
``shown_result`` (the images as readers see them; on sham cases the altered answers). Reader
roles on PostgreSQL may read ``in_scope``, ``shown_tier`` and ``shown_result``, never ``tier`` or
``result`` (they would tell a sham case).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ai_presentation"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("in_scope", sa.Boolean()),
    ("tier", sa.String(length=20)),
    ("shown_tier", sa.String(length=20)),
    ("result", sa.JSON()),
    ("shown_result", sa.JSON()),
)
READER_COLUMNS = ("in_scope", "shown_tier", "shown_result")


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("ai_outputs", sa.Column(name, kind, nullable=True))
    if op.get_bind().dialect.name == "postgresql":  # reader roles made before this migration
        op.execute(sa.text(
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT db_role FROM readers r2 "
            "JOIN pg_roles p ON p.rolname = r2.db_role WHERE r2.db_role IS NOT NULL LOOP "
            f"EXECUTE format('GRANT SELECT ({', '.join(READER_COLUMNS)}) ON ai_outputs TO %I', r.db_role); "
            "END LOOP; END $$"))


def downgrade() -> None:
    with op.batch_alter_table("ai_outputs") as batch:  # SQLite drops columns by copying the table
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
