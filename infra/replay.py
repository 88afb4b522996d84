"""``lalin replay``: rebuild the traffic state from the archive, re-run the decisions, compare.

The fold's state at ``--from`` depends on everything before it (windows, detector health), so
the replay reads the archive from its beginning up to ``--to``; differences are reported for
summaries and commands from ``--from`` on. See :mod:`controllers.replay` for the two checks,
:mod:`controllers.vms_replay` for the third: the automatic VMS's evaluations and commands, and
:mod:`controllers.plan_replay` for the fourth: the plan workflow's steps and the commands they caused.

**In parallel, like the stream workers.** Intersections fold independently, so the fold check
is split into ``jobs`` groups of intersections (balanced by detector count), each a forked
process that reads only its intersections' events (``key = ANY(...)``, the index the archive
keeps) and their summaries. Meanwhile this process runs the decision check, which needs only
the recorded summaries, in the order the decision loop read them (``lalin.state``: broker
epoch, then offset), and the recorded commands. ``jobs=1`` does everything in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

import psycopg

from controllers.decisions import CorridorMember
from controllers.envelope import Envelope, decode_archived
from controllers.replay import (
    DECIDE_SOURCE,
    FOLD_SOURCE_PREFIX,
    Difference,
    ReplayReport,
    check_decisions,
    check_folds,
    merge_reports,
)
from controllers.strategy import AdaptiveSaturation
from controllers.traffic_state import IntersectionLayout
from devices.fleet import load_fleet
from infra.plan_service import replay_plans
from infra.vms_archive import replay_vms
from infra.vms_catalogue import vms_network
from streams.fold_task import FOLDED_TYPES
from streams.topology import load_topology

#: rows fetched per round trip
FETCH_ROWS = 20_000
#: a child adds to the shared progress counter every this many events
PROGRESS_EVERY = 5_000


def _fetch(conn: psycopg.Connection[Any], query: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name="replay") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(query, params)
        yield from cur


def _inputs_of(database_url: str, until: datetime, intersections: Sequence[str]) -> Iterator[Envelope]:
    """The fold's inputs (its event types, keyed by one of ``intersections``) and those intersections' summaries."""
    wanted = set(intersections)
    with psycopg.connect(database_url) as conn:
        for (body,) in _fetch(conn, "SELECT body FROM events WHERE event_time < %s AND key = ANY(%s) AND type = ANY(%s)",
                              (until, list(intersections), sorted(FOLDED_TYPES))):
            yield decode_archived(body.encode())
        for (body,) in _fetch(conn, "SELECT body FROM events WHERE event_time < %s AND type = 'TrafficMeasured' "
                                    "AND source LIKE %s", (until, FOLD_SOURCE_PREFIX + "%")):
            event = decode_archived(body.encode())
            if getattr(event.payload, "intersection_id", None) in wanted:
                yield event


def _decision_inputs(conn: psycopg.Connection[Any], until: datetime) -> list[Envelope]:
    """Recorded summaries (in the order the decision loop read them) and commands."""
    ranks = {epoch: rank for rank, (epoch,) in enumerate(
        conn.execute("SELECT epoch FROM broker_epochs ORDER BY first_seen_at").fetchall(), start=1)}
    rows = [(decode_archived(body.encode()), (ranks.get(epoch, 0), partition, offset, position))
            for body, epoch, partition, offset, position in _fetch(
                conn, "SELECT body, broker_epoch, kafka_partition, kafka_offset, position FROM events "
                      "WHERE event_time < %s AND ((type = 'TrafficMeasured' AND source LIKE %s) "
                      "OR (type = 'CommandIssued' AND source = %s))", (until, FOLD_SOURCE_PREFIX + "%", DECIDE_SOURCE))]
    rows.sort(key=lambda row: row[1])
    return [event for event, _ in rows]


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


def split_intersections(layouts: dict[str, IntersectionLayout], jobs: int) -> list[list[str]]:
    """``jobs`` groups of intersection ids (fewer when there are fewer intersections), balanced by detector count."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(layouts))))]
    weight = [0] * len(groups)
    for ident in sorted(layouts, key=lambda i: (-len(layouts[i].detectors), i)):
        k = weight.index(min(weight))
        groups[k].append(ident)
        weight[k] += max(1, len(layouts[ident].detectors))
    return [sorted(g) for g in groups if g]


def _fold_job(database_url: str, until: datetime, layouts: dict[str, IntersectionLayout], counter: Any,
              results: Any) -> None:
    """A child: the fold check of the intersections of ``layouts``; the report goes back on ``results``."""
    intersections = sorted(layouts)

    def progress(done: int) -> None:
        with counter.get_lock():
            counter.value += PROGRESS_EVERY

    try:
        results.put(("ok", check_folds(_counting(_inputs_of(database_url, until, intersections), progress), layouts)))
    except Exception as err:  # noqa: BLE001 - handed to the parent, which raises it
        results.put(("error", f"fold check of {intersections}: {type(err).__name__}: {err}"))


def _counting(events: Iterator[Envelope], every: Callable[[int], None]) -> Iterator[Envelope]:
    for n, event in enumerate(events, start=1):
        if n % PROGRESS_EVERY == 0:
            every(n)
        yield event


class ReplayFailed(RuntimeError):
    """A fold-check process failed (its error is named)."""


def run_replay(database_url: str, since: datetime, until: datetime, *, progress: Callable[[int], None] | None = None,
               decisions: bool = True, jobs: int | None = None) -> tuple[ReplayReport, float]:
    """Replay the archive up to ``until`` and compare from ``since``; returns the report and the wall seconds taken.

    ``jobs``: fold-check processes (default: the machine's cores); see the module docstring.
    """
    started = time.perf_counter()
    topology = load_topology()
    strategy = AdaptiveSaturation()
    checksum = topology.checksum(strategy.config)
    groups = split_intersections(dict(topology.layouts), jobs or os.cpu_count() or 1)
    parts: list[ReplayReport] = []
    if len(groups) == 1:
        parts.append(check_folds(_counting(_inputs_of(database_url, until, groups[0]), lambda n: _show(progress, n)),
                                 topology.layouts))
        if decisions:
            parts.append(_decision_check(database_url, until, topology.corridors, strategy, checksum))
    else:
        parts = _in_parallel(database_url, until, [{k: topology.layouts[k] for k in g} for g in groups], progress,
                             topology.corridors if decisions else None, strategy, checksum)
    if decisions:
        with psycopg.connect(database_url) as conn:
            parts.append(replay_vms(conn, until)[0])
            parts.append(replay_plans(conn, until, vms_network().plans,
                                      {site.id: site.plan_number for site in load_fleet().controllers}))
    report = merge_reports(parts)
    # the jobs report in the order they finish: the first difference is the earliest (fold checks name their time)
    report.differences = sorted((d for d in report.differences if _at_or_after(d, since)),
                                key=lambda d: (d.at is None, d.at or since, d.kind, d.key, d.position))
    return report, time.perf_counter() - started


def _decision_check(database_url: str, until: datetime, corridors: Mapping[str, Sequence[CorridorMember]],
                    strategy: AdaptiveSaturation, checksum: str) -> ReplayReport:
    """The decision check; counts only the commands (the fold check counts the summaries it reads too)."""
    with psycopg.connect(database_url) as conn:
        events = _decision_inputs(conn, until)
    report = check_decisions(events, corridors, strategy, checksum, count=False)
    report.events = sum(1 for e in events if e.type == "CommandIssued")
    return report


def _show(progress: Callable[[int], None] | None, done: int) -> None:
    if progress is not None:
        progress(done)


def _in_parallel(database_url: str, until: datetime, groups: list[dict[str, IntersectionLayout]],
                 progress: Callable[[int], None] | None, corridors: Mapping[str, Sequence[CorridorMember]] | None,
                 strategy: AdaptiveSaturation, checksum: str) -> list[ReplayReport]:
    """The fold check of each group in a child process; the decision check (``corridors``, None: none) meanwhile."""
    # fork: the children inherit the loaded modules and topology (no import time); spawn where there is no fork
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
    counter, results = context.Value("q", 0), context.Queue()
    children = [context.Process(target=_fold_job, args=(database_url, until, group, counter, results), daemon=True)
                for group in groups]
    for child in children:
        child.start()
    parts: list[ReplayReport] = []
    try:
        if corridors is not None:
            parts.append(_decision_check(database_url, until, corridors, strategy, checksum))
        errors = []
        for _ in children:
            while True:
                try:
                    status, value = results.get(timeout=0.25)
                    break
                except queue.Empty:  # nothing yet: show progress, make sure the children live
                    _show(progress, counter.value)
                    if not any(child.is_alive() for child in children) and results.empty():
                        raise ReplayFailed("a fold-check process ended without a report") from None
            if status == "ok":
                parts.append(value)
            else:
                errors.append(value)
        if errors:
            raise ReplayFailed("; ".join(errors))
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
    return parts


def _at_or_after(difference: Difference, since: datetime) -> bool:
    """Whether a difference concerns a summary or command at or after ``since`` (earlier ones are context)."""
    return difference.at is None or difference.at >= since


def count_events(database_url: str, until: datetime) -> int:
    """Archived events before ``until`` (the progress bar's total)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE event_time < %s", (until,)).fetchone()
    return int(row[0]) if row else 0
