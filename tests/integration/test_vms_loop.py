"""The automatic VMS on real parts: a Tansu broker, PostgreSQL, two OPC UA board simulators, lalin's
drivers, the command executor and the VMS loop. An incident in the traffic state reaches the board
upstream of it; when that board stops answering the alarm is raised and the message moves to the
next board upstream; an operator's message (``lalin vms send``) outranks it until cancelled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from controllers.payloads import IncidentKind
from devices.events import PublisherSink, utc_now
from devices.vms_driver import ClientCredentials, VmsDriver
from devices.vms_model import BoardCatalogue, load_boards
from devices.vms_sim import VmsBoardSimulator
from infra.broker_epoch import EpochWatch
from infra.commands import CommandExecutor, CommandTarget
from infra.field import BoardCommands
from infra.fold_store import load_snapshot
from infra.kafka import start_producer
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topics import load_catalogue
from infra.vms_catalogue import load_policy, vms_checksum, vms_network
from infra.vms_loop import VMS_GROUP, VmsLoop
from tests.helpers import wait_until
from tests.unit.test_vms_policy import summary

pytestmark = pytest.mark.integration
LALIN = [sys.executable, "-m", "infra"]
UPSTREAM, NEXT = "vms-sunset-03", "vms-sunset-01"  # the nearest northbound board before K03, and the one before it


def first_line(board: VmsBoardSimulator) -> str | None:
    shown = board.state.shown
    return shown.pages[0].split("\n")[0] if shown is not None else None


def test_an_incident_reaches_the_upstream_board_moves_on_when_it_stops_answering_and_an_operator_outranks_it(
        settings: Settings, vms_pki: Path, opcua_address_space: Path) -> None:
    bootstrap, database_url = settings.kafka.bootstrap, settings.database.url
    assert bootstrap is not None and database_url is not None
    catalogue = BoardCatalogue(boards=[load_boards().board(UPSTREAM), load_boards().board(NEXT)])
    network = vms_network(catalogue=catalogue)
    policy = load_policy()
    said: list[str] = []

    async def scenario() -> None:
        producer, _ = await start_producer(settings.kafka, bootstrap)
        watch = EpochWatch(settings.kafka, bootstrap, load_catalogue(), owner="test")
        await watch.start()
        epoch = await watch.establish(producer, utc_now())
        await watch.stop()
        publisher = EventPublisher(producer, load_catalogue())
        sink = PublisherSink(publisher)
        boards = {spec.id: VmsBoardSimulator(spec, vms_pki, render_delay_s=0.05, address_space_cache=opcua_address_space)
                  for spec in catalogue.boards}
        drivers: dict[str, VmsDriver] = {}
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        executor: CommandExecutor | None = None
        loop: VmsLoop | None = None
        try:
            for spec in catalogue.boards:
                await boards[spec.id].start()
                drivers[spec.id] = VmsDriver(spec, boards[spec.id].url, sink, ClientCredentials.central(vms_pki),
                                             reconnect_max_delay_s=0.5)
                await drivers[spec.id].start()
            targets: dict[str, CommandTarget] = {b: BoardCommands(d) for b, d in drivers.items()}
            executor = CommandExecutor(settings, bootstrap, database_url, epoch, targets, utc_now)
            await executor.start()
            loop = VmsLoop(settings, bootstrap, database_url, epoch, policy, network, vms_checksum(policy, network),
                           producer, utc_now, say=said.append)
            await loop.start()
            tasks = [asyncio.create_task(executor.run(stop)), asyncio.create_task(loop.run(stop))]

            async def report(minute: datetime, incident: bool) -> None:
                stalled = ("S", IncidentKind.CRASH, 0.95) if incident else None
                topic, event = publisher.build(summary("K03", minute, incident=stalled), source="lalin:fold:test",
                                               key="jl-sunset-road", event_time=minute, ingest_time=utc_now(),
                                               event_id=uuid.uuid4())
                await (await publisher.send(topic, event))

            def shows(board: str, text: str) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return first_line(boards[board]) == text
                return check

            now = datetime.now(UTC).replace(second=0, microsecond=0)
            await report(now, incident=True)
            await wait_until(shows(UPSTREAM, "KECELAKAAN"), 30, f"the crash on {UPSTREAM}")
            assert first_line(boards[NEXT]) is None, "one board (max_boards 1): the nearest"
            # the upstream board stops answering: comms_lost, an alarm, and the message moves to the next board
            await boards[UPSTREAM].stop()
            await wait_until(shows(NEXT, "KECELAKAAN"), 30, f"the crash moved to {NEXT}")
            assert any(line.startswith(f"ALARM VMS {UPSTREAM} out of use (fault comms_lost)") for line in said), said
            # an operator's message outranks it; a text that does not fit is refused before anything is sent
            env = {k: v for k, v in os.environ.items() if not k.startswith("LALIN_")} | {
                "LALIN_KAFKA__BOOTSTRAP": bootstrap, "LALIN_OPERATOR": "made"}
            common = ["--database-url", database_url]
            refused = await asyncio.to_thread(subprocess.run, [*LALIN, "vms", "send", *common, NEXT,
                                                               "JALAN INI TERLALU PANJANG UNTUK PAPAN", "--until", "10m",
                                                               "--reason", "tes"], capture_output=True, text=True, env=env)
            assert refused.returncode == 2 and "does not fit" in refused.stderr, refused.stderr
            sent = await asyncio.to_thread(subprocess.run, [*LALIN, "vms", "send", *common, NEXT,
                                                            "JALAN DITUTUP/PUTAR BALIK|ROAD CLOSED/TURN BACK", "--until",
                                                            "10m", "--reason", "upacara adat"],
                                           capture_output=True, text=True, env=env)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            await wait_until(shows(NEXT, "JALAN DITUTUP"), 30, "the operator's message")
            shown = boards[NEXT].state.shown
            assert shown is not None and shown.priority == policy.priorities.operator
            cancelled = await asyncio.to_thread(subprocess.run, [*LALIN, "vms", "cancel", *common, NEXT, "--reason",
                                                                 "upacara selesai"], capture_output=True, text=True, env=env)
            assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
            await report(now + timedelta(minutes=1), incident=True)  # the crash is still there
            await wait_until(shows(NEXT, "KECELAKAAN"), 30, "the automatic message back after the cancel")
            state = loop.policy.state.showing[NEXT]
            assert state.cause == "incident:K03:S" and state.category == "incident"
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if loop is not None:
                await loop.stop()
            if executor is not None:
                await executor.stop()
            for driver in drivers.values():
                await driver.stop()
            for board in boards.values():
                await board.stop()
            await producer.stop()

    asyncio.run(scenario())

    async def stored() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            snapshot = await load_snapshot(conn, VMS_GROUP, 0, "any")
            assert snapshot is not None and snapshot.emitted > 0  # state and offsets stored together

    asyncio.run(stored())
