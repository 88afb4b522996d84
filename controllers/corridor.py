"""Corridor coordination (pure): a common cycle for 2-16 intersections and the offsets that give
the widest green wave both ways.

1. Each intersection is designed on its own (:mod:`controllers.timing_design`); the common
   cycle is the longest of those cycles (the critical intersection's), within every plan's
   cycle bounds. Every intersection is then designed again at that cycle.
2. Each plan's ``coordination`` names its corridor, chainage (m) and the arterial groups in
   each direction; an arterial group's green window is its longest run of green, measured
   from the start of the first stage of the sequence (the offset reference point).
3. Travel times follow the chainages at each link's progression speed (the upstream
   intersection's, km/h). The offsets are chosen by the compiled kernel ``cext.corridor``
   to maximise the outbound and inbound bandwidths (s; the narrower counted twice, so a
   two-way wave wins over a slightly wider one-way wave) on a grid of ``step_s``; the first
   intersection's offset is 0. Small grids (``EXACT_LIMIT`` combinations) are searched
   exhaustively, larger ones by a local search from several starts.
"""

from __future__ import annotations

from itertools import pairwise

import msgspec

from cext import corridor as kernel
from controllers.clearance import interstage_s
from controllers.demand import MovementDemand
from controllers.errors import TimingInfeasible, UnsafeTiming
from controllers.plan import Coordination, Id, Plan, Timing
from controllers.safety import validate
from controllers.splits import cyclic_runs
from controllers.timing_design import DesignRequest, TimingDesign, design_timings

#: Corridors with at most this many offset combinations on the grid are searched exhaustively
#: (e.g. 3 intersections at a 1 s grid and cycles up to 141 s); larger ones by the local search.
EXACT_LIMIT = 20_000


class GreenWindow(msgspec.Struct, frozen=True):
    """An arterial group's green: its start after the offset reference point and its length (s)."""

    group: Id
    start_s: float
    length_s: float


class CorridorIntersection(msgspec.Struct, frozen=True):
    """One intersection of a coordinated corridor (metres, seconds)."""

    plan: Id
    name: str
    chainage_m: float
    offset_s: float
    outbound: GreenWindow
    inbound: GreenWindow
    travel_outbound_s: float
    travel_inbound_s: float
    design: TimingDesign


class CorridorDesign(msgspec.Struct, frozen=True):
    """A coordinated corridor: common cycle, offsets and the bandwidths achieved (s)."""

    corridor: str
    cycle_s: float
    bandwidth_outbound_s: float
    bandwidth_inbound_s: float
    efficiency: float
    intersections: list[CorridorIntersection]
    notes: list[str]


def design_corridor(items: list[tuple[Plan, dict[Id, MovementDemand]]], step_s: float = 1.0,
                    period_h: float = 0.25) -> CorridorDesign:
    """Common cycle and offsets for the intersections of one corridor (see the module docstring)."""
    if not 2 <= len(items) <= kernel.MAX_INTERSECTIONS:
        raise TimingInfeasible(f"a corridor needs 2..{kernel.MAX_INTERSECTIONS} intersections, got {len(items)}")
    items = sorted(items, key=lambda item: _coordination(item[0]).chainage_m)
    name = _same_corridor([plan for plan, _ in items])
    isolated = design_timings([DesignRequest(plan, demand, period_h=period_h) for plan, demand in items])
    low = max(plan.cycle.min_s for plan, _ in items)
    high = min(plan.cycle.max_s for plan, _ in items)
    if low > high:
        raise TimingInfeasible(f"corridor {name}: the plans' cycle bounds do not overlap ({low:g} s > {high:g} s)")
    critical = max(isolated, key=lambda d: d.cycle_s)
    cycle = min(max(critical.cycle_s, low), high)
    notes = [f"common cycle {cycle:.1f} s set by {critical.plan} (its own cycle {critical.cycle_s:.1f} s)"]
    designs = design_timings([DesignRequest(plan, demand, cycle_s=cycle, period_h=period_h) for plan, demand in items])
    for design in designs:
        if abs(design.cycle_s - cycle) > 1e-6:
            raise TimingInfeasible(f"corridor {name}: {design.plan} cannot run the common cycle {cycle:.1f} s "
                                   f"({'; '.join(design.notes)})")
    offsets, bands, windows, (travel_out, travel_in) = _coordinate(
        [(plan, d.timing()) for (plan, _), d in zip(items, designs, strict=True)], cycle, step_s)
    out = []
    for k, ((plan, _), design) in enumerate(zip(items, designs, strict=True)):
        placed = msgspec.structs.replace(design, offset_s=offsets[k])
        violations = validate(plan, placed.timing())
        if violations:
            raise UnsafeTiming(f"corridor {name}: {plan.id}: " + "; ".join(v.message for v in violations))
        out.append(CorridorIntersection(plan.id, plan.name, _coordination(plan).chainage_m, offsets[k], windows[k][0],
                                        windows[k][1], travel_out[k], travel_in[k], placed))
    return CorridorDesign(corridor=name, cycle_s=cycle, bandwidth_outbound_s=bands[0], bandwidth_inbound_s=bands[1],
                          efficiency=(bands[0] + bands[1]) / (2 * cycle), intersections=out, notes=notes)


def coordinate_offsets(items: list[tuple[Plan, Timing]], cycle_s: float,
                       step_s: float = 1.0) -> tuple[dict[Id, float], float, float]:
    """Offsets (s, by plan id; the lowest chainage gets 0) for timings that share the cycle ``cycle_s``.

    Returns the offsets and the outbound and inbound bandwidths (s). The timings' own offsets are
    ignored; the plans must lie on one corridor (2..16 intersections, distinct chainages).
    """
    if not 2 <= len(items) <= kernel.MAX_INTERSECTIONS:
        raise TimingInfeasible(f"a corridor needs 2..{kernel.MAX_INTERSECTIONS} intersections, got {len(items)}")
    for plan, timing in items:
        if abs(timing.cycle_s - cycle_s) > 1e-6:
            raise TimingInfeasible(f"{plan.id}: cycle {timing.cycle_s:g} s is not the common cycle {cycle_s:g} s")
    items = sorted(items, key=lambda item: _coordination(item[0]).chainage_m)
    _same_corridor([plan for plan, _ in items])
    offsets, bands, _, _ = _coordinate(items, cycle_s, step_s)
    return {plan.id: offset for (plan, _), offset in zip(items, offsets, strict=True)}, bands[0], bands[1]


def _coordinate(items: list[tuple[Plan, Timing]], cycle_s: float, step_s: float) -> tuple[
        list[float], list[float], list[tuple[GreenWindow, GreenWindow]], tuple[list[float], list[float]]]:
    """Offsets and bandwidths for timings sorted by chainage, with the green windows and travel times used."""
    windows = [(_window(plan, timing, _coordination(plan).outbound_group),
                _window(plan, timing, _coordination(plan).inbound_group)) for plan, timing in items]
    travel_out, travel_in = _travel_times_s([plan for plan, _ in items])
    offsets, bands = _optimise(cycle_s, step_s, windows, travel_out, travel_in)
    return offsets, bands, windows, (travel_out, travel_in)


def _coordination(plan: Plan) -> Coordination:
    if plan.coordination is None:
        raise TimingInfeasible(f"plan {plan.id} has no coordination (corridor, chainage_m, arterial groups)")
    return plan.coordination


def _same_corridor(plans: list[Plan]) -> str:
    names = {_coordination(p).corridor for p in plans}
    if len(names) != 1:
        raise TimingInfeasible(f"the plans lie on different corridors: {sorted(names)}")
    chainages = [_coordination(p).chainage_m for p in plans]
    if len(set(chainages)) != len(chainages):
        raise TimingInfeasible(f"two plans share a chainage: {chainages} m")
    return names.pop()


def stage_starts_s(plan: Plan, timing: Timing) -> dict[Id, float]:
    """Start of each stage's green (s) after the start of the first stage of the sequence."""
    seq, t, starts = plan.sequence, 0.0, {}
    for k, stage in enumerate(seq):
        starts[stage] = t
        t = t + timing.stage_greens_s[stage] + interstage_s(plan, stage, seq[(k + 1) % len(seq)])
    return starts


def _window(plan: Plan, timing: Timing, group: Id) -> GreenWindow:
    """The longest run of green of ``group`` under ``timing``."""
    seq, starts = plan.sequence, stage_starts_s(plan, timing)
    greens = {s.id: s.green for s in plan.stages}
    flags = [group in greens[s] for s in seq]
    if all(flags):
        return GreenWindow(group, 0.0, timing.cycle_s)
    best = GreenWindow(group, 0.0, -1.0)
    for run in cyclic_runs(flags):
        length = sum(timing.stage_greens_s[seq[k]] for k in run)
        length += sum(interstage_s(plan, seq[a], seq[b]) for a, b in pairwise(run))
        if length > best.length_s:
            best = GreenWindow(group, starts[seq[run[0]]], length)
    return best


def _travel_times_s(plans: list[Plan]) -> tuple[list[float], list[float]]:
    """Travel times (s) from the first intersection (outbound) and from the last (inbound)."""
    coords = [_coordination(p) for p in plans]
    out, back = [0.0], [0.0]
    for k in range(1, len(coords)):
        out.append(out[-1] + (coords[k].chainage_m - coords[k - 1].chainage_m) / (coords[k - 1].progression_speed_kmh / 3.6))
    for k in range(len(coords) - 2, -1, -1):
        back.append(back[-1] + (coords[k + 1].chainage_m - coords[k].chainage_m) / (coords[k + 1].progression_speed_kmh / 3.6))
    return out, back[::-1]


def _optimise(cycle: float, step_s: float, windows: list[tuple[GreenWindow, GreenWindow]], travel_out: list[float],
              travel_in: list[float]) -> tuple[list[float], list[float]]:
    from array import array

    n = len(windows)
    offsets, bands = array("d", [0.0] * n), array("d", [0.0, 0.0])
    kernel.corridor_offsets(array("i", [n]), array("d", [cycle]), array("d", [step_s]), array("q", [EXACT_LIMIT]),
                            array("d", [w[0].start_s for w in windows]), array("d", [w[0].length_s for w in windows]),
                            array("d", travel_out), array("d", [w[1].start_s for w in windows]),
                            array("d", [w[1].length_s for w in windows]), array("d", travel_in), offsets, bands, n)
    return list(offsets), list(bands)
