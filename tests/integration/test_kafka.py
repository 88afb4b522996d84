"""Topic provisioning on a real broker: idempotent, and refuses a topic too narrow for the catalogue."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controllers.errors import ConfigurationError
from infra.kafka import provision_topics
from infra.settings import Settings
from infra.topics import load_catalogue

pytestmark = pytest.mark.integration


def test_provisioning_twice_creates_once(settings: Settings) -> None:
    catalogue = load_catalogue()
    first = asyncio.run(provision_topics(settings.kafka, settings.kafka.bootstrap, catalogue))
    second = asyncio.run(provision_topics(settings.kafka, settings.kafka.bootstrap, catalogue))
    assert sorted(first) == sorted(t.name for t in catalogue.topics)
    assert second == []


def test_an_existing_topic_with_too_few_partitions_is_reported(settings: Settings) -> None:
    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("lalin.detector", 2, 1)])
        await admin.close()
        await provision_topics(settings.kafka, settings.kafka.bootstrap, load_catalogue())

    with pytest.raises(ConfigurationError, match="lalin.detector has 2 partitions, the catalogue declares 8"):
        asyncio.run(scenario())


def test_re_provisioning_after_a_restart_recreates_topics_auto_created_too_narrow(settings: Settings) -> None:
    """After the broker lost its log, a producer may auto-create a topic with the broker's default partitions first."""
    catalogue = load_catalogue()

    async def scenario() -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("lalin.detector", 2, 1)])
            await provision_topics(settings.kafka, settings.kafka.bootstrap, catalogue, recreate_short=True)
            described = await admin.describe_topics(["lalin.detector"])
            return [len(topic["partitions"]) for topic in described]
        finally:
            await admin.close()

    assert asyncio.run(scenario()) == [catalogue.spec("lalin.detector").partitions]
