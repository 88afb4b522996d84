"""``lalin audit verify``: recompute every stream's hash chain from the archive.

For each stream recorded in ``stream_heads`` (and any stream found only in ``events``), the
records are read in position order and checked with :func:`controllers.hashchain.verify_stream`:
each record must sit at the next position, link to its predecessor's hash, hash to its
stored hash, and have indexed columns that agree with its body; the stream must
end at its recorded head. ``--since T`` starts each stream at its last checkpoint before T.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from controllers.envelope import decode_archived
from controllers.errors import InvalidEvent
from controllers.hashchain import GENESIS, ChainFault, ChainRecord, FaultKind, verify_stream
from infra.db import connect


class StreamReport(msgspec.Struct):
    """Verification of one stream."""

    stream: str
    records_checked: int
    start_position: int
    fault: ChainFault | None = None


class AuditReport(msgspec.Struct):
    """The result of verifying the archive."""

    ok: bool
    streams_checked: int
    records_checked: int
    faults: list[ChainFault]
    since: datetime | None = None


def _columns_match(row: tuple[Any, ...]) -> bool:
    _, event_id, body, _, _, event_time, type_, source, key, seq = row
    try:
        event = decode_archived(body.encode())
    except InvalidEvent:
        return False
    return bool(event.event_id == event_id and event.event_time == event_time and event.type == type_
            and event.source == source and event.key == key and event.seq == seq)


def _records(conn: psycopg.Connection[Any], stream: str, start_position: int) -> Iterator[ChainRecord]:
    with conn.cursor(name=f"audit_{abs(hash(stream))}") as cur:
        cur.itersize = 5000
        cur.execute("""SELECT position, event_id, body, prev_hash, hash, event_time, type, source, key, seq
                       FROM events WHERE stream = %s AND position >= %s ORDER BY position, event_id""",
                    (stream, start_position))
        for row in cur:
            yield ChainRecord(position=row[0], event_id=str(row[1]), body=row[2].encode(),
                              prev_hash=bytes(row[3]), hash=bytes(row[4]), columns_match=_columns_match(row))


def _start_point(conn: psycopg.Connection[Any], stream: str, since: datetime | None) -> tuple[int, bytes]:
    if since is None:
        return 1, GENESIS
    row = conn.execute("""SELECT position, hash FROM chain_checkpoints WHERE stream = %s AND event_time < %s
                          ORDER BY position DESC LIMIT 1""", (stream, since)).fetchone()
    return (1, GENESIS) if row is None else (row[0] + 1, bytes(row[1]))


def verify_archive(url: str, since: datetime | None = None) -> AuditReport:
    """Verify every stream of the archive at ``url``; faults name stream, position and event id."""
    with connect(url) as conn:
        heads = {s: (p, bytes(h)) for s, p, h in conn.execute("SELECT stream, position, hash FROM stream_heads").fetchall()}
        orphans = [r[0] for r in conn.execute("SELECT DISTINCT stream FROM events").fetchall() if r[0] not in heads]
        faults: list[ChainFault] = []
        total = 0
        for stream in orphans:
            faults.append(ChainFault(stream, 1, FaultKind.INSERTED, "records of a stream the archive has no head for"))
        for stream in sorted(heads):
            start, prev = _start_point(conn, stream, since)
            head_position, head_hash = heads[stream]
            fault, checked = verify_stream(stream, _records(conn, stream, start), start_position=start,
                                           start_prev_hash=prev, head_position=head_position, head_hash=head_hash)
            total += checked
            if fault is not None:
                faults.append(fault)
        return AuditReport(ok=not faults, streams_checked=len(heads) + len(orphans), records_checked=total,
                           faults=faults, since=since)
