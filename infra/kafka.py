"""Kafka clients with lalin's defaults, and idempotent topic provisioning.

aiokafka's defaults (acks=1, auto-commit on) lose events in fault tests; lalin's producers
use ``acks=all`` and idempotence where the broker supports it, and its consumers never
auto-commit (offsets are stored in PostgreSQL with the data they cover).
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from controllers.errors import ConfigurationError
from infra.settings import KafkaSettings
from infra.topics import TopicCatalogue, TopicSpec

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


def _common(settings: KafkaSettings, bootstrap: str) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap, "client_id": settings.client_id,
            "request_timeout_ms": settings.request_timeout_ms}


async def start_producer(settings: KafkaSettings, bootstrap: str) -> tuple[AIOKafkaProducer, bool]:
    """Start a producer with acks=all; returns it and whether it is idempotent.

    With ``idempotence='auto'`` an idempotent producer is tried first; a broker that refuses
    InitProducerId (Tansu 0.6) gets a plain acks=all producer, and lalin's archive dedupes by
    event id, so a retried send is never archived twice.
    """
    options = {**_common(settings, bootstrap), "acks": "all", "linger_ms": settings.linger_ms,
               "max_batch_size": 1 << 20, "compression_type": "lz4"}
    if settings.idempotence in ("auto", "on"):
        producer = AIOKafkaProducer(enable_idempotence=True, **options)
        sender_log = logging.getLogger("aiokafka.producer.sender")
        level = sender_log.level
        sender_log.setLevel(logging.CRITICAL)  # the refusal is expected on some brokers; reported below
        try:
            await producer.start()
            return producer, True
        except KafkaError as err:
            await producer.stop()
            if settings.idempotence == "on":
                raise ConfigurationError(f"broker {bootstrap} refuses idempotent producers: {err!r}") from err
            log.info("broker %s refuses idempotent producers (%r); using acks=all without idempotence", bootstrap, err)
        finally:
            sender_log.setLevel(level)
    producer = AIOKafkaProducer(**options)
    await producer.start()
    return producer, False


def make_consumer(settings: KafkaSettings, bootstrap: str, group_id: str | None) -> AIOKafkaConsumer:
    """A consumer that never auto-commits; offsets are the caller's to store."""
    return AIOKafkaConsumer(
        **_common(settings, bootstrap),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=16 << 20,
        isolation_level="read_uncommitted",
    )


async def provision_topics(settings: KafkaSettings, bootstrap: str, catalogue: TopicCatalogue, *,
                           recreate_short: bool = False, attempts: int = 3) -> list[str]:
    """Create the catalogue's missing topics; returns the names created. Idempotent.

    An existing topic with fewer partitions than declared is reported (ConfigurationError):
    it would break the co-partitioning by intersection. With ``recreate_short`` (only when
    re-provisioning a broker that lost its log) such a topic is deleted and created again,
    up to ``attempts`` times: a producer that sent to the empty broker before lalin noticed
    has it auto-created with the broker's default partition count (Tansu: 4). The records in it
    were acknowledged after the restart, inside the at-risk window the restart alarm reports;
    the per-stream sequence checks name them as gaps.
    """
    admin = AIOKafkaAdminClient(**_common(settings, bootstrap))
    await admin.start()
    try:
        created = await _create_missing(admin, bootstrap, catalogue.topics)
        for attempt in range(1, attempts + 1):
            short = await _short_topics(admin, catalogue)
            if not short:
                return created
            if not recreate_short or attempt == attempts:
                name, actual = short[0]
                raise ConfigurationError(f"topic {name} has {actual} partitions, "
                                         f"the catalogue declares {catalogue.spec(name).partitions}")
            names = [name for name, _ in short]
            log.warning("re-provisioning %s: %s were auto-created with too few partitions; recreating them",
                        bootstrap, ", ".join(names))
            await admin.delete_topics(names)
            created += await _create_missing(admin, bootstrap, [catalogue.spec(name) for name in names])
        return created
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, bootstrap: str, specs: list[TopicSpec]) -> list[str]:
    wanted = [NewTopic(t.name, t.partitions, t.replication_factor,
                       topic_configs={"retention.ms": str(t.retention_ms), "cleanup.policy": t.cleanup_policy})
              for t in specs]
    response = await admin.create_topics(wanted)
    created, errors = [], []
    for name, code, message in (error[:3] for error in response.topic_errors):
        if code == 0:
            created.append(name)
        elif code != _TOPIC_ALREADY_EXISTS:
            errors.append(f"{name}: error {code} {message}")
    if errors:
        raise ConfigurationError(f"cannot create topics on {bootstrap}: {'; '.join(errors)}")
    return created


async def _short_topics(admin: AIOKafkaAdminClient, catalogue: TopicCatalogue) -> list[tuple[str, int]]:
    """The catalogue topics that exist with fewer partitions than declared: (name, actual partitions)."""
    described = await admin.describe_topics([t.name for t in catalogue.topics])
    short = []
    for topic in described:
        actual = len(topic["partitions"])
        if actual < catalogue.spec(topic["topic"]).partitions:
            short.append((topic["topic"], actual))
    return short
