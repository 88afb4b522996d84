"""The archiver: consumes every archived topic and writes it to PostgreSQL, exactly once.

Loop: fetch a batch with ``getmany`` -> plan and write it (events, dead letters, chain heads
and the offsets it covers, one transaction) -> forward dead letters to the dead-letter topic.
On partition assignment it seeks to the offsets stored in PostgreSQL for the current broker
epoch (offset 0 in a new epoch). It never commits offsets to Kafka as a source of truth.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from controllers.archive_plan import BatchPlan, Classified, RawRecord, classify
from infra.archive_store import ArchiveWriter, load_offsets
from infra.kafka import make_consumer
from infra.settings import Settings
from infra.topics import DEADLETTER_TOPIC, TopicCatalogue

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")


def utc_now() -> datetime:
    """The wall clock, as an aware UTC datetime (the shells' clock; the core never reads it)."""
    return datetime.now(UTC)


@dataclass
class ArchiverStats:
    """Counters since the archiver started (records)."""

    consumed: int = 0
    archived: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    anomalies: int = 0
    batches: int = 0
    last_commit_at: datetime | None = None
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, plan: BatchPlan, consumed: int, now: datetime) -> None:
        """Count one written batch."""
        self.consumed += consumed
        self.archived += len(plan.rows)
        self.dead_lettered += len(plan.dead_letters)
        self.duplicates += plan.duplicates
        self.anomalies += sum(1 for r in plan.rows if r.event.type == "SequenceAnomalyDetected")
        self.batches += 1
        self.last_commit_at = now
        for dead in plan.dead_letters:
            self.by_reason[dead.reason] = self.by_reason.get(dead.reason, 0) + 1


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, archiver: Archiver) -> None:
        self.archiver = archiver

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to flush: every written batch already committed its offsets."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.archiver.seek_to_stored(assigned)


class Archiver:
    """One member of the archivers' consumer group (``LALIN_KAFKA__ARCHIVER_GROUP``, default ``lalin-archiver``)."""

    def __init__(self, settings: Settings, bootstrap: str, database_url: str, catalogue: TopicCatalogue,
                 epoch: str, producer: AIOKafkaProducer | None = None, clock: Clock = utc_now,
                 stats: ArchiverStats | None = None) -> None:
        self.settings, self.bootstrap, self.database_url = settings, bootstrap, database_url
        self.catalogue, self.epoch, self.producer, self.clock = catalogue, epoch, producer, clock
        self.stats = stats if stats is not None else ArchiverStats()
        self.group_id = settings.kafka.archiver_group
        self.consumer: AIOKafkaConsumer | None = None
        self.conn: psycopg.Connection[Any] | None = None  # the writer's, used on its own thread only
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lalin-archive-writer")
        self.writer: ArchiveWriter | None = None
        self._seek_conn: psycopg.AsyncConnection[Any] | None = None
        self.limits = settings.validation.limits(catalogue.topic_of_type)
        self._stopped = False

    async def start(self) -> None:
        """Connect to the database and join the consumer group."""
        self.conn = await self._on_writer_thread(psycopg.Connection.connect, self.database_url, autocommit=True)
        self._seek_conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        self.writer = ArchiveWriter(self.conn, self.group_id, self.limits)
        self.consumer = make_consumer(self.settings.kafka, self.bootstrap, self.group_id)
        self.consumer.subscribe(self.catalogue.archived_topics, listener=_SeekToStored(self))
        await self.consumer.start()

    async def seek_to_stored(self, assigned: set[TopicPartition]) -> None:
        """Position each assigned partition at the offset stored with the archive (epoch-aware)."""
        assert self.consumer is not None and self._seek_conn is not None
        stored = await load_offsets(self._seek_conn, self.group_id, self.epoch,
                                    [(tp.topic, tp.partition) for tp in assigned])
        for tp in assigned:
            self.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))

    async def _fetch(self, timeout_ms: int) -> list[RawRecord]:
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.settings.kafka.max_batch_records)
        return [RawRecord(m.topic, m.partition, m.offset, m.key, m.value or b"")
                for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for m in batches[tp]]

    async def _on_writer_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, call)

    async def _write(self, batch: list[Classified], now: datetime) -> None:
        assert self.writer is not None
        plan = await self._on_writer_thread(self.writer.write_classified, batch, self.epoch, now)
        self.stats.add(plan, len(batch), now)
        await self._forward_dead_letters(plan, now)
        await self._commit_to_kafka(plan)

    async def run_once(self, timeout_ms: int = 200) -> int:
        """Fetch, archive and commit one batch; returns the number of records consumed."""
        records = await self._fetch(timeout_ms)
        if records:
            now = self.clock()
            await self._write(classify(records, now, self.limits), now)
        return len(records)

    async def _commit_to_kafka(self, plan: BatchPlan) -> None:
        """Mirror the offsets just committed in PostgreSQL to Kafka, for standard lag monitoring.

        Best effort: PostgreSQL is the truth (a broker that lost them changes nothing), so a
        failed commit — during a rebalance, say — is logged and otherwise ignored.
        """
        assert self.consumer is not None
        offsets = {TopicPartition(t, p): o for (t, p), o in plan.next_offsets.items() if p >= 0}
        try:  # bounded: with its coordinator gone, aiokafka would wait for a new one indefinitely
            await asyncio.wait_for(self.consumer.commit(offsets), timeout=self.settings.kafka.request_timeout_ms / 1000)
        except (KafkaError, TimeoutError) as err:
            log.info("mirroring offsets to Kafka failed (PostgreSQL holds them): %r", err)

    async def _forward_dead_letters(self, plan: BatchPlan, now: datetime) -> None:
        if self.producer is None or not plan.dead_letters:
            return
        for dead in plan.dead_letters:
            body = {"topic": dead.topic, "partition": dead.partition, "offset": dead.offset, "reason": dead.reason,
                    "detail": dead.detail, "received_at": now.isoformat(), "broker_epoch": self.epoch,
                    "raw_base64": base64.b64encode(dead.raw).decode()}
            await self.producer.send(DEADLETTER_TOPIC, msgspec.json.encode(body), key=dead.topic.encode())

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until ``stop`` is set, overlapping consecutive batches.

        Batch N's transaction runs on the writer thread (waiting on PostgreSQL releases the
        GIL) while batch N+1 is fetched and validated here. Transactions still run one at a
        time and in offset order, so offsets and stream heads advance exactly as in
        :meth:`run_once`; a failure surfaces at the next ``await pending``.
        """
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                records = await self._fetch(200)
                now = self.clock()
                batch = classify(records, now, self.limits) if records else []
                if pending is not None:
                    await pending
                    pending = None
                if batch:
                    pending = asyncio.create_task(self._write(batch, now))
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def stop(self) -> None:
        """Leave the group, let a write in flight finish, and close the connections (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self.consumer is not None:
            await self.consumer.stop()
        if self.conn is not None:
            await self._on_writer_thread(self.conn.close)
        await asyncio.get_running_loop().run_in_executor(None, self._writer_thread.shutdown)
        if self._seek_conn is not None:
            await self._seek_conn.close()

    async def stop_quietly(self) -> None:
        """Stop after a failure: errors while closing broken connections are logged, not raised."""
        try:
            await self.stop()
        except (psycopg.Error, KafkaError, OSError) as err:
            log.warning("closing a failed archiver: %r", err)
