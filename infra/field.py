"""The field devices of ``lalin up``: the fleet's controller simulators and lalin's drivers for them.

Until the SUMO twin of the closed loop (issue 5) drives them, the simulators run their local
time-of-day plans and their detectors see Poisson arrivals at the demo network's peak flows
(split over the detectors of each site). The drivers publish what they read — signal states,
faults, connection changes, detector counts — through the event publisher, so the device
layer's events reach the archive like any other.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime

from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import PublisherSink
from devices.fleet import Fleet, load_fleet
from infra.generator import EFFECTIVE_LENGTH_M, DemoNetwork, poisson
from infra.publisher import EventPublisher

log = logging.getLogger(__name__)
#: Seconds a loop stays occupied per vehicle: effective length (vehicle + 2 m loop, 4 m for the
#: motorcycle-heavy mix) over the speed at the stop line (~25 km/h = 6.9 m/s).
PULSE_OCCUPIED_S = EFFECTIVE_LENGTH_M / (25 / 3.6)


class FieldDevices:
    """Controller simulators on free loopback ports and one driver each, publishing events."""

    def __init__(self, publisher: EventPublisher, network: DemoNetwork, clock: Callable[[], datetime], *,
                 count_interval_s: float = 60.0, fleet: Fleet | None = None, seed: int = 11) -> None:
        self.publisher, self.network, self.clock = publisher, network, clock
        self.count_interval_s = count_interval_s
        self.fleet = fleet or load_fleet()
        self.rng = random.Random(seed)  # noqa: S311 - demo arrivals, not security
        self.simulators: list[ControllerSimulator] = []
        self.drivers: list[ControllerDriver] = []

    async def start(self) -> None:
        """Start every simulator, then its driver."""
        sink = PublisherSink(self.publisher, self.clock)
        for site in self.fleet.controllers:
            plan = site.load_plan()
            sim = ControllerSimulator(site, plan, start_at=self.clock())
            await sim.start()
            self.simulators.append(sim)
            driver = ControllerDriver(site, plan, sim.host, sim.port, sink, count_interval_s=self.count_interval_s,
                                      clock=self.clock)
            await driver.start()
            self.drivers.append(driver)

    def connected(self) -> int:
        """Drivers connected now."""
        return sum(d.connected.is_set() for d in self.drivers)

    async def run(self, stop: asyncio.Event, step_s: float = 0.5) -> None:
        """Feed detector pulses every ``step_s`` seconds until ``stop`` is set."""
        flows = {site.id: site.peak_veh_h for site in self.network.sites}
        while not stop.is_set():
            for sim in self.simulators:
                detectors = sim.site.detector_list()
                if not detectors:
                    continue
                per_detector_veh_s = flows.get(sim.site.id, 600.0) * self.rng.uniform(0.6, 1.1) / 3600.0 / len(detectors)
                for index in range(len(detectors)):
                    for _ in range(poisson(self.rng, per_detector_veh_s * step_s)):
                        sim.detector_pulse(index, PULSE_OCCUPIED_S)
            try:
                await asyncio.wait_for(stop.wait(), timeout=step_s)
            except TimeoutError:
                continue

    async def stop(self) -> None:
        """Stop the drivers, then the simulators."""
        for driver in self.drivers:
            await driver.stop()
        for sim in self.simulators:
            await sim.stop()

