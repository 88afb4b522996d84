"""Snapshots of stream-processor state with the input offsets they cover (PostgreSQL, one transaction).

A processor task folds the records of one partition index of its (co-partitioned) input
topics. Every ``snapshot_interval_s`` (and when it loses the partition or stops) it stores its
state and the next offset of each input partition in ``fold_snapshots`` in ONE statement, so
state and offsets can never disagree. On assignment it loads the snapshot and seeks to the
stored offsets; records after them are folded again on top of the snapshot — exactly once
into the state, whatever the broker supports (Tansu has no transactions and wrong end
offsets). Outputs re-emitted after a restart carry the same deterministic event ids and
sequence numbers, so the archive keeps one copy.

Offsets belong to a broker epoch: after the broker lost its log (a new epoch) the state is kept
and the offsets restart at 0 in the new log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec
import psycopg
from psycopg.types.json import Jsonb


class TaskSnapshot(msgspec.Struct, frozen=True):
    """A task's stored state: its bytes, the next offset per input topic, and counters."""

    state: bytes
    offsets: dict[str, int]
    folded: int
    emitted: int
    broker_epoch: str


async def load_snapshot(conn: psycopg.AsyncConnection[Any], group_id: str, task: int, epoch: str) -> TaskSnapshot | None:
    """The stored snapshot of ``task``, its offsets reset to 0 when they belong to another broker epoch; None if none."""
    cur = await conn.execute("SELECT state, offsets, folded, emitted, broker_epoch FROM fold_snapshots "
                             "WHERE group_id = %s AND task = %s", (group_id, task))
    row = await cur.fetchone()
    if row is None:
        return None
    state, offsets, folded, emitted, stored_epoch = row
    if stored_epoch != epoch:
        offsets = {}
    return TaskSnapshot(bytes(state), {str(k): int(v) for k, v in offsets.items()}, int(folded), int(emitted), epoch)


class RefusedRecord(Protocol):
    """A record a processor refused (see ``streams.fold_task.DeadLetter``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...


async def save_snapshot(conn: psycopg.AsyncConnection[Any], group_id: str, task: int, snapshot: TaskSnapshot,
                        now: datetime, dead_letters: Sequence[RefusedRecord] = ()) -> None:
    """Store ``snapshot`` (state and offsets) and the records refused since the last one, in ONE transaction.

    A dead letter already stored (the same broker epoch, topic, partition and offset: a
    re-processed record, or the archiver's copy) is kept as it is.
    """
    async with conn.transaction():
        if dead_letters:
            async with conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO dead_letters (received_at, topic, kafka_partition, kafka_offset, broker_epoch, record_key,
                                                 raw, reason, detail)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    [(now, d.topic, d.partition, d.offset, snapshot.broker_epoch, d.key, d.raw, d.reason, d.detail[:2000])
                     for d in dead_letters])
        await _upsert(conn, group_id, task, snapshot, now)


async def _upsert(conn: psycopg.AsyncConnection[Any], group_id: str, task: int, snapshot: TaskSnapshot,
                  now: datetime) -> None:
    await conn.execute(
        """INSERT INTO fold_snapshots (group_id, task, broker_epoch, offsets, state, folded, emitted, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (group_id, task) DO UPDATE SET broker_epoch = EXCLUDED.broker_epoch, offsets = EXCLUDED.offsets,
               state = EXCLUDED.state, folded = EXCLUDED.folded, emitted = EXCLUDED.emitted,
               updated_at = EXCLUDED.updated_at""",
        (group_id, task, snapshot.broker_epoch, Jsonb(snapshot.offsets), snapshot.state,
         snapshot.folded, snapshot.emitted, now))
