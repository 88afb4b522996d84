"""A junction's signal performance measures over a period, from the archive, ready for the dashboard.

:func:`junction_performance` reads the junction's archived ``ControllerEventsLogged`` batches
(a margin around the period, so that its first and last cycles are complete), keeps one copy of
each log entry (controller boot, sequence number: a driver that restarted reads its
controller's ring again), turns batches with ``lost`` entries into gaps, and hands the rest to
the pure core (:mod:`controllers.signal_performance`, :mod:`controllers.pcd_chart`). The result
is plain JSON-ready data plus the PCD as SVG (docs/dashboard.md, "Signal performance measures").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import psycopg

from controllers.envelope import decode_archived
from controllers.errors import ConfigurationError, StorageError
from controllers.payloads import ControllerEventsLogged, LoggedEvent
from controllers.pcd_chart import pcd_svg
from controllers.signal_performance import Gap, JunctionPerformance
from controllers.signal_performance import junction_performance as measure
from controllers.traffic_state import IntersectionLayout
from devices.fleet import load_fleet
from infra.simclock import WITA

#: Batches are read this long before the period (its first cycle's start lies up to a cycle before it).
MARGIN_BEFORE = timedelta(minutes=6)
#: ... and after it: its last cycle ends up to a cycle later, and a driver reads entries a poll (or an outage) late.
MARGIN_AFTER = timedelta(minutes=10)


async def junction_performance(database_url: str, junction: str, start: datetime, end: datetime) -> dict[str, Any]:
    """PCD, arrivals on green, platoon ratio and split failures of ``junction`` over [``start``, ``end``).

    ``start`` and ``end`` are aware datetimes. Returns a dict (JSON-ready: times as ISO 8601
    strings): ``junction``, ``start``, ``end``, ``entries`` (log entries used), ``lost_entries``,
    ``coordinated`` (per coordinated group: ``group``, ``arrival_detectors`` (``"advance"``, or
    ``"stop_line"`` where the group has no advance loop), ``detectors`` (the loops its arrivals
    come from), ``travel_times_s`` (the shift added to each one's on times, s), ``cycles``,
    ``incomplete_cycles``, ``arrivals``, ``arrivals_on_green``, ``aog_pct``, ``green_pct``,
    ``platoon_ratio``, ``cycle_list`` and its ``pcd_svg``), ``split_failures`` (per vehicle group,
    from its stop-line loops:
    ``group``, ``detectors``, ``greens``, ``failures``, ``failure_pct``, ``cycle_list``) and
    ``pcd_svg`` (every coordinated group's chart, one after the other). Raises
    ConfigurationError for a junction the fleet does not have, ValueError for naive or reversed
    times, StorageError when the archive cannot be read.
    """
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValueError(f"the period {start} - {end} must be aware datetimes, start before end")
    layout = _layout(junction)
    batches = await _batches(database_url, junction, start - MARGIN_BEFORE, end + MARGIN_AFTER)
    entries, gaps, lost = merge_batches(batches, start - MARGIN_BEFORE)
    result = measure(layout, entries, start, end, gaps=gaps, lost_entries=lost)
    return as_view(result)


def _layout(junction: str) -> IntersectionLayout:
    try:
        site = load_fleet().site(junction)
    except KeyError as err:
        raise ConfigurationError(f"no junction {junction!r} in the controller fleet") from err
    return site.layout()


async def _batches(database_url: str, junction: str, since: datetime, until: datetime) -> list[ControllerEventsLogged]:
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute("SELECT body FROM events WHERE type = 'ControllerEventsLogged' AND key = %s "
                                     "AND event_time >= %s AND event_time < %s ORDER BY event_time, position",
                                     (junction, since, until))
            rows = await cur.fetchall()
    except psycopg.Error as err:
        raise StorageError(f"reading the event logs of {junction} from the archive: {err}") from err
    out = []
    for (body,) in rows:
        payload = decode_archived(body.encode()).payload
        if isinstance(payload, ControllerEventsLogged) and payload.controller_id == junction:
            out.append(payload)
    return out


def merge_batches(batches: list[ControllerEventsLogged], since: datetime) -> tuple[list[LoggedEvent], list[Gap], int]:
    """One copy of each (boot, seq) entry of ``batches`` (archive order), the gaps where entries were lost (from the
    entry before the loss, or ``since``, to the first after it) and how many were lost."""
    seen: set[tuple[int, int]] = set()
    entries: list[LoggedEvent] = []
    gaps: list[Gap] = []
    lost = 0
    last_at: dict[int, datetime] = {}
    for batch in batches:
        fresh = [e for e in batch.entries if (batch.boot, e.seq) not in seen]
        if batch.lost and fresh:
            lost += batch.lost
            gaps.append((last_at.get(batch.boot, since), fresh[0].at))
        for e in fresh:
            seen.add((batch.boot, e.seq))
            last_at[batch.boot] = max(last_at.get(batch.boot, e.at), e.at)
        entries += fresh
    return entries, gaps, lost


def as_view(result: JunctionPerformance) -> dict[str, Any]:
    """The measures as JSON-ready data, with the PCD of each coordinated group as SVG."""
    coordinated: list[dict[str, Any]] = []
    charts: list[str] = []
    for g in result.coordinated:
        svg = pcd_svg(g, result.start, result.end, tz=WITA, chart_id=f"pcd-{result.junction}-{g.group}")
        cycles = [{"start": c.start.isoformat(), "length_s": round(c.length_s, 1), "green_s": round(c.green_s, 1),
                   "yellow_s": round(c.yellow_s, 1), "on_red": c.on_red, "on_green": c.on_green,
                   "on_yellow": c.on_yellow, "aog_pct": c.aog_pct} for c in g.cycles]
        charts.append(svg)
        coordinated.append({"group": g.group, "arrival_detectors": g.arrival_detectors, "detectors": g.detectors,
                            "travel_times_s": [round(t, 2) for t in g.travel_times_s], "cycles": len(g.cycles),
                            "incomplete_cycles": g.incomplete_cycles, "arrivals": g.arrivals,
                            "arrivals_on_green": g.arrivals_on_green, "aog_pct": g.aog_pct, "green_pct": g.green_pct,
                            "platoon_ratio": g.platoon_ratio, "cycle_list": cycles, "pcd_svg": svg})
    splits = [{"group": s.group, "detectors": s.detectors, "greens": len(s.cycles), "failures": s.failures,
               "failure_pct": 100.0 * s.failures / len(s.cycles) if s.cycles else None,
               "cycle_list": msgspec.to_builtins(s.cycles)} for s in result.split_failures]
    return {"junction": result.junction, "start": result.start.isoformat(), "end": result.end.isoformat(),
            "entries": result.entries, "lost_entries": result.lost_entries, "coordinated": coordinated,
            "split_failures": splits, "pcd_svg": "".join(charts)}
