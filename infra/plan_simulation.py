"""The what-if's short run of the simulated network: the SUMO twin of the corridor under the deployed plans, and
again with a proposed plan in place of its junction's, over the same demand and seed (each junction on lalin's
controller firmware following its plan's time-of-day schedule, as the fixed-time baseline of ``lalin up``).

The runs start at the beginning of the modelled morning peak (06:00 WITA, an empty network) and last
``duration_s`` simulated seconds; both run at once, each in a child process of its own (libsumo is not
re-entrant), so the event loop stays free. A few minutes of simulated time is a short run: the figures show the
direction and size of a change, not a calibrated forecast (docs/twin.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec

from controllers.plan import Plan
from devices.twin.process import run_fixed_time_in_child
from devices.twin.reports import TripMetrics
from devices.twin.sumo_files import DEMAND_BEGIN_S

DEFAULT_DURATION_S = 1200.0  # 20 simulated minutes
SEED = 42


class SimulationResult(msgspec.Struct, frozen=True):
    """Both runs' trip metrics (delay s/veh, stops per vehicle, trips, throughput veh/h) and the change (%)."""

    plan_id: str
    begin_s: float
    end_s: float
    seed: int
    deployed: TripMetrics
    proposed: TripMetrics
    change_pct: dict[str, float]


def _change(before: float, after: float) -> float:
    return round(100.0 * (after - before) / before, 1) if before else 0.0


async def simulate(candidate: Plan, deployed: Mapping[str, Plan], *, duration_s: float = DEFAULT_DURATION_S,
                   seed: int = SEED) -> SimulationResult:
    """The corridor with ``deployed`` (every junction's deployed plan) and with ``candidate`` in place of its
    junction's, from 06:00 for ``duration_s`` simulated seconds, same demand and seed."""
    begin_s, end_s = DEMAND_BEGIN_S, DEMAND_BEGIN_S + duration_s
    current = {cid: plan.model_dump_json() for cid, plan in deployed.items()}
    proposed = current | {candidate.id: candidate.model_dump_json()}
    before, after = await asyncio.gather(
        run_fixed_time_in_child(seed=seed, begin_s=begin_s, end_s=end_s, plan_documents=current),
        run_fixed_time_in_child(seed=seed, begin_s=begin_s, end_s=end_s, plan_documents=proposed))
    change = {"mean_delay_s": _change(before.mean_delay_s, after.mean_delay_s),
              "mean_stops": _change(before.mean_stops, after.mean_stops),
              "completed": _change(before.completed, after.completed)}
    return SimulationResult(candidate.id, begin_s, end_s, seed, before, after, change)
