"""Two stream worker processes (`lalin worker`) split the partitions; one is killed with SIGKILL mid-run;
the survivor takes over from the snapshots in PostgreSQL: no event lost, none counted twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg

from controllers.envelope import decode_archived
from controllers.payloads import TrafficMeasured
from infra.settings import Settings
from streams.fold_task import FoldTask, _TaskState
from streams.worker import FOLD_GROUP, FOLD_INPUTS
from tests.integration.test_stream_worker import TOPOLOGY, corridor_records, epoch_of, produce, read_all

NOW = datetime.now(UTC)


def start_worker(settings: Settings, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    assert settings.kafka.bootstrap is not None and settings.database.url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("LALIN_")}
    env |= {"LALIN_KAFKA__BOOTSTRAP": settings.kafka.bootstrap, "LALIN_DATABASE__URL": settings.database.url,
            "LALIN_RUNTIME__DATA_DIR": str(data_dir), "LALIN_KAFKA__BROKER_CHECK_INTERVAL_S": "0.5"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "infra", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


def folded(database_url: str) -> int:
    """Input records covered by the stored fold snapshots (sum of next offsets over the fold's inputs)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT offsets FROM fold_snapshots WHERE group_id = %s", (FOLD_GROUP,)).fetchall()
    return sum(int(v) for (offsets,) in rows for topic, v in offsets.items() if topic in FOLD_INPUTS)


def stored_states(database_url: str) -> dict[str, bytes]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT state FROM fold_snapshots WHERE group_id = %s", (FOLD_GROUP,)).fetchall()
    out: dict[str, bytes] = {}
    for (state,) in rows:
        for key, fold in msgspec.msgpack.decode(bytes(state), type=_TaskState).folds.items():
            out[key] = msgspec.msgpack.encode(fold)
    return out


def wait(predicate, timeout_s: float, what: str, procs: list[subprocess.Popen[bytes]], log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def test_killing_a_worker_mid_run_loses_and_doubles_nothing(settings: Settings, tmp_path: Path) -> None:
    assert settings.database.url is not None
    url = settings.database.url
    asyncio.run(epoch_of(settings))
    base = NOW.replace(second=0, microsecond=0) - timedelta(minutes=30)  # recent: within the validation bounds
    records = corridor_records(range(24), start=base)
    half = len(records) // 2
    log = tmp_path / "workers.log"
    a = start_worker(settings, tmp_path / "a", log)
    b = start_worker(settings, tmp_path / "b", log)
    procs = [a, b]
    try:
        split = [f"worker-{a.pid}: assigned partitions [", f"worker-{b.pid}: assigned partitions ["]

        def shares() -> list[int]:
            lines = log.read_text().splitlines()
            last = [[line for line in lines if line.startswith(s)][-1:] for s in split]
            return [len(line[0].split("[", 1)[1].strip("]").split(",")) if line and line[0].strip().endswith(
                "]") and not line[0].endswith("[]") else 0 for line in last]

        wait(lambda: shares() == [4, 4], 60, "the two workers to split the 8 partitions 4/4", procs, log)
        asyncio.run(produce(settings, records[:half]))
        wait(lambda: folded(url) >= half, 60, "the first half folded and snapshotted", procs, log)
        a.send_signal(signal.SIGKILL)  # mid-run: no final snapshot, no goodbye to the group
        a.wait(10)
        asyncio.run(produce(settings, records[half:]))
        wait(lambda: folded(url) >= len(records), 90, "the survivor to fold everything", procs, log)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    assert folded(url) == len(records)  # every record folded exactly once into the stored state
    reference = FoldTask(0, TOPOLOGY.layouts, "ref")
    for n, (topic, key, value) in enumerate(records):
        reference.handle(topic, n, key.encode(), value, NOW, lambda: NOW)
    expected = {k: msgspec.msgpack.encode(f.state) for k, f in reference.folds.items()}
    assert stored_states(url) == expected  # the same state as one uninterrupted run: nothing lost, nothing twice
    summaries = [decode_archived(v) for v in asyncio.run(read_all(settings, "lalin.state"))]
    by_id: dict[object, bytes] = {}
    for event in summaries:
        assert isinstance(event.payload, TrafficMeasured)
        body = msgspec.json.encode(event.payload)
        assert by_id.setdefault(event.event_id, body) == body  # a re-emitted summary is the same summary
    assert len(by_id) == sum(f.state.summaries for f in reference.folds.values())
    assert "joined lalin-streams" in log.read_text()
