"""The command centre in a real browser (headless Chromium) on a running `lalin up` with the closed loop: an
engineer logs in, opens a junction from the map, submits a plan with a conflicting green and sees it refused,
checks and submits a valid retiming with its what-if; a second engineer approves it and watches the controller
simulator apply it (read back over Modbus); the adaptive strategy's timings are then refused at the held junction;
a vehicle stalled in the twin reaches the nearest board upstream on the map. Every step is in the archive.
Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.common.by import By

from infra.accounts import Accounts
from tests.browser import chromium, dashboard_url, screenshot, wait_until

pytestmark = pytest.mark.integration
LALIN = [sys.executable, "-m", "infra"]
PASSWORD = "sunset-road-2026"


def test_engineers_retime_a_junction_with_four_eyes_and_operators_see_the_incident(tmp_path: Path,
                                                                                   database_url: str) -> None:
    accounts = Accounts(database_url)
    for name, role in (("eng.ayu", "engineer"), ("eng.made", "engineer"), ("wall", "viewer")):
        accounts.add(name, role, PASSWORD)
    data_dir = tmp_path / "lalin"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LALIN_")}
    env |= {"LALIN_DATABASE__URL": database_url, "LALIN_LOOP__BASELINE": "false", "LALIN_RUNTIME__SUMMARY_INTERVAL_S": "5",
            # the stalled vehicle stays until the run ends (2 h of twin time, 6 min of wall time at 20x): the board's
            # message must not depend on how fast this machine gets through the plan steps before looking at it
            "LALIN_LOOP__INCIDENT_AT": "06:08", "LALIN_LOOP__INCIDENT_DURATION_S": "7200"}
    log = tmp_path / "up.log"
    with log.open("w") as sink:
        up = subprocess.Popen([*LALIN, "up", "--data-dir", str(data_dir), "--duration", "540s", "--speed", "20"],
                              stdout=sink, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            url = dashboard_url(data_dir).rstrip("/")
            with chromium() as browser:
                proposal_url = engineer_proposes(browser, url)
                command_id = second_engineer_approves(browser, url, proposal_url)
                incident_reaches_the_board(browser, url)
            adaptive_timings_are_refused_at_the_held_junction(database_url)
        except BaseException:
            sink.flush()
            print("--- lalin up's output, last 4000 characters ---\n" + log.read_text()[-4000:])
            raise
        finally:
            up.send_signal(signal.SIGINT)  # Ctrl-C: everything stops cleanly
            returncode = up.wait(timeout=120)
    out = log.read_text()
    assert returncode == 0, out[-4000:]
    the_archive_tells_every_step(database_url, command_id, env)


def login(browser: webdriver.Chrome, url: str, user: str, next_path: str = "/") -> None:
    browser.get(f"{url}/login?next={next_path}")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_until(browser, 20, lambda d: d.current_url.split("?")[0].endswith(next_path)
               and user in d.find_element(By.ID, "who").text, f"{user} logged in and on {next_path}")


def set_plan_text(browser: webdriver.Chrome, change) -> None:
    area = browser.find_element(By.ID, "plan-text")
    plan = yaml.safe_load(area.get_property("value"))
    change(plan)
    browser.execute_script("arguments[0].value = arguments[1]", area, yaml.safe_dump(plan, sort_keys=False))


def engineer_proposes(browser: webdriver.Chrome, url: str) -> str:
    """eng.ayu: the map, K03's page, its plan; a conflicting green refused; a valid retiming checked, predicted and
    submitted. Returns the proposal's address."""
    login(browser, url, "eng.ayu")
    wait_until(browser, 90, lambda d: d.execute_script(
        "return [...document.querySelectorAll('.junction-group')].some(g => g.dataset.los && g.dataset.los !== '?')"),
        "a junction coloured by its level of service")
    browser.find_element(By.CSS_SELECTOR, "#junction-K03 a").click()
    wait_until(browser, 30, lambda d: "K03" in d.find_element(By.ID, "junction-title").text, "K03's page")
    browser.find_element(By.LINK_TEXT, "its plan").click()
    wait_until(browser, 20, lambda d: "v1 deployed" in d.find_element(By.ID, "plan-title").text, "K03's plan editor")

    def conflict(plan: dict) -> None:  # Jl. Gatot Subroto Barat from the east (D) green with Sunset Rd (A) in S1
        next(s for s in plan["stages"] if s["id"] == "S1")["green"].append("D")

    set_plan_text(browser, conflict)
    browser.find_element(By.ID, "check").click()
    wait_until(browser, 20, lambda d: d.find_elements(By.ID, "result-verdict"), "the conflicting plan's check")
    assert browser.find_element(By.ID, "result-verdict").text == "Refused"
    assert "stage S1 shows conflicting groups A and D green together" in browser.find_element(By.ID, "result").text
    browser.find_element(By.ID, "reason").send_keys("give the side road more green")
    browser.find_element(By.ID, "submit").click()
    wait_until(browser, 20, lambda d: d.find_elements(By.ID, "problems"), "the conflicting plan's refusal")
    assert "conflicting_green" in browser.find_element(By.ID, "problems").text
    screenshot(browser, "plan-refused")

    browser.get(f"{url}/plans/K03")  # start again from the deployed version

    def retime(plan: dict) -> None:  # 4 s from the side road (S3) to Sunset Road (S1): the cycle stays 100 s
        plan["default_timing"]["stage_greens_s"] |= {"S1": 34.0, "S3": 20.0}

    set_plan_text(browser, retime)
    browser.find_element(By.ID, "check").click()
    wait_until(browser, 20, lambda d: d.find_elements(By.ID, "result-verdict"), "the retiming's check")
    assert browser.find_element(By.ID, "result-verdict").text == "Safe"
    browser.find_element(By.ID, "whatif").click()
    wait_until(browser, 30, lambda d: d.find_elements(By.ID, "whatif-proposed"), "the HCM what-if")
    assert "s/pcu" in browser.find_element(By.ID, "whatif-deployed").text
    assert "s/pcu" in browser.find_element(By.ID, "whatif-proposed").text
    period_start = browser.find_element(By.ID, "period-start").get_property("value")  # the default: the twin's time now
    browser.find_element(By.ID, "simulate").click()  # the short run of the twin, deployed and proposed side by side
    wait_until(browser, 240, lambda d: d.find_elements(By.ID, "simulation-result"), "the twin's what-if run", poll_s=1)
    assert "mean delay (s/veh)" in browser.find_element(By.ID, "simulation-result").text
    # the period measured is the form's, by default the twin's time of day now (on a 5-minute mark, 06:00 or later)
    measured = re.search(r"trips departing (\d\d:\d\d)-\d\d:\d\d WITA, (after a warm-up from|from an empty network)",
                         browser.find_element(By.ID, "simulation").text)
    assert measured is not None and measured.group(1) == period_start[:5] and period_start[3:5] in {
        f"{m:02d}" for m in range(0, 60, 5)} and "06:00" <= period_start[:5] <= "08:40", (period_start, measured)
    browser.execute_script("document.getElementById('check').scrollIntoView()")
    screenshot(browser, "plan-whatif")
    browser.find_element(By.ID, "reason").send_keys("AM peak: Sunset Road northbound queue spills back")
    browser.find_element(By.ID, "submit").click()
    wait_until(browser, 20, lambda d: "/proposals/" in d.current_url, "the submitted proposal's page")
    assert browser.find_element(By.ID, "status").text == "pending"
    assert "default_timing.stage_greens_s.S1: 30.0 -> 34.0" in browser.find_element(By.TAG_NAME, "main").text
    return browser.current_url


def second_engineer_approves(browser: webdriver.Chrome, url: str, proposal_url: str) -> str:
    """The author may not approve her own change; eng.made approves it and the controller applies it."""
    browser.find_element(By.ID, "review-reason").send_keys("my own change")
    browser.find_element(By.ID, "approve").click()
    wait_until(browser, 20, lambda d: d.find_elements(By.ID, "refusal"), "the author's own approval refused")  # 403
    assert "a change needs a second person's approval" in browser.find_element(By.ID, "refusal").text
    assert browser.find_element(By.ID, "status").text == "pending"
    browser.get(url + "/")
    browser.find_element(By.ID, "logout").click()
    wait_until(browser, 20, lambda d: d.current_url.endswith("/login"), "the login page after signing out")
    login(browser, url, "eng.made", proposal_url.split(url, 1)[1])
    wait_until(browser, 20, lambda d: d.find_elements(By.ID, "review-reason"), "the proposal's review form for eng.made")
    browser.find_element(By.ID, "review-reason").send_keys("checked the what-if: S3 keeps X below 0.9")
    browser.find_element(By.ID, "approve").click()

    def applied(driver: webdriver.Chrome) -> bool:
        text = driver.find_element(By.ID, "deployment").text
        return "acknowledged" in text and "cycle 100 s, greens [34,12,20]" in text

    wait_until(browser, 90, applied, "the approved plan acknowledged by the controller")
    assert browser.find_element(By.ID, "status").text == "deployed"
    screenshot(browser, "plan-deployed")
    body = json.loads(browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('{proposal_url.replace('/proposals/', '/api/proposals/')}').then(r => r.text()).then(done)"))
    assert body["review"]["reviewer"] == "eng.made" and body["deployment"]["hold"] is True
    browser.get(url + "/plans")
    assert "held on v2 by eng.made, its schedule running default" in browser.find_element(By.ID, "plan-K03").text
    return str(body["deployment"]["command_id"])


def incident_reaches_the_board(browser: webdriver.Chrome, url: str) -> None:
    """The vehicle stalled on K03's southern approach shows on the nearest northbound board of the live map."""
    browser.get(url + "/")

    def shown(driver: webdriver.Chrome) -> bool:
        return bool(driver.execute_script(
            "return [...document.querySelectorAll('#board-vms-sunset-03 .board-text')]"
            ".some(t => /MOGOK|STALLED/.test(t.textContent))"))

    wait_until(browser, 120, shown, "the stalled vehicle's message on vms-sunset-03")
    screenshot(browser, "incident-on-board")


def adaptive_timings_are_refused_at_the_held_junction(database_url: str) -> None:
    """After the deployment the adaptive strategy keeps deciding for K03; the executor refuses its timings (held)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            held = conn.execute(
                """SELECT count(*) FROM events WHERE type = 'CommandAcknowledged' AND key = 'K03'
                     AND body::jsonb -> 'payload' ->> 'outcome' = 'rejected'
                     AND body::jsonb -> 'payload' ->> 'detail' LIKE 'held: junction K03 runs plan version 2%%'"""
            ).fetchone()[0]
        if held:
            return
        time.sleep(1)
    raise AssertionError("no adaptive timing was refused at the held junction within 90 s")


def the_archive_tells_every_step(database_url: str, command_id: str, env: dict[str, str]) -> None:
    with psycopg.connect(database_url) as conn:
        steps = conn.execute(
            """SELECT type, body::jsonb -> 'payload' FROM events WHERE type IN ('PlanProposed', 'PlanReviewed',
                      'PlanDeployed', 'OperatorActed') ORDER BY event_time, position""").fetchall()
        outcome = conn.execute(
            """SELECT body::jsonb -> 'payload' ->> 'outcome' FROM events WHERE type = 'CommandAcknowledged'
                 AND body::jsonb -> 'payload' ->> 'command_id' = %s""", (command_id,)).fetchall()
    kinds = [(t, p.get("action")) for t, p in steps]
    assert ("OperatorActed", "plan.submit_refused") in kinds
    assert [t for t, _ in kinds if t.startswith("Plan")] == ["PlanProposed", "PlanReviewed", "PlanDeployed"]
    proposed = next(p for t, p in steps if t == "PlanProposed")
    reviewed = next(p for t, p in steps if t == "PlanReviewed")
    assert proposed["author"] == "eng.ayu" and reviewed["reviewer"] == "eng.made" and reviewed["decision"] == "approved"
    denied = [p for t, p in steps if t == "OperatorActed" and p["action"] == "web.denied"]
    assert any(p["operator"] == "eng.ayu" and "second person" in p["reason"] for p in denied)
    assert outcome == [("acknowledged",)]
    # the auditor's replay derives every workflow step again (the four-eyes rule, the deployment at its instant and
    # its command) besides the fold, the decisions and the VMS
    replay = subprocess.run([*LALIN, "replay", "--database-url", database_url, "--from", "2000-01-01T00:00:00+00:00",
                             "--to", "2100-01-01T00:00:00+00:00", "--verify", "--json", "--jobs", "1"],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    body = json.loads(replay.stdout)
    assert body["differences"] == [] and body["plan_steps_checked"] == 3, body
