"""``lalin audit export`` and ``lalin audit verify-export``: a period of the archive on file.

:func:`export_period` writes ``events.csv`` and ``manifest.json`` (see
:mod:`controllers.export_manifest`) from one consistent snapshot of the archive (a
repeatable-read, read-only transaction). :class:`ExportStream` is the same export as byte
chunks read from the database as they are consumed — for a web handler streaming the CSV
— with the manifest once the last chunk is out. :func:`verify_export_dir` checks an export
directory offline: no database, only the two files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from controllers.errors import LalinError, StorageError
from controllers.export_manifest import (
    CSV_NAME,
    MANIFEST_NAME,
    ArchiveIdentity,
    CheckpointRoot,
    ExportProblem,
    ExportReport,
    ExportRow,
    ExportVerifier,
    Manifest,
    ManifestBuilder,
    csv_text,
    encode_manifest,
    feed_csv,
    parse_manifest,
    unusable_manifest,
)
from infra.db import connect

_CHUNK_ROWS = 1000
_READ_BYTES = 1 << 20
_MAX_FIELD_CHARS = 16 << 20  # the csv module's default cap (128 Ki characters) is near the largest body

# Every record of the period and, per stream, those between its first and last record in the
# period (late deliveries with an earlier event time), so each stream's positions are contiguous.
_ROWS_SQL = """
    WITH extent AS (
        SELECT stream, min(position) AS lo, max(position) AS hi FROM events
        WHERE event_time >= %(start)s AND event_time < %(end)s GROUP BY stream)
    SELECT e.stream, e.position, e.event_id, e.event_time, e.type, e.source, e.key, e.seq, e.prev_hash, e.hash, e.body
    FROM events e JOIN extent x ON e.stream = x.stream AND e.position BETWEEN x.lo AND x.hi
    ORDER BY e.stream COLLATE "C", e.position, e.event_id"""

# Checkpoints made in the period, and the first one after it.
_CHECKPOINTS_SQL = """
    (SELECT id, created_at, streams, records, root_hash FROM archive_checkpoints
     WHERE created_at >= %(start)s AND created_at < %(end)s)
    UNION ALL
    (SELECT id, created_at, streams, records, root_hash FROM archive_checkpoints
     WHERE created_at >= %(end)s ORDER BY created_at, id LIMIT 1)
    ORDER BY created_at, id"""


class ExportUnreadable(LalinError):
    """The export directory or one of its files cannot be read or written."""


def _row(values: tuple[Any, ...]) -> ExportRow:
    stream, position, event_id, event_time, type_, source, key, seq, prev_hash, hash_, body = values
    return ExportRow(stream=stream, position=position, event_id=str(event_id), event_time=event_time, type=type_,
                     source=source, key=key, seq=seq, prev_hash=bytes(prev_hash), hash=bytes(hash_), body=body)


def read_checkpoints(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> list[CheckpointRoot]:
    """The archive checkpoints made in ``[start, end)`` and the first one after ``end``."""
    rows = conn.execute(_CHECKPOINTS_SQL, {"start": start, "end": end}).fetchall()
    return [CheckpointRoot(id=i, created_at=at.astimezone(UTC), streams=streams, records=records,
                           root_hash=bytes(root).hex(), in_period=at < end)
            for i, at, streams, records, root in rows]


def read_identity(conn: psycopg.Connection[Any]) -> ArchiveIdentity | None:
    """The database's name, PostgreSQL's cluster identifier (when this role may read it) and version."""
    row = conn.execute("SELECT current_database(), current_setting('server_version')").fetchone()
    if row is None:
        return None
    system_identifier: str | None = None
    try:
        with conn.transaction():  # a savepoint: reading pg_control_system may be refused to this role
            ident = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
            system_identifier = None if ident is None else str(ident[0])
    except psycopg.errors.InsufficientPrivilege:
        system_identifier = None
    return ArchiveIdentity(database=str(row[0]), system_identifier=system_identifier, server_version=str(row[1]))


class ExportStream:
    """The export of ``[start, end)`` as CSV byte chunks, read from ``conn`` while they are consumed.

    Iterate it once (the header comes first; each chunk holds up to ``chunk_rows`` records),
    then call :meth:`manifest`. The rows are read by a server-side cursor inside a
    transaction of ``conn``; when ``conn`` is idle, that transaction is a repeatable-read,
    read-only snapshot, which :meth:`manifest` reads the checkpoints from too — so call it
    before giving ``conn`` to anything else.
    """

    def __init__(self, conn: psycopg.Connection[Any], start: datetime, end: datetime, *,
                 chunk_rows: int = _CHUNK_ROWS) -> None:
        if end <= start:
            raise ValueError(f"the period's end {end.isoformat()} is not after its start {start.isoformat()}")
        self.conn, self.start, self.end, self.chunk_rows = conn, start, end, chunk_rows
        self.builder = ManifestBuilder(start, end)
        self._digest = hashlib.sha256()
        self._size = 0
        self._finished = False
        self._snapshot: contextlib.ExitStack | None = None
        self._chunks: Generator[bytes, None, None] | None = None

    def _emit(self, text: str) -> bytes:
        data = text.encode("utf-8")
        self._digest.update(data)
        self._size += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        if self._chunks is not None:
            raise RuntimeError("an ExportStream is iterated once")
        self._chunks = self._read()
        return self._chunks

    def _read(self) -> Generator[bytes, None, None]:
        self._snapshot = contextlib.ExitStack()
        fresh = self.conn.info.transaction_status == pq.TransactionStatus.IDLE
        self._snapshot.enter_context(self.conn.transaction())
        if fresh:
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield self._emit(csv_text((), header=True))
        with self.conn.cursor(name="lalin_audit_export") as cur:
            cur.itersize = self.chunk_rows
            cur.execute(_ROWS_SQL, {"start": self.start, "end": self.end})
            while batch := cur.fetchmany(self.chunk_rows):
                rows = [_row(values) for values in batch]
                for row in rows:
                    self.builder.add(row)
                yield self._emit(csv_text(rows))
        self._finished = True

    def manifest(self, now: datetime) -> Manifest:
        """The manifest (``created_at`` = ``now``), once every chunk has been consumed; ends the snapshot."""
        if not self._finished or self._snapshot is None:
            raise RuntimeError("the manifest is known once the whole CSV has been read")
        try:
            checkpoints = read_checkpoints(self.conn, self.start, self.end)
            identity = read_identity(self.conn)
        except BaseException as err:
            self.close(err)
            raise
        self.close()
        return self.builder.build(created_at=now, csv_sha256=self._digest.hexdigest(), csv_size_bytes=self._size,
                                  archive=identity, checkpoints=checkpoints)

    def close(self, error: BaseException | None = None) -> None:
        """End the reading and the snapshot (rolled back after an ``error``); harmless when already closed.

        Call it when the chunks are abandoned (a download cut short) or reading failed.
        """
        if self._chunks is not None:
            self._chunks.close()
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            snapshot.__exit__(None if error is None else type(error), error, None if error is None else error.__traceback__)


@contextlib.contextmanager
def _connection(conn_or_url: psycopg.Connection[Any] | str) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(conn_or_url, str):
        with connect(conn_or_url) as conn:
            yield conn
    else:
        yield conn_or_url


def _write_atomically(path: Path, chunks: Iterator[bytes]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def export_period(conn_or_url: psycopg.Connection[Any] | str, start: datetime, end: datetime, out_dir: Path,
                  now: datetime) -> Manifest:
    """Write the archive's records of ``[start, end)`` to ``out_dir/events.csv`` and their manifest
    (``created_at`` = ``now``) to ``out_dir/manifest.json``; returns the manifest.

    Refuses (:class:`ExportUnreadable`) a directory that already holds an export, or one it cannot
    write; the database's errors are :class:`~controllers.errors.StorageError`.
    """
    csv_path, manifest_path = out_dir / CSV_NAME, out_dir / MANIFEST_NAME
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        existing = [p.name for p in (csv_path, manifest_path) if p.exists()]
    except OSError as err:
        raise ExportUnreadable(f"cannot create the export directory {out_dir}: {err}") from err
    if existing:
        raise ExportUnreadable(f"{out_dir} already holds an export ({', '.join(existing)}); choose another --out")
    with _connection(conn_or_url) as conn:
        stream = ExportStream(conn, start, end)
        try:
            _write_atomically(csv_path, iter(stream))
            manifest = stream.manifest(now)
        except OSError as err:
            stream.close(err)
            raise ExportUnreadable(f"cannot write {csv_path}: {err}") from err
        except psycopg.Error as err:
            stream.close(err)
            csv_path.unlink(missing_ok=True)
            raise StorageError(f"reading the archive failed: {err}") from err
    try:
        _write_atomically(manifest_path, iter([encode_manifest(manifest)]))
    except OSError as err:
        raise ExportUnreadable(f"cannot write {manifest_path}: {err}") from err
    return manifest


def _sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as data:
        while chunk := data.read(_READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_export_dir(directory: Path) -> ExportReport:
    """Verify the export in ``directory`` offline; :class:`ExportUnreadable` when its files cannot be read.

    Reads ``events.csv`` twice, in chunks (its SHA-256 first, then its rows), so an export of
    any size verifies in constant memory.
    """
    csv_path, manifest_path = directory / CSV_NAME, directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ExportUnreadable(f"{directory} is not a directory")
    try:
        manifest_json = manifest_path.read_bytes()
        sha256, size = _sha256_of(csv_path)
    except OSError as err:
        raise ExportUnreadable(f"cannot read the export in {directory}: {err}") from err
    manifest = parse_manifest(manifest_json)
    if isinstance(manifest, ExportProblem):
        return unusable_manifest(manifest, sha256, size)
    verifier = ExportVerifier(manifest, sha256, size)
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD_CHARS))
    try:
        with csv_path.open(encoding="utf-8", errors="surrogateescape", newline="") as lines:
            feed_csv(verifier, lines)
    except OSError as err:
        raise ExportUnreadable(f"cannot read {csv_path}: {err}") from err
    return verifier.finish()
