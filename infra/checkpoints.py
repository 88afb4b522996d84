"""Chain checkpoints: periodic snapshots of every stream head, and a root hash over them.

A checkpoint lets ``lalin audit verify --since T`` start each stream at its last checkpoint
before ``T`` instead of at its genesis. The root hash (SHA-256 over the sorted stream heads)
is a single value an auditor can note down or anchor elsewhere: if the archive is later
rewritten wholesale, the recomputed root will differ from the noted one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import psycopg


def root_hash(heads: list[tuple[str, int, bytes]]) -> bytes:
    """SHA-256 over (stream, position, hash) of every head, sorted by stream."""
    digest = hashlib.sha256()
    for stream, position, head_hash in sorted(heads):
        digest.update(stream.encode())
        digest.update(b"\x00")
        digest.update(position.to_bytes(8, "big"))
        digest.update(head_hash)
    return digest.digest()


async def write_checkpoint(conn: psycopg.AsyncConnection[Any], now: datetime) -> tuple[int, bytes]:
    """Record every stream head that moved since its last checkpoint, and a root; returns (streams, root)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE stream_heads IN SHARE MODE")
        await conn.execute(
            """INSERT INTO chain_checkpoints (created_at, stream, position, hash, event_time)
               SELECT %s, h.stream, h.position, h.hash, e.event_time
               FROM stream_heads h JOIN events e ON e.stream = h.stream AND e.position = h.position
               WHERE NOT EXISTS (SELECT 1 FROM chain_checkpoints c
                                 WHERE c.stream = h.stream AND c.position = h.position)""", (now,))
        cur = await conn.execute("SELECT stream, position, hash FROM stream_heads")
        heads = [(s, p, bytes(h)) for s, p, h in await cur.fetchall()]
        root = root_hash(heads)
        await conn.execute(
            "INSERT INTO archive_checkpoints (created_at, streams, records, root_hash) VALUES (%s, %s, %s, %s)",
            (now, len(heads), sum(p for _, p, _ in heads), root))
    return len(heads), root
