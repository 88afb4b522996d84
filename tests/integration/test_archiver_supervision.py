"""The runtime keeps archiving through database trouble: alarm, restart, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import io

import psycopg
import pytest

from infra.runtime import Runtime
from infra.settings import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def test_archiver_sessions_killed_mid_run_are_restarted(settings: Settings, database_url: str) -> None:
    settings.generator.interval_s = 0.1
    out = io.StringIO()
    runtime = Runtime(settings, out=out)

    async def scenario() -> int:
        task = asyncio.create_task(runtime.run())
        async def archived(n: int) -> bool:
            return runtime.archive_stats.archived >= n
        await wait_until(lambda: archived(100), 60, "100 events archived")
        assert runtime.broker is None and runtime.postgres is None  # external services: nothing embedded started
        for _ in range(2):  # the database drops the archiver's sessions (a failover, an admin, a crash)
            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND pid <> pg_backend_pid() AND application_name <> 'keep'")
            await wait_until(lambda: asyncio.sleep(0, runtime.archiver_failures > 0), 30, "the failure to be noticed")
            target = runtime.archive_stats.archived + 100
            await wait_until(lambda t=target: archived(t), 60, "archiving to resume")
        runtime._stop.set()
        await task
        assert runtime.generator is not None
        return runtime.generator.sent

    sent = asyncio.run(scenario())
    assert "ALARM archiver: failed" in out.getvalue()
    assert "CLEARED archiver: restarted" in out.getvalue()
    assert runtime.alarms.active == {} and runtime.alarms.raised >= 1
    with psycopg.connect(database_url) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events "
                                       "WHERE source LIKE 'demo:%'").fetchone()
    assert total == distinct, "nothing archived twice"
    assert total == sent, "every acknowledged record archived: the runtime drains the broker before it stops"
