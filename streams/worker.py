"""A stream worker: the Faust app that runs the fold and the decision loop (consumer group ``lalin-streams``).

One Faust app subscribes, in one consumer group, to the fold's inputs (``lalin.detector``,
``lalin.camera``, ``lalin.controller``) and to the decision loop's (``lalin.state``). They all
have the same partition count, so Faust's assignor gives a worker partition *p* of every one
of them together (co-partitioned): partition *p* is a fold task and a decision task.

Exactly-once without broker features (docs/closed-loop.md):

* The topics are declared ``acks=False``: Faust never commits offsets to Kafka.
* Each task's state and the next offset of each of its input partitions are stored together
  in ``fold_snapshots`` (one transaction, :mod:`infra.fold_store`): every
  ``snapshot_interval_s``, when partitions are revoked (the flow is stopped and aiokafka waits
  for us) and before shutdown.
* Outputs (summaries, commands) are produced and acknowledged *before* the snapshot that
  covers their inputs; after a crash they are produced again with the same deterministic ids
  and sequence numbers, and the archive keeps one copy.
* After every assignment Faust seeks to Kafka-committed offsets in ``perform_seek``; the worker
  wraps it: load the snapshots of newly assigned tasks, seek every partition to the stored
  offset (or 0 in a new broker epoch) and tell Faust's read-offset filter the same.

Faust's agent path costs ~65 µs per record on this machine (measured: ~15k records/s); with a
controller reporting all its lanes in one ``DetectorsCounted`` that is well above 20,000 lane
readings per second. Faust fetches with a hard-coded ``fetch_max_wait_ms`` of 1,500 ms (p50
390 ms on Tansu); the worker sets the consumer's to ``settings.kafka.fetch_max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
import psycopg
from aiokafka import AIOKafkaProducer
from faust.types import TP

from controllers.envelope import Envelope, encode_event
from controllers.strategy import AdaptiveSaturation, Strategy
from infra.fold_store import load_snapshot, save_snapshot
from infra.settings import Settings
from infra.topics import load_catalogue
from streams.decide_task import COMMAND_TOPIC, DecideTask
from streams.fold_task import STATE_TOPIC, FoldTask
from streams.topology import Topology

log = logging.getLogger(__name__)

FOLD_INPUTS = ("lalin.detector", "lalin.camera", "lalin.controller")
DECIDE_INPUTS = (STATE_TOPIC,)
STREAMS_GROUP = "lalin-streams"
FOLD_GROUP = "lalin-fold"
DECIDE_GROUP = "lalin-decide"


@dataclass
class WorkerStats:
    """Counters of one worker (records folded, outputs produced, snapshots, rebalances, refused records)."""

    records: int = 0  # every record handed to the worker
    fold_records: int = 0  # of them, records of the fold's inputs
    summaries: int = 0
    commands: int = 0
    snapshots: int = 0
    assignments: int = 0
    dead_letters: int = 0
    partitions: set[int] = field(default_factory=set)


class StreamWorker:
    """One member of the stream workers' consumer group (see the module docstring)."""

    def __init__(self, settings: Settings, bootstrap: str, database_url: str, epoch: str, topology: Topology,
                 clock: Callable[[], datetime], data_dir: Path, *, strategy: Strategy | None = None,
                 snapshot_interval_s: float = 1.0, name: str | None = None,
                 on_assigned: Callable[[list[int]], None] | None = None) -> None:
        self.settings, self.bootstrap, self.database_url, self.epoch = settings, bootstrap, database_url, epoch
        self.topology, self.clock, self.data_dir = topology, clock, data_dir
        self.strategy = strategy if strategy is not None else AdaptiveSaturation()
        self.config_checksum = topology.checksum(getattr(self.strategy, "config", AdaptiveSaturation().config))
        self.snapshot_interval_s, self.on_assigned = snapshot_interval_s, on_assigned
        self.name = name or f"worker-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.limits = settings.validation.limits(load_catalogue().topic_of_type)
        self.stats = WorkerStats()
        self.agent_crash: BaseException | None = None
        self.folds: dict[int, FoldTask] = {}
        self.decisions: dict[int, DecideTask] = {}
        self._lock = asyncio.Lock()
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._snapshotter: asyncio.Task[None] | None = None
        self.app = self._make_app()

    # --- the Faust app ----------------------------------------------------------------------
    def _make_app(self) -> faust.App:
        kafka = self.settings.kafka
        session_s = kafka.session_timeout_ms / 1000
        datadir = self.data_dir / "faust"
        datadir.mkdir(parents=True, exist_ok=True)  # Faust creates its datadir without parents
        app = faust.App(
            STREAMS_GROUP, broker=f"kafka://{self.bootstrap}", web_enabled=False, topic_disable_leader=True,
            datadir=str(datadir / self.name), broker_session_timeout=session_s,
            broker_heartbeat_interval=max(0.5, session_s / 3), broker_request_timeout=max(10.0, session_s + 1),
            broker_rebalance_timeout=session_s * 2, stream_wait_empty=False, topic_allow_declare=False,
            consumer_auto_offset_reset="earliest")
        topic = app.topic(*FOLD_INPUTS, *DECIDE_INPUTS, key_serializer="raw", value_serializer="raw", acks=False)
        agent: Any = app.agent(topic, name="lalin-streams-agent")(self._agent)
        faust_on_error = agent._on_error  # Faust's own (it tells the consumer); ours is called after it

        async def on_error(failed: Any, exc: BaseException) -> None:
            if faust_on_error is not None:
                await faust_on_error(failed, exc)
            await self._on_agent_error(failed, exc)

        agent._on_error = on_error
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # Faust's stubs want *args
        app.on_before_shutdown.connect(self._on_before_shutdown)  # type: ignore[arg-type]
        return app

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """Faust's agent crashed (its app does not): remember it, so :attr:`crashed` says so and the process restarts."""
        log.error("stream worker %s: the agent crashed: %r", self.name, exc)
        self.agent_crash = exc

    async def _agent(self, stream: Any) -> None:
        async for batch in stream.take_events(1000, within=0.01):
            async with self._lock:
                outputs: list[tuple[str, Envelope]] = []
                now = self.clock()
                for event in batch:
                    message = event.message
                    outputs += self._handle(message.topic, message.partition, message.offset, message.key,
                                            message.value, now)
                await self._produce(outputs)

    def _handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                now: datetime) -> list[tuple[str, Envelope]]:
        self.stats.records += 1
        if topic in FOLD_INPUTS:
            self.stats.fold_records += 1
            task = self.folds.get(partition)
            if task is None:
                return []  # not ours any more (a rebalance is under way): the new owner reads it
            return [(STATE_TOPIC, e) for e in task.handle(topic, offset, key, value or b"", now, self.clock)]
        decide = self.decisions.get(partition)
        if decide is None:
            return []
        return [(COMMAND_TOPIC, e) for e in decide.handle(topic, offset, key, value or b"", now, self.clock)]

    async def _produce(self, outputs: list[tuple[str, Envelope]]) -> None:
        """Send outputs and wait for every acknowledgement (before any snapshot may cover their inputs)."""
        if not outputs:
            return
        assert self._producer is not None
        futures = [await self._producer.send(topic, encode_event(e), key=e.key.encode()) for topic, e in outputs]
        await asyncio.gather(*futures)
        for topic, _ in outputs:
            if topic == STATE_TOPIC:
                self.stats.summaries += 1
            else:
                self.stats.commands += 1

    # --- snapshots and assignment -------------------------------------------------------------
    async def _save(self, partitions: list[int]) -> None:
        """Snapshot the tasks of ``partitions`` (fold and decisions), all in one transaction."""
        if self._db is None:
            return
        async with self._lock:
            now = self.clock()
            async with self._db.transaction():
                for p in partitions:
                    fold, decide = self.folds.get(p), self.decisions.get(p)
                    if fold is not None:
                        await save_snapshot(self._db, FOLD_GROUP, p, fold.snapshot(), now, fold.dead_letters)
                        self.stats.dead_letters += len(fold.dead_letters)
                        fold.dead_letters = []
                    if decide is not None:
                        await save_snapshot(self._db, DECIDE_GROUP, p, decide.snapshot(), now, decide.dead_letters)
                        self.stats.dead_letters += len(decide.dead_letters)
                        decide.dead_letters = []
            self.stats.snapshots += 1

    async def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        await self._save(sorted({tp.partition for tp in revoked}))

    async def _on_before_shutdown(self, sender: Any, **_: Any) -> None:
        await self._save(sorted(set(self.folds) | set(self.decisions)))

    def _patch_perform_seek(self) -> None:
        consumer: Any = self.app.consumer  # Faust's private read-offset filter and perform_seek are patched
        faust_perform_seek = consumer.perform_seek
        timeout_s = max(10.0, self.settings.kafka.session_timeout_ms / 1000 + 1) / 2

        async def perform_seek() -> None:
            await faust_perform_seek()  # Faust's seek to Kafka-committed offsets (none: acks=False)
            assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
            parts = sorted({tp.partition for tp in assigned})
            by_topic = {t: {tp.partition for tp in assigned if tp.topic == t} for t in (*FOLD_INPUTS, *DECIDE_INPUTS)}
            if len({frozenset(v) for v in by_topic.values()}) > 1:
                log.error("stream worker %s: inputs not co-partitioned: %s", self.name, by_topic)
            for p in [p for p in self.folds if p not in parts]:
                del self.folds[p]
            for p in [p for p in self.decisions if p not in parts]:
                del self.decisions[p]
            new = [p for p in parts if p not in self.folds]
            if new:
                await asyncio.wait_for(self._load(new), timeout_s)
            offsets: dict[TP, int] = {}
            for tp in assigned:
                task: FoldTask | DecideTask | None = self.folds.get(tp.partition) if tp.topic in FOLD_INPUTS \
                    else self.decisions.get(tp.partition)
                offsets[TP(tp.topic, tp.partition)] = task.position(tp.topic) if task is not None else 0
            await consumer.seek_wait(offsets)  # thread-safe: runs in the consumer's thread
            for tp, offset in offsets.items():
                consumer._read_offset[tp] = offset if offset > 0 else None  # Faust drops records below this
            self.stats.assignments += 1
            self.stats.partitions = set(parts)
            if self.on_assigned is not None:
                self.on_assigned(parts)

        consumer.perform_seek = perform_seek

    async def _load(self, partitions: list[int]) -> None:
        assert self._db is not None
        for p in partitions:
            fold = await load_snapshot(self._db, FOLD_GROUP, p, self.epoch)
            self.folds[p] = FoldTask(p, self.topology.layouts, self.epoch, limits=self.limits, snapshot=fold,
                                     boards=self.topology.boards)
            decide = await load_snapshot(self._db, DECIDE_GROUP, p, self.epoch)
            self.decisions[p] = DecideTask(p, self.topology.corridors, self.strategy, self.config_checksum, self.epoch,
                                           limits=self.limits, snapshot=decide)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, join the group and return once the first assignment is loaded and sought."""
        from infra.kafka import start_producer
        self._db = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        self._producer, _ = await start_producer(self.settings.kafka, self.bootstrap)
        try:
            self._patch_perform_seek()
            await self.app.start()
            fetcher = getattr(getattr(getattr(self.app.consumer, "_thread", None), "_consumer", None), "_fetcher", None)
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = self.settings.kafka.fetch_max_wait_ms
            self._snapshotter = asyncio.create_task(self._snapshot_every(), name=f"{self.name}-snapshots")
        except BaseException:
            await self.stop()
            raise

    async def _snapshot_every(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_interval_s)
            await self._save(sorted(set(self.folds) | set(self.decisions)))

    @property
    def crashed(self) -> bool:
        """True when Faust's app or its agent crashed (neither raises: poll this)."""
        return bool(self.app.crashed) or self.agent_crash is not None

    @property
    def crash_reason(self) -> BaseException | None:
        """Why the agent or the app crashed, if it did."""
        return self.agent_crash or self.app._crash_reason

    async def stop(self) -> None:
        """Final snapshot (before leaving the group), then close everything."""
        if self._snapshotter is not None:
            self._snapshotter.cancel()
            await asyncio.gather(self._snapshotter, return_exceptions=True)
            self._snapshotter = None
        if self.app.started:
            await self.app.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    def positions(self) -> Mapping[str, Mapping[int, int]]:
        """Next offset per input topic and owned partition (for the live summary and tests)."""
        out: dict[str, dict[int, int]] = {t: {} for t in (*FOLD_INPUTS, *DECIDE_INPUTS)}
        for p, fold in self.folds.items():
            for t in FOLD_INPUTS:
                out[t][p] = fold.position(t)
        for p, decide in self.decisions.items():
            out[STATE_TOPIC][p] = decide.position(STATE_TOPIC)
        return out
