"""Run the Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

if TYPE_CHECKING:
    from profiler_service.db.engine import Database
    from profiler_service.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant: serialises concurrent upgrades when a fleet of workers starts against one PostgreSQL.
_PG_LOCK_ID = 0x70726F66


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser treats '%' as interpolation; URLs may carry escaped passwords.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_ID})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_ID})
                conn.commit()


def init_db(settings_or_url: Settings | str, **engine_kwargs) -> Database:
    """Bring the schema to head and return the Database. Accepts a Settings or a URL."""
    from profiler_service.db.engine import Database

    url = settings_or_url if isinstance(settings_or_url, str) else settings_or_url.database_url
    db = Database(url, **engine_kwargs)
    upgrade(db.engine)
    return db
