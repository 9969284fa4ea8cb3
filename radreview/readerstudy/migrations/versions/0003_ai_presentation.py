"""the AI as the reading window shows it: scope verdict, tiers and per-image results per AI output

Revision ID: 0003_ai_presentation
Revises: 0001

Adds nullable columns to ``ai_outputs`` (existing rows keep a probability only): ``in_scope``,
``tier``, ``shown_tier`` and ``result`` (JSON: readerstudy.ai_inputs.STUDY_AI_FORMAT).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ai_presentation"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("in_scope", sa.Boolean()),
    ("tier", sa.String(length=20)),
    ("shown_tier", sa.String(length=20)),
    ("result", sa.JSON()),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("ai_outputs", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ai_outputs") as batch:  # SQLite drops columns by copying the table
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
