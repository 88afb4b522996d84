"""The automatic-VMS loop of ``lalin up``: the policy (:mod:`controllers.vms_policy`) fed from the log,
its evaluations and commands published, its state and input offsets stored together in PostgreSQL.

Inputs: every partition of ``lalin.state`` (summaries), ``lalin.controller`` (only the records
keyed by a board: display reports, faults, command outcomes) and ``lalin.operator`` (orders),
read by ONE consumer with manual assignment (the policy decides for the whole network; a second
loop would split it). After each batch that brought the policy something, it evaluates at the
latest event time folded (never a clock), publishes the ``VmsEvaluated`` (``lalin.vms``, key
``vms``, sequence number = evaluation number) and the ``CommandIssued`` (``lalin.command``, key
the board, deterministic ids), waits for the broker's acknowledgements, then stores the
policy's state with the next offset of every input partition in ``fold_snapshots`` (group
``lalin-vms``) in one statement. After a crash the records since that snapshot are folded
again; outputs already published come again with the same ids when the batches fall the same
way (the archive keeps one copy), otherwise as a later evaluation. A broker that lost its log
(a new epoch) restarts the offsets at 0 and keeps the state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from controllers.archive_plan import DeadLetter
from controllers.envelope import Envelope, encode_event, make_event
from controllers.errors import ConfigurationError, InvalidEvent
from controllers.inbound import decode_record
from controllers.payloads import CommandIssued, VmsAction, VmsEvaluated
from controllers.vms_config import VmsPolicyConfig
from controllers.vms_policy import VmsPolicy
from controllers.vms_state import VmsNetwork, VmsState
from infra.fold_store import TaskSnapshot, load_snapshot, save_snapshot
from infra.kafka import make_consumer
from infra.settings import Settings
from infra.topics import load_catalogue

log = logging.getLogger(__name__)
VMS_GROUP = "lalin-vms"
VMS_SOURCE = "lalin:vms"
VMS_KEY = "vms"
VMS_TOPIC = "lalin.vms"
COMMAND_TOPIC = "lalin.command"
INPUT_TOPICS = ("lalin.state", "lalin.controller", "lalin.operator")
SNAPSHOT_INTERVAL_S = 5.0  # offsets of records that concerned nothing are stored at least this often (s, clock time)


class _LoopState(msgspec.Struct):
    policy: VmsState = msgspec.field(default_factory=VmsState)
    seqs: dict[str, int] = {}  # board -> commands published (their sequence numbers)


class VmsLoop:
    """Runs the policy on the log (see the module docstring); ``say`` prints operator lines (shown messages, alarms)."""

    def __init__(self, settings: Settings, bootstrap: str, database_url: str, epoch: str, config: VmsPolicyConfig,
                 network: VmsNetwork, config_checksum: str, producer: AIOKafkaProducer, clock: Callable[[], datetime], *,
                 say: Callable[[str], None] | None = None) -> None:
        self.settings, self.bootstrap, self.database_url, self.epoch = settings, bootstrap, database_url, epoch
        self.config, self.network, self.config_checksum = config, network, config_checksum
        self.producer, self.clock, self.say = producer, clock, say or (lambda line: None)
        self.boards = {b.id.encode() for b in network.boards}
        self.limits = settings.validation.limits(load_catalogue().topic_of_type)
        self.dead_letters: list[DeadLetter] = []  # failed on since the last snapshot: stored with the next one
        self.dead_lettered = 0
        self.consumer: AIOKafkaConsumer | None = None
        self._db: psycopg.AsyncConnection[Any] | None = None
        self.state = _LoopState()
        self.policy = VmsPolicy(config, network, config_checksum, self.state.policy)
        self.offsets: dict[str, int] = {}
        self.folded = self.evaluations = self.commands = 0
        self.latest: VmsEvaluated | None = None
        self._saved_at: datetime | None = None

    async def start(self) -> None:
        """Connect, load the snapshot and position every input partition after what it covers."""
        self._db = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        snapshot = await load_snapshot(self._db, VMS_GROUP, 0, self.epoch)
        if snapshot is not None:
            self.state = msgspec.msgpack.decode(snapshot.state, type=_LoopState)
            self.policy = VmsPolicy(self.config, self.network, self.config_checksum, self.state.policy)
            self.offsets, self.folded, self.evaluations = dict(snapshot.offsets), snapshot.folded, snapshot.emitted
        self.consumer = make_consumer(self.settings.kafka, self.bootstrap, None)
        await self.consumer.start()
        missing = [t for t in INPUT_TOPICS if not self.consumer.partitions_for_topic(t)]
        if missing:
            await self.stop()
            raise ConfigurationError(f"the VMS loop's input topics {missing} are not on the broker {self.bootstrap} "
                                     "(provision the topics first)")
        partitions = [TopicPartition(t, p) for t in INPUT_TOPICS for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        self.consumer.assign(partitions)
        for tp in partitions:
            self.consumer.seek(tp, self.offsets.get(f"{tp.topic}/{tp.partition}", 0))

    def reset_epoch(self, epoch: str) -> None:
        """The broker lost its log: offsets restart at 0 in the new one (the state is kept)."""
        self.epoch, self.offsets = epoch, {}
        if self.consumer is not None:
            for tp in self.consumer.assignment():
                self.consumer.seek(tp, 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, evaluate and publish until ``stop`` is set."""
        assert self.consumer is not None
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            if batches:
                await self.handle(batches)

    async def handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Fold a batch of records; evaluate and publish when it concerned the policy; snapshot."""
        concerned = False
        now = self.clock()
        for tp, records in batches.items():
            for record in records:
                if tp.topic != "lalin.controller" or record.key in self.boards:
                    concerned |= self._fold(tp, record.offset, record.key, record.value or b"", now)
            if records:
                self.offsets[f"{tp.topic}/{tp.partition}"] = records[-1].offset + 1
        if concerned and self.policy.state.stream_time_s > float("-inf"):
            record, commands = self.policy.evaluate(datetime.fromtimestamp(self.policy.state.stream_time_s, now.tzinfo))
            await self._publish(record, commands, now)
        if concerned or self.dead_letters or self._saved_at is None or \
                (now - self._saved_at).total_seconds() >= SNAPSHOT_INTERVAL_S:
            await self._save(now)
            self._saved_at = now

    def _fold(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes, now: datetime) -> bool:
        """Fold one record; one the policy fails on (a defect) is dead-lettered (``vms_fold_failed``), and the loop goes on."""
        try:
            event = decode_record(tp.topic, key, value, now, self.limits).event
        except InvalidEvent:
            return False  # the archiver dead-letters it
        self.folded += 1
        try:
            return self.policy.apply(event)
        except Exception as err:  # noqa: BLE001 - the fault barrier: one record's defect must not stop the VMS loop
            log.error("VMS loop: %s offset %d dead-lettered: %r", tp.topic, offset, err)
            self.dead_lettered += 1
            self.dead_letters.append(DeadLetter(tp.topic, tp.partition, offset, key, value, "vms_fold_failed",
                                                f"{type(err).__name__}: {str(err)[:300]}"))
            return False

    async def _publish(self, record: VmsEvaluated, commands: list[CommandIssued], now: datetime) -> None:
        envelopes: list[tuple[str, Envelope]] = [(VMS_TOPIC, make_event(
            record, event_id=VmsPolicy.evaluation_id(record.evaluation, record.at), event_time=record.at, ingest_time=now,
            source=VMS_SOURCE, key=VMS_KEY, seq=record.evaluation))]
        for command in commands:
            seq = self.state.seqs[command.target] = self.state.seqs.get(command.target, 0) + 1
            envelopes.append((COMMAND_TOPIC, make_event(command, event_id=command.command_id, event_time=record.at,
                                                        ingest_time=now, source=VMS_SOURCE, key=command.target, seq=seq)))
        futures = [await self.producer.send(topic, encode_event(e), key=e.key.encode()) for topic, e in envelopes]
        await asyncio.gather(*futures)
        self.evaluations, self.commands, self.latest = self.evaluations + 1, self.commands + len(commands), record
        self._announce(record, commands)

    def _announce(self, record: VmsEvaluated, commands: list[CommandIssued]) -> None:
        for problem in record.problems:
            self.say(f"ALARM VMS {problem}")
        sent = {c.target for c in commands}
        for b in record.boards:
            if b.board_id not in sent:
                continue
            if b.action in (VmsAction.SHOW, VmsAction.UPDATE) and b.pages:
                self.say(f"VMS {b.board_id} <- {b.cause} (priority {b.priority}): {' / '.join(b.pages[0])}")
            elif b.action is VmsAction.BLANK:
                self.say(f"VMS {b.board_id} blanked: {b.why}")

    async def _save(self, now: datetime) -> None:
        assert self._db is not None
        snapshot = TaskSnapshot(state=msgspec.msgpack.encode(self.state), offsets=dict(self.offsets), folded=self.folded,
                                emitted=self.evaluations, broker_epoch=self.epoch)
        await save_snapshot(self._db, VMS_GROUP, 0, snapshot, now, self.dead_letters)
        self.dead_letters = []

    def showing(self) -> int:
        """Boards lalin keeps a message on now."""
        return len(self.policy.state.showing)

    async def stop(self) -> None:
        """Leave: the snapshot of the last batch is already stored."""
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        if self._db is not None:
            await self._db.close()
            self._db = None
