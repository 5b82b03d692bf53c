"""Schema upgrade on start is safe when several replicas start at once (real processes, both databases)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from monitor.store.db import create_db_engine
from monitor.store.migrate import current_revision, head_revision

REPLICAS = 4


def test_concurrent_upgrades_from_separate_processes(db_url: str, tmp_path: Path):
    config = tmp_path / "monitor.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    env = {**os.environ, "MONITOR_DATABASE_URL": db_url, "MONITOR_CONFIG": str(config)}
    # All start together, as replicas of one deployment do after an upgrade.
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output

    engine = create_db_engine(db_url)
    try:
        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
        tables = set(sa.inspect(engine).get_table_names())
        assert {"articles", "feeds", "alerts", "notifications", "article_topics"} <= tables
    finally:
        engine.dispose()
