from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from monitor.store.db import session_scope
from monitor.store.migrate import current_revision, head_revision, upgrade
from monitor.store.tables import Feed


def test_upgrade_is_idempotent_and_at_head(engine: sa.engine.Engine) -> None:
    assert current_revision(engine) == head_revision(engine)
    assert upgrade(engine) == head_revision(engine)


def test_datetimes_round_trip_as_aware_utc(engine: sa.engine.Engine) -> None:
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(Feed(name="f", url="https://x.test/rss", last_polled_at=when))
    with session_scope(engine) as session:
        feed = session.exec(sa.select(Feed)).scalars().one()
        assert feed.last_polled_at == when
        assert feed.last_polled_at.tzinfo is not None


def test_sqlite_uses_wal(sqlite_engine: sa.engine.Engine) -> None:
    with sqlite_engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(sa.text("PRAGMA busy_timeout")).scalar() >= 5000


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:////proc/nope/x.db", "cannot create the folder"),
        ("mysql://user@host/db", "unsupported database URL"),
        ("foo://x", "unsupported database URL"),
    ],
)
def test_unusable_database_urls_are_clear_errors(url: str, needle: str) -> None:
    from monitor.store.db import DatabaseError, create_db_engine

    with pytest.raises(DatabaseError, match=needle):
        create_db_engine(url)
