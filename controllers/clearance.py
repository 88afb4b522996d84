"""Clearance intervals and the interstage arithmetic of a plan (pure functions).

Vehicle change interval, ITE (Institute of Transportation Engineers, *Traffic Control Devices
Handbook* / "Guidelines for Determining Traffic Signal Change and Clearance Intervals", 2020)::

    amber   y = t + v / (2a + 2 G g)        t reaction (s), v approach speed (m/s),
                                            a deceleration (m/s²), G grade (fraction), g = 9.81 m/s²
    all-red r = (W + L) / v                 W crossing distance (m), L vehicle length (m)

Pedestrian clearance: the crossing length divided by the walking speed (1.2 m/s by default;
slower walkers need a lower speed).

The intergreen a losing group ``i`` needs before a conflicting group ``j`` may start is its
clearance: ``y_i + r_i`` for a vehicle group, ``W_i / v_walk`` for a pedestrian group. The
*interstage* from stage A to stage B is the longest intergreen between a group losing green
there and a conflicting group gaining it, and at least the amber of every losing vehicle group.
"""

from __future__ import annotations

from controllers.plan import Id, Plan, SignalGroup
from controllers.plan_memo import per_plan

GRAVITY_MPS2 = 9.81


def amber_required_s(group: SignalGroup, plan: Plan) -> float:
    """Minimum amber (s) of a vehicle group by the ITE kinematic formula."""
    v = group.approach_speed_kmh / 3.6
    c = plan.clearance
    return c.reaction_s + v / (2 * c.deceleration_mps2 + 2 * group.grade * GRAVITY_MPS2)


def all_red_required_s(group: SignalGroup, plan: Plan) -> float:
    """Minimum all-red (s) of a vehicle group: time to clear the crossing distance plus a vehicle length."""
    v = group.approach_speed_kmh / 3.6
    return (group.crossing_m + plan.clearance.vehicle_length_m) / v


def clearance_required_s(group: SignalGroup, plan: Plan) -> float:
    """Intergreen (s) a group needs before a conflicting group may start."""
    if group.kind == "pedestrian":
        return group.crossing_m / plan.clearance.walking_speed_mps
    return amber_required_s(group, plan) + all_red_required_s(group, plan)


def intergreen_s(plan: Plan, losing: Id, gaining: Id) -> float | None:
    """The declared intergreen (s) from ``losing`` to ``gaining``, or None when none is declared."""
    return plan.intergreens_s.get(losing, {}).get(gaining)


@per_plan
def interstage_s(plan: Plan, from_stage: Id, to_stage: Id) -> float:
    """Seconds between the end of ``from_stage``'s green and the start of ``to_stage``'s (declared intergreens).

    Raises KeyError for unknown stages; a conflicting pair without a declared intergreen counts
    as its required clearance (the safety check reports the missing entry).
    """
    a, b = plan.stage(from_stage), plan.stage(to_stage)
    if a is None or b is None:
        raise KeyError(f"unknown stage {from_stage if a is None else to_stage!r}")
    losing = [g for g in a.green if g not in b.green]
    gaining = [g for g in b.green if g not in a.green]
    longest = 0.0
    for i in losing:
        group = plan.group(i)
        if group is not None and group.kind == "vehicle":
            longest = max(longest, group.amber_s)
        for j in gaining:
            if plan.conflict(i, j):
                declared = intergreen_s(plan, i, j)
                if declared is None and group is not None:
                    declared = clearance_required_s(group, plan)
                longest = max(longest, declared or 0.0)
    return longest


@per_plan
def lost_time_s(plan: Plan) -> float:
    """Sum of the interstages over one cycle of the sequence (s): the L of Webster's formula."""
    seq = plan.sequence
    return sum(interstage_s(plan, seq[k], seq[(k + 1) % len(seq)]) for k in range(len(seq)))
