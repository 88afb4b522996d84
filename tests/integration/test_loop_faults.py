"""Faults in the loop, on a real Modbus controller simulator and lalin's driver: the driver's events go
through the fold and the decision tasks, their commands back through the driver.

* a controller that stops answering: alarm (comms_lost), no commands while it is unreachable, its
  own fallback to the time-of-day plan (heartbeat lost), recovery and adaptive control again;
* bad detector data: refused, listed in the summary, the detectors turn bad_data, the decision
  falls back to the time-of-day plan (release_to_local, acknowledged by read-back).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from controllers.archive_plan import RawRecord, classify
from controllers.envelope import Envelope, encode_event
from controllers.payloads import (
    CameraObserved,
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    ControllerFaulted,
    DetectorHealth,
    FaultKind,
    ModeChangeCommand,
    TimingPlanCommand,
    TrafficMeasured,
    VolumeByClass,
)
from controllers.strategy import AdaptiveSaturation
from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import RecordingSink
from devices.fleet import load_fleet
from infra.simclock import WITA, SimClock
from streams.decide_task import DecideTask
from streams.fold_task import FoldTask, corridor_key
from streams.topology import Topology, load_topology

SPEED = 40.0
START = datetime(2026, 11, 24, 7, 0, tzinfo=WITA)  # a Tuesday in the AM peak
SITE = load_fleet().site("K01")


class MiniLoop:
    """K01's controller, driver, fold and decisions, with vehicles arriving at its loops."""

    def __init__(self) -> None:
        self.clock = SimClock.starting(START, SPEED)
        self.plan = SITE.load_plan()
        self.sim = ControllerSimulator(SITE, self.plan, speed=SPEED, start_at=START)
        self.sink = RecordingSink(clock=self.clock)
        full = load_topology()
        members = [m for m in full.corridors[corridor_key(full.layouts["K01"])] if m.intersection_id == "K01"]
        self.topology = Topology({"K01": full.layouts["K01"]}, {corridor_key(full.layouts["K01"]): members},
                                 {"K01": self.plan})
        strategy = AdaptiveSaturation()
        self.fold = FoldTask(0, self.topology.layouts, "e")
        self.decide = DecideTask(0, self.topology.corridors, strategy, self.topology.checksum(strategy.config), "e")
        self.summaries: list[TrafficMeasured] = []
        self.commands: list[CommandIssued] = []
        self.sends: list[asyncio.Task[CommandAcknowledged]] = []
        self.offsets = {"in": 0, "state": 0}
        self.rng = random.Random(7)
        self.driver: ControllerDriver | None = None
        self._seen = 0

    async def start(self) -> None:
        await self.sim.start()
        self.driver = ControllerDriver(SITE, self.plan, "127.0.0.1", self.sim.port, self.sink, poll_s=0.05,
                                       heartbeat_s=0.05, count_interval_s=60.0, request_timeout_s=0.5,
                                       reconnect_min_s=0.05, reconnect_max_s=0.3, clock=self.clock)
        await self.driver.start()

    def feed(self, value: bytes, key: bytes = b"K01") -> None:
        """One input record into the fold; summaries into the decisions; commands to the driver."""
        now = self.clock()
        offset = self.offsets["in"]
        self.offsets["in"] += 1
        for summary in self.fold.handle("lalin.detector", offset, key, value, now, self.clock):
            assert isinstance(summary.payload, TrafficMeasured)
            self.summaries.append(summary.payload)
            for command in self.decide.handle("lalin.state", self.offsets["state"], summary.key.encode(),
                                              encode_event(summary), now, self.clock):
                assert isinstance(command.payload, CommandIssued)
                self.commands.append(command.payload)
                assert self.driver is not None
                self.sends.append(asyncio.create_task(self.driver.send(command.payload.command_id,
                                                                       command.payload.command)))
            self.offsets["state"] += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Vehicles (about 0.3 veh/s per loop), the driver's events and a camera (its own device, reporting every
        simulated minute whatever the controller does) into the fold, until ``stop``."""
        tick_s = 0.05
        next_camera = self.clock() + timedelta(seconds=60)
        while not stop.is_set():
            if self.clock() >= next_camera:
                await self.sink.emit(CameraObserved(camera_id="CAM-K01-N", approach="N", interval_s=60.0,
                                                    counts=VolumeByClass(motorcycle=40, car=12, heavy=1),
                                                    queue_length_m=30.0), source="camera:CAM-K01-N", key="K01",
                                     event_time=next_camera)
                next_camera += timedelta(seconds=60)
            for k in range(len(SITE.detector_list())):
                if self.rng.random() < 0.3 * tick_s * SPEED:
                    self.sim.detector_pulse(k, 0.4)
            events: list[Envelope] = self.sink.events[self._seen:]
            self._seen += len(events)
            for event in events:
                if event.type in ("DetectorsCounted", "SignalStateReported", "ControllerFaulted", "CommandAcknowledged",
                                  "CameraObserved"):
                    self.feed(encode_event(event))
            await asyncio.sleep(tick_s)

    async def stop(self) -> None:
        for task in self.sends:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self.sends, return_exceptions=True)
        if self.driver is not None:
            await self.driver.stop()
        await self.sim.stop()


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def with_loop(body: Callable[[MiniLoop], Awaitable[None]]) -> None:
    loop = MiniLoop()
    stop = asyncio.Event()
    await loop.start()
    runner = asyncio.create_task(loop.run(stop))
    try:
        await body(loop)
    finally:
        stop.set()
        await runner
        await loop.stop()


def acknowledged(loop: MiniLoop, kind: type) -> list[CommandIssued]:
    done = {a.command_id for a in loop.sink.payloads(CommandAcknowledged) if a.outcome == CommandOutcome.ACKNOWLEDGED}
    return [c for c in loop.commands if isinstance(c.command, kind) and c.command_id in done]


def test_a_controller_that_stops_answering_alarms_falls_back_on_its_own_and_recovers() -> None:
    async def body(loop: MiniLoop) -> None:
        await until(lambda: bool(acknowledged(loop, TimingPlanCommand)), 60, "adaptive control of K01")
        assert loop.sim.state.mode == "central"
        await loop.sim.stop()  # the controller stops answering (its firmware keeps running the street)
        await until(lambda: any(f.fault == FaultKind.COMMS_LOST and f.active
                                for f in loop.sink.payloads(ControllerFaulted)), 10, "the comms_lost alarm")
        issued_before = len(loop.commands)
        await until(lambda: any(not s.controller_reachable for s in loop.summaries), 30, "a summary marking it unreachable")
        await until(lambda: loop.sim.state.mode == "local_tod", 10, "the controller's own fallback (heartbeat lost)")
        assert "central_heartbeat_lost" in loop.sim.state.faults
        assert len(loop.commands) == issued_before  # nothing is decided for an unreachable controller
        await loop.sim.start()  # it answers again
        await until(lambda: any(f.fault == FaultKind.COMMS_LOST and not f.active
                                for f in loop.sink.payloads(ControllerFaulted)), 10, "the alarm cleared")
        before = len(acknowledged(loop, TimingPlanCommand))
        await until(lambda: len(acknowledged(loop, TimingPlanCommand)) > before, 60, "adaptive control again")
        assert loop.sim.state.mode == "central"

    asyncio.run(with_loop(body))


def test_bad_detector_data_is_refused_marks_the_detectors_and_falls_back_to_the_time_of_day_plan() -> None:
    async def body(loop: MiniLoop) -> None:
        await until(lambda: bool(acknowledged(loop, TimingPlanCommand)), 60, "adaptive control of K01")
        # a controller firmware bug: counts with occupancy 7 for both lanes of N_T (the movement of group A)
        bad = [(b'{"type":"DetectorCounted","schema_version":1,"key":"K01","payload":{"detector_id":"K01-N_T-%d",'
                b'"occupancy":7}}' % lane) for lane in (1, 2)]
        for value in bad:
            reasons = classify([RawRecord("lalin.detector", 0, 0, b"K01", value)], loop.clock())
            assert reasons[0].decoded is None and reasons[0].reason  # the archiver dead-letters it, with its reason
            loop.feed(value)
        await until(lambda: any(isinstance(c.command, ModeChangeCommand) for c in loop.commands), 60,
                    "the time-of-day fallback")
        fallback = next(c for c in loop.commands if isinstance(c.command, ModeChangeCommand))
        assert fallback.provenance.rule == "time_of_day_fallback" and "K01-N_T-1" in (fallback.provenance.reason or "")
        flagged = next(s for s in loop.summaries if s.rejected_inputs)
        assert {r.detector_id for r in flagged.rejected_inputs} == {"K01-N_T-1", "K01-N_T-2"}
        assert {d.detector_id for d in flagged.detectors_unhealthy if d.health is DetectorHealth.BAD_DATA} >= {
            "K01-N_T-1", "K01-N_T-2"}
        await until(lambda: bool(acknowledged(loop, ModeChangeCommand)), 30, "the release acknowledged by read-back")
        assert loop.sim.state.mode == "local_tod"

    asyncio.run(with_loop(body))
