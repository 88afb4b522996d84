"""The clock of a ``lalin up`` run: wall time, or simulated time running ``speed`` times faster.

Every component gets the clock passed in (the core never reads one). A simulated clock is
``start + (wall - wall0) x speed`` on the *absolute* wall clock (``time.time``), so the worker
processes the runtime starts compute the same instant from the three numbers it passes them
in the environment (``LALIN_SIMCLOCK``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass

from controllers.errors import ConfigurationError

ENV = "LALIN_SIMCLOCK"
WITA = dt.timezone(dt.timedelta(hours=8), "WITA")


@dataclass(frozen=True)
class SimClock:
    """Simulated time: ``start`` at wall instant ``wall0`` (epoch seconds), advancing ``speed`` s per wall second."""

    start: dt.datetime
    wall0: float
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError(f"simulated start {self.start.isoformat()} has no time zone")
        if not 0 < self.speed <= 1000:
            raise ValueError(f"speed {self.speed} (simulated seconds per wall second) must be in (0, 1000]")

    def __call__(self) -> dt.datetime:
        """The simulated instant now (aware, UTC)."""
        return (self.start + dt.timedelta(seconds=(time.time() - self.wall0) * self.speed)).astimezone(dt.UTC)

    def wall_s(self, simulated_s: float) -> float:
        """Wall seconds that ``simulated_s`` simulated seconds take."""
        return simulated_s / self.speed

    def to_env(self) -> str:
        """The clock as one environment value (for the runtime's worker processes)."""
        return f"{self.start.isoformat()}|{self.wall0!r}|{self.speed!r}"

    @classmethod
    def from_env(cls, value: str | None = None) -> SimClock | None:
        """The clock passed in ``LALIN_SIMCLOCK`` (or ``value``), or None."""
        text = value if value is not None else os.environ.get(ENV)
        if not text:
            return None
        start, wall0, speed = text.split("|")
        return cls(dt.datetime.fromisoformat(start), float(wall0), float(speed))

    @classmethod
    def starting(cls, start: dt.datetime, speed: float) -> SimClock:
        """A clock at ``start`` now."""
        return cls(start, time.time(), speed)


def hhmm(seconds_of_day: float) -> str:
    """``HH:MM`` of a time in seconds after local midnight."""
    return f"{int(seconds_of_day // 3600):02d}:{int(seconds_of_day % 3600 // 60):02d}"


def morning_start(today: dt.date, at: dt.time = dt.time(6, 0)) -> dt.datetime:
    """06:00 WITA of ``today``, or of the next weekday when ``today`` is a weekend (the AM-peak demand of the twin)."""
    day = today
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, at, WITA)


def start_after(start: dt.datetime, last_archived: dt.datetime | None, *, chosen: bool) -> dt.datetime:
    """The simulated start of a run whose archive already reaches ``last_archived`` (aware; None: empty archive).

    A run never re-lives archived time (replay would mix two histories): a default ``start``
    at or before ``last_archived`` moves to the morning (06:00 WITA, a weekday) after it; a
    ``chosen`` one (``LALIN_LOOP__START``) is refused with both instants (ConfigurationError).
    """
    if last_archived is None or start > last_archived:
        return start
    if chosen:
        raise ConfigurationError(f"the simulated start {start.isoformat()} is not after the last archived instant "
                                 f"{last_archived.isoformat()}: choose a later LALIN_LOOP__START or another data directory")
    return morning_start(last_archived.astimezone(WITA).date() + dt.timedelta(days=1))
