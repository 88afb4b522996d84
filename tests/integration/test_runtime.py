"""`lalin up` as a user runs it: embedded services, one runtime per data directory, clean stops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from devices.vms_model import load_boards

pytestmark = pytest.mark.integration
LALIN = [sys.executable, "-m", "infra"]


def lalin_env(database_url: str | None) -> dict[str, str]:
    """The environment of a user's shell: embedded defaults, or the external database under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LALIN_")}
    if os.environ.get("LALIN_DATABASE__URL") and database_url:
        env["LALIN_DATABASE__URL"] = database_url
    env["LALIN_RUNTIME__SUMMARY_INTERVAL_S"] = "1"
    return env


def wait_for_runtime(data_dir: Path, proc: subprocess.Popen[str], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lalin up exited early ({proc.returncode})")
        path = data_dir / "runtime.json"
        if path.exists():
            info = json.loads(path.read_text())
            if info.get("pid") == proc.pid:  # not a stale file left by a killed runtime
                return info
        time.sleep(0.1)
    raise AssertionError("lalin up did not describe itself in runtime.json")


def collect_lines(proc: subprocess.Popen[str]) -> list[str]:
    """Read the process's output as it comes, in a thread; the list grows while it runs."""
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        lines.extend(iter(proc.stdout.readline, ""))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def descendants_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_runs_reports_a_rival_and_stops_every_child(tmp_path: Path, database_url: str, stop_signal: int) -> None:
    data_dir = tmp_path / "lalin"
    env = lalin_env(database_url)
    proc = subprocess.Popen([*LALIN, "up", "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines = collect_lines(proc)
    try:
        info = wait_for_runtime(data_dir, proc)
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert info["kafka"]["embedded"] is True and info["kafka"]["pid"] in children
        if not os.environ.get("LALIN_DATABASE__URL"):
            assert info["database"]["embedded"] is True and info["database"]["pid"] in children

        rival = subprocess.run([*LALIN, "up", "--data-dir", str(data_dir)], capture_output=True, text=True, check=False,
                               env=env, timeout=60)
        assert "already running" in rival.stdout
        assert str(proc.pid) in rival.stdout
        assert [c.pid for c in psutil.Process(proc.pid).children(recursive=True)] == children  # nothing new started

        status = subprocess.run([*LALIN, "status", "--json", "--data-dir", str(data_dir)], capture_output=True,
                                text=True, env=env, timeout=60, check=True)
        report = json.loads(status.stdout)
        assert report["running"] is True
        deadline = time.monotonic() + 30
        while report.get("archive", {}).get("events", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            report = json.loads(subprocess.run([*LALIN, "status", "--json", "--data-dir", str(data_dir)],
                                               capture_output=True, text=True, env=env, check=True).stdout)
        assert report["archive"]["events"] > 0, "the demo generator's events reach the archive"
        deadline, device_events = time.monotonic() + 30, []
        with psycopg.connect(info["database"]["url"], autocommit=True) as conn:
            while len(device_events) < 5 and time.monotonic() < deadline:  # every controller's state, via Modbus
                time.sleep(0.5)
                device_events = conn.execute("SELECT DISTINCT source FROM events WHERE type = 'SignalStateReported' "
                                             "AND source LIKE 'modbus:%'").fetchall()
        assert sorted(source for (source,) in device_events) == [f"modbus:K0{k}" for k in range(1, 6)]
        boards = len(load_boards().boards)
        connected = f"controllers 5/5 | boards {boards}/{boards} connected"
        deadline = time.monotonic() + 60
        while not any("archived" in line and connected in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.send_signal(stop_signal)
        proc.wait(timeout=60)
    time.sleep(0.2)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert "lalin stopped: every child process ended" in output
    assert "archived" in output, output  # the live summary
    assert connected in output, output  # every device's driver connected (the boards over SignAndEncrypt)
    assert descendants_alive(children) == []
    assert not (data_dir / "runtime.json").exists()
    stale = [p.pid for p in psutil.process_iter(["cmdline"]) if str(data_dir) in " ".join(p.info["cmdline"] or [])]
    assert stale == []


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    done = subprocess.run([*LALIN, "status", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          env=lalin_env(None), check=True)
    assert "not running" in done.stdout


def test_audit_without_a_database_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run([*LALIN, "audit", "verify", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                          env=lalin_env(None), check=False)
    assert done.returncode != 0
    assert "LALIN_DATABASE__URL" in done.stderr


def test_children_stop_even_when_lalin_is_killed_and_the_next_up_starts_clean(tmp_path: Path, database_url: str) -> None:
    """SIGKILL cannot be handled; the children's parent-death signal stops them, and the lock dies with the process."""
    data_dir = tmp_path / "lalin"
    env = lalin_env(database_url)
    for attempt in range(2):
        proc = subprocess.Popen([*LALIN, "up", "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        info = wait_for_runtime(data_dir, proc)
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert info["kafka"]["pid"] in children
        if attempt == 0:
            proc.kill()
            proc.wait(10)
            deadline = time.monotonic() + 30
            while descendants_alive(children) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert descendants_alive(children) == [], "children outlived a killed lalin"
        else:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
            assert descendants_alive(children) == []


def test_an_extra_archiver_worker_shares_the_work(tmp_path: Path, database_url: str) -> None:
    """`lalin archive` beside `lalin up` joins the archiver group; together they archive everything once."""
    data_dir = tmp_path / "lalin"
    env = {**lalin_env(database_url), "LALIN_GENERATOR__INTERVAL_S": "0.2"}
    up = subprocess.Popen([*LALIN, "up", "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)
    up_lines = collect_lines(up)
    worker: subprocess.Popen[str] | None = None
    try:
        info = wait_for_runtime(data_dir, up)
        worker = subprocess.Popen([*LALIN, "archive", "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)
        worker_lines = collect_lines(worker)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shares = [int(m.group(1).replace(",", "")) for line in worker_lines
                      if (m := re.search(r"archived ([\d,]+)", line))]
            if shares and shares[-1] > 0:
                break
            time.sleep(0.3)
        assert shares and shares[-1] > 0, "".join(worker_lines)
        assert any("extra archiver worker" in line for line in worker_lines)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        # While lalin runs: the chains the two archivers wrote together verify, and nothing is doubled.
        audit = subprocess.run([*LALIN, "audit", "verify", "--json", "--data-dir", str(data_dir)],
                               capture_output=True, text=True, env=env, check=False)
        assert audit.returncode == 0 and json.loads(audit.stdout)["ok"], audit.stdout
        with psycopg.connect(info["database"]["url"]) as conn:
            total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        assert total == distinct and total > 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert up.returncode == 0, "".join(up_lines)
