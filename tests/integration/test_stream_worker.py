"""The stream worker on a real broker (Tansu) and PostgreSQL: fold -> lalin.state -> decisions -> lalin.command,
and a restart that neither loses nor double-counts anything (snapshots with offsets in PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer

from controllers.envelope import decode_archived, encode_event, make_event
from controllers.payloads import (
    CommandIssued,
    ControlMode,
    DetectorReading,
    DetectorsCounted,
    GroupState,
    Payload,
    SignalStateReported,
    TrafficMeasured,
    VolumeByClass,
)
from infra.broker_epoch import EpochWatch
from infra.kafka import start_producer
from infra.settings import Settings
from infra.topics import load_catalogue
from streams.fold_task import FoldTask
from streams.topology import load_topology
from streams.worker import StreamWorker
from tests.helpers import wait_until

T0 = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
TOPOLOGY = load_topology()


def clock() -> datetime:
    return T0 + timedelta(hours=1)


def wire(payload: Payload, at: datetime, key: str, seq: int) -> bytes:
    return encode_event(make_event(payload, event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{key}/{seq}"), event_time=at,
                                   ingest_time=at, source=f"modbus:{key}", key=key, seq=seq))


def corridor_records(minutes: range, start: datetime = T0) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) of every controller of the corridor for the given minutes after ``start``."""
    out = []
    for k in minutes:
        for site, plan in sorted(TOPOLOGY.plans.items()):
            timing = plan.timings.get("AM_PEAK") or plan.default_timing
            assert timing is not None
            if k == 0:
                out.append(("lalin.controller", site, wire(SignalStateReported(
                    controller_id=site, mode=ControlMode.TIME_OF_DAY, plan_id=1, cycle_s=timing.cycle_s, stage=0,
                    stage_elapsed_s=0.0, group_states={"A": GroupState.GREEN}, offset_s=0.0,
                    stage_greens_s=[timing.stage_greens_s[s] for s in plan.sequence]), start, site, 1)))
            readings = [DetectorReading(d.id, VolumeByClass(unclassified=12 + k), 0.3) for d in TOPOLOGY.layouts[site].detectors]
            out.append(("lalin.detector", site, wire(DetectorsCounted(controller_id=site, interval_s=60.0, readings=readings),
                                                     start + timedelta(minutes=k + 1), site, k + 2)))
    return out


async def produce(settings: Settings, records: list[tuple[str, str, bytes]]) -> None:
    assert settings.kafka.bootstrap is not None
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap)
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        out: list[bytes] = []
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                return out
            out += [m.value or b"" for records in batches.values() for m in records]
    finally:
        await consumer.stop()


async def epoch_of(settings: Settings) -> str:
    assert settings.kafka.bootstrap is not None
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap)
    watch = EpochWatch(settings.kafka, settings.kafka.bootstrap, load_catalogue(), owner="test")
    await watch.start()
    try:
        return await watch.establish(producer, clock())
    finally:
        await watch.stop()
        await producer.stop()


def worker(settings: Settings, epoch: str, tmp_path: Path) -> StreamWorker:
    assert settings.kafka.bootstrap is not None and settings.database.url is not None
    return StreamWorker(settings, settings.kafka.bootstrap, settings.database.url, epoch, TOPOLOGY, clock, tmp_path,
                        snapshot_interval_s=0.3)


def reference_states(records: list[tuple[str, str, bytes]]) -> dict[str, bytes]:
    """Every intersection's fold state after an uninterrupted, broker-less run over the same records."""
    task = FoldTask(0, TOPOLOGY.layouts, "ref")
    for n, (topic, key, value) in enumerate(records):
        task.handle(topic, n, key.encode(), value, clock(), clock)
    return {k: msgspec.msgpack.encode(f.state) for k, f in task.folds.items()}


def test_worker_folds_decides_and_a_restart_resumes_exactly(settings: Settings, tmp_path: Path) -> None:
    async def scenario() -> None:
        epoch = await epoch_of(settings)
        records = corridor_records(range(14))
        half = len(records) // 2
        await produce(settings, records[:half])
        first = worker(settings, epoch, tmp_path)
        await first.start()
        try:
            await wait_until(lambda: _true(first.stats.fold_records >= half), 30, "the first worker folds the first half")
            assert sorted(first.stats.partitions) == list(range(8))  # alone in the group: every partition
        finally:
            await first.stop()  # final snapshot before it leaves the group
        await produce(settings, records[half:])
        second = worker(settings, epoch, tmp_path)
        await second.start()
        try:
            await wait_until(lambda: _true(second.stats.fold_records >= len(records) - half), 30,
                             "the second worker folds the rest, from the stored offsets")
            await asyncio.sleep(1.0)  # let anything re-read show up
            assert second.stats.fold_records == len(records) - half  # resumed at the stored offsets: nothing read twice
            states = {k: msgspec.msgpack.encode(f.state) for task in second.folds.values() for k, f in task.folds.items()}
        finally:
            await second.stop()
        assert states == reference_states(records)  # no loss, no double counting: the same state as one run
        summaries = [decode_archived(v) for v in await read_all(settings, "lalin.state")]
        assert summaries and all(isinstance(e.payload, TrafficMeasured) for e in summaries)
        assert len({e.event_id for e in summaries}) == len(summaries)  # each window summarised once
        commands = [decode_archived(v) for v in await read_all(settings, "lalin.command")]
        issued = [e.payload for e in commands if isinstance(e.payload, CommandIssued)]
        assert {c.target for c in issued} == set(TOPOLOGY.plans)

    asyncio.run(scenario())


def _true(value: bool) -> asyncio.Future[bool]:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
