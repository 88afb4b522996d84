"""Time-of-day control (pure): which timing a plan runs at a given instant.

The plan's :class:`~controllers.plan.Schedule` maps each date to a day plan (an exception day
such as Nyepi or a ceremony, else the weekday's), and a day plan is a list of switches
``(HH:MM local, timing)``. Before the first switch of a day the last timing of the previous
day continues, as controllers run it. The instant is passed in (an aware datetime); local
time is the schedule's fixed UTC offset (Bali: WITA, UTC+8, no daylight saving), so no time-
zone database is read.
"""

from __future__ import annotations

import datetime

import msgspec

from controllers.errors import ConfigurationError
from controllers.plan import DEFAULT, FLASH, WEEKDAYS, Id, Plan, Schedule, Switch, Timing


class ActiveTiming(msgspec.Struct, frozen=True):
    """The timing a schedule runs at an instant, and why: day plan, day kind, local start of the switch."""

    timing: Id
    flash: bool
    day_plan: Id
    day: str
    since_local: datetime.datetime


def active_timing(plan: Plan, at: datetime.datetime) -> ActiveTiming:
    """The scheduled timing at instant ``at`` (timezone-aware). Without a schedule: the default timing."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"instant {at.isoformat()} has no time zone; pass an aware datetime")
    schedule = plan.schedule
    if schedule is None:
        if plan.default_timing is None:
            raise ConfigurationError(f"plan {plan.id} has neither a schedule nor a default timing")
        return ActiveTiming(DEFAULT, False, "", "no schedule", at)
    local = at.astimezone(datetime.timezone(datetime.timedelta(hours=schedule.utc_offset_h))).replace(tzinfo=None)
    minute = local.hour * 60 + local.minute
    day = local.date()
    for back in range(2):
        name, kind = _day_plan(schedule, day - datetime.timedelta(days=back))
        switches = schedule.day_plans[name]
        candidates = [s for s in switches if back == 1 or s.minute_of_day() <= minute]
        if candidates:
            switch = candidates[-1]
            midnight = datetime.datetime.combine(day - datetime.timedelta(days=back), datetime.time.min)
            start = midnight + datetime.timedelta(minutes=switch.minute_of_day())
            return ActiveTiming(switch.timing, switch.timing == FLASH, name, kind, start)
    raise AssertionError("unreachable: day plans are never empty")


def _day_plan(schedule: Schedule, day: datetime.date) -> tuple[Id, str]:
    for exception in schedule.exceptions:
        if exception.date == day:
            return exception.day_plan, f"exception {exception.date.isoformat()}: {exception.name}"
    weekday = WEEKDAYS[day.weekday()]
    return schedule.week[weekday], f"weekday {weekday}"


def resolve_timing(plan: Plan, name: Id) -> Timing | None:
    """The timing called ``name`` (``default`` = the plan's default timing); None for ``flash``."""
    if name == FLASH:
        return None
    timing = plan.default_timing if name == DEFAULT else plan.timings.get(name)
    if timing is None:
        raise ConfigurationError(f"plan {plan.id} has no timing {name!r}")
    return timing


__all__ = ["DEFAULT", "ActiveTiming", "Switch", "active_timing", "resolve_timing"]
