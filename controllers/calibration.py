"""Saturation flows learned from the street (pure): what each movement really discharges.

A plan's saturation flow ``S`` (MKJI 1997: 600 x effective width x factors, pcu/h of green) is
a design figure. Where the street discharges less (parked vehicles, a narrow lane used as one,
a bus stop by the stop line) the measured degree of saturation ``X = qC/(Sg)`` stays low while
the queue stands, and a strategy trusting ``S`` shortens the cycle into congestion: SCATS
learns each lane's *maximum flow* for this reason. Here:

* a movement's green was **fully used** in a window when its approach camera saw a queue
  longer than one red time's arrivals at the served flow (the queue survived its green);
* then the served 5-min flow over the green share is its discharge rate: ``S_obs = q C / g``
  (pcu/h of green), and the estimate moves toward it by ``rate`` (exponential smoothing);
* in a window where it was not fully used the estimate relaxes toward the plan's ``S`` by
  ``relax`` (a blockage that cleared is forgotten);
* the estimate stays within ``[low, high]`` x the plan's ``S``.

The learned values are state of the decision fold (:class:`controllers.decisions.DecisionState`),
folded from the summaries in order, so a replay learns the same values.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from controllers.payloads import TrafficMeasured
from controllers.plan import Id, Movement, Plan, Timing
from controllers.safety import green_intervals_s


class CalibrationConfig(msgspec.Struct, frozen=True):
    """How saturation flows are learned (fractions; metres per PCU per lane in a standing queue)."""

    enabled: bool = True
    rate: float = 0.25  # weight of a fully used window's discharge rate
    relax: float = 0.05  # weight of the plan's S in a window not fully used
    low: float = 0.3  # the estimate stays within [low, high] x the plan's S
    high: float = 1.3
    jam_spacing_m: float = 7.0


def movement_green_s(intervals: Mapping[Id, list[float]], movement: Movement) -> float:
    """Seconds of green per cycle of ``movement``'s group, from :func:`controllers.safety.green_intervals_s` (the
    periods the fold measures X with: interstages inside a run of stages count)."""
    return sum(intervals.get(movement.signal_group, [])) if movement.signal_group is not None else 0.0


def overflow_pcu(movement: Movement, flow_pcu_h: float, queue_m: float, cycle_s: float, green: float,
                 jam_spacing_m: float) -> float:
    """PCU queued beyond one red time's arrivals at ``flow_pcu_h`` (``green`` s of ``cycle_s``): the approach's queue
    (m) at ``jam_spacing_m`` m per PCU per lane, less the normal cyclic queue; above 0 the queue outlasted the green."""
    queued_pcu = queue_m / jam_spacing_m * movement.lanes
    return max(queued_pcu - flow_pcu_h * max(cycle_s - green, 0.0) / 3600.0, 0.0)


def learn_saturation(learned: Mapping[Id, float], plan: Plan, measured: TrafficMeasured, timing: Timing | None,
                     config: CalibrationConfig) -> dict[Id, float]:
    """The movements' saturation flows (pcu/h of green) after one summary: see the module docstring.

    ``learned`` holds the previous estimates (absent: the plan's); ``timing`` is the one the
    controller ran in the window (None: nothing is learned).
    """
    out = dict(learned)
    if not config.enabled or timing is None:
        return out
    queues = {a.approach: a.queue_length_m for a in measured.approaches if a.queue_length_m is not None}
    by_movement = {m.movement: m for m in measured.movements}
    intervals = green_intervals_s(plan, timing)
    for movement in plan.movements:
        m = by_movement.get(movement.id)
        if movement.free_flow or m is None or m.flow_pcu_h is None:
            continue
        design = movement.saturation_pcu_h()
        current = out.get(movement.id, design)
        green = movement_green_s(intervals, movement)
        queue_m = queues.get(movement.approach)
        if queue_m is not None and green > 0 and overflow_pcu(movement, m.flow_pcu_h, queue_m, timing.cycle_s, green,
                                                              config.jam_spacing_m) > 0:
            observed = m.flow_pcu_h * timing.cycle_s / green
            current += config.rate * (observed - current)
        else:
            current += config.relax * (design - current)
        out[movement.id] = min(max(current, config.low * design), config.high * design)
    return out
