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
import multiprocessing
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def _archiver_process(bootstrap: str, url: str, epoch: str, group: str, assigned: Any, index: int, go: Any,
                      stop: Any) -> None:
    """One archiver worker in its own process (as `lalin archive` runs one per core)."""

    async def work() -> None:
        settings = Settings(kafka=KafkaSettings(bootstrap=bootstrap, max_batch_records=10_000, archiver_group=group),
                            database=DatabaseSettings(url=url))
        archiver = Archiver(settings, bootstrap, url, load_catalogue(), epoch)
        await archiver.start()
        while not go.is_set():  # join the group (aiokafka joins in the background) and report the share
            assigned[index] = len(archiver.consumer.assignment())
            await asyncio.sleep(0.05)
        done = asyncio.Event()
        running = asyncio.create_task(archiver.run(done))
        while not stop.is_set():
            await asyncio.sleep(0.05)
        done.set()
        await running
        await archiver.stop()

    asyncio.run(work())


def archived_count(url: str) -> int:
    """Events archived so far (cheap: the stream heads, not a count over the events)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(position), 0) FROM stream_heads").fetchone()
        return int(row[0]) if row else 0


async def archive(settings: Settings, bootstrap: str, url: str, n: int, processes: int) -> float:
    """Seconds for ``processes`` archiver workers to archive all ``n`` events (the group join is not timed)."""
    catalogue = load_catalogue()
    producer, _ = await start_producer(settings.kafka, bootstrap)
    watch = EpochWatch(settings.kafka, bootstrap, catalogue, owner="bench")
    await watch.start()
    epoch = await watch.establish(producer, datetime.now(UTC))
    await watch.stop()
    await producer.stop()
    context = multiprocessing.get_context("spawn")
    assigned, go, stop = context.Array("i", processes), context.Event(), context.Event()
    group = f"bench-{uuid.uuid4().hex[:8]}"  # a fresh group per run: no rebalance against a previous run's members
    workers = [context.Process(target=_archiver_process, args=(bootstrap, url, epoch, group, assigned, i, go, stop))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(t.partitions for t in catalogue.topics if t.archived)
    deadline = time.monotonic() + 120
    while not (sum(assigned) == total and all(assigned)):
        if time.monotonic() > deadline:
            stop.set()
            go.set()
            raise RuntimeError(f"archiver workers did not share the {total} partitions within 120 s: {list(assigned)}")
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    go.set()
    while archived_count(url) < n:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    for worker in workers:
        worker.join(60)
    return elapsed


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
        consume, copy, one, two = [], [], [], []
        for i in range(repeat):
            consume_s, raw = await raw_consume(settings, broker.bootstrap, n)
            consume.append(consume_s)
            copy.append(raw_copy(fresh_database(pg.url, f"bench_copy_{i}"), raw))
            one.append(await archive(settings, broker.bootstrap, fresh_database(pg.url, f"bench_one_{i}"), n, 1))
            two.append(await archive(settings, broker.bootstrap, fresh_database(pg.url, f"bench_two_{i}"), n, 2))
        consume_s, copy_s, one_s, two_s = (statistics.median(xs) for xs in (consume, copy, one, two))
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    copy_name, one_name, two_name = ("raw binary COPY (same rows, same table)", "archive, 1 archiver process",
                                     "archive, 2 archiver processes")
    rates = {"produce (send_batch)": n / produce_s, "raw consume (getmany)": n / consume_s,
             copy_name: n / copy_s, one_name: n / one_s, two_name: n / two_s}
    spread = {"raw consume (getmany)": consume, copy_name: copy, one_name: one, two_name: two}
    print(f"events: {n:,} DetectorCounted, one per record (~{len(records[0][1])} bytes), {keys} keys; "
          f"median of {repeat} runs")
    for name, rate in rates.items():
        runs = spread.get(name)
        detail = f"   (runs: {', '.join(f'{n / s:,.0f}' for s in runs)})" if runs else ""
        print(f"  {name:42s} {rate:>12,.0f} events/s{detail}")
    for name in (one_name, two_name):
        print(f"  {name}: / raw COPY = {rates[name] / rates[copy_name]:.2f}, "
              f"/ raw consume = {rates[name] / rates['raw consume (getmany)']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=41)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.keys, args.repeat))
