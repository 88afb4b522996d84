"""Database access shared by the shells: connecting, versioned migrations, day partitions.

Migrations are the files ``migrations/NNNN_name.sql``, applied in order inside one
transaction each, under an advisory lock, and recorded in ``lalin_schema_migrations`` with
their checksum (an edited, already-applied migration is refused). When the ``timescaledb``
extension is available, a step's ``NNNN_name.timescale.sql`` twin is used instead.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from controllers.errors import StorageError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6C616C696E  # advisory lock id ("lalin")


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection to ``url``; errors become StorageError naming the target."""
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as err:
        raise StorageError(f"cannot connect to the archive database: {err}") from err


def _steps() -> list[tuple[str, Path]]:
    plain = sorted(p for p in MIGRATIONS_DIR.glob("*.sql") if not p.name.endswith(".timescale.sql"))
    return [(p.stem, p) for p in plain]


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    """True when the timescaledb extension can be (or is) installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def migrate(url: str) -> list[str]:
    """Apply the pending migrations to the database at ``url``; returns the names applied."""
    applied_now: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS lalin_schema_migrations (
                                name text PRIMARY KEY, checksum text NOT NULL, flavour text NOT NULL,
                                applied_at timestamptz NOT NULL DEFAULT now())""")
            done = dict(conn.execute("SELECT name, checksum FROM lalin_schema_migrations").fetchall())
            timescale = timescale_available(conn)
            for name, path in _steps():
                twin = path.with_name(f"{name}.timescale.sql")
                chosen, flavour = (twin, "timescale") if timescale and twin.exists() else (path, "postgres")
                text = chosen.read_text(encoding="utf-8")
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise StorageError(f"migration {name} was changed after it was applied (checksum {checksum})")
                    continue
                with conn.transaction():
                    if flavour == "timescale":
                        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    conn.execute(text)
                    conn.execute("INSERT INTO lalin_schema_migrations (name, checksum, flavour) VALUES (%s, %s, %s)",
                                 (name, checksum, flavour))
                applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now


def partition_name(day: date) -> str:
    """Name of the events partition holding UTC day ``day``."""
    return f"events_{day:%Y%m%d}"


def ensure_day_partitions(conn: psycopg.Connection[Any], days: set[date], known: set[date]) -> None:
    """Create the events partitions for the UTC ``days`` not in ``known`` (and add them to it).

    A no-op on TimescaleDB, whose hypertable makes its own chunks.
    """
    missing = sorted(days - known)
    if not missing:
        return
    row = conn.execute("SELECT relkind::text FROM pg_class WHERE relname = 'events'").fetchone()
    if row is None or row[0] != "p":
        known.update(missing)
        return
    for day in missing:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        statement = sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(partition_name(day)), sql.Literal(start), sql.Literal(start + timedelta(days=1)))
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK + 1,))
            conn.execute(statement)
        known.add(day)
