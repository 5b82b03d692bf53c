"""Shared fixtures: real databases (SQLite and PostgreSQL), settings.

PostgreSQL: each test session creates its own database on 127.0.0.1:5432 (user postgres) and
drops it at the end. Where no server answers, PostgreSQL tests are skipped - unless
MONITOR_REQUIRE_POSTGRES=1 (set by .ci/run), where a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from monitor.config import Settings  # noqa: E402
from monitor.store.db import create_db_engine  # noqa: E402
from monitor.store.migrate import upgrade  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PG_SERVER_URL = os.environ.get("MONITOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("MONITOR_REQUIRE_POSTGRES") == "1"


def _server_url(database: str) -> str:
    return sa.engine.make_url(PG_SERVER_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str | None]:
    """The admin URL when PostgreSQL answers, else None (each test makes its own database)."""
    engine = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        engine.dispose()
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (MONITOR_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        yield None
        return
    yield PG_SERVER_URL
    engine.dispose()


def make_pg_database(prefix: str = "monitor_test") -> str:
    """Create a fresh PostgreSQL database and return its URL (dropped by `drop_pg_database`)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return _server_url(name)


def drop_pg_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server: str | None) -> Iterator[str]:
    """A fresh, empty database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    if pg_server is None:
        pytest.skip(
            "PostgreSQL not reachable on 127.0.0.1:5432 (set MONITOR_REQUIRE_POSTGRES=1 to fail instead)"
        )
    url = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.engine.Engine]:
    """A migrated engine on each database."""
    engine = create_db_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.engine.Engine]:
    engine = create_db_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


TOPICS = {
    "nvidia": {
        "keywords": ["nvidia", "nvda", "jensen huang", "英伟达", "英偉達", "輝達"],
        "description": "Nvidia",
    },
    "tpu": {"keywords": ["tpu", "tpus", "ironwood"], "description": "Google TPUs"},
    "custom_chips": {"keywords": ["trainium", "mtia", "asic", "自研芯片"], "description": "Custom AI chips"},
    "ai_bubble": {"keywords": ["ai bubble", "dot-com", "泡沫"], "description": "AI bubble talk"},
}


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for tests: a SQLite file under tmp_path, the four topics, no feeds unless given."""
    data: dict[str, object] = {"database_url": f"sqlite:///{tmp_path / 'monitor.db'}", "topics": TOPICS}
    data.update(overrides)
    return Settings.model_validate(data)


@pytest.fixture
def slack_server() -> Iterator[object]:
    """A local Slack Web API + webhook stand-in on 127.0.0.1 (see tests/slackserver.py)."""
    from slackserver import SlackServer

    server = SlackServer().start()
    yield server
    server.stop()


# ----------------------------------------------------------------------------- classifier (real model)


@pytest.fixture(scope="session")
def classifier():  # noqa: ANN201
    """The shipped target-aware model with the shipped config's four topics, loaded once per test session.

    fp32 whatever the CPU: bf16 results depend (slightly) on which texts share a batch."""
    from monitor.classify import Classifier
    from monitor.config import ModelConfig, load_config

    settings = load_config(ROOT / "config" / "monitor.yaml", environ={})
    return Classifier.from_config(ModelConfig(threads=2, precision="fp32"), settings.topics)
