"""The high-resolution event log over real Modbus TCP: the simulator logs, the driver reads and emits
``ControllerEventsLogged`` with lalin's ids and times, and entries lost to an overflowing ring are reported.

The controller runs 20x faster than the wall clock and the driver's clock is the controller's own
(as in ``lalin up``, where both run on the simulated clock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from controllers.payloads import ControllerEventsLogged, ControllerFaulted, EventCode, FaultKind, LoggedEvent
from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import RecordingSink
from devices.fleet import load_fleet
from devices.register_map import RegisterMap, load_register_map
from infra.vms_catalogue import vms_network
from infra.web import NOTICE_SHOWN_S, LiveView

SPEED = 20.0
TUESDAY_NOON = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
SITE = load_fleet().site("K03")
PLAN = SITE.load_plan()
REGMAP = load_register_map()


@contextlib.asynccontextmanager
async def controller(regmap: RegisterMap = REGMAP) -> AsyncIterator[tuple[ControllerSimulator, ControllerDriver, RecordingSink]]:
    sim = ControllerSimulator(SITE, PLAN, speed=SPEED, start_at=TUESDAY_NOON, regmap=regmap, log_hold_s=0.5)
    await sim.start()
    sink = RecordingSink()
    driver = ControllerDriver(SITE, PLAN, "127.0.0.1", sim.port, sink, poll_s=0.05, heartbeat_s=0.1, request_timeout_s=0.5,
                              reconnect_min_s=0.05, reconnect_max_s=0.2, clock=sim.local_time, regmap=regmap)
    await driver.start()
    try:
        await asyncio.wait_for(driver.connected.wait(), 5)
        yield sim, driver, sink
    finally:
        await driver.stop()
        await sim.stop()


def entries(sink: RecordingSink) -> list[LoggedEvent]:
    return [e for batch in sink.payloads(ControllerEventsLogged) for e in batch.entries]


def seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def test_aspect_changes_and_detector_pulses_arrive_as_logged_events_with_their_codes_and_times() -> None:
    async def scenario() -> None:
        async with controller() as (sim, _driver, sink):
            await asyncio.sleep(0.5)
            pulses = []
            for k in range(5):
                pulses.append(sim.local_time())
                sim.detector_pulse(k, occupied_s=2.0)  # K03-N_T-1 .. 3, K03-N_R-1, K03-S_TR-1
                await asyncio.sleep(0.1)
            await asyncio.sleep(7.0)  # 140 controller seconds: the start-up and a whole cycle
        got = entries(sink)
        assert [e.seq for e in got] == list(range(1, len(got) + 1))  # every entry once, in log order
        assert all(b.boot == 1 and b.controller_id == "K03" and b.lost == 0 for b in sink.payloads(ControllerEventsLogged))
        ids = [d.id for d in SITE.detector_list()]
        for k, at in enumerate(pulses):
            (on,) = [e for e in got if e.code == EventCode.DETECTOR_ON and e.param == ids[k]]
            (off,) = [e for e in got if e.code == EventCode.DETECTOR_OFF and e.param == ids[k]]
            assert abs(seconds(at, on.at)) < 0.6  # the controller's tenths, related over one request (x20)
            assert abs(seconds(on.at, off.at) - 2.0) < 0.15
        b = [(e.code, e.at) for e in got if e.param == "B"]
        assert [c for c, _ in b[:4]] == [EventCode.PHASE_BEGIN_RED_CLEARANCE, EventCode.PHASE_BEGIN_GREEN,
                                         EventCode.PHASE_BEGIN_YELLOW_CLEARANCE, EventCode.PHASE_BEGIN_RED_CLEARANCE]
        assert abs(seconds(b[2][1], b[3][1]) - 3.5) < 0.15  # B's declared amber
        p2 = [e.code for e in got if e.param == "P2"]
        assert EventCode.PEDESTRIAN_BEGIN_WALK in p2 and EventCode.PEDESTRIAN_BEGIN_CLEARANCE in p2
        assert [e.at for e in got] == sorted(e.at for e in got)

    asyncio.run(scenario())


def test_entries_the_ring_overwrote_while_the_link_was_down_are_reported_not_silently_skipped() -> None:
    small = REGMAP.model_copy(update={"event_log": REGMAP.event_log.model_copy(update={"capacity": 20})})

    async def scenario() -> None:
        async with controller(small) as (sim, driver, sink):
            first = await sink.wait_for(ControllerEventsLogged, timeout_s=5)
            await asyncio.sleep(0.2)
            read_before = max(e.seq for e in entries(sink))
            await sim.stop()  # the link goes down; the controller keeps logging
            for _ in range(30):
                sim.detector_pulse(0, occupied_s=0.2)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            sim.aspects()  # the controller catches up (commits its log) as it would on a request
            head = sim.event_log.head
            await sim.start()
            notice = await sink.wait_for(ControllerFaulted, lambda f: f.fault == FaultKind.EVENT_LOG, timeout_s=10)
            after = await sink.wait_for(ControllerEventsLogged, lambda b: b.lost > 0, timeout_s=5)
            assert first.boot == after.boot == 1
            lost = after.lost
            assert head - read_before > 20 and lost >= head - read_before - 20  # at least what no longer fits the ring
            assert after.entries[0].seq == read_before + lost + 1  # the first entry the ring still held
            assert f"{lost} event-log entries" in notice.detail and "overwritten" in notice.detail
            assert notice.active is False and driver.connected.is_set()
            # the command centre's map lists the notice for 15 minutes, with its time
            field = SimpleNamespace(drivers=[driver], board_drivers=[])
            listed = LiveView(vms_network(), lambda: field, lambda: None, driver.clock).state()["alarms"]
            assert any(a.startswith(f"{driver.site.id}: event_log at ") and f"{lost} event-log entries" in a
                       for a in listed), listed
            later = LiveView(vms_network(), lambda: field, lambda: None,
                             lambda: driver.clock() + timedelta(seconds=NOTICE_SHOWN_S + 1)).state()["alarms"]
            assert not any("event_log" in a for a in later), later

    asyncio.run(scenario())
