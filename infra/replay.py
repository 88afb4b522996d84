"""``lalin replay``: rebuild the traffic state from the archive, re-run the decisions, compare.

The fold's state at ``--from`` depends on everything before it (windows, detector health), so
the replay reads the archive from its beginning up to ``--to``; differences are reported for
summaries and commands from ``--from`` on. Summaries are taken in the order the decision
loop read them (``lalin.state``: broker epoch, then offset); the fold's inputs are found by the
ids each summary cites. See :mod:`controllers.replay` for the checks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TextIO

import psycopg

from controllers.envelope import Envelope, decode_archived
from controllers.replay import Difference, ReplayReport, replay
from controllers.strategy import AdaptiveSaturation
from streams.topology import load_topology


def _events(conn: psycopg.Connection[Any], until: datetime,
            batch: int = 20_000) -> Iterator[tuple[Envelope, tuple[int, int, int, int]]]:
    ranks = {epoch: rank for rank, (epoch,) in enumerate(
        conn.execute("SELECT epoch FROM broker_epochs ORDER BY first_seen_at").fetchall(), start=1)}
    with conn.cursor(name="replay") as cur:
        cur.itersize = batch
        cur.execute("SELECT body, broker_epoch, kafka_partition, kafka_offset, position FROM events WHERE event_time < %s",
                    (until,))
        for body, epoch, partition, offset, position in cur:
            yield decode_archived(body.encode()), (ranks.get(epoch, 0), partition, offset, position)


class Progress:
    """A one-line progress bar on ``out`` (events replayed of the total, and the rate)."""

    def __init__(self, total: int, out: TextIO = sys.stderr, every_s: float = 0.5) -> None:
        self.total, self.out, self.every_s = max(total, 1), out, every_s
        self.started = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        """Show ``done`` events replayed."""
        now = time.monotonic()
        if now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        width = 30
        filled = min(width, int(width * done / self.total))
        rate = done / max(now - self.started, 1e-9)
        self.out.write(f"\rreplay [{'#' * filled}{'.' * (width - filled)}] {done:,}/{self.total:,} events  {rate:,.0f}/s")
        self.out.flush()

    def finish(self, done: int) -> None:
        """End the bar's line."""
        self.last = 0.0
        self(done)
        self.out.write("\n")


def run_replay(database_url: str, since: datetime, until: datetime, *,
               progress: Callable[[int], None] | None = None, decisions: bool = True) -> tuple[ReplayReport, float]:
    """Replay the archive up to ``until`` and compare from ``since``; returns the report and the wall seconds taken."""
    topology = load_topology()
    strategy = AdaptiveSaturation()
    checksum = topology.checksum(strategy.config)
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        rows = list(_events(conn, until))
    order = {id(e): key for e, key in rows}
    in_order = sorted((e for e, _ in rows), key=lambda e: order[id(e)] if e.type == "TrafficMeasured" else (0, 0, 0, 0))
    report = replay(in_order, topology.layouts, topology.corridors if decisions else {}, strategy, checksum,
                    progress=progress)
    report.differences = [d for d in report.differences if _at_or_after(d, rows, since)]
    return report, time.perf_counter() - started


def _at_or_after(difference: Difference, rows: list[tuple[Envelope, tuple[int, int, int, int]]], since: datetime) -> bool:
    """Whether a difference concerns a summary or command at or after ``since`` (earlier ones are context)."""
    for event, _ in rows:
        payload: Any = event.payload
        if difference.kind == "fold" and event.type == "TrafficMeasured" and payload.intersection_id == difference.key \
                and event.seq == difference.position:
            return event.event_time >= since
    return True


def count_events(database_url: str, until: datetime) -> int:
    """Archived events before ``until`` (the progress bar's total)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE event_time < %s", (until,)).fetchone()
    return int(row[0]) if row else 0
