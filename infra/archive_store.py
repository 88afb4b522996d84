"""Writing archive batches to PostgreSQL: events, dead letters, chain heads and consumer offsets
in one transaction, so a batch is either wholly archived with its offsets or not at all.

Exactly-once comes from here, not from the broker: after a crash the archiver resumes from
the offsets committed with the data; a record delivered twice is recognised by its event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from controllers.archive_plan import (
    ArchiveRow,
    BatchPlan,
    Classified,
    RawRecord,
    StreamHead,
    classify,
    plan_batch,
    possibly_archived,
    streams_touched,
)
from controllers.envelope import Envelope
from controllers.errors import StorageError
from controllers.inbound import Limits
from infra.db import ensure_day_partitions

_EVENT_COLUMNS = ("event_time", "event_id", "stream", "position", "type", "schema_version", "ingest_time",
                  "archived_at", "source", "key", "seq", "topic", "kafka_partition", "kafka_offset",
                  "broker_epoch", "body", "prev_hash", "hash")
_EVENT_TYPES = ("timestamptz", "uuid", "text", "int8", "text", "int4", "timestamptz", "timestamptz", "text",
                "text", "int8", "text", "int4", "int8", "text", "text", "bytea", "bytea")
_COPY_EVENTS = f"COPY events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


async def load_offsets(conn: psycopg.AsyncConnection[Any], group_id: str, epoch: str,
                       partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Next offsets stored for ``group_id`` in broker ``epoch`` (partitions absent start at 0)."""
    wanted = list(partitions)
    cur = await conn.execute(
        """SELECT topic, kafka_partition, next_offset FROM consumer_offsets
           WHERE group_id = %s AND broker_epoch = %s
             AND (topic, kafka_partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))""",
        (group_id, epoch, [t for t, _ in wanted], [p for _, p in wanted]))
    return {(topic, partition): offset for topic, partition, offset in await cur.fetchall()}


def _lock_heads(conn: psycopg.Connection[Any], streams: set[str]) -> dict[str, StreamHead]:
    """Lock the streams for this transaction and read their heads.

    Advisory locks (one per stream, taken in sorted order) also cover streams that have no
    head row yet, which ``SELECT ... FOR UPDATE`` could not: two archivers overlapping
    during a rebalance can never both start, or extend, the same chain.
    """
    ordered = sorted(streams)
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(s, 0)) FROM unnest(%s::text[]) AS s ORDER BY s",
                 (ordered,))
    cur = conn.execute(
        "SELECT stream, position, hash, last_seq, open_gaps FROM stream_heads WHERE stream = ANY(%s)", (ordered,))
    return {s: StreamHead(position=p, hash=bytes(h), last_seq=q, open_gaps=tuple((lo, hi) for lo, hi in g))
            for s, p, h, q, g in cur.fetchall()}


def _archived_among(conn: psycopg.Connection[Any], events: list[Envelope]) -> set[uuid.UUID]:
    if not events:
        return set()
    times = [e.event_time for e in events]
    cur = conn.execute(
        "SELECT event_id FROM events WHERE event_id = ANY(%s) AND event_time BETWEEN %s AND %s",
        ([e.event_id for e in events], min(times), max(times)))
    return {row[0] for row in cur.fetchall()}


def _copy_rows(conn: psycopg.Connection[Any], rows: list[ArchiveRow], epoch: str, now: datetime) -> None:
    cur = conn.cursor()
    with cur.copy(_COPY_EVENTS) as copy:
        copy.set_types(_EVENT_TYPES)
        for r in rows:
            e = r.event
            copy.write_row((e.event_time, e.event_id, r.stream, r.position, e.type, e.schema_version,
                            e.ingest_time, now, e.source, e.key, e.seq, r.topic, r.partition, r.offset,
                            epoch, r.body.decode(), r.prev_hash, r.hash))


def _write_rest(conn: psycopg.Connection[Any], plan: BatchPlan, group_id: str, epoch: str, now: datetime) -> None:
    cur = conn.cursor()
    if plan.dead_letters:
        cur.executemany(
            """INSERT INTO dead_letters (received_at, topic, kafka_partition, kafka_offset, broker_epoch,
                                         record_key, raw, reason, detail)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            [(now, d.topic, d.partition, d.offset, epoch, d.key, d.raw, d.reason, d.detail) for d in plan.dead_letters])
    if plan.heads:
        cur.executemany(
            """INSERT INTO stream_heads (stream, position, hash, last_seq, open_gaps, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position, hash = EXCLUDED.hash,
                   last_seq = EXCLUDED.last_seq, open_gaps = EXCLUDED.open_gaps, updated_at = EXCLUDED.updated_at""",
            [(s, h.position, h.hash, h.last_seq, Jsonb([list(g) for g in h.open_gaps]), now)
             for s, h in plan.heads.items()])
    offsets = [(group_id, t, p, epoch, o, now) for (t, p), o in plan.next_offsets.items() if p >= 0]
    if offsets:
        cur.executemany(
            """INSERT INTO consumer_offsets (group_id, topic, kafka_partition, broker_epoch, next_offset, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE SET broker_epoch = EXCLUDED.broker_epoch,
                   next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at""",
            offsets)


class ArchiveWriter:
    """Archives batches through one synchronous connection (use it from one thread at a time).

    Synchronous on purpose: the archiver runs it on a thread of its own, where waiting on
    PostgreSQL releases the GIL, so the next batch is fetched and validated meanwhile.
    """

    def __init__(self, conn: psycopg.Connection[Any], group_id: str, limits: Limits) -> None:
        self.conn, self.group_id, self.limits = conn, group_id, limits
        self.known_days: set[Any] = set()

    def write(self, records: Sequence[RawRecord], epoch: str, now: datetime) -> BatchPlan:
        """Classify, plan and write ``records`` (offset order per partition) in one transaction at time ``now``."""
        return self.write_classified(classify(records, now, self.limits), epoch, now)

    def write_classified(self, batch: list[Classified], epoch: str, now: datetime) -> BatchPlan:
        """Plan and write an already classified batch in one transaction at time ``now``.

        Stream heads are locked for the transaction, so two writers can never fork a chain.
        """
        try:
            return self._write(batch, epoch, now, look_up_all=False)
        except StorageError as err:
            if not isinstance(err.__cause__, psycopg.errors.UniqueViolation):
                raise
            return self._write(batch, epoch, now, look_up_all=True)  # an event id reused: check every id

    def _write(self, batch: list[Classified], epoch: str, now: datetime, look_up_all: bool) -> BatchPlan:
        valid = [item.decoded.event for item in batch if item.decoded is not None]
        try:
            # The rows' days are among these: derived (anomaly) events take their cause's time.
            ensure_day_partitions(self.conn, {e.event_time.date() for e in valid} | {now.date()}, self.known_days)
            with self.conn.transaction():
                heads = _lock_heads(self.conn, streams_touched(batch))
                archived = _archived_among(self.conn, valid if look_up_all else possibly_archived(batch, heads))
                plan = plan_batch(batch, now, heads, archived)
                if plan.rows:
                    _copy_rows(self.conn, plan.rows, epoch, now)
                _write_rest(self.conn, plan, self.group_id, epoch, now)
        except psycopg.Error as err:
            raise StorageError(f"archiving a batch of {len(batch)} records failed: {err}") from err
        return plan
