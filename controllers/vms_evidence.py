"""What the folded traffic state says about one direction of travel at a junction, and travel times
along a corridor (pure) — the evidence of congestion and travel-time messages.

A direction is the arterial traffic of a coordinated corridor: ``outbound`` (toward increasing
chainage) is served by the plan's ``coordination.outbound_group``, ``inbound`` by its
``inbound_group``. Detector-health gating: the degree of saturation, speed and control delay of
a direction come from its movements' loop detectors and are withheld (None, with the reason in
``withheld``) unless every detector of every such movement is healthy in the summary; the
queue comes from the approach's camera.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence

import msgspec

from controllers.capacity import incremental_delay_s, uniform_delay_s
from controllers.payloads import TrafficMeasured
from controllers.plan import Id, Movement, Plan
from controllers.safety import green_intervals_s
from controllers.strategy import running_timing
from controllers.vms_config import Facing

DetectorsByMovement = Mapping[Id, Sequence[str]]  # movement id -> its detector ids
ANALYSIS_PERIOD_H = 0.25  # HCM analysis period of the incremental delay (h)


class DirectionMeasure(msgspec.Struct, frozen=True):
    """One direction at one junction in the latest summary: degree of saturation (ratio), speed (km/h), camera queue
    (m), HCM control delay (s/veh); detector-based values withheld (None) for the reasons in ``withheld``."""

    intersection_id: str
    facing: Facing
    summary_id: uuid.UUID
    degree_of_saturation: float | None
    speed_kmh: float | None
    queue_m: float | None
    control_delay_s: float | None
    withheld: tuple[str, ...] = ()


def direction_movements(plan: Plan, facing: Facing) -> list[Movement]:
    """The signalised movements that carry the corridor's ``facing`` traffic at this junction (none off a corridor)."""
    if plan.coordination is None:
        return []
    group = plan.coordination.outbound_group if facing == "outbound" else plan.coordination.inbound_group
    return [m for m in plan.movements if m.signal_group == group]


def approach_facing(plan: Plan, approach: Id) -> list[Facing]:
    """Whose traffic an event on ``approach`` affects: the direction its arterial movements carry, or both directions
    for a side road (the junction itself is affected)."""
    found: list[Facing] = [f for f in ("outbound", "inbound")
                           if any(m.approach == approach for m in direction_movements(plan, f))]
    return found or ["outbound", "inbound"]


def measure_direction(plan: Plan, detectors: DetectorsByMovement, summary: TrafficMeasured, summary_id: uuid.UUID,
                      facing: Facing) -> DirectionMeasure:
    """The evidence of ``facing`` traffic at the junction of ``summary`` (see the module docstring)."""
    movements = direction_movements(plan, facing)
    unhealthy = {d.detector_id: d.health.value for d in summary.detectors_unhealthy}
    measured = {m.movement: m for m in summary.movements}
    withheld: list[str] = []
    if not summary.controller_reachable:
        withheld.append("controller unreachable")
    for movement in movements:
        ids = list(detectors.get(movement.id, ()))
        bad = [f"detector {d} {unhealthy[d]}" for d in ids if d in unhealthy]
        m = measured.get(movement.id)
        if not ids:
            withheld.append(f"movement {movement.id} has no detector")
        elif bad:
            withheld += bad
        elif m is None or m.lanes_measured == 0 or m.flow_pcu_h is None:
            withheld.append(f"movement {movement.id} not measured")
    approaches = {m.approach for m in movements}
    queues = [a.queue_length_m for a in summary.approaches if a.approach in approaches and a.queue_length_m is not None]
    queue = max(queues) if queues else None
    if withheld or not movements:
        return DirectionMeasure(summary.intersection_id, facing, summary_id, None, None, queue, None,
                                tuple(withheld or ["no movement carries this direction"]))
    xs = [measured[m.id].degree_of_saturation for m in movements]
    speeds = [s for s in (measured[m.id].mean_speed_kmh for m in movements) if s is not None]
    x = max(v for v in xs if v is not None) if all(v is not None for v in xs) else None
    delay = _control_delay_s(plan, summary, movements) if x is not None else None
    return DirectionMeasure(summary.intersection_id, facing, summary_id, x, min(speeds) if speeds else None, queue,
                            delay, () if x is not None else ("running timing unknown",))


def _control_delay_s(plan: Plan, summary: TrafficMeasured, movements: Sequence[Movement]) -> float | None:
    """The largest HCM control delay (s/veh) of ``movements`` at the running timing and measured X."""
    timing = running_timing(plan, summary)
    if timing is None:
        return None
    greens = green_intervals_s(plan, timing)
    measured = {m.movement: m for m in summary.movements}
    worst = 0.0
    for movement in movements:
        x = measured[movement.id].degree_of_saturation
        green = sum(greens.get(movement.signal_group or "", []))
        if x is None or green <= 0:
            return None
        capacity = movement.saturation_pcu_h() * green / timing.cycle_s
        d1 = uniform_delay_s(timing.cycle_s, green, x) * movement.progression_factor
        worst = max(worst, d1 + incremental_delay_s(x, capacity, ANALYSIS_PERIOD_H))
    return worst


class TravelTime(msgspec.Struct, frozen=True):
    """Travel time (s) from a board to its destination junction, its parts, and why it is unknown (None)."""

    seconds: float | None
    cruise_s: float
    delays_s: tuple[tuple[str, float], ...]
    withheld: tuple[str, ...] = ()

    @property
    def minutes(self) -> int | None:
        """Whole minutes, rounded up (a board never promises less than the estimate)."""
        return None if self.seconds is None else max(1, math.ceil(self.seconds / 60.0 - 1e-9))


def travel_time(start_chainage_m: float, path: Sequence[tuple[str, float, float]],
                delays: Mapping[str, DirectionMeasure]) -> TravelTime:
    """From ``start_chainage_m`` through ``path`` — (junction, chainage m, progression speed km/h), nearest first, the
    last the destination — cruising each link at the speed of the junction it leads to, plus each junction's control
    delay (from ``delays``; a missing or withheld one makes the time unknown)."""
    cruise = 0.0
    here = start_chainage_m
    parts: list[tuple[str, float]] = []
    withheld: list[str] = []
    for junction, chainage_m, speed_kmh in path:
        cruise += abs(chainage_m - here) / (speed_kmh / 3.6)
        here = chainage_m
        measure = delays.get(junction)
        if measure is None:
            withheld.append(f"{junction}: no traffic state")
        elif measure.control_delay_s is None:
            withheld += [f"{junction}: {w}" for w in measure.withheld] or [f"{junction}: delay unknown"]
        else:
            parts.append((junction, measure.control_delay_s))
    if withheld:
        return TravelTime(None, cruise, tuple(parts), tuple(withheld))
    return TravelTime(cruise + sum(d for _, d in parts), cruise, tuple(parts))
