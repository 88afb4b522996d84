"""Supervision: any failure of a part is alarmed, the part restarted with backoff, the alarm cleared."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from infra.supervision import Alarms, Restarts, supervise

T0 = datetime(2026, 12, 7, tzinfo=UTC)


class Part:
    """A part that fails in the ways listed (one per run), then runs until stopped."""

    def __init__(self, failures: list[BaseException], restart_failures: int = 0) -> None:
        self.failures, self.restart_failures = list(failures), restart_failures
        self.runs = self.restarts = self.cleanups = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)
        await stop.wait()

    async def restart(self) -> None:
        if self.restart_failures:
            self.restart_failures -= 1
            raise ConnectionRefusedError("database not up yet")
        self.restarts += 1

    async def cleanup(self) -> None:
        self.cleanups += 1
        raise RuntimeError("closing a broken connection failed")  # must not stop the supervisor


def run_part(part: Part, until: int) -> tuple[Alarms, Restarts, list[str]]:
    said: list[str] = []
    alarms, counts = Alarms(lambda: T0, said.append), Restarts()

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(supervise("archiver", run=part.run, restart=part.restart, cleanup=part.cleanup,
                                             stop=stop, alarms=alarms, counts=counts, backoff_s=0.01))
        for _ in range(500):
            if part.runs >= until and not part.failures:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    return alarms, counts, said


def test_any_exception_is_alarmed_and_the_part_restarted_and_the_alarm_cleared() -> None:
    part = Part([UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), OverflowError("date value out of range")])
    alarms, counts, said = run_part(part, until=3)
    assert counts.failures == 2 and counts.restarts == 2 and part.runs == 3
    assert said[0].startswith("ALARM archiver: failed (UnicodeDecodeError:")
    assert any(line.startswith("ALARM archiver: failed (OverflowError: date value out of range)") for line in said)
    assert said[-1] == "CLEARED archiver: restarted (restart 2)"
    assert alarms.active == {} and alarms.raised == 2 and alarms.cleared == 2


def test_a_restart_that_fails_is_retried_with_backoff_and_reported_each_time() -> None:
    part = Part([RuntimeError("the broker went away")], restart_failures=3)
    alarms, counts, said = run_part(part, until=2)
    cannot = [line for line in said if "cannot restart yet (ConnectionRefusedError: database not up yet)" in line]
    assert len(cannot) == 3
    delays = [float(line.rsplit("next try in ", 1)[1].split(" s")[0]) for line in cannot]
    assert delays == sorted(delays) and delays[-1] > delays[0], "the backoff grows"
    assert alarms.raised == 1, "one alarm, renewed while the part stays down"
    assert counts.restarts == 1 and alarms.active == {}


def test_a_part_that_returns_without_being_stopped_counts_as_failed() -> None:
    class Quitter(Part):
        async def run(self, stop: asyncio.Event) -> None:
            self.runs += 1
            if self.runs == 1:
                return
            await stop.wait()

    alarms, counts, said = run_part(Quitter([]), until=2)
    assert counts.failures == 1 and "stopped on its own" in said[0] and alarms.active == {}


def test_a_restarted_run_never_relives_archived_time() -> None:
    import datetime as dt

    import pytest

    from controllers.errors import ConfigurationError
    from infra.simclock import WITA, start_after
    friday = dt.datetime(2026, 12, 4, 6, 0, tzinfo=WITA)
    assert start_after(friday, None, chosen=False) == friday  # an empty archive
    assert start_after(friday, friday - dt.timedelta(hours=1), chosen=True) == friday  # already after it
    archived = friday + dt.timedelta(minutes=42)  # the first run reached 06:42
    assert start_after(friday, archived, chosen=False) == dt.datetime(2026, 12, 7, 6, 0, tzinfo=WITA)  # next weekday
    with pytest.raises(ConfigurationError, match="not after the last archived instant 2026-12-04T06:42:00"):
        start_after(friday, archived, chosen=True)
