"""Persistence: SQLAlchemy 2.0 models, engine setup (SQLite WAL or PostgreSQL), Alembic migrations."""

from profiler_service.db.engine import Database, make_engine
from profiler_service.db.migrate import init_db
from profiler_service.db.models import Base, Device, Job, Measurement, Network, Table

__all__ = ["Base", "Database", "Device", "Job", "Measurement", "Network", "Table", "init_db", "make_engine"]
