"""Stream workers as processes: ``lalin worker`` (one member of the ``lalin-streams`` group) and the
runtime's supervisor that starts, watches and restarts them.

A worker gets the broker, the database and the clock from its environment
(``LALIN_KAFKA__BOOTSTRAP``, ``LALIN_DATABASE__URL``, ``LALIN_SIMCLOCK``): the same command runs
beside ``lalin up`` or on another machine against a real Kafka cluster (docs/scaling.md). It
establishes the broker epoch, runs :class:`streams.worker.StreamWorker`, and when the broker
loses its log (a new epoch) it leaves the group and joins again in the new epoch: the state is
kept, the offsets start again at 0 of the new log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from infra.broker_epoch import EpochWatch
from infra.kafka import start_producer
from infra.settings import Settings
from infra.simclock import ENV as SIMCLOCK_ENV
from infra.simclock import SimClock
from infra.topics import load_catalogue

log = logging.getLogger(__name__)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


async def run_worker(settings: Settings, stop: asyncio.Event, clock: Callable[[], datetime] | None = None,
                     say: Callable[[str], None] = print) -> None:
    """Run one stream worker until ``stop`` is set (re-joining after a broker restart)."""
    from streams.topology import load_topology
    from streams.worker import StreamWorker

    bootstrap, database_url = settings.kafka.bootstrap, settings.database.url
    if not bootstrap or not database_url:
        raise SystemExit("a stream worker needs LALIN_KAFKA__BOOTSTRAP and LALIN_DATABASE__URL (run `lalin up` first)")
    clock = clock or SimClock.from_env() or _wall_clock
    topology = load_topology()
    name = f"worker-{os.getpid()}"
    producer, _ = await start_producer(settings.kafka, bootstrap)
    watch = EpochWatch(settings.kafka, bootstrap, load_catalogue(), owner=f"lalin-worker:{uuid.uuid4().hex[:8]}")
    await watch.start()
    try:
        rejoining = False
        while not stop.is_set():
            epoch = await watch.establish(producer, clock(), after_restart=rejoining)
            rejoining = True
            worker = StreamWorker(settings, bootstrap, database_url, epoch, topology, clock,
                                  settings.runtime.data_dir, name=name,
                                  on_assigned=lambda parts: say(f"{name}: assigned partitions {parts}"))
            await worker.start()
            say(f"{name}: joined lalin-streams in broker epoch {epoch[:12]}, partitions {sorted(worker.stats.partitions)}")
            try:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):  # the interval passed: check the worker and the epoch
                        await asyncio.wait_for(stop.wait(), timeout=settings.kafka.broker_check_interval_s)
                    if worker.crashed:
                        raise RuntimeError(f"{name}: the Faust app or agent crashed: {worker.crash_reason!r}")
                    if not stop.is_set() and not await watch.still_same():
                        say(f"{name}: the broker lost its log (epoch {epoch[:12]}); joining the new one")
                        break
            finally:
                await worker.stop()
    finally:
        await watch.stop()
        await producer.stop()


def worker_main(settings: Settings) -> None:
    """``lalin worker``: run until SIGINT/SIGTERM."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop, say=lambda line: print(line, flush=True))

    asyncio.run(main())


class WorkerProcesses:
    """The runtime's stream workers: ``count`` child processes (``python -m infra worker``), restarted when they die."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path) -> None:
        self.count, self.env, self.log_dir = count, env, log_dir
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.restarts = 0

    def _spawn(self, k: int) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"worker-{k}.log", "ab")  # noqa: SIM115 - the child owns it after Popen
        try:
            return subprocess.Popen([sys.executable, "-m", "infra", "worker"], env={**os.environ, **self.env},
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def start(self) -> None:
        """Start every worker."""
        for k in range(self.count):
            self.procs[k] = self._spawn(k)

    def alive(self) -> int:
        """Workers running now."""
        return sum(p is not None and p.poll() is None for p in self.procs)

    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def supervise(self) -> list[tuple[int, int]]:
        """Restart dead workers; returns the index and exit code of each one restarted."""
        restarted: list[tuple[int, int]] = []
        for k, proc in enumerate(self.procs):
            code = proc.poll() if proc is not None else None
            if code is not None:
                self.procs[k] = self._spawn(k)
                self.restarts += 1
                restarted.append((k, code))
        return restarted

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every worker (each writes its final snapshot), then SIGKILL what is left."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = [None] * self.count


def worker_env(settings: Settings, bootstrap: str, database_url: str, clock: SimClock | None) -> dict[str, str]:
    """The environment a worker process needs (broker, database, data directory, clock)."""
    env = {"LALIN_KAFKA__BOOTSTRAP": bootstrap, "LALIN_DATABASE__URL": database_url,
           "LALIN_RUNTIME__DATA_DIR": str(settings.runtime.data_dir.resolve())}
    if clock is not None:
        env[SIMCLOCK_ENV] = clock.to_env()
    return env
