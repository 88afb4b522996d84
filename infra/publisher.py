"""Publishing events: route each type to its topic, key by site, number each stream.

:class:`EventPublisher` wraps payloads in envelopes with the next sequence number of their
stream (``topic/key/source``), encodes them and sends them with the envelope key as the
Kafka record key. Sequence numbers can be resumed from the archive's stream heads, so a
restarted source continues its numbering instead of looking like a reset.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from controllers.envelope import Envelope, encode_event, make_event, stream_id
from controllers.event_types import TYPE_OF_PAYLOAD
from controllers.payloads import Payload
from infra.topics import TopicCatalogue


class EventPublisher:
    """Numbers, encodes and sends events for one or more sources."""

    def __init__(self, producer: AIOKafkaProducer, catalogue: TopicCatalogue) -> None:
        self.producer, self.catalogue = producer, catalogue
        self.last_seq: dict[str, int] = {}

    async def resume_from_archive(self, conn: psycopg.AsyncConnection[Any], source: str) -> int:
        """Continue the numbering of ``source`` (a LIKE pattern: ``demo:%``) from the archive's heads; returns streams resumed."""
        cur = await conn.execute("SELECT stream, last_seq FROM stream_heads WHERE stream LIKE %s",
                                 (f"%/{source}",))
        rows = await cur.fetchall()
        for stream, last_seq in rows:
            self.last_seq[stream] = max(self.last_seq.get(stream, 0), last_seq)
        return len(rows)

    def topic_for(self, payload: Payload) -> str:
        """The catalogue's topic for ``payload``'s event type."""
        return self.catalogue.topic_of_type[TYPE_OF_PAYLOAD[type(payload)]]

    def build(self, payload: Payload, *, source: str, key: str, event_time: datetime, ingest_time: datetime,
              event_id: uuid.UUID, causation_id: uuid.UUID | None = None,
              correlation_id: uuid.UUID | None = None) -> tuple[str, Envelope]:
        """The topic and the envelope of ``payload`` with its stream's next sequence number."""
        topic = self.topic_for(payload)
        stream = stream_id(topic, key, source)
        seq = self.last_seq.get(stream, 0) + 1
        self.last_seq[stream] = seq
        event = make_event(payload, event_id=event_id, event_time=event_time, ingest_time=ingest_time,
                           source=source, key=key, seq=seq, causation_id=causation_id, correlation_id=correlation_id)
        return topic, event

    async def send(self, topic: str, event: Envelope) -> asyncio.Future[Any]:
        """Queue ``event`` on ``topic``; the returned future resolves when the broker acknowledges it."""
        future: asyncio.Future[Any] = await self.producer.send(topic, encode_event(event), key=event.key.encode())
        return future

    async def send_raw(self, topic: str, key: str, value: bytes) -> asyncio.Future[Any]:
        """Queue bytes as they are (for tests and demos of invalid input)."""
        future: asyncio.Future[Any] = await self.producer.send(topic, value, key=key.encode())
        return future
