"""Broker epochs: noticing that the broker lost its log.

Tansu with memory storage loses every topic, record and committed offset when it restarts,
while producers keep getting acknowledgements and consumers silently receive nothing. lalin
therefore writes a *marker* record — a random epoch id — at offset 0 of ``lalin.meta`` when
it provisions a broker, and checks it every few seconds. If the marker is gone or different,
the broker is a new one (a new *epoch*): lalin re-provisions, records a
``BrokerRestartDetected`` event with the window in which acknowledged events may have been
lost, and its consumers restart from offset 0 of the new epoch (offsets are stored per epoch).
On a durable Kafka cluster the marker simply stays, and the epoch never changes.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from infra.kafka import make_consumer, provision_topics
from infra.settings import KafkaSettings
from infra.topics import META_TOPIC, TopicCatalogue

MARKER_PARTITION = TopicPartition(META_TOPIC, 0)


class EpochMarker(msgspec.Struct, frozen=True):
    """The record at offset 0 of the meta topic."""

    epoch: str
    created_at: datetime
    created_by: str


async def read_marker(consumer: AIOKafkaConsumer, timeout_ms: int = 1500) -> EpochMarker | None:
    """The marker at offset 0 of the meta topic, or None when the broker has none."""
    consumer.seek(MARKER_PARTITION, 0)
    try:
        batches = await consumer.getmany(MARKER_PARTITION, timeout_ms=timeout_ms, max_records=1)
    except KafkaError:
        return None
    for record in batches.get(MARKER_PARTITION, []):
        if record.offset == 0 and record.value is not None:
            try:
                return msgspec.json.decode(record.value, type=EpochMarker)
            except msgspec.DecodeError:
                return None
    return None


class EpochWatch:
    """Holds a marker consumer; establishes the epoch and checks that it still holds."""

    def __init__(self, settings: KafkaSettings, bootstrap: str, catalogue: TopicCatalogue, owner: str) -> None:
        self.settings, self.bootstrap, self.catalogue, self.owner = settings, bootstrap, catalogue, owner
        self.consumer = make_consumer(settings, bootstrap, group_id=None)
        self.epoch: str | None = None

    async def start(self) -> None:
        """Connect the marker consumer (call once)."""
        await self.consumer.start()
        self.consumer.assign([MARKER_PARTITION])

    async def stop(self) -> None:
        """Close the marker consumer."""
        await self.consumer.stop()

    async def establish(self, producer: AIOKafkaProducer, now: datetime, *, after_restart: bool = False) -> str:
        """Return the broker's epoch, provisioning topics and writing a marker if it has none.

        ``after_restart``: the broker lost its log; topics that producers had auto-created on it
        with too few partitions are recreated (see ``provision_topics``).
        """
        marker = await read_marker(self.consumer, timeout_ms=300)
        if marker is None:
            await provision_topics(self.settings, self.bootstrap, self.catalogue, recreate_short=after_restart)
            mine = EpochMarker(epoch=uuid.uuid4().hex, created_at=now.astimezone(UTC), created_by=self.owner)
            await producer.send_and_wait(META_TOPIC, msgspec.json.encode(mine), partition=0)
            for _ in range(20):  # read back: if two writers raced, the record at offset 0 wins
                marker = await read_marker(self.consumer)
                if marker is not None:
                    break
                await asyncio.sleep(0.1)
        if marker is None:
            raise KafkaError(f"the epoch marker written to {META_TOPIC} on {self.bootstrap} cannot be read back")
        self.epoch = marker.epoch
        return marker.epoch

    async def still_same(self) -> bool:
        """True while the broker still holds the marker of the established epoch."""
        marker = await read_marker(self.consumer)
        return marker is not None and marker.epoch == self.epoch
