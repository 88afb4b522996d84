"""The world of ``lalin up``: the SUMO twin coupled to the controller simulators and the cameras.

Every tick the twin (a child process, :class:`devices.twin.process.TwinProcess`) is stepped up
to the simulated clock. Before each step every junction's signals are set to what its
*controller simulator* shows — so a command from lalin reaches the street only through the
Modbus register map — and after it every vehicle that entered a loop becomes a detector pulse
in that controller (the driver then reads the counters like a real ATCS would): the stop-line
loops and the advance loops of the coordinated approaches alike, each at its register index
(the fleet's ``detector_list()`` order, advance loops after the stop-line ones). Every
``camera_interval_s`` simulated seconds each approach camera reports counts by class, the queue
and incidents as ``CameraObserved`` (source ``camera:<id>``).

The loop never decides anything: it is the field.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from controllers.payloads import CameraObserved, Incident, IncidentKind, VolumeByClass
from devices.controller_sim import ControllerSimulator
from devices.events import EventSink
from devices.twin.process import TwinProcess
from devices.twin.reports import TripMetrics
from devices.twin.sumo_files import DEMAND_BEGIN_S
from infra.simclock import WITA

log = logging.getLogger(__name__)


def seconds_after_local_midnight(at: datetime) -> float:
    """Seconds after midnight WITA (the twin's time base)."""
    local = at.astimezone(WITA)
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


@dataclass
class TwinStats:
    """What the coupling did: steps, pulses, camera reports, and how far the twin lags the clock (simulated s)."""

    steps: int = 0
    pulses: int = 0
    camera_reports: int = 0
    lag_s: float = 0.0
    metrics: TripMetrics | None = None


#: Seconds into a fold window (60 s) at which a camera interval's middle falls: the fold files a report under the
#: window holding its middle, and this leaves the report 20 s of simulated time (the fold's grace is 10 s) to arrive
#: before that window closes. Unaligned, a report of a 60-s interval made late in a minute is always late.
CAMERA_MIDDLE_INTO_WINDOW_S = 20.0
FOLD_WINDOW_S = 60.0


def first_camera_report_s(time_s: float, interval_s: float) -> float:
    """The first camera report after one interval from ``time_s`` (s), phased so that every report's interval middle
    falls ``CAMERA_MIDDLE_INTO_WINDOW_S`` into a fold window (for intervals that divide or are multiples of 60 s)."""
    phase = (CAMERA_MIDDLE_INTO_WINDOW_S + interval_s / 2) % FOLD_WINDOW_S
    earliest = time_s + interval_s
    return math.ceil((earliest - phase) / FOLD_WINDOW_S) * FOLD_WINDOW_S + phase


class TwinLoop:
    """Steps ``twin`` with the simulators' aspects and feeds their detectors; cameras report through ``sink``."""

    def __init__(self, twin: TwinProcess, simulators: Mapping[str, ControllerSimulator], sink: EventSink,
                 clock: Callable[[], datetime], *, step_s: float, camera_interval_s: float = 60.0,
                 tick_s: float = 0.05, incident: tuple[float, str, float] | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        """``incident``: (seconds after local midnight, camera id, duration s) of a vehicle stalling in the twin."""
        self.twin, self.simulators, self.sink, self.clock = twin, simulators, sink, clock
        self.step_s, self.camera_interval_s, self.tick_s = step_s, camera_interval_s, tick_s
        self.incident, self.say = incident, say
        self.stalled: str | None = None
        self.stats = TwinStats()
        self._index = {d.id: (site_id, k) for site_id, sim in simulators.items()
                       for k, d in enumerate(sim.site.detector_list())}
        self._cameras: list[str] = []
        self._next_camera_s = math.inf
        self._time_s = 0.0

    async def start(self) -> None:
        """Start the twin's child process and learn its cameras."""
        await self.twin.start()
        self._cameras = sorted(await self.twin.cameras())
        self._time_s = float(self.twin.world_options.get("begin_s", DEMAND_BEGIN_S))
        self._next_camera_s = first_camera_report_s(self._time_s, self.camera_interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the twin at the clock until ``stop`` is set."""
        while not stop.is_set():
            await self.catch_up()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
            except TimeoutError:
                continue

    async def catch_up(self, max_steps: int = 400) -> None:
        """Step the twin up to the clock (at most ``max_steps`` now, so the event loop stays responsive)."""
        target = seconds_after_local_midnight(self.clock())
        steps = 0
        while self._time_s + self.step_s <= target + 1e-9 and steps < max_steps:
            aspects = {site_id: dict(sim.aspects()) for site_id, sim in self.simulators.items()}
            report = await self.twin.step(aspects)
            self._time_s = report.time_s
            steps += 1
            for detector_id, seen in report.detectors.items():
                where = self._index.get(detector_id)
                if where is None:
                    continue
                sim = self.simulators[where[0]]
                if seen.entries:
                    share = seen.occupied_s / len(seen.entries)
                    for _ in seen.entries:
                        sim.detector_pulse(where[1], share)
                    self.stats.pulses += len(seen.entries)
                elif seen.occupied_s > 0:
                    sim.detector_occupied(where[1], seen.occupied_s)
            if self.incident is not None and self.stalled is None and self._time_s >= self.incident[0]:
                self.stalled = await self.twin.stall_vehicle(self.incident[1], self.incident[2])  # None: no vehicle yet
                if self.stalled is not None and self.say is not None:
                    self.say(f"INCIDENT (simulated) vehicle {self.stalled} stalls on {self.incident[1]} for "
                             f"{self.incident[2]:.0f} s: the camera reports it")
            if self._time_s >= self._next_camera_s:
                await self._cameras_report()
                self._next_camera_s += self.camera_interval_s
        self.stats.steps += steps
        self.stats.lag_s = max(0.0, target - self._time_s)

    async def _cameras_report(self) -> None:
        at = self.clock()
        for camera_id in self._cameras:
            reading = await self.twin.camera_observation(camera_id)
            site_id, approach = _camera_site(camera_id)
            if site_id not in self.simulators or reading.interval_s <= 0:
                continue
            incident = Incident(kind=IncidentKind.STALLED_VEHICLE, confidence=0.9) if reading.incident else None
            payload = CameraObserved(camera_id=camera_id, approach=approach, interval_s=min(reading.interval_s, 3600.0),
                                     counts=VolumeByClass(motorcycle=reading.motorcycle, car=reading.car, heavy=reading.heavy),
                                     queue_length_m=min(reading.queue_m, 10_000.0), incident=incident)
            await self.sink.emit(payload, source=f"camera:{camera_id}", key=site_id, event_time=at)
            self.stats.camera_reports += 1

    async def metrics(self) -> TripMetrics:
        """The twin's trip metrics so far (mean delay, stops, completed trips)."""
        self.stats.metrics = await self.twin.metrics()
        return self.stats.metrics

    async def stop(self) -> None:
        """End the twin's child process."""
        await self.twin.close()


def _camera_site(camera_id: str) -> tuple[str, str]:
    """``CAM-K01-N`` -> (``K01``, ``N``)."""
    parts = camera_id.split("-")
    if len(parts) < 3:
        raise ValueError(f"camera id {camera_id!r} is not CAM-<controller>-<approach>")
    return "-".join(parts[1:-1]), parts[-1]
