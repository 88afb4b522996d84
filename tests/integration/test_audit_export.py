"""`lalin audit export` of a real archive, and `lalin audit verify-export` of what it wrote, offline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from controllers.archive_plan import RawRecord
from controllers.envelope import encode_event
from controllers.hashchain import GENESIS
from controllers.inbound import Limits
from infra.archive_store import ArchiveWriter
from infra.checkpoints import write_checkpoint
from tests.helpers import detector_event

pytestmark = pytest.mark.integration
K01 = "lalin.detector/K01/det:K01-N"
K02 = "lalin.detector/K02/det:K02-S"
LATE_SEQ = 12  # a K01 record delivered with an event time two hours early


def archive(url: str) -> datetime:
    """Archive 20 events of K01 (one second apart, number 12 timed 2 h early) and 5 of K02 through the
    real writer, with a checkpoint after the first half; returns the base time."""
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    k01 = [detector_event(s, at=at - timedelta(hours=2) if s == LATE_SEQ else at) for s in range(1, 21)]
    k02 = [detector_event(s, key="K02", source="det:K02-S", at=at) for s in range(1, 6)]
    records = [RawRecord("lalin.detector", 0, i, e.key.encode(), encode_event(e)) for i, e in enumerate(k01 + k02)]
    with psycopg.connect(url, autocommit=True) as conn:
        writer = ArchiveWriter(conn, "test", Limits())
        writer.write(records[:10], "epoch-1", datetime.now(UTC))
        asyncio.run(checkpoint(url))
        writer.write(records[10:], "epoch-1", datetime.now(UTC))
    return at


async def checkpoint(url: str) -> None:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await write_checkpoint(conn, datetime.now(UTC))
    await conn.close()


def lalin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra", "audit", *args], capture_output=True, text=True, check=False)


def export(url: str, start: datetime, end: datetime, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return lalin("export", "--from", start.isoformat(), "--to", end.isoformat(), "--out", str(out),
                 "--database-url", url, *extra)


def verify_export(out: Path) -> tuple[int, dict]:
    done = lalin("verify-export", str(out), "--json")
    return done.returncode, json.loads(done.stdout)


def stored(url: str, stream: str, position: int) -> tuple[str, bytes, bytes]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT event_id, prev_hash, hash FROM events WHERE stream = %s AND position = %s",
                           (stream, position)).fetchone()
    assert row is not None
    return str(row[0]), bytes(row[1]), bytes(row[2])


def test_an_export_of_a_period_verifies_offline_and_a_tampered_file_is_named(database_url: str, tmp_path: Path) -> None:
    at = archive(database_url)
    out = tmp_path / "export"
    # event times at + seq s: [at+5 s, at+15 s) holds K01 5..14 but 12 (late), and K02 5
    done = export(database_url, at + timedelta(seconds=5), at + timedelta(seconds=15), out, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout)
    assert result["ok"] and result["problems"] == []

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result["manifest"]
    assert manifest["format"] == "lalin-audit-export" and manifest["version"] == 1
    data = (out / "events.csv").read_bytes()
    assert (manifest["csv"]["sha256"], manifest["csv"]["size_bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert manifest["csv"]["rows"] == 11 and data.count(b"\r\nlalin.detector/") == 11
    k01, k02 = manifest["streams"]
    # K01: positions 5..14 contiguous, the late 12 included to keep the chain whole; anchored at 4's hash
    assert (k01["stream"], k01["first_position"], k01["last_position"], k01["count"], k01["outside_period"]) == (
        K01, 5, 14, 10, 1)
    assert k01["anchor_prev_hash"] == stored(database_url, K01, 4)[2].hex() == stored(database_url, K01, 5)[1].hex()
    assert k01["last_hash"] == stored(database_url, K01, 14)[2].hex()
    assert (k02["stream"], k02["first_position"], k02["last_position"], k02["count"]) == (K02, 5, 5, 1)
    assert k02["anchor_prev_hash"] != GENESIS.hex()
    with psycopg.connect(database_url) as conn:
        roots = [bytes(r[0]).hex() for r in conn.execute("SELECT root_hash FROM archive_checkpoints ORDER BY id")]
        database = conn.execute("SELECT current_database()").fetchone()
    # the checkpoint was made after the events' period (wall time): it is the first one after it
    assert [(c["root_hash"], c["in_period"]) for c in manifest["checkpoints"]] == [(roots[0], False)]
    assert database is not None and manifest["archive"]["database"] == database[0]

    code, report = verify_export(out)
    assert code == 0, report
    assert report["ok"] and (report["rows_checked"], report["streams_checked"]) == (11, 2)
    human = lalin("verify-export", str(out))
    assert human.returncode == 0 and human.stdout.startswith("export intact: 11 records in 2 streams verified")

    # an auditor's copy with one body edited: named by file, stream, position and event id
    event_id = stored(database_url, K01, 7)[0]
    lines = data.split(b"\r\n")
    [index] = [i for i, line in enumerate(lines) if event_id.encode() in line]
    assert b'""motorcycle"":12' in lines[index]
    lines[index] = lines[index].replace(b'""motorcycle"":12', b'""motorcycle"":2')
    (out / "events.csv").write_bytes(b"\r\n".join(lines))
    code, report = verify_export(out)
    assert code == 1 and not report["ok"]
    first = report["problems"][0]
    assert (first["file"], first["kind"], first["stream"], first["position"], first["event_id"]) == (
        "events.csv", "altered", K01, 7, event_id)
    assert (first["row"], first["line"]) == (3, 4)
    assert report["problems"][1]["kind"] == "checksum"  # and the file's SHA-256 no longer matches
    human = lalin("verify-export", str(out))
    assert human.returncode == 1 and "EXPORT NOT INTACT" in human.stdout
    assert f"altered in events.csv: stream {K01} position 7 event {event_id} (row 3, line 4, field body)" in human.stdout

    # restored, then the manifest's last hash of K02 edited
    (out / "events.csv").write_bytes(data)
    assert verify_export(out)[0] == 0
    edited = json.loads((out / "manifest.json").read_text())
    edited["streams"][1]["last_hash"] = "ff" * 32
    (out / "manifest.json").write_text(json.dumps(edited))
    code, report = verify_export(out)
    assert code == 1
    first = report["problems"][0]
    assert (first["file"], first["field"], first["stream"], first["position"]) == (
        "manifest.json", "streams[1].last_hash", K02, 5)


def test_a_truncated_export_is_named(database_url: str, tmp_path: Path) -> None:
    at = archive(database_url)
    out = tmp_path / "export"
    assert export(database_url, at, at + timedelta(minutes=5), out).returncode == 0
    data = (out / "events.csv").read_bytes()
    (out / "events.csv").write_bytes(data[: len(data) * 2 // 3])
    code, report = verify_export(out)
    assert code == 1
    first = report["problems"][0]
    assert (first["file"], first["kind"]) == ("events.csv", "truncated")
    assert f"ends after {len(data) * 2 // 3:,} of the {len(data):,} bytes" in first["detail"]
    assert first["stream"] == K01 and first["position"] is not None


def test_an_archive_tampered_before_the_export_exports_with_exit_1(database_url: str, tmp_path: Path) -> None:
    at = archive(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:  # bypass the append-only triggers
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE events SET body = body || ' ' WHERE stream = %s AND position = 3", (K01,))
    event_id = stored(database_url, K01, 3)[0]
    out = tmp_path / "export"
    done = export(database_url, at, at + timedelta(minutes=5), out)
    assert done.returncode == 1, done.stderr
    assert "EXPORTED RECORDS DO NOT VERIFY" in done.stdout
    assert f"altered in events.csv: stream {K01} position 3 event {event_id}" in done.stdout
    # the evidence is written all the same, and verifies the same way offline
    code, report = verify_export(out)
    assert code == 1 and report["problems"][0]["event_id"] == event_id
    assert len(report["problems"]) == 1  # the CSV is as exported: only the record is wrong


def test_what_could_not_be_done_exits_2(database_url: str, tmp_path: Path) -> None:
    at = archive(database_url)
    missing = lalin("verify-export", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    out = tmp_path / "export"
    assert export(database_url, at, at + timedelta(minutes=5), out).returncode == 0
    again = export(database_url, at, at + timedelta(minutes=5), out)
    assert again.returncode == 2 and "already holds an export" in again.stderr
    (out / "manifest.json").unlink()
    unreadable = lalin("verify-export", str(out))
    assert unreadable.returncode == 2 and "manifest.json" in unreadable.stderr
    down = export("postgresql://lalin@127.0.0.1:1/none?connect_timeout=3", at, at + timedelta(minutes=5),
                  tmp_path / "other")
    assert down.returncode == 2 and "cannot connect to the archive database" in down.stderr
