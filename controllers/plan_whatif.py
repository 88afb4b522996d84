"""What a timing would do with the traffic measured now (pure): the HCM evaluation of a *given* timing, to put a
proposed plan beside the deployed one before anyone approves it.

For every signalised movement with a demand ``q`` (pcu/h) — the mean of the fold's measured flows over the
last minutes, or design counts — and the plan's saturation flow ``S`` (pcu/h): its effective green ``g`` (the
green periods of its signal group over a cycle, :func:`controllers.safety.green_intervals_s`, a group green
through an interstage keeping it), capacity ``c = S g / C`` (pcu/h), degree of saturation ``X = q / c`` and
HCM control delay ``d = d1 + d2`` (:func:`controllers.capacity.control_delay_s`, 15-min analysis period) with
its level of service; the junction's delay is the flow-weighted mean (s/pcu). A group green in two separate
periods of the cycle is evaluated as one green of their sum (an approximation the result notes).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from controllers.capacity import control_delay_s, level_of_service
from controllers.plan import Id, Plan, Timing
from controllers.safety import green_intervals_s

ANALYSIS_PERIOD_H = 0.25


class MovementPrediction(msgspec.Struct, frozen=True):
    """One movement under a timing: demand and capacity (pcu/h), green (s), X (ratio), delay (s/pcu), LOS."""

    movement: Id
    signal_group: Id
    demand_pcu_h: float
    green_s: float
    capacity_pcu_h: float
    degree_of_saturation: float
    delay_s: float
    los: str


class Prediction(msgspec.Struct, frozen=True):
    """A timing at a junction with a demand: its cycle (s), every movement, the flow-weighted delay (s/pcu) and LOS,
    the largest X, and notes (movements without demand, split greens)."""

    plan_id: Id
    plan_version: int
    cycle_s: float
    movements: list[MovementPrediction]
    delay_s: float | None
    los: str
    max_degree_of_saturation: float | None
    notes: list[str]


def predict(plan: Plan, timing: Timing, demand_pcu_h: Mapping[Id, float]) -> Prediction:
    """The HCM prediction of ``timing`` on ``plan`` for ``demand_pcu_h`` (movement id -> pcu/h; see the module
    docstring). Movements without a demand are left out and named in the notes."""
    greens = green_intervals_s(plan, timing)
    out: list[MovementPrediction] = []
    notes: list[str] = []
    for movement in plan.movements:
        if movement.free_flow or movement.signal_group is None:
            continue
        q = demand_pcu_h.get(movement.id)
        if q is None:
            notes.append(f"{movement.id}: no demand measured")
            continue
        periods = greens.get(movement.signal_group, [])
        if len(periods) > 1:
            notes.append(f"{movement.id}: green in {len(periods)} periods, evaluated as one of {sum(periods):.0f} s")
        green, saturation = sum(periods), movement.saturation_pcu_h()
        if green <= 0 or saturation <= 0:
            notes.append(f"{movement.id}: no green or no saturation flow")
            continue
        delay, x = control_delay_s(timing.cycle_s, green, max(q, 0.0), saturation, period_h=ANALYSIS_PERIOD_H)
        out.append(MovementPrediction(movement.id, movement.signal_group, round(q, 1), round(green, 1),
                                      round(saturation * green / timing.cycle_s, 1), round(x, 3), round(delay, 1),
                                      level_of_service(delay, x)))
    total = sum(m.demand_pcu_h for m in out)
    delay_s = sum(m.delay_s * m.demand_pcu_h for m in out) / total if total > 0 else None
    max_x = max((m.degree_of_saturation for m in out), default=None)
    los = level_of_service(delay_s, max_x or 0.0) if delay_s is not None else "?"
    return Prediction(plan.id, plan.version, timing.cycle_s, out, round(delay_s, 1) if delay_s is not None else None,
                      los, max_x, notes)
