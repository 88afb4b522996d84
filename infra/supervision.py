"""Supervision of the runtime's parts: every failure caught, alarmed, restarted with backoff, and cleared.

:class:`Alarms` is the runtime's own alarm list (a part failed, a periodic task failed, a
worker died): each alarm is *raised* with its detail and the time, printed as an ``ALARM``
line, kept active until the part works again, then *cleared* (a ``CLEARED`` line). The live
summary line and the dashboard's map show the active ones and the counts, so the terminal,
``lalin status`` and the web agree.

:func:`supervise` runs one part (the archiver, the command executor, the VMS loop) until a
stop event: any exception — not only the database and broker errors one expects — raises
the part's alarm, the part is cleaned up, and after a backoff (doubling from ``backoff_s``
up to ``max_backoff_s``; reset once a run lasted ``healthy_s``) it is built and started
again. A failed restart is itself retried with the same backoff, and reported each time.
Only cancellation and the stop event end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger(__name__)

DETAIL_CHARS = 300  # an alarm's detail, at most


@dataclass
class Alarm:
    """One alarm of the runtime: which part, what happened, when it was raised (and cleared)."""

    part: str
    detail: str
    raised_at: datetime
    cleared_at: datetime | None = None


@dataclass
class Alarms:
    """The runtime's alarms (see the module docstring); ``clock`` gives their times, ``say`` prints the lines."""

    clock: Callable[[], datetime]
    say: Callable[[str], None]
    active: dict[str, Alarm] = field(default_factory=dict)
    raised: int = 0
    cleared: int = 0
    history: list[Alarm] = field(default_factory=list)  # the last MAX_HISTORY, raised and cleared

    MAX_HISTORY = 200

    def raise_alarm(self, part: str, detail: str) -> None:
        """Raise (or renew) ``part``'s alarm: printed every time, counted once while it stays active."""
        detail = detail[:DETAIL_CHARS]
        self.say(f"ALARM {part}: {detail}")
        current = self.active.get(part)
        if current is not None:
            current.detail = detail
            return
        alarm = Alarm(part, detail, self.clock())
        self.active[part] = alarm
        self.raised += 1
        self.history = [*self.history[-(self.MAX_HISTORY - 1):], alarm]

    def clear(self, part: str, detail: str) -> None:
        """Clear ``part``'s alarm if one is active (printed as a CLEARED line)."""
        alarm = self.active.pop(part, None)
        if alarm is None:
            return
        alarm.cleared_at = self.clock()
        self.cleared += 1
        self.say(f"CLEARED {part}: {detail[:DETAIL_CHARS]}")

    def lines(self) -> list[str]:
        """The active alarms as the map lists them (part: detail, oldest first)."""
        return [f"{a.part}: {a.detail}" for a in sorted(self.active.values(), key=lambda a: a.raised_at)]


def describe(err: BaseException) -> str:
    """An exception as an alarm detail: its type and message."""
    return f"{type(err).__name__}: {err}"


@dataclass
class Restarts:
    """How often a supervised part failed and was started again."""

    failures: int = 0
    restarts: int = 0


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop``; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def supervise(part: str, *, run: Callable[[asyncio.Event], Awaitable[None]],
                    restart: Callable[[], Awaitable[None]], cleanup: Callable[[], Awaitable[None]],
                    stop: asyncio.Event, alarms: Alarms, counts: Restarts | None = None,
                    loop_time: Callable[[], float] | None = None,
                    backoff_s: float = 0.5, max_backoff_s: float = 30.0, healthy_s: float = 30.0) -> None:
    """Run ``run(stop)`` (the part, already started) until ``stop``; on any failure alarm, ``cleanup()``,
    back off (seconds) and ``restart()`` (build and start it again), then run it again.

    The alarm clears once a restart succeeds. ``counts`` (if given) counts failures and restarts.
    """
    counts = counts if counts is not None else Restarts()
    now = loop_time or asyncio.get_running_loop().time
    delay_s = backoff_s
    while not stop.is_set():
        began = now()
        try:
            await run(stop)
            if stop.is_set():
                return
            raise RuntimeError(f"{part} stopped on its own")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the supervisor: any failure is alarmed and recovered from
            counts.failures += 1
            if now() - began >= healthy_s:
                delay_s = backoff_s
            alarms.raise_alarm(part, f"failed ({describe(err)}); restarting in {delay_s:.1f} s")
            log.warning("%s failed", part, exc_info=err)
        delay_s = await _restart(part, restart, cleanup, stop, alarms, counts, delay_s, max_backoff_s)


async def _restart(part: str, restart: Callable[[], Awaitable[None]], cleanup: Callable[[], Awaitable[None]],
                   stop: asyncio.Event, alarms: Alarms, counts: Restarts, delay_s: float, max_backoff_s: float) -> float:
    """Clean up, then restart after ``delay_s`` until it works or ``stop``; returns the next delay (seconds)."""
    try:
        await cleanup()
    except Exception as err:  # noqa: BLE001 - closing a broken part may fail in any way: noted, not fatal
        log.info("%s: cleaning up after a failure: %r", part, err)
    while not stop.is_set():
        if await _wait(stop, delay_s):
            return delay_s
        delay_s = min(delay_s * 2, max_backoff_s)
        try:
            await restart()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the service it needs may still be down: retried with backoff
            alarms.raise_alarm(part, f"cannot restart yet ({describe(err)}); next try in {delay_s:.1f} s")
            try:
                await cleanup()
            except Exception as cleanup_err:  # noqa: BLE001
                log.info("%s: cleaning up after a failed restart: %r", part, cleanup_err)
            continue
        counts.restarts += 1
        alarms.clear(part, f"restarted (restart {counts.restarts})")
        return delay_s
    return delay_s
