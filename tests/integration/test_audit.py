"""`lalin audit verify` on a real archive, tampered with directly in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from controllers.archive_plan import RawRecord
from controllers.envelope import encode_event
from controllers.inbound import Limits
from infra.archive_store import ArchiveWriter
from infra.checkpoints import write_checkpoint
from tests.helpers import detector_event

pytestmark = pytest.mark.integration
STREAM = "lalin.detector/K01/det:K01-N"


def archive(url: str, n: int = 20) -> list[str]:
    """Archive ``n`` events of one stream (and 5 of another) through the real writer."""
    at = datetime.now(UTC) - timedelta(hours=1)
    events = [detector_event(s, at=at) for s in range(1, n + 1)] + [
        detector_event(s, key="K02", source="det:K02-S", at=at) for s in range(1, 6)]

    records = [RawRecord("lalin.detector", 0, i, e.key.encode(), encode_event(e)) for i, e in enumerate(events)]
    with psycopg.connect(url, autocommit=True) as conn:
        writer = ArchiveWriter(conn, "test", Limits())
        writer.write(records[: n // 2], "epoch-1", datetime.now(UTC))
        asyncio.run(checkpoint(url))
        writer.write(records[n // 2:], "epoch-1", datetime.now(UTC))
    return [str(e.event_id) for e in events]


async def checkpoint(url: str) -> None:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await write_checkpoint(conn, datetime.now(UTC))
    await conn.close()


def verify(url: str, *extra: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "infra", "audit", "verify", "--json", "--database-url", url, *extra],
                          capture_output=True, text=True, check=False)
    return done.returncode, json.loads(done.stdout)


def tamper(url: str, statement: str, *args: object) -> None:
    """Bypass the append-only triggers as a superuser could."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement, args)


def test_an_intact_archive_verifies(database_url: str) -> None:
    archive(database_url)
    code, report = verify(database_url)
    assert code == 0 and report["ok"]
    assert report["records_checked"] == 25 and report["streams_checked"] == 2


def test_an_edited_record_is_named(database_url: str) -> None:
    ids = archive(database_url)
    tamper(database_url, "UPDATE events SET body = replace(body, '\"motorcycle\":12', '\"motorcycle\":2') "
                         "WHERE stream = %s AND position = 7", STREAM)
    code, report = verify(database_url)
    assert code == 1 and not report["ok"]
    [fault] = report["faults"]
    assert (fault["stream"], fault["position"], fault["kind"], fault["event_id"]) == (STREAM, 7, "altered", ids[6])


def test_an_edited_indexed_column_is_named(database_url: str) -> None:
    ids = archive(database_url)
    tamper(database_url, "UPDATE events SET seq = 99 WHERE stream = %s AND position = 3", STREAM)
    code, report = verify(database_url)
    assert code == 1
    assert (report["faults"][0]["position"], report["faults"][0]["event_id"]) == (3, ids[2])


def test_a_deleted_record_is_named(database_url: str) -> None:
    archive(database_url)
    tamper(database_url, "DELETE FROM events WHERE stream = %s AND position = 12", STREAM)
    code, report = verify(database_url)
    assert code == 1
    [fault] = report["faults"]
    assert (fault["kind"], fault["position"]) == ("missing", 12)


def test_deleting_the_newest_records_is_noticed(database_url: str) -> None:
    archive(database_url)
    tamper(database_url, "DELETE FROM events WHERE stream = %s AND position > 18", STREAM)
    code, report = verify(database_url)
    assert code == 1 and report["faults"][0]["kind"] == "missing" and report["faults"][0]["position"] == 19


def test_an_inserted_record_is_named(database_url: str) -> None:
    ids = archive(database_url)
    tamper(database_url, """INSERT INTO events SELECT event_time, gen_random_uuid(), stream, position, type, schema_version,
                            ingest_time, archived_at, source, key, seq, topic, kafka_partition, kafka_offset,
                            broker_epoch, body, prev_hash, hash FROM events WHERE stream = %s AND position = 5""", STREAM)
    code, report = verify(database_url)
    assert code == 1
    [fault] = report["faults"]
    assert (fault["kind"], fault["position"]) == ("inserted", 5)
    assert fault["event_id"] != ids[4]  # the forged copy is named, not the original


def test_human_readable_output_names_stream_position_and_event(database_url: str) -> None:
    ids = archive(database_url)
    tamper(database_url, "UPDATE events SET body = body || ' ' WHERE stream = %s AND position = 2", STREAM)
    done = subprocess.run([sys.executable, "-m", "infra", "audit", "verify", "--database-url", database_url],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "ARCHIVE NOT INTACT" in done.stdout
    assert f"altered: stream {STREAM} position 2 event {ids[1]}" in done.stdout


def test_since_starts_at_the_last_checkpoint(database_url: str) -> None:
    archive(database_url)
    # Damage before the checkpoint is outside a --since audit after it, but not outside a full one.
    tamper(database_url, "UPDATE events SET body = body || ' ' WHERE stream = %s AND position = 2", STREAM)
    code, report = verify(database_url, "--since", datetime.now(UTC).isoformat())
    assert code == 0 and report["records_checked"] == 15  # 10 after the K01 checkpoint + 5 of K02 (no checkpoint)
    code, _ = verify(database_url)
    assert code == 1
