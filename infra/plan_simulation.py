"""The what-if's short run of the simulated network: the SUMO twin of the corridor under the deployed plans, and
again with a proposed plan in place of its junction's, over the same demand and seed (each junction on lalin's
controller firmware following its plan's time-of-day schedule, as the fixed-time baseline of ``lalin up``).

**The period measured** is the engineer's choice within the modelled morning (06:00-09:00 WITA): by default
the twin's time of day now, so a plan is judged on the traffic it will meet. Each run starts ``warmup_s``
simulated seconds before the period (never before 06:00: the modelled demand starts on an empty network), so
the queues of the period are there when it begins; the metrics count only the trips that depart in the period
(:meth:`devices.twin.world.SumoWorld.begin_measure`). Both runs go at once, each in a child process of its own
(libsumo is not re-entrant), so the event loop stays free. A 20-minute period is a short run: the figures show
the direction and size of a change, not a calibrated forecast (docs/twin.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec

from controllers.errors import ConfigurationError
from controllers.plan import Plan
from devices.twin.process import run_fixed_time_in_child
from devices.twin.reports import TripMetrics
from devices.twin.sumo_files import DEMAND_BEGIN_S, DEMAND_END_S
from infra.simclock import hhmm

DEFAULT_DURATION_S = 1200.0  # 20 simulated minutes measured
DEFAULT_WARMUP_S = 600.0  # 10 simulated minutes before them
PERIOD_STEP_S = 300  # the period starts on a 5-minute mark
SEED = 42


class SimulationPeriodError(ConfigurationError):
    """A what-if period outside the modelled demand (times in seconds after local midnight, WITA)."""


class SimulationResult(msgspec.Struct, frozen=True):
    """Both runs' trip metrics (delay s/veh, stops per vehicle, trips, throughput veh/h) and the change (%);
    ``begin_s`` is the warm-up's start, ``measured_from_s`` to ``end_s`` the period measured (s after local
    midnight, WITA)."""

    plan_id: str
    begin_s: float
    measured_from_s: float
    end_s: float
    seed: int
    deployed: TripMetrics
    proposed: TripMetrics
    change_pct: dict[str, float]


def period_starts(duration_s: float = DEFAULT_DURATION_S) -> tuple[int, int]:
    """The earliest and latest start of a measured period of ``duration_s`` seconds (s after local midnight),
    on :data:`PERIOD_STEP_S` marks."""
    latest = int(DEMAND_END_S - duration_s) // PERIOD_STEP_S * PERIOD_STEP_S
    return int(DEMAND_BEGIN_S), latest


def default_start_s(time_of_day_s: float, duration_s: float = DEFAULT_DURATION_S) -> int:
    """The period start for a what-if asked at ``time_of_day_s`` (s after local midnight): that time, down to a
    5-minute mark, within the modelled morning (its first or last period outside it)."""
    earliest, latest = period_starts(duration_s)
    return min(max(int(time_of_day_s) // PERIOD_STEP_S * PERIOD_STEP_S, earliest), latest)


def measured_period(start_s: float, duration_s: float = DEFAULT_DURATION_S,
                    warmup_s: float = DEFAULT_WARMUP_S) -> tuple[float, float, float]:
    """(warm-up start, period start, period end), s after local midnight, for a period of ``duration_s`` seconds
    from ``start_s`` (on a 5-minute mark) after up to ``warmup_s`` seconds of warm-up; SimulationPeriodError off a
    mark or outside the demand."""
    earliest, latest = period_starts(duration_s)
    if duration_s <= 0 or warmup_s < 0:
        raise SimulationPeriodError(f"a what-if needs a positive duration and no negative warm-up "
                                    f"(got {duration_s} s and {warmup_s} s)")
    if start_s % PERIOD_STEP_S:
        raise SimulationPeriodError(f"the period must start on a {PERIOD_STEP_S // 60}-minute mark; got {hhmm(start_s)}")
    if not earliest <= start_s <= DEMAND_END_S - duration_s:
        raise SimulationPeriodError(f"the period must start between {hhmm(earliest)} and {hhmm(latest)} WITA (the "
                                    f"modelled morning, {duration_s / 60:g} min measured); got {hhmm(start_s)}")
    return max(DEMAND_BEGIN_S, start_s - warmup_s), start_s, start_s + duration_s


def _change(before: float, after: float) -> float:
    return round(100.0 * (after - before) / before, 1) if before else 0.0


async def simulate(candidate: Plan, deployed: Mapping[str, Plan], *, start_s: float = DEMAND_BEGIN_S,
                   duration_s: float = DEFAULT_DURATION_S, warmup_s: float = DEFAULT_WARMUP_S,
                   seed: int = SEED) -> SimulationResult:
    """The corridor with ``deployed`` (every junction's deployed plan) and with ``candidate`` in place of its
    junction's, same demand and seed: the trips departing in the ``duration_s`` seconds from ``start_s`` (s after
    local midnight), after up to ``warmup_s`` seconds of warm-up (see the module docstring)."""
    begin_s, measured_from_s, end_s = measured_period(start_s, duration_s, warmup_s)
    current = {cid: plan.model_dump_json() for cid, plan in deployed.items()}
    proposed = current | {candidate.id: candidate.model_dump_json()}
    runs = {"seed": seed, "begin_s": begin_s, "end_s": end_s, "measure_from_s": measured_from_s}
    before, after = await asyncio.gather(run_fixed_time_in_child(**runs, plan_documents=current),
                                         run_fixed_time_in_child(**runs, plan_documents=proposed))
    change = {"mean_delay_s": _change(before.mean_delay_s, after.mean_delay_s),
              "mean_stops": _change(before.mean_stops, after.mean_stops),
              "completed": _change(before.completed, after.completed)}
    return SimulationResult(candidate.id, begin_s, measured_from_s, end_s, seed, before, after, change)
