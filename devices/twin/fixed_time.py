"""The corridor under its own time-of-day plans: each junction runs lalin's controller firmware
(:mod:`devices.controller_logic`, the logic the Modbus simulators run) on its local schedule.

This is the fixed-time baseline the closed loop is compared with: the same demand, each
controller powered up at the start (all-red start-up, then the scheduled timing, moving onto its
coordination offset over the first cycles) and following its schedule every simulated minute.
The controllers' clocks are epoch seconds of the simulated date at SUMO time (s after local midnight).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from controllers.errors import ConfigurationError
from controllers.plan import Plan, Timing
from controllers.schedule import active_timing, resolve_timing
from devices import controller_logic as logic

#: A weekday (Tuesday) that is no exception day in any plan: the AM_PEAK timings run 06:00-09:30.
DEFAULT_DATE = datetime.date(2026, 11, 24)
SCHEDULE_CHECK_S = 60.0


def local_midnight_epoch_s(plan: Plan, date: datetime.date) -> float:
    """Unix time (s) of local midnight of ``date`` in the plan's schedule zone (WITA by default)."""
    offset_h = plan.schedule.utc_offset_h if plan.schedule is not None else 8.0
    zone = datetime.timezone(datetime.timedelta(hours=offset_h))
    return datetime.datetime.combine(date, datetime.time.min, tzinfo=zone).timestamp()


def scheduled_timing(plan: Plan, epoch_s: float) -> Timing | None:
    """The timing the plan's schedule runs at Unix time ``epoch_s`` (None: flash)."""
    instant = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return resolve_timing(plan, active_timing(plan, instant).timing)


def _idle_timing(plan: Plan) -> Timing:
    timing = plan.default_timing or next(iter(plan.timings.values()), None)
    if timing is None:
        raise ConfigurationError(f"plan {plan.id} has no timing to fill a flashing controller's state")
    return timing


class FixedTimeCorridor:
    """Every controller's firmware state, advanced in step with the simulation."""

    def __init__(self, plans: Mapping[str, Plan], date: datetime.date, time_of_day_s: float) -> None:
        """Power up every controller (``plans`` by controller id) at ``time_of_day_s`` (s after local midnight) of ``date``."""
        self.plans = dict(plans)
        self._midnight = {cid: local_midnight_epoch_s(p, date) for cid, p in self.plans.items()}
        self._states = {cid: logic.power_up(p, scheduled_timing(p, self._midnight[cid] + time_of_day_s), _idle_timing(p),
                                            clock_s=self._midnight[cid] + time_of_day_s)
                        for cid, p in self.plans.items()}
        self._since_check_s = 0.0

    def advance(self, dt_s: float) -> None:
        """Every controller ``dt_s`` seconds later; the schedules are checked once a simulated minute."""
        self._since_check_s += dt_s
        check = self._since_check_s >= SCHEDULE_CHECK_S
        if check:
            self._since_check_s = 0.0
        for cid, plan in self.plans.items():
            state = logic.advance(plan, self._states[cid], dt_s)
            if check:
                state = logic.follow_schedule(state, scheduled_timing(plan, state.clock_s))
            self._states[cid] = state

    def aspects(self) -> dict[str, dict[str, str]]:
        """Controller id -> signal group -> aspect now."""
        return {cid: dict(logic.aspects(plan, self._states[cid])) for cid, plan in self.plans.items()}

    def state(self, controller_id: str) -> logic.ControllerState:
        """One controller's firmware state."""
        return self._states[controller_id]
