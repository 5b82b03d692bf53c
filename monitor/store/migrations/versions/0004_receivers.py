"""receivers

Revision ID: 0004
Revises: 0003

Receivers and routes (monitor/notify/receivers.py, routing.py): a transition has one outbox row per receiver.
- `notifications.receiver` (existing rows: `default`, the `slack:` destination they were sent to), and the
  unique key on `alert_event_id` alone becomes (`alert_event_id`, `receiver`).
- Nothing in the store is named after Slack any more: `notifications.slack_ts` is `message_id` (Slack's ts,
  an e-mail's Message-ID), `alerts.slack_channel`/`slack_ts` are `message_channel`/`message_id`.

SQLite alters tables by copying them (batch mode). The old unique constraint has no name there (SQLite
reflects it as unnamed), so a naming convention gives it one to drop; PostgreSQL named it itself.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UQ_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_NEW_UNIQUE = "uq_notifications_event_receiver"


def _string(length: int) -> sa.types.TypeEngine:
    # VARCHAR(n), as sqlmodel's AutoString renders; alembic's batch rename cannot take that TypeDecorator.
    return sa.String(length=length)


def _unique_on(table: str, columns: list[str]) -> str:
    """The name of the unique constraint on exactly `columns` (SQLite: the name the convention gives it)."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if constraint["column_names"] == columns and constraint.get("name"):
            return constraint["name"]
    return _UQ_CONVENTION["uq"] % {"table_name": table, "column_0_name": columns[0]}


def upgrade() -> None:
    old_unique = _unique_on("notifications", ["alert_event_id"])
    with op.batch_alter_table("notifications", naming_convention=_UQ_CONVENTION) as batch_op:
        batch_op.add_column(sa.Column("receiver", _string(100), nullable=False, server_default="default"))
        batch_op.drop_constraint(old_unique, type_="unique")
        batch_op.create_unique_constraint(_NEW_UNIQUE, ["alert_event_id", "receiver"])
        batch_op.alter_column(
            "slack_ts",
            new_column_name="message_id",
            existing_type=_string(64),
            type_=_string(255),
            existing_nullable=True,
        )
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.alter_column(
            "slack_channel",
            new_column_name="message_channel",
            existing_type=_string(100),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "slack_ts",
            new_column_name="message_id",
            existing_type=_string(64),
            type_=_string(255),
            existing_nullable=True,
        )


def downgrade() -> None:
    """Back to one row per transition: only the `default` receiver's rows are kept."""
    op.execute("DELETE FROM notifications WHERE receiver <> 'default'")
    op.execute("UPDATE notifications SET message_id = NULL WHERE length(message_id) > 64")
    op.execute("UPDATE alerts SET message_id = NULL WHERE length(message_id) > 64")
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.alter_column(
            "message_channel",
            new_column_name="slack_channel",
            existing_type=_string(100),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "message_id",
            new_column_name="slack_ts",
            existing_type=_string(255),
            type_=_string(64),
            existing_nullable=True,
        )
    with op.batch_alter_table("notifications", naming_convention=_UQ_CONVENTION) as batch_op:
        batch_op.drop_constraint(_NEW_UNIQUE, type_="unique")
        batch_op.create_unique_constraint("uq_notifications_alert_event_id", ["alert_event_id"])
        batch_op.alter_column(
            "message_id",
            new_column_name="slack_ts",
            existing_type=_string(255),
            type_=_string(64),
            existing_nullable=True,
        )
        batch_op.drop_column("receiver")
