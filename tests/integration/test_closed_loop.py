"""The main job end to end: a bounded `lalin up --speed` runs the closed loop (twin, worker, decisions,
Modbus commands, automatic VMS over OPC UA), ends with the comparison report, and `lalin replay --verify`
of its archive finds zero differences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from controllers.network_map import LOS_COLOURS
from infra.accounts import Accounts
from tests.browser import chromium, dashboard_url, screenshot, wait_until

pytestmark = pytest.mark.integration
LALIN = [sys.executable, "-m", "infra"]
VIEWER_PASSWORD = "video-wall-badung"


def test_a_bounded_run_reports_against_fixed_time_and_replays_without_differences(tmp_path: Path,
                                                                                  database_url: str) -> None:
    data_dir = tmp_path / "lalin"
    Accounts(database_url).add("wall", "viewer", VIEWER_PASSWORD)  # the video wall's account
    env = {k: v for k, v in os.environ.items() if not k.startswith("LALIN_")}
    env |= {"LALIN_DATABASE__URL": database_url, "LALIN_RUNTIME__SUMMARY_INTERVAL_S": "2",
            # a vehicle stalls on K03's southern approach (northbound traffic) from 06:05 for 4 simulated minutes
            "LALIN_LOOP__INCIDENT_AT": "06:05", "LALIN_LOOP__INCIDENT_DURATION_S": "240"}
    log = tmp_path / "up.log"
    with log.open("w") as sink:
        up = subprocess.Popen([*LALIN, "up", "--data-dir", str(data_dir), "--duration", "75s", "--speed", "20"],
                              stdout=sink, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            look_at_the_live_dashboard(data_dir)
        finally:
            returncode = up.wait(timeout=420)
    out = log.read_text()
    assert returncode == 0, out[-4000:]
    assert "SUMO twin of Jl. Sunset Road" in out and "report:" in out and "lalin stopped" in out, out[-4000:]
    report = json.loads((data_dir / "report.json").read_text())
    assert report["closed_loop"]["trips"] > 0 and report["fixed_time"]["trips"] > 0
    begin, end = (datetime.strptime(report["window"][k], "%H:%M") for k in ("begin", "end"))
    assert report["window"]["simulated_s"] >= 0.95 * (end - begin).total_seconds() - 60  # the twin kept pace with the clock
    assert report["window"]["simulated_s"] > 1000  # most of the 75 s at x20 (start-up takes the rest)
    with psycopg.connect(database_url) as conn:
        kinds = dict(conn.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
        outcomes = conn.execute(
            """SELECT i.event_id, count(a.event_id) FROM events i LEFT JOIN events a
                 ON a.type = 'CommandAcknowledged' AND (a.body::jsonb -> 'payload' ->> 'command_id')::uuid = i.event_id
               WHERE i.type = 'CommandIssued' GROUP BY i.event_id""").fetchall()
    assert kinds.get("DetectorsCounted", 0) > 0 and kinds.get("CameraObserved", 0) > 0
    assert kinds.get("TrafficMeasured", 0) > 0, kinds
    assert kinds.get("CommandIssued", 0) > 0, kinds  # adaptive decisions were taken ...
    assert all(n <= 1 for _, n in outcomes) and sum(n for _, n in outcomes) > 0  # ... and each ended at most once
    shown_at = check_the_incident_reached_the_board_upstream_and_cleared(database_url)
    with psycopg.connect(database_url) as conn:
        signal_commands = conn.execute("SELECT count(*) FROM events WHERE type = 'CommandIssued' AND source = 'lalin:decide'"
                                       ).fetchone()[0]
        vms_commands = conn.execute("SELECT count(*) FROM events WHERE type = 'CommandIssued' AND source = 'lalin:vms'"
                                    ).fetchone()[0]
    checked = []
    for jobs in ("2", "1"):  # the fold check split between two processes, and all in one
        replay = subprocess.run([*LALIN, "replay", "--database-url", database_url, "--from", "2000-01-01T00:00:00+00:00",
                                 "--to", "2100-01-01T00:00:00+00:00", "--verify", "--json", "--jobs", jobs],
                                capture_output=True, text=True, env=env, timeout=300, check=False)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        body = json.loads(replay.stdout)
        assert body["differences"] == []
        assert body["summaries_checked"] == kinds["TrafficMeasured"]
        assert body["commands_checked"] == signal_commands
        assert body["vms_evaluations_checked"] == kinds["VmsEvaluated"] and body["vms_commands_checked"] == vms_commands
        checked.append((body["events"], body["summaries_checked"], body["commands_checked"]))
    assert checked[0] == checked[1]
    # the operator's and the auditor's views of the boards, from the archive
    status = subprocess.run([*LALIN, "vms", "status", "--database-url", database_url, "--json"], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert status.returncode == 0, status.stderr
    boards = {b["board_id"]: b for b in json.loads(status.stdout)}
    with psycopg.connect(database_url) as conn:  # what the board last reported, straight from the archive
        last_report = conn.execute("""SELECT body::jsonb -> 'payload' ->> 'status' FROM events WHERE type = 'VmsDisplayReported'
                                      AND key = 'vms-sunset-03' ORDER BY event_time DESC, position DESC LIMIT 1""").fetchone()
    assert boards["vms-sunset-03"]["display"]["status"] == last_report[0], (boards["vms-sunset-03"], last_report)
    assert boards["vms-sunset-03"]["last_command"]["outcome"] == "acknowledged"
    explain = subprocess.run([*LALIN, "vms", "explain", "vms-sunset-03", "--at", shown_at.isoformat(), "--database-url",
                              database_url, "--json"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert explain.returncode == 0, explain.stderr
    why = json.loads(explain.stdout)
    assert why["decision"]["cause"] == "incident:K03:S" and why["cause"]["evidence"]["kind"] == "stalled_vehicle"
    assert why["reproduced"] and why["cause"]["input_event_ids"], why
    assert why["commands"][0]["rule"] == "vms.incident_blocking" and why["commands"][0]["outcome"] == "acknowledged"
    # An archived count altered afterwards: the (parallel) replay names the summary that no longer follows. The count
    # is one that was folded: cited by a summary with no late inputs (a late one is cited but not counted, so altering it
    # changes no summary; the archive's hash chain is what finds that) and no unhealthy detector; the first reading of
    # the batch is a stop-line loop (register order), the kind the fold measures.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # past the append-only trigger, as a tamperer would
        altered = conn.execute(
            """UPDATE events SET body = regexp_replace(body, '"unclassified":([0-9]+)', '"unclassified":9\\1')
               WHERE event_id = (SELECT event_id FROM events WHERE type = 'DetectorsCounted'
                                   AND event_id IN (SELECT jsonb_array_elements_text(p -> 'input_event_ids')::uuid
                                                    FROM (SELECT body::jsonb -> 'payload' AS p FROM events
                                                          WHERE type = 'TrafficMeasured') AS summaries
                                                    WHERE (p ->> 'late_events')::int = 0
                                                      AND jsonb_array_length(p -> 'detectors_unhealthy') = 0)
                                 ORDER BY event_time LIMIT 1)
               RETURNING key, body::jsonb -> 'payload' -> 'readings' -> 0 ->> 'detector_id'""").fetchall()
    assert len(altered) == 1 and "-A" not in altered[0][1], altered  # a stop-line loop's count
    replay = subprocess.run([*LALIN, "replay", "--database-url", database_url, "--from", "2000-01-01T00:00:00+00:00",
                             "--to", "2100-01-01T00:00:00+00:00", "--verify", "--jobs", "2"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert f"FIRST DIFFERENCE (fold) at {altered[0][0]} #" in replay.stdout, replay.stdout


def check_the_incident_reached_the_board_upstream_and_cleared(database_url: str) -> datetime:
    """The stalled vehicle reached the nearest board upstream of it within two minutes of the camera reporting it, only
    that board, each VMS command was read back from the board, and the message came down within two minutes of the
    policy's clearing delay after the camera last saw it."""
    with psycopg.connect(database_url) as conn:
        seen = conn.execute("""SELECT min(event_time), max(event_time) FROM events WHERE type = 'CameraObserved'
                               AND key = 'K03' AND body LIKE '%stalled_vehicle%'""").fetchone()
        vms = conn.execute(
            """SELECT i.event_time, i.body::jsonb -> 'payload' ->> 'target',
                      i.body::jsonb -> 'payload' -> 'provenance' ->> 'rule',
                      i.body::jsonb -> 'payload' -> 'command' ->> 'kind', a.body::jsonb -> 'payload' ->> 'outcome'
                 FROM events i LEFT JOIN events a ON a.type = 'CommandAcknowledged'
                      AND (a.body::jsonb -> 'payload' ->> 'command_id')::uuid = i.event_id
                WHERE i.type = 'CommandIssued' AND i.source = 'lalin:vms' ORDER BY i.event_time, i.event_id""").fetchall()
        evaluations = conn.execute("SELECT count(*) FROM events WHERE type = 'VmsEvaluated'").fetchone()[0]
    first_seen, last_seen = seen
    assert first_seen is not None, "the camera never reported the stalled vehicle"
    assert evaluations > 0 and vms, "the automatic VMS issued nothing"
    assert all(outcome == "acknowledged" for *_, outcome in vms), vms  # every message read back from its board
    shown = [(t, board) for t, board, rule, kind, _ in vms if rule == "vms.incident_blocking" and kind == "vms_message"]
    assert [board for _, board in shown][:1] == ["vms-sunset-03"], vms  # the nearest board facing northbound traffic
    assert {board for _, board in shown} == {"vms-sunset-03"}, vms  # one board (max_boards 1), never the southbound ones
    assert (shown[0][0] - first_seen).total_seconds() <= 120, (first_seen, shown)
    cleared = [t for t, board, rule, kind, _ in vms if board == "vms-sunset-03" and rule == "vms.incident_blocking"
               and kind == "vms_blank"]
    assert cleared, vms
    assert 0 < (cleared[0] - last_seen).total_seconds() <= 180 + 120, (last_seen, cleared)
    return shown[0][0]


def look_at_the_live_dashboard(data_dir: Path) -> None:
    """While the run goes on: the dashboard's address in runtime.json, its state and map, and the page in a real
    browser — junctions coloured by level of service and a board showing its message (screenshot saved)."""
    url = dashboard_url(data_dir)
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(url + "api/state", timeout=10)  # nothing without a login
    http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    form = urllib.parse.urlencode({"username": "wall", "password": VIEWER_PASSWORD, "next": "/"}).encode()
    with http.open(url + "login", data=form, timeout=10) as answer:
        assert "wall (viewer)" in answer.read().decode()
    with http.open(url + "api/state", timeout=10) as answer:
        state = json.loads(answer.read())
    assert set(state["junctions"]) == {"K01", "K02", "K03", "K04", "K05"} and len(state["boards"]) == 5
    with http.open(url + "map.svg", timeout=10) as answer:
        assert 'id="junction-K03"' in answer.read().decode()
    with chromium() as browser:
        browser.get(url + "login")
        browser.find_element(By.ID, "username").send_keys("wall")
        browser.find_element(By.ID, "password").send_keys(VIEWER_PASSWORD)
        browser.find_element(By.ID, "login").click()
        wait_until(browser, 20, lambda d: d.find_elements(By.ID, "who"), "the viewer logged in")
        wait_until(browser, 90, lambda d: d.execute_script(
            "return [...document.querySelectorAll('.junction-group')].some(g => g.dataset.los && g.dataset.los !== '?')"),
            "a junction coloured by its level of service")
        wait_until(browser, 90, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#board-vms-sunset-01 .board-text')].some(t => t.textContent.length)"),
            "vms-sunset-01's text on the map")
        fills = browser.execute_script("return [...document.querySelectorAll('.los')].map(c => c.getAttribute('fill'))")
        assert any(fill != LOS_COLOURS["?"] for fill in fills), fills
        assert "Alarms" in browser.page_source
        assert screenshot(browser, "dashboard").stat().st_size > 10_000
        # a junction's page, from the map: what it runs now and its recent traffic as charts (from the archive)
        browser.find_element(By.CSS_SELECTOR, "#junction-K03 a").click()
        wait_until(browser, 30, lambda d: "K03" in d.find_element(By.ID, "junction-title").text, "K03's page")

        def charted(driver: webdriver.Chrome) -> bool:
            if driver.find_elements(By.CSS_SELECTOR, "#chart-flows_veh_h polyline"):
                return True
            driver.refresh()  # the archive catches up minute by minute
            return False

        wait_until(browser, 60, charted, "K03's flow chart", poll_s=2)
        assert "timing" in browser.find_element(By.ID, "junction-now").text
        screenshot(browser, "junction-K03")
