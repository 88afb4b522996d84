"""Where device drivers put what they learn: an event sink that numbers each stream and hands events on.

A driver never logs a fact and moves on: every status read, fault, connection change and
command outcome becomes an event through an :class:`EventSink`. The sink wraps the payload in
an envelope with the next sequence number of its stream (``topic/key/source``, the same
numbering as :class:`infra.publisher.EventPublisher`), so a lost event shows up as a gap.

* :class:`PublisherSink` sends to Kafka through an ``EventPublisher``;
* :class:`RecordingSink` keeps the envelopes in memory (tests, benchmarks, broker-less demos)
  and lets a caller wait for one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiokafka.errors import KafkaError

from controllers.envelope import Envelope, make_event, stream_id
from controllers.event_types import TYPE_OF_PAYLOAD
from controllers.payloads import Payload
from infra.publisher import EventPublisher
from infra.topics import TopicCatalogue, load_catalogue

P = TypeVar("P", bound=Payload)
log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The wall clock in UTC (the shells' default clock)."""
    return datetime.now(UTC)


class EventSink(Protocol):
    """Takes a device event; returns its envelope once it is handed on."""

    async def emit(self, payload: Payload, *, source: str, key: str, event_time: datetime,
                   causation_id: uuid.UUID | None = None) -> Envelope:
        """Number, wrap and hand on ``payload`` (``event_time`` timezone-aware)."""
        ...


class _Numbering:
    def __init__(self, catalogue: TopicCatalogue | None, clock: Callable[[], datetime]) -> None:
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        self.clock = clock
        self.last_seq: dict[str, int] = {}

    def wrap(self, payload: Payload, source: str, key: str, event_time: datetime,
             causation_id: uuid.UUID | None) -> tuple[str, Envelope]:
        topic = self.catalogue.topic_of_type[TYPE_OF_PAYLOAD[type(payload)]]
        stream = stream_id(topic, key, source)
        seq = self.last_seq.get(stream, 0) + 1
        self.last_seq[stream] = seq
        event = make_event(payload, event_id=uuid.uuid4(), event_time=event_time, ingest_time=self.clock(),
                           source=source, key=key, seq=seq, causation_id=causation_id)
        return topic, event


class RecordingSink:
    """Keeps every event in memory, numbered per stream; :meth:`wait_for` waits for one."""

    def __init__(self, catalogue: TopicCatalogue | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        self._numbering = _Numbering(catalogue, clock)
        self.events: list[Envelope] = []
        self._changed = asyncio.Condition()

    async def emit(self, payload: Payload, *, source: str, key: str, event_time: datetime,
                   causation_id: uuid.UUID | None = None) -> Envelope:
        """Number and keep ``payload``; wakes waiters."""
        _, event = self._numbering.wrap(payload, source, key, event_time, causation_id)
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()
        return event

    def payloads(self, kind: type[P]) -> list[P]:
        """The payloads of one type, in arrival order."""
        return [e.payload for e in self.events if isinstance(e.payload, kind)]

    async def wait_for(self, kind: type[P], predicate: Callable[[P], bool] = lambda _: True,
                       timeout_s: float = 10.0, after: int = 0) -> P:
        """The first payload of ``kind`` (at index ``after`` or later) matching ``predicate``.

        Raises TimeoutError naming the type when none arrives within ``timeout_s`` seconds.
        """
        async def first() -> P:
            seen = after
            while True:
                for event in self.events[seen:]:
                    if isinstance(event.payload, kind) and predicate(event.payload):
                        return event.payload
                seen = known = len(self.events)
                async with self._changed:
                    await self._changed.wait_for(lambda known=known: len(self.events) > known)  # type: ignore[misc]

        try:
            return await asyncio.wait_for(first(), timeout_s)
        except TimeoutError as err:
            raise TimeoutError(f"no matching {kind.__name__} event within {timeout_s} s") from err


class PublisherSink:
    """Sends every event to Kafka through an :class:`EventPublisher` (its numbering, its topics).

    A record the broker does not take is not retried and does not stop the driver: its sequence
    number is spent, so the archive's per-stream sequence check reports exactly which event is
    missing (a ``SequenceAnomalyDetected`` gap), as for any other source.
    """

    def __init__(self, publisher: EventPublisher, clock: Callable[[], datetime] = utc_now) -> None:
        self.publisher, self.clock = publisher, clock
        self.failed = 0

    async def emit(self, payload: Payload, *, source: str, key: str, event_time: datetime,
                   causation_id: uuid.UUID | None = None) -> Envelope:
        """Number, wrap and queue ``payload`` on its topic (delivery is confirmed by the archive)."""
        topic, event = self.publisher.build(payload, source=source, key=key, event_time=event_time,
                                            ingest_time=self.clock(), event_id=uuid.uuid4(), causation_id=causation_id)
        try:
            future = await self.publisher.send(topic, event)
        except KafkaError as err:
            self._lost(event, err)
            return event
        future.add_done_callback(functools.partial(self._delivered, event))
        return event

    def _delivered(self, event: Envelope, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None:
            self._lost(event, done.exception())

    def _lost(self, event: Envelope, err: BaseException | None) -> None:
        self.failed += 1
        log.warning("event %s %s/%s #%d was not taken by the broker (the archive will show the gap): %r",
                    event.type, event.key, event.source, event.seq, err)
