"""One decision task: the summaries of one ``lalin.state`` partition, decided per corridor.

Summaries are keyed by corridor, so a corridor's summaries arrive in one partition, in log
order, at one worker: :class:`~controllers.decisions.CorridorDecisions` (pure) turns each into
the commands of each decision round, which this task wraps for ``lalin.command`` (key: the intersection;
event id = the deterministic command id; event time = the decision instant). State and offset
are snapshotted together like the fold's (:mod:`infra.fold_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import msgspec

from controllers.archive_plan import DeadLetter
from controllers.decisions import CorridorDecisions, CorridorMember, DecisionState
from controllers.envelope import Envelope, make_event
from controllers.errors import InvalidEvent
from controllers.inbound import Limits, decode_record
from controllers.payloads import CommandIssued, TrafficMeasured
from controllers.strategy import Strategy
from infra.fold_store import TaskSnapshot

DECIDE_SOURCE = "lalin:decide"
COMMAND_TOPIC = "lalin.command"


class _DecideState(msgspec.Struct):
    corridors: dict[str, DecisionState] = {}


class DecideTask:
    """Decisions for the corridors whose summaries land in partition ``task`` of ``lalin.state``."""

    def __init__(self, task: int, corridors: Mapping[str, Sequence[CorridorMember]], strategy: Strategy,
                 config_checksum: str, epoch: str, *, limits: Limits | None = None,
                 snapshot: TaskSnapshot | None = None) -> None:
        self.task, self.corridors, self.strategy, self.epoch = task, corridors, strategy, epoch
        self.config_checksum = config_checksum
        self.limits = limits if limits is not None else Limits()
        self.offsets: dict[str, int] = dict(snapshot.offsets) if snapshot is not None else {}
        self.folded = snapshot.folded if snapshot is not None else 0
        self.emitted = snapshot.emitted if snapshot is not None else 0
        stored = msgspec.msgpack.decode(snapshot.state, type=_DecideState) if snapshot is not None else _DecideState()
        self.loops = {key: CorridorDecisions(corridors[key], strategy, config_checksum, state)
                      for key, state in stored.corridors.items() if key in corridors}
        self.dead_letters: list[DeadLetter] = []

    def position(self, topic: str) -> int:
        """The next offset to read from ``topic``'s partition ``task``."""
        return self.offsets.get(topic, 0)

    def handle(self, topic: str, offset: int, key: bytes | None, value: bytes, now: datetime,
               clock: Callable[[], datetime]) -> list[Envelope]:
        """Decide on one summary record; returns the command envelopes to publish (none or one)."""
        if offset < self.offsets.get(topic, 0):
            return []
        self.offsets[topic] = offset + 1
        self.folded += 1
        try:
            event = decode_record(topic, key, value, now, self.limits).event
        except InvalidEvent:
            return []  # the archiver dead-letters it (lalin.state is archived)
        if not isinstance(event.payload, TrafficMeasured):
            self.dead_letters.append(DeadLetter(topic, self.task, offset, key, value, "unexpected_type",
                                                f"{event.type} on the decision loop's input"))
            return []
        loop = self._loop_of(event.key)
        if loop is None:
            self.dead_letters.append(DeadLetter(topic, self.task, offset, key, value, "unknown_corridor",
                                                f"no corridor {event.key!r} is configured for decisions"))
            return []
        try:
            commands = loop.on_measured(event.payload)
        except Exception as err:  # noqa: BLE001 - the fault barrier: a defect on one summary must not stop the decisions
            self.dead_letters.append(DeadLetter(topic, self.task, offset, key, value, "decision_failed",
                                                f"{type(err).__name__}: {str(err)[:300]}"))
            return []
        at = loop.state.decided_until or event.payload.window.end
        return [self._envelope(loop, command, at, clock()) for command in commands]

    def _loop_of(self, key: str) -> CorridorDecisions | None:
        loop = self.loops.get(key)
        if loop is None and key in self.corridors:
            loop = self.loops[key] = CorridorDecisions(self.corridors[key], self.strategy, self.config_checksum)
        return loop

    def _envelope(self, loop: CorridorDecisions, command: CommandIssued, decided_at: datetime,
                  now: datetime) -> Envelope:
        self.emitted += 1
        return make_event(command, event_id=command.command_id, event_time=decided_at, ingest_time=now,
                          source=DECIDE_SOURCE, key=command.target, seq=loop.state.commands[command.target])

    def snapshot(self) -> TaskSnapshot:
        """The task's state and offsets as one snapshot."""
        state = _DecideState(corridors={k: loop.state for k, loop in sorted(self.loops.items())})
        return TaskSnapshot(state=msgspec.msgpack.encode(state), offsets=dict(self.offsets), folded=self.folded,
                            emitted=self.emitted, broker_epoch=self.epoch)
