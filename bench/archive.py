"""Benchmark: events/s through producer -> broker -> archiver -> PostgreSQL, with baselines.

Measured in one run, on the embedded Tansu broker and an embedded PostgreSQL it starts:

* raw consume: aiokafka ``getmany`` over the same records, doing nothing with them;
* raw COPY: binary COPY of the archiver's own rows into an identical, empty events table
  (same partitioning and indexes) — the floor cost of storing them;
* archive: lalin's archiver end to end (decode + validate + dedup + hash chain + COPY +
  heads + offsets, one transaction per batch).

Each measurement is repeated (``--repeat``, fresh databases each time) and the median is
reported, with the spread, because the COPY baseline varies by ±15 % between runs here.

Usage: python bench/archive.py [--events 200000] [--keys 41] [--repeat 3]
Message granularity: one DetectorCounted event (~330 bytes of JSON) per Kafka record.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiokafka.partitioner import DefaultPartitioner

from controllers.archive_plan import RawRecord, classify, plan_batch
from controllers.envelope import encode_event, make_event
from controllers.payloads import DetectorCounted, VolumeByClass
from infra import db
from infra.archive_store import _COPY_EVENTS, _EVENT_TYPES
from infra.archiver import Archiver
from infra.broker_epoch import EpochWatch
from infra.embedded.broker import TansuBroker
from infra.embedded.postgres import EmbeddedPostgres
from infra.kafka import make_consumer, start_producer
from infra.settings import DatabaseSettings, KafkaSettings, Settings
from infra.topics import load_catalogue

TOPIC = "lalin.detector"


def make_records(n: int, keys: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    seqs: dict[str, int] = {}
    out = []
    for i in range(n):
        key = f"K{i % keys:02d}"
        seqs[key] = seqs.get(key, 0) + 1
        payload = DetectorCounted(detector_id=f"{key}-N-1", interval_s=60.0,
                                  volume=VolumeByClass(motorcycle=i % 50, car=i % 17, heavy=i % 3),
                                  occupancy=(i % 97) / 100, mean_speed_kmh=float(20 + i % 30), lane="N1")
        event = make_event(payload, event_id=uuid.uuid4(), event_time=now, ingest_time=now,
                           source=f"det:{key}-N", key=key, seq=seqs[key])
        out.append((key.encode(), encode_event(event)))
    return out


async def produce(settings: Settings, bootstrap: str, records: list[tuple[bytes, bytes]]) -> float:
    producer, _ = await start_producer(settings.kafka, bootstrap)
    partitions = list(range(load_catalogue().spec(TOPIC).partitions))
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in records:
        by_partition.setdefault(partitioner(key, partitions, partitions), []).append((key, value))
    started = time.perf_counter()
    futures = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, TOPIC, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        futures.append(await producer.send_batch(batch, TOPIC, partition=partition))
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


async def raw_consume(settings: Settings, bootstrap: str, n: int) -> tuple[float, list[RawRecord]]:
    consumer = make_consumer(settings.kafka, bootstrap, group_id=None)
    await consumer.start()
    from aiokafka import TopicPartition

    tps = [TopicPartition(TOPIC, p) for p in range(load_catalogue().spec(TOPIC).partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    got: list[RawRecord] = []
    started = time.perf_counter()
    while len(got) < n:
        batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
        for tp, msgs in batches.items():
            got.extend(RawRecord(tp.topic, tp.partition, m.offset, m.key, m.value) for m in msgs)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return elapsed, got


def raw_copy(url: str, records: list[RawRecord]) -> float:
    """Binary COPY of the archiver's own rows (planned beforehand, untimed) into an empty events table."""
    now = datetime.now(UTC)
    plan = plan_batch(classify(records, now), now, {}, set())
    rows = [(r.event.event_time, r.event.event_id, r.stream, r.position, r.event.type, r.event.schema_version,
             r.event.ingest_time, now, r.event.source, r.event.key, r.event.seq, r.topic, r.partition, r.offset,
             "bench", r.body.decode(), r.prev_hash, r.hash) for r in plan.rows]
    with psycopg.connect(url, autocommit=True) as conn:
        db.ensure_day_partitions(conn, {now.date()}, set())
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(_COPY_EVENTS) as copy:
            copy.set_types(_EVENT_TYPES)
            for row in rows:
                copy.write_row(row)
        return time.perf_counter() - started


async def archive(settings: Settings, bootstrap: str, url: str, n: int) -> float:
    catalogue = load_catalogue()
    producer, _ = await start_producer(settings.kafka, bootstrap)
    watch = EpochWatch(settings.kafka, bootstrap, catalogue, owner="bench")
    await watch.start()
    epoch = await watch.establish(producer, datetime.now(UTC))
    await watch.stop()
    await producer.stop()
    archiver = Archiver(settings, bootstrap, url, catalogue, epoch)
    await archiver.start()
    while archiver.stats.consumed == 0:  # the group join (half the session timeout on Tansu) is not timed,
        await archiver.run_once(timeout_ms=100)  # nor is the first batch
    first = archiver.stats.consumed
    started = time.perf_counter()
    stop = asyncio.Event()
    running = asyncio.create_task(archiver.run(stop))  # the production loop (overlaps consecutive batches)
    while archiver.stats.consumed < n:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await running
    await archiver.stop()
    return elapsed * n / (n - first)  # seconds for n events at the measured rate


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    db.migrate(url)
    return url


async def main(n: int, keys: int, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="lalin-bench-"))
    pg = EmbeddedPostgres(work / "pg", database="bench_admin")
    pg.start()
    broker = TansuBroker(work / "tansu.log")
    broker.start()
    try:
        settings = Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap, max_batch_records=10_000),
                            database=DatabaseSettings(url=pg.url))
        catalogue = load_catalogue()
        from infra.kafka import provision_topics

        await provision_topics(settings.kafka, broker.bootstrap, catalogue)
        records = make_records(n, keys)
        produce_s = await produce(settings, broker.bootstrap, records)
        consume, copy, archived = [], [], []
        for i in range(repeat):
            consume_s, raw = await raw_consume(settings, broker.bootstrap, n)
            consume.append(consume_s)
            copy.append(raw_copy(fresh_database(pg.url, f"bench_copy_{i}"), raw))
            archived.append(await archive(settings, broker.bootstrap, fresh_database(pg.url, f"bench_archive_{i}"), n))
        consume_s, copy_s, archive_s = (statistics.median(xs) for xs in (consume, copy, archived))
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    rates = {"produce (send_batch)": n / produce_s, "raw consume (getmany)": n / consume_s,
             "raw binary COPY (same rows, same table)": n / copy_s, "archive end to end": n / archive_s}
    spread = {"raw consume (getmany)": consume, "raw binary COPY (same rows, same table)": copy,
              "archive end to end": archived}
    print(f"events: {n:,} DetectorCounted, one per record (~{len(records[0][1])} bytes), {keys} keys; "
          f"median of {repeat} runs")
    for name, rate in rates.items():
        runs = spread.get(name)
        detail = f"   (runs: {', '.join(f'{n / s:,.0f}' for s in runs)})" if runs else ""
        print(f"  {name:42s} {rate:>12,.0f} events/s{detail}")
    print(f"  archive / raw COPY    = {rates['archive end to end'] / rates['raw binary COPY (same rows, same table)']:.2f}")
    print(f"  archive / raw consume = {rates['archive end to end'] / rates['raw consume (getmany)']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=41)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.keys, args.repeat))
