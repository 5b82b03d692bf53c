"""silences

Revision ID: 0003
Revises: 0002

The `silences` table (monitor/store/silences.py); the index feed health reads a feed's newest article by
(`articles.feed_id`, `collected_at`); and alert topics widened to 100 characters, because a feed-health
alert's topic is the feed's name (SQLite does not enforce VARCHAR lengths, so only PostgreSQL is altered).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.store.tables

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TOPIC_TABLES = ("alerts", "alert_events")


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("starts_at", monitor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("ends_at", monitor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("created_at", monitor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("expired_at", monitor.store.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.create_index("ix_silences_ends_at", ["ends_at"], unique=False)
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.create_index("ix_articles_feed_collected", ["feed_id", "collected_at"], unique=False)
    if op.get_bind().dialect.name != "sqlite":
        for table in _TOPIC_TABLES:
            op.alter_column(
                table,
                "topic",
                existing_type=sa.String(length=64),
                type_=sa.String(length=100),
                existing_nullable=False,
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for table in _TOPIC_TABLES:
            op.alter_column(
                table,
                "topic",
                existing_type=sa.String(length=100),
                type_=sa.String(length=64),
                existing_nullable=False,
            )
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index("ix_articles_feed_collected")
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_index("ix_silences_ends_at")
    op.drop_table("silences")
