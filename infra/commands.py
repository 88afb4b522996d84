"""The command executor: ``lalin.command`` records to the device drivers, each command at most once.

It consumes ``lalin.command`` in its own consumer group (offsets in PostgreSQL per broker epoch,
like the archiver's), and hands every ``CommandIssued`` whose target it drives to that
target's driver — one queue and one sender per target, so a timing waiting for its cycle
boundary at one junction never delays another. Before a command is handed on, its id is
recorded in ``command_executions`` (the guard: a record delivered again after a restart is
never sent twice); the driver then ends it in exactly one ``CommandAcknowledged``. A command
older than ``ttl_s`` when it arrives (a backlog after an outage) is not sent: it ends
``timed_out`` ("expired"), since a stale timing must not reach the street. A command that ``refuse``
names a reason for (a junction held on a deployed plan refuses the adaptive strategy's timings:
:func:`controllers.plan_workflow.hold_refusal`) is not sent either: it ends ``rejected`` with that reason.

A record that is not a valid ``CommandIssued`` of this topic (:func:`controllers.inbound.decode_record`)
is left to the archiver, which dead-letters it; a valid one the executor fails on (a defect) is
dead-lettered here, reason ``execution_failed``, and the executor goes on. Database and broker
errors are not a record's fault: they end :meth:`CommandExecutor.run` for its supervisor to restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import psycopg
from aiokafka import ConsumerRebalanceListener, TopicPartition

from controllers.archive_plan import DeadLetter
from controllers.errors import InvalidEvent
from controllers.inbound import decode_record
from controllers.payloads import CommandAcknowledged, CommandBody, CommandIssued, CommandOutcome
from infra.archive_store import load_offsets
from infra.deadletters import store_dead_letter
from infra.kafka import make_consumer
from infra.settings import Settings
from infra.topics import load_catalogue

log = logging.getLogger(__name__)
COMMAND_TOPIC = "lalin.command"
EXECUTOR_GROUP = "lalin-commands"


class CommandTarget(Protocol):
    """What the executor needs of a driver."""

    async def send(self, command_id: Any, body: CommandBody, *, deadline_s: float | None = None) -> CommandAcknowledged:
        """Carry out one command; exactly one outcome."""
        ...


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, executor: CommandExecutor) -> None:
        self.executor = executor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Offsets are stored after every batch: nothing to flush."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.executor.seek_to_stored(assigned)


class CommandExecutor:
    """Consumes ``lalin.command`` and drives ``targets`` (see the module docstring)."""

    def __init__(self, settings: Settings, bootstrap: str, database_url: str, epoch: str,
                 targets: Mapping[str, CommandTarget], clock: Callable[[], datetime], *, ttl_s: float = 300.0,
                 conclude: Callable[[CommandIssued, CommandOutcome, str], Awaitable[Any]] | None = None,
                 refuse: Callable[[CommandIssued], str | None] | None = None) -> None:
        """``conclude(command, outcome, detail)`` reports a command the executor ends itself (expired, refused) as
        its ``CommandAcknowledged``; ``refuse(command)`` gives a reason not to send it, or None."""
        self.settings, self.bootstrap, self.database_url, self.epoch = settings, bootstrap, database_url, epoch
        self.targets, self.clock, self.ttl_s, self.conclude, self.refuse = targets, clock, ttl_s, conclude, refuse
        self.limits = settings.validation.limits(load_catalogue().topic_of_type)
        self.consumer = make_consumer(settings.kafka, bootstrap, EXECUTOR_GROUP)
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._queues: dict[str, asyncio.Queue[CommandIssued]] = {t: asyncio.Queue() for t in targets}
        self._senders: list[asyncio.Task[None]] = []
        self.received = self.sent = self.expired = self.repeated = self.refused = self.dead_lettered = 0
        self.outcomes: dict[str, int] = {}

    async def start(self) -> None:
        """Connect, join the group and start one sender per target."""
        self._db = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        self.consumer.subscribe([COMMAND_TOPIC], listener=_Seek(self))
        await self.consumer.start()
        self._senders = [asyncio.create_task(self._send_loop(t), name=f"commands-{t}") for t in self.targets]

    async def seek_to_stored(self, assigned: set[TopicPartition]) -> None:
        """Position each assigned partition at its stored offset (0 in a new broker epoch)."""
        assert self._db is not None
        stored = await load_offsets(self._db, EXECUTOR_GROUP, self.epoch, [(tp.topic, tp.partition) for tp in assigned])
        for tp in assigned:
            self.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set."""
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    await self._take_guarded(tp, record.offset, record.key, record.value or b"")
                if records:
                    await self._store_offset(tp, records[-1].offset + 1)

    async def _take_guarded(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes) -> None:
        """:meth:`_take`, with the fault barrier: a record it fails on is dead-lettered, and the executor goes on."""
        try:
            await self._take(tp.topic, key, value)
        except (psycopg.Error, OSError):
            raise  # the database's trouble, not the record's: the supervisor restarts the executor
        except Exception as err:  # noqa: BLE001 - the fault barrier: one record's defect must not stop the executor
            self.dead_lettered += 1
            log.error("lalin.command offset %d: dead-lettered: %r", offset, err)
            assert self._db is not None
            await store_dead_letter(self._db, DeadLetter(tp.topic, tp.partition, offset, key, value, "execution_failed",
                                                         f"{type(err).__name__}: {str(err)[:300]}"), self.epoch, self.clock())

    async def _take(self, topic: str, key: bytes | None, value: bytes) -> None:
        now = self.clock()
        try:
            event = decode_record(topic, key, value, now, self.limits).event
        except InvalidEvent as err:
            log.warning("%s: a record the archiver dead-letters: %s", topic, err)
            return
        command = event.payload
        if not isinstance(command, CommandIssued) or command.target not in self.targets:
            return  # another executor's target (a VMS board, another site): not ours
        self.received += 1
        assert self._db is not None
        cur = await self._db.execute(
            """INSERT INTO command_executions (command_id, target, issued_at, received_at) VALUES (%s, %s, %s, %s)
               ON CONFLICT (command_id) DO NOTHING RETURNING command_id""",
            (command.command_id, command.target, event.event_time, now))
        if await cur.fetchone() is None:
            self.repeated += 1  # delivered again after a restart: handed on once already
            return
        age_s = (now - event.event_time).total_seconds()
        if age_s > self.ttl_s:
            self.expired += 1
            await self._end_here(command, CommandOutcome.TIMED_OUT, f"expired: {age_s:.0f} s old when received "
                                 f"(limit {self.ttl_s:g} s); not sent")
            return
        refusal = self.refuse(command) if self.refuse is not None else None
        if refusal is not None:
            self.refused += 1
            await self._end_here(command, CommandOutcome.REJECTED, refusal)
            return
        self._queues[command.target].put_nowait(command)

    async def _end_here(self, command: CommandIssued, outcome: CommandOutcome, detail: str) -> None:
        """End a command the executor does not send: recorded, and reported as its acknowledgement."""
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1
        await self._finish(command.command_id, outcome, detail)
        if self.conclude is not None:
            await self.conclude(command, outcome, detail[:500])

    async def _send_loop(self, target: str) -> None:
        queue = self._queues[target]
        while True:
            command = await queue.get()
            ack = await self.targets[target].send(command.command_id, command.command)
            self.sent += 1
            self.outcomes[ack.outcome.value] = self.outcomes.get(ack.outcome.value, 0) + 1
            await self._finish(command.command_id, ack.outcome, ack.detail)

    async def _finish(self, command_id: Any, outcome: CommandOutcome, detail: str) -> None:
        assert self._db is not None
        await self._db.execute("UPDATE command_executions SET outcome = %s, detail = %s, finished_at = %s "
                               "WHERE command_id = %s", (outcome.value, detail[:500], self.clock(), command_id))

    async def _store_offset(self, tp: TopicPartition, next_offset: int) -> None:
        assert self._db is not None
        await self._db.execute(
            """INSERT INTO consumer_offsets (group_id, topic, kafka_partition, broker_epoch, next_offset, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (group_id, topic, kafka_partition) DO UPDATE SET broker_epoch = EXCLUDED.broker_epoch,
                   next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at""",
            (EXECUTOR_GROUP, tp.topic, tp.partition, self.epoch, next_offset, self.clock()))

    async def stop(self) -> None:
        """Stop the senders (a command under way ends timed_out in its driver) and leave the group."""
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders = []
        await self.consumer.stop()
        if self._db is not None:
            await self._db.close()
            self._db = None
