"""Killing the embedded broker mid-stream: detected, re-provisioned, reported, archiving resumes."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from infra.embedded.broker import TansuBroker
from infra.runtime import Runtime
from infra.settings import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_a_broker_that_loses_its_log_is_detected_and_recovered(settings: Settings, broker: TansuBroker,
                                                               database_url: str, tmp_path: Path) -> None:
    settings.generator.interval_s = 0.2
    out = io.StringIO()
    runtime = Runtime(settings, out=out)
    replacement: list[TansuBroker] = []

    async def scenario() -> None:
        task = asyncio.create_task(runtime.run())
        async def archiving() -> bool:
            return runtime.archive_stats.archived >= 50
        await wait_until(archiving, 60, "the first 50 events archived")
        before = runtime.archive_stats.archived
        old_epoch = runtime.epoch

        broker.kill()  # the memory-only broker loses every topic, record and offset
        await asyncio.sleep(0.5)
        fresh = TansuBroker(tmp_path / "tansu2.log", port=broker.port)
        fresh.start()
        replacement.append(fresh)

        async def detected() -> bool:
            return runtime.restarts_detected == 1 and runtime.epoch != old_epoch
        # Measured here: noticed within one check (2 s); re-provisioning, the alarm and the archiver's re-join take
        # ~15-20 s more (the old archiver's consumer joined the new broker's group before it was stopped, and the
        # new member waits for that session to expire). The wait leaves room for a loaded CI machine.
        await wait_until(detected, 60, "the broker restart to be detected and the archiver back")
        async def archiving_again() -> bool:
            return runtime.archive_stats.archived >= before + 50
        await wait_until(archiving_again, 60, "archiving in the new epoch")
        assert before >= 50
        runtime._stop.set()
        await task

    try:
        asyncio.run(scenario())
    finally:
        for fresh in replacement:
            fresh.stop()

    text = out.getvalue()
    assert "ALARM broker lost its log" in text
    epochs = rows(database_url, "SELECT epoch, ended_at FROM broker_epochs ORDER BY first_seen_at")
    assert len(epochs) == 2 and epochs[0][1] is not None and epochs[1][1] is None
    [(payload,)] = rows(database_url, "SELECT payload FROM events_view WHERE type = 'BrokerRestartDetected'")
    assert payload["old_epoch"] == epochs[0][0] and payload["new_epoch"] == epochs[1][0]
    assert payload["at_risk_from"] <= payload["detected_at"]
    per_epoch = dict(rows(database_url, "SELECT broker_epoch, count(*) FROM events GROUP BY broker_epoch"))
    assert per_epoch[epochs[0][0]] >= 50 and per_epoch[epochs[1][0]] >= 50
    # Whatever the old broker acknowledged but lalin had not archived is named, per stream, by sequence anomalies;
    # nothing is ever archived twice.
    assert rows(database_url, "SELECT count(*) - count(DISTINCT event_id) FROM events") == [(0,)]
    # Deliveries retried across the outage may arrive late, filling a gap already reported.
    anomalies = rows(database_url, "SELECT payload FROM events_view WHERE type = 'SequenceAnomalyDetected'")
    assert {p["kind"] for (p,) in anomalies} <= {"gap", "late"}, [p for (p,) in anomalies if p["kind"] not in ("gap", "late")]
    audit = subprocess.run([sys.executable, "-m", "infra", "audit", "verify", "--database-url", database_url],
                           capture_output=True, text=True, check=False)
    assert audit.returncode == 0, audit.stdout
