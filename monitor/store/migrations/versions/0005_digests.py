"""digests

Revision ID: 0005
Revises: 0004

The `digests` table (one row per digest claimed for a period; unique on name and period start, so a period
is claimed once however many processes try), and outbox rows without an alert transition behind them
(`notifications.alert_event_id` nullable: a digest's message).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.store.tables

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("period_start", monitor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("period_end", monitor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("created_at", monitor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("receivers", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "period_start", name="uq_digests_name_period"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("alert_event_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE alert_event_id IS NULL")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("alert_event_id", existing_type=sa.Integer(), nullable=False)
    op.drop_table("digests")
