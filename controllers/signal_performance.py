"""Signal performance measures from a junction's high-resolution event log (pure, ATSPM-style).

Input: the entries of one controller's event log (``ControllerEventsLogged``: Indiana codes,
a signal group or detector id, a time) over a period, and the junction's
:class:`~controllers.traffic_state.IntersectionLayout` — its plan and its detectors with the
movement each watches, their kind (``stop_line`` or ``advance``) and an advance loop's distance
upstream of the stop line, the same data the fold uses. A detector belongs to the signal group
of its movement (``movements[].signal_group`` in the plan).

Purdue coordination diagram and arrivals on green (for a coordinated group)
    A *cycle* of a group runs from one begin of red (code 10) to the next, with its begin of
    green (1) and of yellow (8) in between; a cycle missing one of them (flash, lost entries,
    the period's edges) is *incomplete* and left out. Each detector-on (82) of the group's
    *arrival detectors* is an *arrival*, placed at its time in the cycle and classed red
    (before the green), green (before the yellow) or yellow. The arrival detectors are the
    group's **advance** loops when it has any (ATSPM): an arrival is then the detector-on
    shifted by the free-flow travel time to the stop line, ``distance_m / (approach_speed_kmh
    / 3.6)`` s, the distance the fleet gives the loop and the speed the plan gives the group
    (its design or 85th-percentile speed); a group without advance loops falls back to its
    **stop-line** loops, unshifted (``arrival_detectors`` says which). Arrivals on green
    ``AoG = 100 x arrivals on green / arrivals`` (%), the green share ``green = 100 x green time
    / cycle time`` (%) and the platoon ratio ``Rp = AoG / green`` (1: random arrivals; above:
    the progression brings platoons on green), per cycle and over the period's complete cycles.

Split failures (every vehicle group with detectors, Purdue definition)
    For each green of the group: the green occupancy ratio ``GOR`` — the fraction of the green
    (begin green to begin yellow) during which the group's stop-line detectors are occupied —
    and the red occupancy ratio ``ROR5`` over the first 5 s of the following red (shorter when
    the next green comes sooner). A split failure is ``GOR > 0.8`` and ``ROR5 > 0.8``: the
    queue did not clear. The group's stop-line detectors count together: a moment is occupied
    when any of them is (their presence intervals' union); advance loops never count here.

Limits: the travel time is the free-flow one: a vehicle slowed by a queue reaching back past
the advance loop arrives later than its shifted time (ATSPM's approximation too). A fallback to
stop-line loops measures the discharge, not the arrivals: vehicles queued in red show up when
the queue leaves in green (AoG reads high in congestion). Times are seconds unless named
otherwise; no I/O, no clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from controllers.payloads import EventCode, LoggedEvent
from controllers.traffic_state import IntersectionLayout

#: Occupancy ratio above which green and the start of red count as saturated (Purdue, ATSPM: 80 %).
SPLIT_FAILURE_OCCUPANCY = 0.8
#: Seconds of red at its start over which the red occupancy ratio is taken.
RED_WINDOW_S = 5.0

Gap = tuple[datetime, datetime]
#: Which loops a coordinated group's arrivals come from.
ArrivalDetectors = Literal["advance", "stop_line"]


class PcdCycle(msgspec.Struct, frozen=True):
    """One complete cycle of the coordinated group: its start (begin of red), length and green and yellow
    starts (s after the start), and its arrivals (s after the start) classed by the aspect they met."""

    start: datetime
    length_s: float
    green_s: float
    yellow_s: float
    arrivals_s: list[float]
    on_red: int
    on_green: int
    on_yellow: int

    @property
    def aog_pct(self) -> float | None:
        """Arrivals on green (%), None without arrivals."""
        total = self.on_red + self.on_green + self.on_yellow
        return 100.0 * self.on_green / total if total else None


class CoordinatedGroupPerformance(msgspec.Struct, frozen=True):
    """The PCD of one group and its arrivals on green over the period's complete cycles; ``detectors``: the loops the
    arrivals come from (``arrival_detectors``: advance loops, or stop-line loops where the group has none) and
    ``travel_times_s`` the shift added to each one's detector-on times (s; 0 for a stop-line loop)."""

    group: str
    detectors: list[str]
    cycles: list[PcdCycle]
    incomplete_cycles: int
    arrivals: int
    arrivals_on_green: int
    aog_pct: float | None  # arrivals on green (%)
    green_pct: float | None  # green time over cycle time (%)
    platoon_ratio: float | None  # aog_pct / green_pct
    arrival_detectors: ArrivalDetectors = "stop_line"
    travel_times_s: list[float] = []


class SplitCycle(msgspec.Struct, frozen=True):
    """One green of a group: when it began, how long (s), the green and red occupancy ratios, and the verdict."""

    green_start: datetime
    green_s: float
    green_occupancy: float
    red_occupancy: float
    failed: bool


class GroupSplitFailures(msgspec.Struct, frozen=True):
    """A vehicle group's greens in the period and how many were split failures."""

    group: str
    detectors: list[str]
    cycles: list[SplitCycle]
    failures: int


class JunctionPerformance(msgspec.Struct, frozen=True):
    """Every measure of one junction over [start, end): the coordinated groups' PCDs and every vehicle group's
    split failures; ``entries``: log entries used, ``lost_entries``: entries the controller lost in the period."""

    junction: str
    start: datetime
    end: datetime
    coordinated: list[CoordinatedGroupPerformance]
    split_failures: list[GroupSplitFailures]
    entries: int
    lost_entries: int


@dataclass(frozen=True)
class _Timeline:
    """One group's signal events and its detectors' on times and presence intervals (epoch seconds)."""

    greens: list[float]
    yellows: list[float]
    reds: list[float]
    arrivals: list[float]
    presence: list[tuple[float, float]]


def group_detectors(layout: IntersectionLayout, group: str) -> list[str]:
    """The stop-line detectors of ``group``: those on the movements the plan gives to that signal group."""
    served = {m.id for m in layout.plan.movements if m.signal_group == group}
    return [d.id for d in layout.stop_line_detectors() if d.movement in served]


def travel_time_s(distance_m: float, speed_kmh: float) -> float:
    """Free-flow travel time (s) over ``distance_m`` at ``speed_kmh``."""
    if speed_kmh <= 0:
        raise ValueError(f"a travel time needs a speed above 0 km/h, not {speed_kmh}")
    return distance_m / (speed_kmh / 3.6)


def arrival_detectors(layout: IntersectionLayout, group: str) -> tuple[ArrivalDetectors, dict[str, float]]:
    """Where ``group``'s arrivals come from and the shift (s) of each detector's on times: its advance loops, each
    shifted by the travel time from the loop to the stop line at the group's ``approach_speed_kmh``; without advance
    loops its stop-line loops, unshifted."""
    served = {m.id for m in layout.plan.movements if m.signal_group == group}
    advance = [d for d in layout.detectors if d.kind == "advance" and d.movement in served]
    if not advance:
        return "stop_line", dict.fromkeys(group_detectors(layout, group), 0.0)
    declared = layout.plan.group(group)
    speed_kmh = declared.approach_speed_kmh if declared is not None else 0.0
    return "advance", {d.id: travel_time_s(d.distance_m, speed_kmh) for d in advance}


def coordinated_groups(layout: IntersectionLayout) -> list[str]:
    """The plan's coordinated groups (outbound, then inbound when different); none without coordination."""
    c = layout.plan.coordination
    if c is None:
        return []
    return [c.outbound_group] + ([c.inbound_group] if c.inbound_group != c.outbound_group else [])


def junction_performance(layout: IntersectionLayout, entries: Iterable[LoggedEvent], start: datetime, end: datetime, *,
                         gaps: Sequence[Gap] = (), lost_entries: int = 0) -> JunctionPerformance:
    """Every measure of the junction over [``start``, ``end``) from its log ``entries`` (any order, duplicates of a
    sequence number already removed; entries a little before and after the period complete its edge cycles).
    ``gaps``: time spans whose entries were lost; a cycle touching one is left out."""
    ordered = sorted(entries, key=lambda e: (e.at, e.seq))
    vehicle = [g.id for g in layout.plan.signal_groups if g.kind == "vehicle"]
    coordinated = [arrivals_on_green(layout, ordered, g, start, end, gaps=gaps) for g in coordinated_groups(layout)]
    splits = [split_failures(layout, ordered, g, start, end, gaps=gaps) for g in vehicle]
    return JunctionPerformance(layout.intersection_id, start, end, coordinated, splits, len(ordered), lost_entries)


def arrivals_on_green(layout: IntersectionLayout, entries: Sequence[LoggedEvent], group: str, start: datetime,
                      end: datetime, *, gaps: Sequence[Gap] = ()) -> CoordinatedGroupPerformance:
    """The PCD cycles of ``group`` that start in [``start``, ``end``), and its AoG, green share and platoon ratio,
    from its advance loops' arrivals shifted to the stop line (its stop-line loops where it has no advance loop)."""
    kind, shifts = arrival_detectors(layout, group)
    detectors = list(shifts)
    line = _timeline(entries, group, detectors, shifts)
    cycles: list[PcdCycle] = []
    incomplete = 0
    for r0, r1 in zip(line.reds, line.reds[1:], strict=False):
        if not start.timestamp() <= r0 < end.timestamp():
            continue
        cycle = _pcd_cycle(line, r0, r1, gaps)
        if cycle is None:
            incomplete += 1
        else:
            cycles.append(cycle)
    arrivals = sum(c.on_red + c.on_green + c.on_yellow for c in cycles)
    on_green = sum(c.on_green for c in cycles)
    cycle_s = sum(c.length_s for c in cycles)
    aog = 100.0 * on_green / arrivals if arrivals else None
    green = 100.0 * sum(c.yellow_s - c.green_s for c in cycles) / cycle_s if cycle_s > 0 else None
    ratio = aog / green if aog is not None and green else None
    return CoordinatedGroupPerformance(group, detectors, cycles, incomplete, arrivals, on_green, aog, green, ratio,
                                       kind, [shifts[d] for d in detectors])


def split_failures(layout: IntersectionLayout, entries: Sequence[LoggedEvent], group: str, start: datetime,
                   end: datetime, *, gaps: Sequence[Gap] = ()) -> GroupSplitFailures:
    """The greens of ``group`` beginning in [``start``, ``end``) with their occupancy ratios and split failures
    (none measured when the group has no detectors)."""
    detectors = group_detectors(layout, group)
    if not detectors:
        return GroupSplitFailures(group, [], [], 0)
    line = _timeline(entries, group, detectors)
    cycles: list[SplitCycle] = []
    for g in line.greens:
        if not start.timestamp() <= g < end.timestamp():
            continue
        y = _first_after(line.yellows, g)
        r = _first_after(line.reds, y) if y is not None else None
        if y is None or r is None or _touches(gaps, g, r + RED_WINDOW_S):
            continue
        next_green = _first_after(line.greens, r)
        red_end = min(r + RED_WINDOW_S, next_green if next_green is not None else math.inf)
        gor = _occupied_s(line.presence, g, y) / (y - g) if y > g else 0.0
        ror = _occupied_s(line.presence, r, red_end) / (red_end - r) if red_end > r else 0.0
        failed = gor > SPLIT_FAILURE_OCCUPANCY and ror > SPLIT_FAILURE_OCCUPANCY
        cycles.append(SplitCycle(_at(g), y - g, gor, ror, failed))
    return GroupSplitFailures(group, detectors, cycles, sum(c.failed for c in cycles))


def _pcd_cycle(line: _Timeline, r0: float, r1: float, gaps: Sequence[Gap]) -> PcdCycle | None:
    g = _first_after(line.greens, r0)
    y = _first_after(line.yellows, g) if g is not None else None
    if g is None or y is None or y >= r1 or _touches(gaps, r0, r1):
        return None
    arrivals = [t - r0 for t in line.arrivals[bisect_left(line.arrivals, r0):bisect_left(line.arrivals, r1)]]
    green_s, yellow_s = g - r0, y - r0
    on_red = sum(a < green_s for a in arrivals)
    on_green = sum(green_s <= a < yellow_s for a in arrivals)
    return PcdCycle(_at(r0), r1 - r0, green_s, yellow_s, arrivals, on_red, on_green,
                    len(arrivals) - on_red - on_green)


def _timeline(entries: Sequence[LoggedEvent], group: str, detectors: Sequence[str],
              shift_s: Mapping[str, float] | None = None) -> _Timeline:
    """``group``'s signal events, and the on times (each plus its detector's ``shift_s``) and presence of
    ``detectors``."""
    codes: Mapping[int, list[float]] = {EventCode.PHASE_BEGIN_GREEN: [], EventCode.PHASE_BEGIN_YELLOW_CLEARANCE: [],
                                        EventCode.PHASE_BEGIN_RED_CLEARANCE: []}
    arrivals: list[float] = []
    switches: dict[str, list[tuple[float, bool]]] = {d: [] for d in detectors}
    for e in entries:
        t = e.at.timestamp()
        if e.param == group and e.code in codes:
            codes[e.code].append(t)
        elif e.param in switches and e.code in (EventCode.DETECTOR_ON, EventCode.DETECTOR_OFF):
            on = e.code == EventCode.DETECTOR_ON
            switches[e.param].append((t, on))
            if on:
                arrivals.append(t + (shift_s.get(e.param, 0.0) if shift_s is not None else 0.0))
    first = min((e.at.timestamp() for e in entries), default=0.0)
    last = max((e.at.timestamp() for e in entries), default=0.0)
    presence = _union(p for s in switches.values() for p in _presence(s, first, last))
    return _Timeline(sorted(codes[EventCode.PHASE_BEGIN_GREEN]), sorted(codes[EventCode.PHASE_BEGIN_YELLOW_CLEARANCE]),
                     sorted(codes[EventCode.PHASE_BEGIN_RED_CLEARANCE]), sorted(arrivals), presence)


def _presence(switches: Sequence[tuple[float, bool]], first_s: float, last_s: float) -> list[tuple[float, float]]:
    """A detector's occupied intervals from its on/off times: an off with no on before it was on since ``first_s``,
    an on never followed by an off stays on until ``last_s``."""
    out: list[tuple[float, float]] = []
    on_since: float | None = None
    for k, (t, on) in enumerate(sorted(switches)):
        if on and on_since is None:
            on_since = t
        elif not on:
            if on_since is not None or k == 0:
                out.append((first_s if on_since is None else on_since, t))
            on_since = None
    if on_since is not None:
        out.append((on_since, last_s))
    return out


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _occupied_s(presence: Sequence[tuple[float, float]], a: float, b: float) -> float:
    """Seconds of [a, b) covered by the (disjoint) presence intervals."""
    return sum(max(0.0, min(b, q) - max(a, p)) for p, q in presence if q > a and p < b)


def _first_after(times: Sequence[float], t: float | None) -> float | None:
    """The first of the sorted ``times`` after ``t``."""
    if t is None:
        return None
    k = bisect_right(times, t)
    return times[k] if k < len(times) else None


def _touches(gaps: Sequence[Gap], a: float, b: float) -> bool:
    return any(g0.timestamp() < b and g1.timestamp() > a for g0, g1 in gaps)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
