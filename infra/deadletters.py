"""Reading the dead-letter table: what could not become an event, why, and its raw bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg

from controllers.archive_plan import DeadLetter
from infra.db import connect


class DeadLetterRow(msgspec.Struct):
    """One dead letter as listed by ``lalin deadletters list``."""

    id: int
    received_at: datetime
    topic: str
    partition: int
    offset: int
    broker_epoch: str
    reason: str
    detail: str
    raw: bytes


def list_dead_letters(url: str, limit: int = 50, reason: str | None = None) -> list[DeadLetterRow]:
    """The newest ``limit`` dead letters (optionally only those with ``reason``), newest first."""
    with connect(url) as conn:
        rows = conn.execute(
            """SELECT id, received_at, topic, kafka_partition, kafka_offset, broker_epoch, reason, detail, raw
               FROM dead_letters WHERE (%s::text IS NULL OR reason = %s) ORDER BY id DESC LIMIT %s""",
            (reason, reason, limit)).fetchall()
    return [DeadLetterRow(id=r[0], received_at=r[1], topic=r[2], partition=r[3], offset=r[4], broker_epoch=r[5],
                          reason=r[6], detail=r[7], raw=bytes(r[8])) for r in rows]


def count_dead_letters(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Dead letters per reason."""
    return dict(conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall())


async def store_dead_letter(conn: psycopg.AsyncConnection[Any], dead: DeadLetter, epoch: str, now: datetime) -> None:
    """Store one record a consumer could not process (kept once per broker epoch, topic, partition and offset)."""
    await conn.execute(
        """INSERT INTO dead_letters (received_at, topic, kafka_partition, kafka_offset, broker_epoch, record_key, raw,
                                     reason, detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        (now, dead.topic, dead.partition, dead.offset, epoch, dead.key, dead.raw, dead.reason, dead.detail[:2000]))
