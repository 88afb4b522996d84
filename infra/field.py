"""The field devices of ``lalin up``: the fleet's controller simulators and the catalogued VMS
board simulators, and lalin's drivers for them.

With the closed loop (``loop.enabled``) the SUMO twin drives the detectors and obeys the
simulators' signals (:mod:`infra.twin_loop`); without it the detectors see Poisson arrivals at the
demo network's peak flows (split over the detectors of each site). The controllers run at the
runtime's clock speed. The boards stay blank until the automatic VMS (:mod:`infra.vms_loop`, in the closed
loop) or an operator sends a message. The drivers publish what they read — signal states, board
displays, faults, connection changes, detector counts — through the event publisher, so the
device layer's events reach the archive like any other. The boards' OPC UA is secured (the
first ``lalin up`` creates the site PKI in ``<data dir>/pki``, as ``lalin pki init`` does, when
there is none); the controllers speak plain Modbus TCP on loopback here (Modbus/TCP Security is
available to the driver and simulator, see docs/devices.md).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from controllers.payloads import CommandAcknowledged, CommandBody
from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import PublisherSink
from devices.fleet import Fleet, load_fleet
from devices.opcua_server import prepare_address_space_cache
from devices.pki import PkiPaths, init_pki
from devices.vms_driver import ClientCredentials, VmsDriver
from devices.vms_model import load_boards
from devices.vms_sim import VmsBoardSimulator
from infra.generator import EFFECTIVE_LENGTH_M, DemoNetwork, poisson
from infra.publisher import EventPublisher

#: Seconds a loop stays occupied per vehicle: effective length (vehicle + 2 m loop, 4 m for the
#: motorcycle-heavy mix) over the speed at the stop line (~25 km/h = 6.9 m/s).
PULSE_OCCUPIED_S = EFFECTIVE_LENGTH_M / (25 / 3.6)


class BoardCommands:
    """A board's driver as a target of the command executor (messages and blanks of ``lalin.command``)."""

    def __init__(self, driver: VmsDriver) -> None:
        self.driver = driver

    async def send(self, command_id: uuid.UUID, body: CommandBody, *, deadline_s: float | None = None) -> CommandAcknowledged:
        """Carry out one command on the board: exactly one outcome, read back from the board."""
        return await self.driver.execute(command_id, body, deadline_s=deadline_s)


class FieldDevices:
    """Controller simulators on free loopback ports and one driver each, publishing events."""

    def __init__(self, publisher: EventPublisher, network: DemoNetwork, clock: Callable[[], datetime], data_dir: Path, *,
                 count_interval_s: float = 60.0, boards: bool = True, fleet: Fleet | None = None, seed: int = 11,
                 speed: float = 1.0) -> None:
        self.publisher, self.network, self.clock, self.data_dir = publisher, network, clock, data_dir
        self.count_interval_s, self.with_boards, self.speed = count_interval_s, boards, speed
        self.sink = PublisherSink(publisher, clock)
        self.pki_created = False
        self.fleet = fleet or load_fleet()
        self.rng = random.Random(seed)  # noqa: S311 - demo arrivals, not security
        self.simulators: list[ControllerSimulator] = []
        self.drivers: list[ControllerDriver] = []
        self.boards: list[VmsBoardSimulator] = []
        self.board_drivers: list[VmsDriver] = []

    async def start(self) -> None:
        """Start every simulator, then its driver (controllers, then boards)."""
        sink = self.sink
        for site in self.fleet.controllers:
            plan = site.load_plan()
            sim = ControllerSimulator(site, plan, start_at=self.clock(), speed=self.speed)
            await sim.start()
            self.simulators.append(sim)
            # the heartbeat is written in wall seconds and the controller's backup time runs in simulated seconds:
            # at --speed 20 a 15-s backup is 0.75 s of wall time, so beat at least four times within it
            heartbeat_s = max(0.05, min(1.0, site.backup_time_s / self.speed / 4)) if site.backup_time_s else 1.0
            driver = ControllerDriver(site, plan, sim.host, sim.port, sink, count_interval_s=self.count_interval_s,
                                      clock=self.clock, heartbeat_s=heartbeat_s)
            await driver.start()
            self.drivers.append(driver)
        if self.with_boards:
            await self._start_boards(sink)

    async def _start_boards(self, sink: PublisherSink) -> None:
        pki_dir = self.data_dir / "pki"
        if not PkiPaths(pki_dir).ca_certificate.exists():
            init_pki(pki_dir)
            self.pki_created = True
        cache = await prepare_address_space_cache(self.data_dir / "opcua-cache")
        credentials = ClientCredentials.central(pki_dir)
        for spec in load_boards().boards:
            board = VmsBoardSimulator(spec, pki_dir, address_space_cache=cache, clock=self.clock)
            await board.start()
            self.boards.append(board)
            driver = VmsDriver(spec, board.url, sink, credentials, clock=self.clock)
            await driver.start(retry=True)
            self.board_drivers.append(driver)

    def connected(self) -> int:
        """Controller drivers connected now."""
        return sum(d.connected.is_set() for d in self.drivers)

    def boards_connected(self) -> int:
        """Board drivers connected now."""
        return sum(d.connected for d in self.board_drivers)

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
        for board_driver in self.board_drivers:
            await board_driver.stop()
        for board in self.boards:
            await board.stop()
        for driver in self.drivers:
            await driver.stop()
        for sim in self.simulators:
            await sim.stop()

