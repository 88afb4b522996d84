"""Hypothesis strategies shared by the timing tests: random plans that are safe by construction,
and random demand for their movements."""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import strategies as st

from controllers.clearance import clearance_required_s, lost_time_s
from controllers.errors import TimingInfeasible
from controllers.plan import Plan
from controllers.safety import validate
from controllers.splits import stage_bounds_s


@st.composite
def plans(draw) -> Plan:
    """Plans that are safe by construction: random groups, stages, conflicts and clearances."""
    n_groups, n_stages = draw(st.integers(2, 6)), draw(st.integers(2, 4))
    groups = []
    for i in range(n_groups):
        pedestrian = draw(st.booleans()) and i > 0
        min_green = draw(st.floats(4, 15))
        max_green = draw(st.none() | st.floats(min_green + 40, 120))
        group = {"id": f"G{i}", "kind": "pedestrian" if pedestrian else "vehicle", "min_green_s": min_green,
                 "max_green_s": None if pedestrian else max_green, "crossing_m": draw(st.floats(8, 40))}
        if not pedestrian:
            speed = draw(st.floats(20, 70))
            group.update(approach_speed_kmh=speed, grade=draw(st.floats(-0.06, 0.06)),
                         amber_s=math.ceil(1 + speed / 3.6 / 5.0) + 1)
        groups.append(group)
    member = [{draw(st.integers(0, n_stages - 1))} for _ in groups]
    for i in range(n_groups):
        member[i] |= set(draw(st.lists(st.integers(0, n_stages - 1), max_size=2)))
    together = {(a, b) for a in range(n_groups) for b in range(n_groups) if member[a] & member[b]}
    conflicts = [(f"G{a}", f"G{b}") for a in range(n_groups) for b in range(a + 1, n_groups)
                 if (a, b) not in together and draw(st.booleans())]
    stages = [{"id": f"S{k}", "green": [f"G{i}" for i in range(n_groups) if k in member[i]] or ["G0"]}
              for k in range(n_stages)]
    assume(all(len(s["green"]) == len(set(s["green"])) for s in stages))
    data = {"id": "R", "name": "random", "version": 1, "signal_groups": groups, "conflicts": conflicts,
            "stages": stages, "sequence": [s["id"] for s in stages], "cycle": {"min_s": 30, "max_s": 240},
            "intergreens_s": {}}
    plan = Plan.model_validate(data)
    for a, b in conflicts:
        for losing, gaining in ((a, b), (b, a)):
            need = clearance_required_s(plan.group(losing), plan)
            data["intergreens_s"].setdefault(losing, {})[gaining] = math.ceil(need) + draw(st.integers(0, 3))
    plan = Plan.model_validate(data)
    assume(validate(plan) == [])  # stage 0 fallback may put G0 with a conflicting group
    return plan


def refusal_is_justified(plan: Plan) -> bool:
    """A stage's conservative bounds cross, the minima do not fit the longest cycle, or the maxima not the shortest."""
    try:
        bounds = stage_bounds_s(plan)
    except TimingInfeasible as err:
        return "exceeds its maximum" in str(err)
    lost = lost_time_s(plan)
    fits_min = lost + sum(low for low, _ in bounds.values()) <= plan.cycle.max_s
    fits_max = lost + sum(min(high, 1e9) for _, high in bounds.values()) >= plan.cycle.min_s
    return not (fits_min and fits_max)




@st.composite
def plans_with_demand(draw, max_load: float = 0.7) -> tuple[Plan, list[dict[str, str]]]:
    """A random safe plan with one or two movements per vehicle group, and count rows for them.

    Each movement's PCU flow is drawn up to ``max_load`` times its saturation flow (so Y may
    reach and pass 1 when stages add up).
    """
    plan = draw(plans())
    data = plan.model_dump()
    approaches, movements, rows = [], [], []
    for group in plan.signal_groups:
        if group.kind != "vehicle":
            continue
        approaches.append({"id": f"A{group.id}", "heading": draw(st.sampled_from(["N", "E", "S", "W"]))})
        for k in range(draw(st.integers(1, 2))):
            lanes = draw(st.integers(1, 3))
            saturation = draw(st.floats(900, 2100)) * lanes
            movement = {"id": f"M{group.id}{k}", "approach": f"A{group.id}", "turns": "through",
                        "signal_group": group.id, "lanes": lanes}
            if draw(st.booleans()):
                movement["saturation_flow_pcu_h"] = saturation
            else:
                movement["effective_width_m"] = saturation / 600.0
            movements.append(movement)
            pcu = draw(st.floats(0, max_load)) * saturation
            share_mc, share_heavy = draw(st.floats(0, 0.8)), draw(st.floats(0, 0.1))
            # pcu = 0.2 mc + car + 1.3 heavy with mc = share_mc * total etc.
            per_vehicle = 0.2 * share_mc + (1 - share_mc - share_heavy) + 1.3 * share_heavy
            total = pcu / per_vehicle
            rows.append({"movement": movement["id"], "motorcycle": repr(total * share_mc),
                         "car": repr(total * (1 - share_mc - share_heavy)), "heavy": repr(total * share_heavy),
                         "unit": "veh/h"})
    assume(movements)
    data.update(approaches=approaches, movements=movements)
    return Plan.model_validate(data), rows
