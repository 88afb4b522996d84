"""Benchmark of the closed loop, in one run on the embedded Tansu broker and an embedded PostgreSQL:

1. **Fold rate**: lane readings per second folded end to end by one stream worker (the Faust app
   of ``streams/worker.py``: decode, fold per intersection, summaries produced to
   ``lalin.state``, decisions on them, snapshots with offsets in PostgreSQL), next to the raw
   aiokafka ``getmany`` consume rate of the same records (baseline, measured in the same run).
2. **Decision latency**: from producing the detector event that closes a window to the command
   block written to a real Modbus controller simulator (worker -> lalin.state -> decision ->
   lalin.command -> executor -> driver -> FC16), p50 / p99. The strategy here issues a command
   every round (the default strategy issues at most one per cycle, so it could not be timed
   often); it measures the pipeline, not the rule.
3. **Replay rate**: events per second that ``lalin replay`` re-folds and re-decides from the
   archive, next to the raw rate of reading and decoding the same rows (baseline).

Message granularity: one ``DetectorsCounted`` record per controller and interval, carrying all
its lanes (7.4 on average for the catalogued junctions).

Usage: python bench/loop.py [--intersections 200] [--seconds 120] [--samples 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from controllers.archive_plan import RawRecord
from controllers.decisions import CorridorMember
from controllers.envelope import decode_archived, encode_event, make_event
from controllers.inbound import Limits
from controllers.payloads import (
    CommandIssued,
    ControlMode,
    DetectorReading,
    DetectorsCounted,
    GroupState,
    Provenance,
    SignalStateReported,
    TimingPlanCommand,
    TrafficMeasured,
    VolumeByClass,
)
from controllers.plan import Plan
from controllers.strategy import DecisionContext, command_id
from controllers.traffic_state import DetectorSite, IntersectionLayout
from devices.controller_driver import ControllerDriver
from devices.controller_sim import ControllerSimulator
from devices.events import RecordingSink
from devices.fleet import load_fleet
from infra import db
from infra.archive_store import ArchiveWriter
from infra.broker_epoch import EpochWatch
from infra.commands import CommandExecutor
from infra.embedded.broker import TansuBroker
from infra.embedded.postgres import EmbeddedPostgres
from infra.kafka import make_consumer, start_producer
from infra.replay import run_replay
from infra.settings import DatabaseSettings, KafkaSettings, Settings
from infra.simclock import SimClock
from infra.topics import load_catalogue
from streams.decide_task import DecideTask
from streams.fold_task import FoldTask, corridor_key
from streams.topology import Topology, load_topology
from streams.worker import StreamWorker


def synthetic_topology(n: int) -> Topology:
    """``n`` intersections cloned from the catalogued plans, each its own one-member corridor."""
    base = load_topology()
    sources = sorted(base.layouts)
    layouts, plans, corridors = {}, {}, {}
    for k in range(n):
        src = base.layouts[sources[k % len(sources)]]
        ident = f"X{k:03d}"
        plan = src.plan
        layout = IntersectionLayout(ident, plan, tuple(DetectorSite(f"{ident}{d.id[len(src.intersection_id):]}", d.movement,
                                                                    d.lane, d.kind, d.distance_m)
                                                       for d in src.detectors), None, src.approaches)
        layouts[ident], plans[ident] = layout, plan
        corridors[corridor_key(layout)] = [CorridorMember(ident, plan, 1)]
    return Topology(layouts, corridors, plans)


def readings_records(topology: Topology, seconds: int, start: datetime) -> tuple[list[tuple[str, bytes]], int]:
    """One DetectorsCounted per intersection per second (1-s intervals); returns (key, value) records and readings."""
    rng = random.Random(5)
    out, readings = [], 0
    seqs: dict[str, int] = {}
    for s in range(seconds):
        at = start + timedelta(seconds=s + 1)
        for ident, layout in topology.layouts.items():
            seqs[ident] = seqs.get(ident, 0) + 1
            payload = DetectorsCounted(controller_id=ident, interval_s=1.0, readings=[
                DetectorReading(d.id, VolumeByClass(unclassified=rng.randint(0, 1)), round(rng.random() * 0.5, 2))
                for d in layout.detectors])
            readings += len(payload.readings)
            out.append((ident, encode_event(make_event(payload, event_id=uuid.uuid4(), event_time=at, ingest_time=at,
                                                       source=f"modbus:{ident}", key=ident, seq=seqs[ident]))))
    return out, readings


async def produce(settings: Settings, records: list[tuple[str, bytes]], topic: str = "lalin.detector") -> None:
    assert settings.kafka.bootstrap
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap)
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume_rate(settings: Settings, n: int) -> float:
    assert settings.kafka.bootstrap
    consumer = make_consumer(settings.kafka, settings.kafka.bootstrap, group_id=None)
    await consumer.start()
    try:
        parts = [tp for tp in await _partitions(consumer, "lalin.detector")]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, 0)
        got, t0 = 0, time.perf_counter()
        while got < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            got += sum(len(v) for v in batches.values())
        return got / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> list[Any]:
    from aiokafka import TopicPartition
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(8))]


async def epoch(settings: Settings) -> str:
    assert settings.kafka.bootstrap
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap)
    watch = EpochWatch(settings.kafka, settings.kafka.bootstrap, load_catalogue(), owner="bench")
    await watch.start()
    try:
        return await watch.establish(producer, datetime.now(UTC))
    finally:
        await watch.stop()
        await producer.stop()


async def fold_rate(settings: Settings, work: Path, n_intersections: int, seconds: int) -> dict[str, float]:
    topology = synthetic_topology(n_intersections)
    start = datetime.now(UTC) - timedelta(seconds=seconds + 60)
    records, readings = readings_records(topology, seconds, start)
    ep = await epoch(settings)
    await produce(settings, records)
    raw = await raw_consume_rate(settings, len(records))
    assert settings.kafka.bootstrap and settings.database.url
    worker = StreamWorker(settings, settings.kafka.bootstrap, settings.database.url, ep, topology,
                          lambda: datetime.now(UTC), work / "w")
    await worker.start()  # returns once the group is joined and the partitions sought (Tansu: ~3 s)
    t0, done0 = time.perf_counter(), worker.stats.fold_records  # what was folded while start() returned is not timed
    try:
        while worker.stats.fold_records < len(records):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
    finally:
        await worker.stop()
    timed = len(records) - done0
    per_record = readings / len(records)
    return {"records": len(records), "readings": readings, "raw_records_s": raw, "raw_readings_s": raw * per_record,
            "fold_records_s": timed / elapsed, "fold_readings_s": timed * per_record / elapsed, "seconds": elapsed,
            "summaries": worker.stats.summaries, "commands": worker.stats.commands}


class EveryRound:
    """A bench strategy: the plan's default timing, every round (times the pipeline, not a rule)."""

    name, version = "bench_every_round", "1"

    def decide(self, state: DecisionContext, plan: Plan, now: datetime) -> CommandIssued | None:
        timing = plan.default_timing
        assert timing is not None
        body = TimingPlanCommand(plan_id=state.plan_number, cycle_s=timing.cycle_s, offset_s=0.0,
                                 stage_greens_s=[timing.stage_greens_s[s] for s in plan.sequence])
        return CommandIssued(command_id=command_id(state.intersection_id, self.name, now), target=state.intersection_id,
                             command=body, provenance=Provenance(rule=self.name, rule_version="1",
                                                                 config_checksum=state.config_checksum))

    def learn(self, learned: Mapping[str, float], plan: Plan, measured: TrafficMeasured) -> dict[str, float]:
        return dict(learned)


async def latency(settings: Settings, work: Path, samples: int) -> dict[str, float]:
    site = load_fleet().site("K01")
    plan = site.load_plan()
    full = load_topology()
    layout = full.layouts["K01"]
    topology = Topology({"K01": layout}, {corridor_key(layout): [CorridorMember("K01", plan, site.plan_number)]},
                        {"K01": plan})
    clock = SimClock.starting(datetime.now(UTC), 60.0)  # one simulated minute (a window) per wall second
    sim = ControllerSimulator(site, plan, speed=60.0, start_at=clock())
    written: list[float] = []
    original = sim._command

    def record(block: list[int]) -> Any:
        written.append(time.perf_counter())
        return original(block)

    sim._command = record  # type: ignore[method-assign]
    await sim.start()
    sink = RecordingSink(clock=clock)
    driver = ControllerDriver(site, plan, "127.0.0.1", sim.port, sink, poll_s=0.2, clock=clock)
    await driver.start()
    ep = await epoch(settings)
    assert settings.kafka.bootstrap and settings.database.url
    worker = StreamWorker(settings, settings.kafka.bootstrap, settings.database.url, ep, topology, clock, work / "l",
                          strategy=EveryRound())
    executor = CommandExecutor(settings, settings.kafka.bootstrap, settings.database.url, ep, {"K01": driver}, clock,
                               ttl_s=1e9)
    stop = asyncio.Event()
    await worker.start()
    await executor.start()
    runner = asyncio.create_task(executor.run(stop))
    producer, _ = await start_producer(settings.kafka, settings.kafka.bootstrap)
    lat: list[float] = []
    try:
        for k in range(samples + 8):
            seq = k + 1
            at = clock()
            value = encode_event(make_event(DetectorsCounted(controller_id="K01", interval_s=60.0, readings=[
                DetectorReading(d.id, VolumeByClass(unclassified=20), 0.3) for d in layout.detectors]),
                event_id=uuid.uuid4(), event_time=at, ingest_time=at, source="modbus:K01", key="K01", seq=seq))
            if k == 0:
                signal = SignalStateReported(controller_id="K01", mode=ControlMode.CENTRAL, plan_id=1, cycle_s=100.0,
                                             stage=0, stage_elapsed_s=0.0, group_states={"A": GroupState.GREEN},
                                             offset_s=0.0, stage_greens_s=[30.0, 12.0, 24.0])
                await producer.send_and_wait("lalin.controller", encode_event(make_event(
                    signal, event_id=uuid.uuid4(), event_time=at, ingest_time=at, source="bench", key="K01", seq=1)),
                    key=b"K01")
            before = len(written)
            sent = time.perf_counter()
            await producer.send_and_wait("lalin.detector", value, key=b"K01")
            deadline = sent + 5.0
            while len(written) == before and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if len(written) > before and k >= 8:  # the first rounds warm the window up (5-min window)
                lat.append((written[before] - sent) * 1000)
            # one trigger per 2 s wall (a 100 s cycle is 1.7 s at x60): the driver has read the previous command back,
            # so no command waits behind another in the driver's queue
            await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - sent)))
    finally:
        stop.set()
        await runner
        await producer.stop()
        await executor.stop()
        await worker.stop()
        await driver.stop()
        await sim.stop()
    lat.sort()
    if not lat:
        return {"samples": 0}
    return {"samples": len(lat), "p50_ms": statistics.median(lat), "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "max_ms": lat[-1]}


def replay_rate(database_url: str, hours: float) -> dict[str, float]:
    """Archive a broker-less run of the catalogued corridor (1-s counts, 5 controllers), then replay it."""
    topology = load_topology()
    from controllers.strategy import AdaptiveSaturation
    strategy = AdaptiveSaturation()
    fold = FoldTask(0, topology.layouts, "bench")
    decide = DecideTask(0, topology.corridors, strategy, topology.checksum(strategy.config), "bench")
    start = datetime.now(UTC) - timedelta(hours=hours + 1)
    rows: list[RawRecord] = []
    seqs: dict[str, int] = {}
    now = datetime.now(UTC)
    rng = random.Random(3)
    for s in range(int(hours * 3600)):
        at = start + timedelta(seconds=s + 1)
        for ident, layout in sorted(topology.layouts.items()):
            seqs[ident] = seqs.get(ident, 0) + 1
            if s == 0:
                plan = topology.plans[ident]
                timing = plan.timings.get("AM_PEAK") or plan.default_timing
                assert timing is not None
                sig = encode_event(make_event(SignalStateReported(
                    controller_id=ident, mode=ControlMode.CENTRAL, plan_id=1, cycle_s=timing.cycle_s, stage=0,
                    stage_elapsed_s=0.0, group_states={"A": GroupState.GREEN}, offset_s=0.0,
                    stage_greens_s=[timing.stage_greens_s[x] for x in plan.sequence]), event_id=uuid.uuid4(),
                    event_time=at, ingest_time=at, source=f"sig:{ident}", key=ident, seq=1))
                rows.append(RawRecord("lalin.controller", 0, len(rows), ident.encode(), sig))
                fold.handle("lalin.controller", len(rows), ident.encode(), sig, now, lambda: now)
            value = encode_event(make_event(DetectorsCounted(controller_id=ident, interval_s=1.0, readings=[
                DetectorReading(d.id, VolumeByClass(unclassified=int(rng.random() < 0.3)), 0.2)
                for d in layout.detectors]), event_id=uuid.uuid4(), event_time=at, ingest_time=at,
                source=f"modbus:{ident}", key=ident, seq=seqs[ident]))
            rows.append(RawRecord("lalin.detector", 0, len(rows), ident.encode(), value))
            for summary in fold.handle("lalin.detector", len(rows), ident.encode(), value, now, lambda: now):
                body = encode_event(summary)
                rows.append(RawRecord("lalin.state", 0, len(rows), summary.key.encode(), body))
                for command in decide.handle("lalin.state", len(rows), summary.key.encode(), body, now, lambda: now):
                    rows.append(RawRecord("lalin.command", 0, len(rows), command.key.encode(), encode_event(command)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        writer = ArchiveWriter(conn, "bench", Limits(max_future_s=1e9))
        for k in range(0, len(rows), 20_000):
            writer.write(rows[k:k + 20_000], "bench-epoch", now)
    t0 = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        bodies = conn.execute("SELECT body FROM events").fetchall()
        decoded = [decode_archived(b.encode()) for (b,) in bodies]
    raw = len(decoded) / (time.perf_counter() - t0)
    readings = sum(len(d.payload.readings) for d in decoded if isinstance(d.payload, DetectorsCounted))
    since, until = start - timedelta(days=1), now + timedelta(days=1)
    folds, fold_elapsed = run_replay(database_url, since, until, decisions=False)
    single, single_elapsed = run_replay(database_url, since, until, jobs=1)
    report, elapsed = run_replay(database_url, since, until)
    return {"events": report.events, "replay_events_s": report.events / elapsed, "raw_read_decode_s": raw,
            "readings": readings, "replay_readings_s": readings / elapsed, "one_job_events_s": single.events / single_elapsed,
            "fold_only_events_s": folds.events / fold_elapsed,
            "summaries": report.summaries_checked, "commands": report.commands_checked,
            "differences": len(report.differences)}


async def main(intersections: int, seconds: int, samples: int, replay_hours: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="lalin-bench-loop-"))
    pg = EmbeddedPostgres(work / "pg", database="bench")
    pg.start()
    try:
        db.migrate(pg.url)
        for name, action in (("fold", "fold"), ("latency", "latency")):
            broker = TansuBroker(work / f"tansu-{name}.log")
            broker.start()
            try:
                settings = Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap), database=DatabaseSettings(url=pg.url))
                if action == "fold":
                    f = await fold_rate(settings, work, intersections, seconds)
                    print(f"fold: {f['records']:,} DetectorsCounted records = {f['readings']:,} lane readings "
                          f"({intersections} intersections x {seconds} s at one reading per lane per second)")
                    print(f"  raw aiokafka getmany    {f['raw_records_s']:>10,.0f} records/s  {f['raw_readings_s']:>10,.0f} "
                          "readings/s  (baseline)")
                    print(f"  stream worker, end to end {f['fold_records_s']:>8,.0f} records/s  {f['fold_readings_s']:>10,.0f} "
                          f"readings/s  = {f['fold_records_s'] / f['raw_records_s']:.3f} x raw "
                          f"({f['summaries']:,} summaries, {f['commands']:,} commands produced)")
                else:
                    lat = await latency(settings, work, samples)
                    print(f"latency: detector event produced -> command block written to the Modbus simulator, "
                          f"{lat.get('samples', 0)} samples: p50 {lat.get('p50_ms', float('nan')):.1f} ms, "
                          f"p99 {lat.get('p99_ms', float('nan')):.1f} ms, max {lat.get('max_ms', float('nan')):.1f} ms")
            finally:
                broker.stop()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_replay")
        replay_url = pg.url.rsplit("/", 1)[0] + "/bench_replay"
        db.migrate(replay_url)
        r = replay_rate(replay_url, replay_hours)
        jobs = os.cpu_count() or 1
        print(f"replay: {r['events']:,} archived events = {r['readings']:,} lane readings ({replay_hours:g} h of the "
              f"corridor, one DetectorsCounted per controller per second carrying all its lanes), "
              f"{r['summaries']:,} summaries, {r['commands']:,} commands, {r['differences']} differences")
        print(f"  baseline: read + decode in one process  {r['raw_read_decode_s']:>10,.0f} events/s")
        print(f"  re-fold + re-decide, {jobs} fold jobs      {r['replay_events_s']:>10,.0f} events/s = "
              f"{r['replay_events_s'] / r['raw_read_decode_s']:.2f} x  ({r['replay_readings_s']:,.0f} lane readings/s)")
        print(f"  re-fold + re-decide, 1 job            {r['one_job_events_s']:>10,.0f} events/s = "
              f"{r['one_job_events_s'] / r['raw_read_decode_s']:.2f} x")
        print(f"  re-fold only, {jobs} fold jobs            {r['fold_only_events_s']:>10,.0f} events/s = "
              f"{r['fold_only_events_s'] / r['raw_read_decode_s']:.2f} x")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intersections", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--replay-hours", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.intersections, args.seconds, args.samples, args.replay_hours))
