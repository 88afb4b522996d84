"""The archiver on the real broker and database: exactly once, nothing lost, bad input dead-lettered."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from aiokafka import TopicPartition

from controllers.envelope import encode_event, make_event
from controllers.payloads import DetectorCounted, VolumeByClass
from infra.archiver import Archiver
from infra.broker_epoch import EpochWatch
from infra.kafka import make_consumer, start_producer
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topics import load_catalogue
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
CATALOGUE = load_catalogue()


def count(url: str, query: str, *args: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, args).fetchone()
        return int(row[0]) if row else 0


async def connect(settings: Settings):
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap)
    watch = EpochWatch(settings.kafka, settings.kafka.bootstrap, CATALOGUE, owner="test")
    await watch.start()
    epoch = await watch.establish(producer, datetime.now(UTC))
    await watch.stop()
    return producer, EventPublisher(producer, CATALOGUE), epoch


def reading(i: int) -> DetectorCounted:
    return DetectorCounted(detector_id=f"K0{i % 5}-N-1", interval_s=60.0,
                           volume=VolumeByClass(motorcycle=i % 40, car=i % 9, heavy=i % 2),
                           occupancy=(i % 90) / 100, mean_speed_kmh=30.0)


async def publish_valid(publisher: EventPublisher, n: int, offset: int = 0) -> list[bytes]:
    now = datetime.now(UTC)
    sent, futures = [], []
    for i in range(offset, offset + n):
        key = f"K0{i % 5}"
        topic, event = publisher.build(reading(i), source=f"det:{key}-N", key=key, event_time=now, ingest_time=now,
                                       event_id=uuid.uuid4())
        futures.append(await publisher.send(topic, event))
        sent.append(encode_event(event))
    await asyncio.gather(*futures)
    return sent


def invalid_records() -> dict[str, bytes]:
    now = datetime.now(UTC)
    good = msgspec.json.decode(encode_event(_event(now)))

    def variant(**changes):
        obj = json.loads(json.dumps(good))
        for k, v in changes.items():
            if k.startswith("p_"):
                obj["payload"][k[2:]] = v
            else:
                obj[k] = v
        return msgspec.json.encode(obj)

    return {
        "malformed": b'{"event_id": "cut',
        "not-an-object": b"[1, 2, 3]",
        "oversized": b'{"pad": "' + b"x" * 70_000 + b'"}',
        "out-of-bounds": variant(p_occupancy=1.7),
        "negative-count": variant(p_volume={"motorcycle": -1, "car": 0, "heavy": 0}),
        "unknown-field": variant(p_colour="red"),
        "naive-time": variant(event_time="2026-11-24T08:00:00"),
        "future": variant(event_time=(now + timedelta(minutes=10)).isoformat()),
        "unknown-type": variant(type="Teleported"),
    }


def _event(now: datetime):
    return make_event(reading(1), event_id=uuid.uuid4(), event_time=now, ingest_time=now, source="det:bad", key="K09", seq=1)


async def read_dead_letter_topic(settings: Settings, expected: int) -> list[dict]:
    """The records of the dead-letter topic (as live consumers, e.g. an alarm panel, see them)."""
    consumer = make_consumer(settings.kafka, settings.kafka.bootstrap, group_id=None)
    await consumer.start()
    partition = TopicPartition("lalin.deadletter", 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    found: list[dict] = []
    async def enough() -> bool:
        batches = await consumer.getmany(partition, timeout_ms=200)
        found.extend(json.loads(m.value) for m in batches.get(partition, []))
        return len(found) >= expected
    await wait_until(enough, 20, f"{expected} dead letters on the topic")
    await consumer.stop()
    return found


async def started_archiver(settings: Settings, database_url: str, epoch: str, **options: Any) -> Archiver:
    """An archiver of this test's broker and database that has joined the group."""
    archiver = Archiver(settings, settings.kafka.bootstrap, database_url, CATALOGUE, epoch, **options)
    await archiver.start()
    return archiver


async def archive_until(archiver: Archiver, done: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Archive batch after batch until ``done()`` holds, or fail after ``timeout_s`` seconds naming ``what``."""
    async def step() -> bool:
        await archiver.run_once()
        return done()
    await wait_until(step, timeout_s, what)


EXPECTED_REASON = {"malformed": "malformed", "not-an-object": "malformed", "oversized": "oversized",
                   "out-of-bounds": "schema", "negative-count": "schema", "unknown-field": "schema",
                   "naive-time": "schema", "future": "schema", "unknown-type": "unknown_type"}


def test_a_mixed_stream_is_archived_or_dead_lettered_exactly(settings: Settings, database_url: str) -> None:
    """events in = archived + dead-lettered + duplicates, with every reason and raw byte kept."""

    async def scenario() -> tuple[int, int, int]:
        producer, publisher, epoch = await connect(settings)
        valid = await publish_valid(publisher, 400)
        bad = invalid_records()
        for raw in bad.values():
            await (await publisher.send_raw("lalin.detector", "K09", raw))
        for raw in valid[:25]:  # a producer retry re-sends records it already sent
            await (await publisher.send_raw("lalin.detector", json.loads(raw)["key"], raw))
        archiver = await started_archiver(settings, database_url, epoch, producer=producer)
        total = len(valid) + len(bad) + 25
        await archive_until(archiver, lambda: archiver.stats.consumed >= total, 30, f"{total} records consumed")
        await archiver.stop()
        await producer.stop()
        forwarded = await read_dead_letter_topic(settings, 9)
        assert sorted(r["reason"] for r in forwarded) == sorted(EXPECTED_REASON.values())
        assert all(r["topic"] == "lalin.detector" and r["raw_base64"] and r["detail"] for r in forwarded)
        return archiver.stats.archived, archiver.stats.dead_lettered, archiver.stats.duplicates

    archived, dead, duplicates = asyncio.run(scenario())
    assert (archived, dead, duplicates) == (400, 9, 25)
    assert archived + dead + duplicates == 400 + 9 + 25
    assert count(database_url, "SELECT count(*) FROM events") == 400
    assert count(database_url, "SELECT count(DISTINCT event_id) FROM events") == 400

    listed = subprocess.run([sys.executable, "-m", "infra", "deadletters", "list", "--json", "--database-url", database_url],
                            capture_output=True, text=True, check=True)
    rows = json.loads(listed.stdout)
    assert len(rows) == 9
    bad = invalid_records()
    by_raw = {base64.b64decode(r["raw"]): r for r in rows}
    for name, raw in bad.items():
        if name in ("out-of-bounds", "negative-count", "unknown-field", "naive-time", "future", "unknown-type"):
            continue  # these embed fresh ids and times; matched by reason below
        assert by_raw[raw]["reason"] == EXPECTED_REASON[name]
        assert by_raw[raw]["topic"] == "lalin.detector"
    reasons = sorted(r["reason"] for r in rows)
    assert reasons == sorted(EXPECTED_REASON.values())
    assert all(r["detail"] for r in rows)


def test_a_crash_before_commit_loses_nothing_and_doubles_nothing(settings: Settings, database_url: str) -> None:
    """Kill the archiver's database session mid-run; a new archiver resumes from the stored offsets."""

    async def scenario() -> None:
        producer, publisher, epoch = await connect(settings)
        await publish_valid(publisher, 300)
        first = await started_archiver(settings, database_url, epoch)
        await archive_until(first, lambda: first.stats.archived > 0, 20, "a first batch")
        await publish_valid(publisher, 300, offset=300)
        with psycopg.connect(database_url, autocommit=True) as admin:  # the archiver's session dies
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(Exception, match="(?i)terminat|closed|connection"):
            for _ in range(50):
                await first.run_once()
        await first.stop_quietly()  # leave the group; closing the dead connections may fail
        second = await started_archiver(settings, database_url, epoch)
        archived = lambda: count(database_url, "SELECT count(*) FROM events")  # noqa: E731
        await archive_until(second, lambda: archived() >= 600, 30, "all 600 events archived")
        for _ in range(5):
            await second.run_once()
        await second.stop()
        await producer.stop()

    asyncio.run(scenario())
    assert count(database_url, "SELECT count(*) FROM events") == 600
    assert count(database_url, "SELECT count(DISTINCT event_id) FROM events") == 600
    assert count(database_url, "SELECT count(*) FROM events WHERE type = 'SequenceAnomalyDetected'") == 0


def test_sequence_gaps_become_archived_events(settings: Settings, database_url: str) -> None:
    async def scenario() -> None:
        producer, publisher, epoch = await connect(settings)
        await publish_valid(publisher, 10)
        stream = "lalin.detector/K01/det:K01-N"
        publisher.last_seq[stream] += 3  # three events of K01 never reach the broker
        await publish_valid(publisher, 10, offset=10)
        archiver = await started_archiver(settings, database_url, epoch)
        await archive_until(archiver, lambda: archiver.stats.consumed >= 20, 20, "20 records")
        await archiver.stop()
        await producer.stop()

    asyncio.run(scenario())
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT payload, key FROM events_view WHERE type = 'SequenceAnomalyDetected'").fetchall()
    assert len(rows) == 1
    payload, key = rows[0]
    assert key == "K01"
    assert payload["kind"] == "gap" and payload["missing_count"] == 3
    assert payload["stream"] == "lalin.detector/K01/det:K01-N"


def test_the_archive_is_append_only(settings: Settings, database_url: str) -> None:
    async def scenario() -> None:
        producer, publisher, epoch = await connect(settings)
        await publish_valid(publisher, 5)
        archiver = await started_archiver(settings, database_url, epoch)
        await archive_until(archiver, lambda: archiver.stats.archived >= 5, 20, "5 events")
        await archiver.stop()
        await producer.stop()

    asyncio.run(scenario())
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in ("UPDATE events SET key = 'X'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    assert count(database_url, "SELECT count(*) FROM events") == 5


def test_an_event_id_reused_in_another_stream_is_still_archived_once(settings: Settings, database_url: str) -> None:
    """The cheap duplicate check (sequence numbers) cannot see this; the primary key does, and the batch is redone."""

    async def scenario() -> Archiver:
        producer, publisher, epoch = await connect(settings)
        now = datetime.now(UTC)
        topic, original = publisher.build(reading(1), source="det:K01-N", key="K01", event_time=now, ingest_time=now,
                                          event_id=uuid.uuid4())
        await (await publisher.send(topic, original))
        archiver = await started_archiver(settings, database_url, epoch)
        await archive_until(archiver, lambda: archiver.stats.archived >= 1, 20, "the original")
        _, copy = publisher.build(reading(1), source="det:K01-S", key="K01", event_time=now, ingest_time=now,
                                  event_id=original.event_id)  # same id, another stream
        await (await publisher.send(topic, copy))
        await archive_until(archiver, lambda: archiver.stats.consumed >= 2, 20, "the copy")
        await archiver.stop()
        await producer.stop()
        return archiver

    archiver = asyncio.run(scenario())
    assert (archiver.stats.archived, archiver.stats.duplicates) == (1, 1)
    assert count(database_url, "SELECT count(*) FROM events") == 1


def test_two_archivers_share_the_partitions_and_hand_over_cleanly(settings: Settings, database_url: str) -> None:
    """Scale-out and rebalance: members split the partitions; when one leaves, the other resumes its offsets."""

    async def scenario() -> tuple[Archiver, Archiver]:
        producer, publisher, epoch = await connect(settings)
        first = Archiver(settings, settings.kafka.bootstrap, database_url, CATALOGUE, epoch)
        second = Archiver(settings, settings.kafka.bootstrap, database_url, CATALOGUE, epoch, stats=first.stats)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        await first.start()
        await second.start()
        tasks = [asyncio.create_task(first.run(stop_first)), asyncio.create_task(second.run(stop_second))]
        async def split() -> bool:
            return bool(first.consumer.assignment()) and bool(second.consumer.assignment())
        await wait_until(split, 30, "both members to own partitions")
        assert len(first.consumer.assignment()) + len(second.consumer.assignment()) == len(CATALOGUE.archived_topics) * 8
        await publish_valid(publisher, 500)
        async def both_busy() -> bool:
            return first.stats.archived >= 500
        await wait_until(both_busy, 60, "the first 500 events")
        stop_first.set()
        await tasks[0]
        await first.stop()  # leaves the group: the second member takes every partition
        await publish_valid(publisher, 500, offset=500)
        async def all_archived() -> bool:
            return count(database_url, "SELECT count(*) FROM events") >= 1000
        await wait_until(all_archived, 60, "all 1000 events")
        stop_second.set()
        await tasks[1]
        await second.stop()
        await producer.stop()
        return first, second

    asyncio.run(scenario())
    assert count(database_url, "SELECT count(*) FROM events") == 1000
    assert count(database_url, "SELECT count(DISTINCT event_id) FROM events") == 1000
    assert count(database_url, "SELECT count(*) FROM events WHERE type = 'SequenceAnomalyDetected'") == 0
    audit = subprocess.run([sys.executable, "-m", "infra", "audit", "verify", "--database-url", database_url],
                           capture_output=True, text=True, check=False)
    assert audit.returncode == 0, audit.stdout


def test_stopping_an_archiver_twice_is_harmless(settings: Settings, database_url: str) -> None:
    """The runtime may stop a failed archiver, then stop it again at shutdown."""

    async def scenario() -> Archiver:
        producer, _, epoch = await connect(settings)
        archiver = await started_archiver(settings, database_url, epoch)
        await archiver.stop()
        await archiver.stop()
        await archiver.stop_quietly()
        await producer.stop()
        return archiver

    archiver = asyncio.run(scenario())
    assert archiver.conn is not None and archiver.conn.closed
    assert archiver._seek_conn is not None and archiver._seek_conn.closed
    with pytest.raises(RuntimeError, match="after shutdown"):  # the writer thread is gone
        archiver._writer_thread.submit(lambda: None)


def poison_records() -> list[tuple[str, str, bytes, str]]:
    """Issue 16's poison records: (topic, Kafka key, value, the reason they must be dead-lettered with)."""
    good = encode_event(_event(datetime.now(UTC)))  # a valid DetectorCounted about K09

    def variant(**changes: object) -> bytes:
        obj = msgspec.json.decode(good)
        obj.update(changes)
        return msgspec.json.encode(obj)

    return [
        ("lalin.detector", "K09", variant(event_time="0001-01-01T00:00:00+14:00"), "schema"),  # was OverflowError
        ("lalin.camera", "K09", good.replace(b'"det:bad"', b'"det:\xc3\x28"'), "malformed"),  # was UnicodeDecodeError
        ("lalin.controller", "K09", variant(event_time="1970-01-01T00:00:00Z"), "schema"),  # was archived in 1970
        ("lalin.detector", "K09", variant(event_time="0001-01-01T00:00:00Z"), "schema"),  # was archived in year 1
        ("lalin.detector", "K01", good, "key_mismatch"),
        ("lalin.command", "K09", good, "wrong_topic"),  # a DetectorCounted is not a command
        ("lalin.operator", "K09", good[:-1] + b',"key":"K09"}', "malformed"),  # a duplicate key
        ("lalin.state", "K09", good.replace(b'"lane"', b'"lane":' + b"[" * 3000 + b"]" * 3000 + b',"x"'), "malformed"),
    ]


def test_poison_records_on_every_topic_are_dead_lettered_and_archiving_goes_on(settings: Settings,
                                                                                database_url: str) -> None:
    """Issue 16: one poison record used to stop the archiver for good; each is now dead-lettered with its reason."""
    poison = poison_records()

    async def scenario() -> Archiver:
        producer, publisher, epoch = await connect(settings)
        before = await publish_valid(publisher, 50)
        for topic, key, value, _ in poison:
            await (await publisher.send_raw(topic, key, value))
        after = await publish_valid(publisher, 50, offset=50)
        archiver = await started_archiver(settings, database_url, epoch, producer=producer)
        total = len(before) + len(poison) + len(after)
        await archive_until(archiver, lambda: archiver.stats.consumed >= total, 30, f"{total} records consumed")
        await archiver.stop()
        await producer.stop()
        return archiver

    archiver = asyncio.run(scenario())
    assert archiver.stats.archived == 100, "the records after the poison ones are archived too"
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT topic, reason, detail, raw FROM dead_letters ORDER BY topic, kafka_offset").fetchall()
        partitions = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'").fetchall()]
    assert sorted((t, r) for t, r, _, _ in rows) == sorted((t, r) for t, _, _, r in poison)
    assert {bytes(raw) for *_, raw in rows} == {value for _, _, value, _ in poison}, "raw bytes kept"
    assert all(detail for _, _, detail, _ in rows)
    assert partitions and not [p for p in partitions if not p.startswith("events_20")], \
        f"no partition outside 2000-2099: {partitions}"
