"""Regenerate the single pre-release migration from the tables (development helper).

Until the first release the schema lives in one migration, `0001_initial`. After changing
monitor/store/tables.py run `python -m monitor.store.regen_migration`. Once released, add new
revisions with `alembic revision --autogenerate` instead of regenerating.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from monitor.store.db import create_db_engine
from monitor.store.migrate import MIGRATIONS_DIR, alembic_config


def main() -> None:
    versions = MIGRATIONS_DIR / "versions"
    for old in versions.glob("*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_db_engine(f"sqlite:///{Path(tmp) / 'empty.db'}")
        config = alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.revision(config, message="initial", autogenerate=True, rev_id="0001")
    for path in versions.glob("*.py"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
