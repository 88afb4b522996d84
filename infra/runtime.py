"""The embedded runtime behind ``lalin up``: start, supervise and cleanly stop everything.

Order of start: lock the data directory -> embedded PostgreSQL and Tansu (unless
``LALIN_DATABASE__URL`` / ``LALIN_KAFKA__BOOTSTRAP`` name external ones) -> migrations ->
producer and broker epoch (provisioning topics) -> archiver, epoch watchdog, demo generator,
field devices (controller simulators and lalin's Modbus drivers, VMS board simulators and
lalin's OPC UA drivers), the closed loop (twin, stream workers, command executor, automatic
VMS), checkpoints and the live summary. SIGINT/SIGTERM (or ``--duration``) stops them in reverse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import psycopg
from aiokafka.errors import KafkaError

from controllers.archive_plan import RawRecord
from controllers.envelope import encode_event
from controllers.errors import ConfigurationError, LalinError
from controllers.payloads import BrokerRestartDetected, CommandAcknowledged, CommandIssued, CommandOutcome
from controllers.plan_workflow import hold_refusal
from controllers.vms_state import VmsNetwork
from devices.twin.build import STEP_LENGTH_S
from devices.twin.process import TwinProcess
from devices.twin.reports import TripMetrics
from infra import db
from infra.accounts import Accounts, first_account
from infra.archive_store import ArchiveWriter
from infra.archiver import Archiver, ArchiverStats, utc_now
from infra.broker_epoch import EpochWatch
from infra.checkpoints import write_checkpoint
from infra.commands import CommandExecutor, CommandTarget
from infra.embedded.broker import TansuBroker
from infra.embedded.postgres import EmbeddedPostgres
from infra.field import BoardCommands, FieldDevices
from infra.generator import DemoGenerator, load_demo_network
from infra.kafka import start_producer
from infra.loop_report import comparison, report_lines
from infra.plan_service import SCHEDULE_CHECK_S, PlanService
from infra.publisher import EventPublisher
from infra.runfile import RunFile
from infra.settings import Settings
from infra.simclock import WITA, SimClock, hhmm, morning_start, start_after
from infra.stream_process import WorkerProcesses, worker_env
from infra.supervision import Alarms, Restarts, describe, supervise
from infra.topics import TopicCatalogue, load_catalogue
from infra.twin_loop import TwinLoop, seconds_after_local_midnight
from infra.vms_catalogue import check_policy, load_policy, vms_checksum, vms_network
from infra.vms_loop import VmsLoop
from infra.web import Dashboard, LiveView

log = logging.getLogger(__name__)


RUNTIME_SOURCE = "lalin:runtime"
BROKER_KEY = "broker"
CHECKPOINT_INTERVAL_S = 60.0


class Runtime:
    """One ``lalin up``: owns the services, the clients and the background tasks."""

    def __init__(self, settings: Settings, out: TextIO = sys.stdout, clock: Callable[[], datetime] | None = None,
                 *, worker: bool = False) -> None:
        """``worker=True`` is ``lalin archive``: an extra archiver on an existing broker and database
        (no data-directory ownership, no embedded services, no generator)."""
        if worker and not (settings.kafka.bootstrap and settings.database.url):
            raise ConfigurationError("an archiver worker needs a broker and a database: run `lalin up` first, "
                                     "or set LALIN_KAFKA__BOOTSTRAP and LALIN_DATABASE__URL")
        self.loop_on = settings.loop.enabled and not worker
        self.simclock: SimClock | None = None
        if self.loop_on and clock is None:
            start = settings.loop.start or morning_start(datetime.now(WITA).date())
            self.simclock = SimClock.starting(start, settings.loop.speed)
        clock = clock or self.simclock or utc_now
        self.settings, self.out, self.clock, self.worker = settings, out, clock, worker
        self.twin: TwinLoop | None = None
        self.executor: CommandExecutor | None = None
        self.plans: PlanService | None = None
        self.network: VmsNetwork | None = None
        self.vms: VmsLoop | None = None
        self.dashboard: Dashboard | None = None
        self.workers: WorkerProcesses | None = None
        self.report: dict[str, Any] | None = None
        self.data_dir = settings.runtime.data_dir
        self.catalogue: TopicCatalogue = load_catalogue()
        self.runfile = RunFile(self.data_dir)
        self.broker: TansuBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.bootstrap = settings.kafka.bootstrap or ""
        self.database_url = settings.database.url or ""
        self.archiver: Archiver | None = None
        self.generator: DemoGenerator | None = None
        self.field: FieldDevices | None = None
        self.watch: EpochWatch | None = None
        self.publisher: EventPublisher | None = None
        self.epoch = ""
        self.epoch_confirmed_at = clock()
        self.started_at = clock()
        self.restarts_detected = 0
        self.alarms = Alarms(clock, self.say)
        self.archiver_restarts = Restarts()
        self.vms_restarts = Restarts()
        self.executor_restarts = Restarts()
        self.archive_stats = ArchiverStats()  # counters shared by every archiver this runtime starts
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._stop = asyncio.Event()
        self._archiver_stop = asyncio.Event()
        self._archiver_task: asyncio.Task[None] | None = None
        self._last_consumed = 0
        self._bounded = False

    def say(self, line: str) -> None:
        """Print one line for the operator."""
        print(line, file=self.out, flush=True)

    # --- start ------------------------------------------------------------------------
    def _start_services(self) -> None:
        if not self.database_url:
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres", self.settings.database.embedded_database)
            self.postgres.start()
            self.database_url = self.postgres.url
        if not self.bootstrap:
            self.broker = TansuBroker(self.data_dir / "tansu.log")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap

    def describe(self) -> dict[str, Any]:
        """What runs where (also written to runtime.json)."""
        return {
            "started_at": self.started_at.isoformat(),
            "clock": self.simclock.to_env() if self.simclock is not None else None,  # for CLI tools acting on this run
            "web": self.dashboard.url if self.dashboard is not None else None,
            "data_dir": str(self.data_dir.resolve()),
            "kafka": {"bootstrap": self.bootstrap, "embedded": self.broker is not None,
                      "pid": self.broker.pid if self.broker else None, "epoch": self.epoch},
            "database": {"url": self.database_url, "embedded": self.postgres is not None,
                         "pid": self.postgres.pid if self.postgres else None},
        }

    async def start(self) -> None:
        """Bring everything up; on failure, whatever started is stopped again."""
        if not self.worker:
            self.runfile.acquire()
        try:
            self._start_services()
            applied = db.migrate(self.database_url)
            self._conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
            await self._continue_the_clock()
            producer, idempotent = await start_producer(self.settings.kafka, self.bootstrap)
            self.publisher = EventPublisher(producer, self.catalogue)
            await self.publisher.resume_from_archive(self._conn, RUNTIME_SOURCE)
            self.watch = EpochWatch(self.settings.kafka, self.bootstrap, self.catalogue, owner=f"lalin-up:{uuid.uuid4().hex[:8]}")
            await self.watch.start()
            self.epoch = await self.watch.establish(producer, self.clock())
            await self._record_epoch_seen()
            await self._start_archiver()
            if not self.worker:
                self.runfile.publish(self.describe())
            self._announce(applied, idempotent)
        except BaseException:
            await self.stop()
            raise

    async def _continue_the_clock(self) -> None:
        """A simulated clock never re-lives archived time: a restart on the same archive moves on (:func:`start_after`)."""
        if self.simclock is None or self._conn is None:
            return
        cur = await self._conn.execute("SELECT max(event_time) FROM events")
        row = await cur.fetchone()
        last: datetime | None = row[0] if row is not None else None
        start = start_after(self.simclock(), last, chosen=self.settings.loop.start is not None)
        if last is not None and start != self.simclock():
            self.simclock = SimClock.starting(start, self.settings.loop.speed)
            self.clock = self.alarms.clock = self.simclock
            self.epoch_confirmed_at = self.started_at = self.clock()
            self.say(f"  clock     the archive reaches {last.astimezone(WITA):%Y-%m-%d %H:%M} WITA: "
                     f"this run starts {start.astimezone(WITA):%Y-%m-%d %H:%M} WITA")

    def _announce(self, applied: list[str], idempotent: bool) -> None:
        info = self.describe()
        kafka, database = info["kafka"], info["database"]
        kafka_kind = f"embedded Tansu, pid {kafka['pid']}" if kafka["embedded"] else "external"
        db_kind = f"embedded, pid {database['pid']}" if database["embedded"] else "external"
        self.say(f"lalin archive — extra archiver worker (pid {os.getpid()})" if self.worker
                 else f"lalin up — data directory {info['data_dir']}")
        self.say(f"  kafka     {kafka['bootstrap']} ({kafka_kind}), epoch {self.epoch[:12]}, "
                 f"idempotent producer: {'yes' if idempotent else 'no (broker refuses it)'}")
        self.say(f"  postgres  {database['url']} ({db_kind})"
                 f"{', migrations applied: ' + ', '.join(applied) if applied else ''}")
        self.say(f"  topics    {', '.join(t.name for t in self.catalogue.topics)}")

    async def _start_archiver(self) -> None:
        assert self.publisher is not None
        self.archiver = self._new_archiver()
        await self.archiver.start()
        self._archiver_stop = asyncio.Event()
        self._archiver_task = asyncio.create_task(self._supervise_archiver(self._archiver_stop), name="archiver")

    def _new_archiver(self) -> Archiver:
        return Archiver(self.settings, self.bootstrap, self.database_url, self.catalogue, self.epoch,
                        producer=self.publisher.producer if self.publisher else None, clock=self.clock,
                        stats=self.archive_stats)

    async def _supervise_archiver(self, stop: asyncio.Event) -> None:
        """Run the archiver; when it fails in any way, alarm and restart it with backoff (:func:`supervise`).

        A restarted archiver resumes from the offsets stored with the archive, so nothing is lost
        or archived twice; the failures are counted in ``archiver_failures``.
        """
        async def run(stop: asyncio.Event) -> None:
            assert self.archiver is not None
            await self.archiver.run(stop)

        async def restart() -> None:
            self.archiver = self._new_archiver()
            await self.archiver.start()

        async def cleanup() -> None:
            if self.archiver is not None:
                await self.archiver.stop_quietly()

        await supervise("archiver", run=run, restart=restart, cleanup=cleanup, stop=stop, alarms=self.alarms,
                        counts=self.archiver_restarts)

    @property
    def archiver_failures(self) -> int:
        """How often the archiver failed since the start."""
        return self.archiver_restarts.failures

    async def _stop_archiver_task(self, grace_s: float = 5.0) -> None:
        """Ask the archiver to stop after its current batch; cancel it if it is stuck (e.g. on a dead broker).

        Cancelling is safe: a batch's transaction either committed with its offsets or rolls back.
        """
        self._archiver_stop.set()
        if self._archiver_task is not None:
            done, _ = await asyncio.wait({self._archiver_task}, timeout=grace_s)
            if not done:
                self._archiver_task.cancel()
            await asyncio.gather(self._archiver_task, return_exceptions=True)
            self._archiver_task = None

    async def _stop_archiver(self) -> None:
        await self._stop_archiver_task()
        if self.archiver is not None:
            await self.archiver.stop_quietly()
            self.archiver = None

    async def _db(self) -> psycopg.AsyncConnection[Any]:
        """The runtime's own connection, opened again when the database dropped it (a restart, a failover)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                await self._conn.close()
            self._conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        return self._conn

    # --- broker epochs ----------------------------------------------------------------
    async def _record_epoch_seen(self) -> None:
        conn = await self._db()
        now = self.clock()
        await conn.execute(
            """INSERT INTO broker_epochs (epoch, bootstrap, first_seen_at, last_confirmed_at) VALUES (%s, %s, %s, %s)
               ON CONFLICT (epoch) DO UPDATE SET last_confirmed_at = EXCLUDED.last_confirmed_at""",
            (self.epoch, self.bootstrap, now, now))
        self.epoch_confirmed_at = now

    async def check_epoch(self) -> bool:
        """Check the broker still holds our epoch; on a lost log, recover. Returns True if a restart was handled."""
        assert self.watch is not None
        if await self.watch.still_same():
            await self._record_epoch_seen()
            return False
        await self._handle_broker_restart()
        return True

    async def _handle_broker_restart(self) -> None:
        assert self.watch is not None and self.publisher is not None and self._conn is not None
        detected_at, old_epoch = self.clock(), self.epoch
        last_commit = self.archive_stats.last_commit_at
        at_risk_from = min(t for t in (self.epoch_confirmed_at, last_commit) if t is not None)
        await self._stop_archiver()
        self.epoch = await self.watch.establish(self.publisher.producer, detected_at, after_restart=True)
        await self._conn.execute("UPDATE broker_epochs SET ended_at = %s WHERE epoch = %s", (detected_at, old_epoch))
        await self._record_epoch_seen()
        alarm = BrokerRestartDetected(old_epoch=old_epoch, new_epoch=self.epoch, last_confirmed_at=self.epoch_confirmed_at,
                                      detected_at=detected_at, at_risk_from=at_risk_from)
        await self._archive_system_event(alarm, detected_at)
        if self.executor is not None:
            self.executor.epoch = self.epoch  # its offsets of the old log mean nothing in the new one
        if self.vms is not None:
            self.vms.reset_epoch(self.epoch)
        await self._start_archiver()
        self.restarts_detected += 1
        if not self.worker:
            self.runfile.publish(self.describe())
        self.say(f"ALARM broker lost its log (epoch {old_epoch[:12]} -> {self.epoch[:12]}): topics re-provisioned; "
                 f"events acknowledged since {at_risk_from.isoformat()} and not archived may be lost "
                 "(per-stream sequence gaps will name them)")

    async def _archive_system_event(self, payload: BrokerRestartDetected, now: datetime) -> None:
        """Write a runtime event straight into the archive (and publish it for live consumers)."""
        assert self.publisher is not None and self._conn is not None
        topic, event = self.publisher.build(payload, source=RUNTIME_SOURCE, key=BROKER_KEY, event_time=now,
                                            ingest_time=now, event_id=uuid.uuid4())
        limits = self.settings.validation.limits(self.catalogue.topic_of_type)
        record = RawRecord(topic, -1, -1, BROKER_KEY.encode(), encode_event(event))

        def write() -> None:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                ArchiveWriter(conn, "lalin-runtime", limits).write([record], self.epoch, now)

        await asyncio.to_thread(write)
        await self.publisher.send(topic, event)

    # --- background tasks ---------------------------------------------------------------
    async def _every(self, interval_s: float, action: Callable[[], Any]) -> None:
        """Run ``action`` every ``interval_s`` seconds until stopped; any failure raises its alarm and is retried,
        the next success clears it."""
        name = getattr(action, "__name__", "task").lstrip("_").replace("_", " ")
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval_s)
            except TimeoutError:
                try:
                    await action()
                except Exception as err:  # noqa: BLE001 - a periodic task's failure is alarmed and retried
                    self.alarms.raise_alarm(name, f"failed ({describe(err)}); retrying in {interval_s:g} s")
                else:
                    self.alarms.clear(name, "works again")

    async def _verify_archive(self) -> None:
        """The dashboard's periodic verification of the archive (its status on the audit page, an alarm on the map)."""
        if self.dashboard is None:
            return
        status = await self.dashboard.audit.verify_now("lalin", incremental=True)
        if not status.ok:
            self.say(f"ALARM the archive does not verify: {'; '.join(status.faults[:3])}")

    async def _summary(self) -> None:
        stats = self.archive_stats
        now = self.clock()
        rate = (stats.consumed - self._last_consumed) / self.settings.runtime.summary_interval_s
        self._last_consumed = stats.consumed
        generated = f"generated {self.generator.sent} | " if self.generator else ""
        alarms = len(self.alarms.active)
        if self.field is not None:
            alarms += sum(not d.connected.is_set() for d in self.field.drivers) + sum(
                len(d.status.faults) for d in self.field.drivers if d.status is not None and d.connected.is_set())
        generated += f"alarms {alarms} (lalin's own: {len(self.alarms.active)} active, {self.alarms.raised} raised) | "
        if self.field is not None:
            generated += (f"controllers {self.field.connected()}/{len(self.field.drivers)} | "
                          f"boards {self.field.boards_connected()}/{len(self.field.board_drivers)} connected | ")
        if self.twin is not None and self.executor is not None and self.workers is not None:
            metrics = self.twin.stats.metrics
            delay = f"trips {metrics.completed:,}, mean delay {metrics.mean_delay_s:.0f} s, " \
                    f"stops {metrics.mean_stops:.2f}" if metrics is not None and metrics.completed else "trips 0"
            generated += (f"sim {self.clock().astimezone(WITA):%H:%M} WITA (lag {self.twin.stats.lag_s:.0f} s) | {delay} | "
                          f"workers {self.workers.alive()}/{self.workers.count} | "
                          f"{f'vms {self.vms.showing()} board(s) showing | ' if self.vms is not None else ''}"
                          f"commands {self.executor.received} "
                          f"({', '.join(f'{k} {v}' for k, v in sorted(self.executor.outcomes.items())) or 'none yet'}) | ")
            if self.twin.twin.pid is not None:
                await self.twin.metrics()
        self.say(f"[{now:%H:%M:%S}Z] {generated}consumed {rate:,.0f}/s | archived {stats.archived:,} | "
                 f"dead letters {await self._dead_letters():,} | duplicates {stats.duplicates:,} | sequence anomalies "
                 f"{stats.anomalies:,} | broker restarts {self.restarts_detected} | archiver restarts {self.archiver_failures}")

    async def _dead_letters(self) -> int:
        """Dead letters in the archive database, whoever stored them (what ``lalin status`` and the web count)."""
        cur = await (await self._db()).execute("SELECT count(*) FROM dead_letters")
        row = await cur.fetchone()
        return int(row[0]) if row is not None else 0

    async def _checkpoint(self) -> None:
        await write_checkpoint(await self._db(), self.clock())

    async def _generate(self) -> None:
        assert self.publisher is not None and self._conn is not None
        gen = self.settings.generator
        await self.publisher.resume_from_archive(self._conn, "demo:%")
        self.generator = DemoGenerator(self.publisher, load_demo_network(), self.clock, gen.interval_s, gen.invalid_fraction)
        await self.generator.run(self._stop)

    async def _field_devices(self) -> None:
        assert self.publisher is not None and self._conn is not None
        await self.publisher.resume_from_archive(self._conn, "modbus:%")
        await self.publisher.resume_from_archive(self._conn, "opcua:%")
        self.field = FieldDevices(self.publisher, load_demo_network(), self.clock, self.data_dir,
                                  count_interval_s=self.settings.devices.count_interval_s,
                                  boards=self.settings.devices.boards,
                                  speed=self.settings.loop.speed if self.loop_on else 1.0)
        executor_task: asyncio.Task[None] | None = None
        schedules_task: asyncio.Task[None] | None = None
        try:
            await self.field.start()
            self.network = vms_network()  # plans, detectors and boards: read once, shared by the plans, map and VMS
            self.plans = PlanService(self.database_url, self.publisher, self.network.plans,
                                     {site.id: site.plan_number for site in self.field.fleet.controllers}, self.clock)
            await self.plans.load()
            self.executor = self._executor(self.field, self.plans)
            await self.executor.start()
            executor_task = asyncio.create_task(self._supervise_executor(self.field, self.plans), name="executor")
            schedules_task = asyncio.create_task(self._every(SCHEDULE_CHECK_S, self.plans.follow_schedules),
                                                 name="schedules")
            await self._start_dashboard()
            if self.field.pki_created:
                self.say(f"  pki       site CA, device certificates and users created in {self.data_dir / 'pki'}")
            self.say(f"  devices   {len(self.field.simulators)} signal-controller simulators (Modbus TCP "
                     f"{', '.join(f'{s.site.id}:{s.port}' for s in self.field.simulators)}), "
                     f"{len(self.field.boards)} VMS boards (OPC UA SignAndEncrypt "
                     f"{', '.join(f'{b.spec.id}:{b.port}' for b in self.field.boards)}); lalin's drivers started")
            if self.loop_on:
                await self._closed_loop(self.field)
            else:
                await self.field.run(self._stop)
        finally:
            for task in (executor_task, schedules_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if self.executor is not None:
                await self.executor.stop()
            if self.dashboard is not None:
                await self.dashboard.stop()
            await self.field.stop()

    def _executor(self, field: FieldDevices, plans: PlanService) -> CommandExecutor:
        """The command executor on every controller and board driver: expired commands and adaptive timings at a
        held junction end there, reported as their acknowledgements."""
        boards = {d.spec.id for d in field.board_drivers}

        async def conclude(command: CommandIssued, outcome: CommandOutcome, detail: str) -> None:
            ack = CommandAcknowledged(command_id=command.command_id, target=command.target, outcome=outcome, detail=detail)
            protocol = "opcua" if command.target in boards else "modbus"
            await field.sink.emit(ack, source=f"{protocol}:{command.target}", key=command.target, event_time=self.clock(),
                                  causation_id=command.command_id)

        targets: dict[str, CommandTarget] = {d.site.id: d for d in field.drivers}
        targets |= {d.spec.id: BoardCommands(d) for d in field.board_drivers}
        return CommandExecutor(self.settings, self.bootstrap, self.database_url, self.epoch, targets, self.clock,
                               ttl_s=self.settings.loop.command_ttl_s, conclude=conclude,
                               refuse=lambda command: hold_refusal(plans.registry.holds, command))

    async def _start_dashboard(self) -> None:
        """The live dashboard on the field devices and the automatic VMS (docs/dashboard.md)."""
        web_settings = self.settings.web
        if not web_settings.enabled:
            return
        assert self.plans is not None
        accounts = Accounts(self.database_url)
        first_admin = await asyncio.to_thread(first_account, accounts, self.data_dir)
        assert self.network is not None
        view = LiveView(self.network, lambda: self.field, lambda: self.vms, self.clock)
        self.dashboard = Dashboard(view, accounts=accounts, plans=self.plans, database_url=self.database_url,
                                   host=web_settings.host, port=web_settings.port, interval_s=web_settings.interval_s)
        await self.dashboard.start()
        if first_admin is not None:
            self.say(f"  accounts  first account 'admin' (role admin); its password is in {first_admin} (mode 0600): "
                     "add people with `lalin users add NAME --role ROLE`")
        if not self.worker:
            self.runfile.publish(self.describe())
        self.say(f"  web       {self.dashboard.url} (live map of the junctions and boards, alarms)")

    # --- the closed loop ---------------------------------------------------------------------
    async def _closed_loop(self, field: FieldDevices) -> None:
        """The twin drives the detectors and obeys the simulators; stream workers fold and decide; the
        executor hands their commands to the drivers. After a bounded run: the comparison report."""
        loop = self.settings.loop
        begin_s = seconds_after_local_midnight(self.clock())
        incident = None
        if loop.incident_at is not None:
            hours, minutes = loop.incident_at.split(":")
            incident = (int(hours) * 3600.0 + int(minutes) * 60.0, loop.incident_camera, loop.incident_duration_s)
        self.twin = TwinLoop(TwinProcess(seed=loop.seed, begin_s=begin_s, end_s=min(86_399.0, begin_s + 12 * 3600)),
                             {sim.site.id: sim for sim in field.simulators}, field.sink, self.clock, step_s=STEP_LENGTH_S,
                             camera_interval_s=loop.camera_interval_s, incident=incident, say=self.say)
        self.workers = WorkerProcesses(loop.workers, worker_env(self.settings, self.bootstrap, self.database_url,
                                                                self.simclock), self.data_dir / "logs")
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.twin.start()
            self.workers.start()
            if field.board_drivers:
                self.vms = self._vms_loop()
                await self.vms.start()
            start = self.clock().astimezone(WITA)
            self.say(f"  loop      SUMO twin of Jl. Sunset Road from {start:%Y-%m-%d %H:%M} WITA at x{loop.speed:g} "
                     f"(seed {loop.seed}); {loop.workers} stream worker(s) (pids {self.workers.pids()}); "
                     f"strategy adaptive_saturation; "
                     f"{f'automatic VMS on {len(field.board_drivers)} boards; ' if self.vms is not None else ''}"
                     "commands executed through the Modbus and OPC UA drivers")
            tasks = [asyncio.create_task(self.twin.run(self._stop), name="twin"),
                     asyncio.create_task(self._supervise_workers(), name="workers")]
            if self.vms is not None:
                tasks.append(asyncio.create_task(self._supervise_vms(), name="vms"))
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            live = await self.twin.metrics() if self.twin.twin.pid is not None else None
            await asyncio.to_thread(self.workers.stop)  # SIGTERM, then each writes its final snapshot
            if self.vms is not None:
                await self.vms.stop()
            await self.twin.stop()
            if live is not None and self._bounded and loop.baseline:
                await self._compare(begin_s, live)

    def _vms_loop(self) -> VmsLoop:
        """The automatic-VMS loop on the catalogued policy, boards and plans (checked before it starts)."""
        assert self.publisher is not None
        policy, network = load_policy(), self.network or vms_network()
        check_policy(policy, network)
        return VmsLoop(self.settings, self.bootstrap, self.database_url, self.epoch, policy, network,
                       vms_checksum(policy, network), self.publisher.producer, self.clock, say=self.say)

    async def _supervise_vms(self) -> None:
        """Run the VMS loop; when it fails in any way, alarm and start it again from its snapshot."""
        async def run(stop: asyncio.Event) -> None:
            assert self.vms is not None
            await self.vms.run(stop)

        async def restart() -> None:
            self.vms = self._vms_loop()
            await self.vms.start()

        async def cleanup() -> None:
            if self.vms is not None:
                await self.vms.stop()

        await supervise("VMS loop", run=run, restart=restart, cleanup=cleanup, stop=self._stop, alarms=self.alarms,
                        counts=self.vms_restarts, backoff_s=1.0)

    async def _supervise_executor(self, field: FieldDevices, plans: PlanService) -> None:
        """Run the command executor; when it fails in any way, alarm and start it again (its guard table keeps
        every command to one hand-over)."""
        async def run(stop: asyncio.Event) -> None:
            assert self.executor is not None
            await self.executor.run(stop)

        async def restart() -> None:
            self.executor = self._executor(field, plans)
            await self.executor.start()

        async def cleanup() -> None:
            if self.executor is not None:
                await self.executor.stop()

        await supervise("command executor", run=run, restart=restart, cleanup=cleanup, stop=self._stop,
                        alarms=self.alarms, counts=self.executor_restarts)

    async def _supervise_workers(self) -> None:
        """Restart stream workers that died (alarm); clear the alarm once every worker runs again."""
        assert self.workers is not None
        while not self._stop.is_set():
            restarted = self.workers.supervise()
            for k, code in restarted:
                self.alarms.raise_alarm(f"stream worker {k}", f"died (exit code {code}); restarted (pids "
                                        f"{self.workers.pids()}): it resumes from the snapshots and offsets in PostgreSQL")
            if not restarted and self.workers.alive() == self.workers.count:
                for k in range(self.workers.count):
                    self.alarms.clear(f"stream worker {k}", "running again")
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
            except TimeoutError:
                continue

    async def _compare(self, begin_s: float, live: TripMetrics) -> None:
        """Run the same demand under the fixed time-of-day plans and print (and keep) the comparison."""
        from devices.twin.process import run_fixed_time_in_child

        end_s = live.time_s
        self.say(f"baseline: the same demand {hhmm(begin_s)}-{hhmm(end_s)} WITA under the fixed time-of-day plans ...")
        date = (self.simclock.start if self.simclock else self.clock()).astimezone(WITA).date()
        incident = self.twin.incident if self.twin is not None and self.twin.stalled is not None else None
        fixed = await run_fixed_time_in_child(seed=self.settings.loop.seed, begin_s=begin_s, end_s=end_s, date=date,
                                              incident=incident)
        self.report = comparison(live, fixed, self.executor, begin_s, end_s)
        for line in report_lines(self.report):
            self.say(line)
        (self.data_dir / "report.json").write_text(json.dumps(self.report, indent=2) + "\n")

    async def run(self, duration_s: float | None = None) -> None:
        """Run until SIGINT/SIGTERM or ``duration_s`` seconds; then stop everything."""
        self._bounded = duration_s is not None
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        tasks = [asyncio.create_task(self._every(self.settings.kafka.broker_check_interval_s, self.check_epoch)),
                 asyncio.create_task(self._every(self.settings.runtime.summary_interval_s, self._summary)),
                 asyncio.create_task(self._every(CHECKPOINT_INTERVAL_S, self._checkpoint)),
                 asyncio.create_task(self._every(self.settings.web.audit_interval_s, self._verify_archive))]
        if self.settings.generator.enabled and not self.worker and not self.loop_on:
            tasks.append(asyncio.create_task(self._generate()))
        if self.settings.devices.enabled and not self.worker:
            tasks.append(asyncio.create_task(self._field_devices()))
        try:
            if duration_s is None:
                await self._stop.wait()
            else:
                await asyncio.wait_for(self._stop.wait(), timeout=duration_s)
        except TimeoutError:
            pass
        finally:
            self._stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    log.error("background task failed: %r", result)
            await self._drain_archiver()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()

    async def _drain_archiver(self, timeout_s: float = 15.0) -> None:
        """After the producers stopped, archive what the broker still holds (an embedded broker forgets it)."""
        await self._stop_archiver_task()
        if self.archiver is None or self.archiver.consumer is None:
            return
        empty, deadline = 0, asyncio.get_running_loop().time() + timeout_s
        try:
            while empty < 2 and asyncio.get_running_loop().time() < deadline:
                empty = empty + 1 if await self.archiver.run_once(timeout_ms=300) == 0 else 0
        except (LalinError, psycopg.Error, KafkaError, OSError) as err:
            self.say(f"ALARM could not archive the last records before stopping: {err}")

    # --- stop -----------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop clients, then the embedded services, then release the data directory."""
        self._stop.set()
        await self._stop_archiver()
        if self._conn is not None and not self._conn.closed:
            try:
                await write_checkpoint(self._conn, self.clock())
            except psycopg.Error as err:
                log.warning("final checkpoint failed: %s", err)
            await self._conn.close()
        if self.watch is not None:
            await self.watch.stop()
        if self.publisher is not None:
            await self.publisher.producer.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if not self.worker:
            self.runfile.release()
        self.say("lalin stopped: every child process ended")

