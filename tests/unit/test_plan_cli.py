"""`lalin plan validate` as an engineer runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from infra.plans import PLANS_DIR

LALIN = [sys.executable, "-m", "infra"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LALIN, *args], capture_output=True, text=True, check=False)


def test_a_safe_plan_passes() -> None:
    done = run("plan", "validate", str(PLANS_DIR / "K01.yaml"))
    assert done.returncode == 0 and "K01 v1 is safe" in done.stdout


def test_a_plan_with_a_conflict_exits_1_listing_every_violation(tmp_path: Path) -> None:
    data = yaml.safe_load((PLANS_DIR / "K01.yaml").read_text())
    data["stages"][0]["green"].append("D")  # Jl. Dewi Sri green with Sunset Road
    data["intergreens_s"]["P2"]["A"] = 9
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    done = run("plan", "validate", str(path))
    assert done.returncode == 1
    assert "conflicting_green: stage S1 shows conflicting groups A and D green together" in done.stdout
    assert "intergreen_below_clearance: intergreen P2 -> A is 9.00 s, its clearance needs 16.67 s" in done.stdout
    report = json.loads(run("plan", "validate", "--json", str(path)).stdout)
    assert not report["ok"] and {v["code"] for v in report["violations"]} >= {"conflicting_green",
                                                                              "intergreen_below_clearance"}
    assert len(report["checksum"]) == 64


def test_a_malformed_plan_names_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load((PLANS_DIR / "K01.yaml").read_text())
    data["signal_groups"][0]["min_green_s"] = -3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    done = run("plan", "validate", str(path))
    assert done.returncode == 2
    assert "min_green_s" in done.stderr and "greater than or equal to 0" in done.stderr


COUNTS = PLANS_DIR.parent / "counts"


def test_timing_compute_prints_the_design(tmp_path: Path) -> None:
    done = run("timing", "compute", str(PLANS_DIR / "K01.yaml"), "--counts", str(COUNTS / "K01_am_peak.csv"))
    assert done.returncode == 0, done.stderr
    assert "cycle 127.0 s" in done.stdout and "Y = 0.559, L = 34.0 s" in done.stdout
    assert "intersection: delay 36.8 s/pcu, LOS D" in done.stdout
    as_json = json.loads(run("timing", "compute", str(PLANS_DIR / "K01.yaml"), "--counts",
                             str(COUNTS / "K01_am_peak.csv"), "--cycle", "100", "--json").stdout)
    assert as_json["cycle_s"] == 100 and {m["movement"] for m in as_json["movements"]} == {"N_T", "N_R", "S_TR", "E_A", "W_A"}


def test_timing_compute_refuses_bad_counts_naming_row_field_and_unit(tmp_path: Path) -> None:
    rows = (COUNTS / "K01_am_peak.csv").read_text().splitlines()
    rows[3] = rows[3].replace(",veh/h", ",veh/jam")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows) + "\n")
    done = run("timing", "compute", str(PLANS_DIR / "K01.yaml"), "--counts", str(bad))
    assert done.returncode == 2
    assert f"{bad} row 4: unit 'veh/jam' is unknown; use one of veh/h" in done.stderr
    bad.write_text("movement,motorcycle,car\nN_T,1,2\n")
    done = run("timing", "compute", str(PLANS_DIR / "K01.yaml"), "--counts", str(bad))
    assert done.returncode == 2 and "missing column(s) heavy, unit" in done.stderr


def test_timing_corridor_prints_offsets_and_bandwidth() -> None:
    plans = [str(PLANS_DIR / f"{k}.yaml") for k in ("K01", "K02", "K03")]
    done = run("timing", "corridor", *plans, "--counts", str(COUNTS / "sunset_road_am_peak.csv"), "--step", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [i["plan"] for i in result["intersections"]] == ["K01", "K02", "K03"]
    assert result["cycle_s"] == 150 and result["bandwidth_outbound_s"] + result["bandwidth_inbound_s"] > 0
    assert all(i["offset_s"] % 2 == 0 for i in result["intersections"])


def test_plan_diff_names_every_change(tmp_path: Path) -> None:
    data = yaml.safe_load((PLANS_DIR / "K01.yaml").read_text())
    data["version"] = 2
    data["signal_groups"][0]["max_green_s"] = 100
    data["conflicts"].remove(["B", "C"])
    data["conflicts"].append(["E", "A"])  # already there as [A, E]: not a change
    data["intergreens_s"]["P2"]["A"] = 18
    data["stages"].append({"id": "S4", "green": ["P1", "P2"]})
    path = tmp_path / "K01_v2.yaml"
    path.write_text(yaml.safe_dump(data))
    done = run("plan", "diff", str(PLANS_DIR / "K01.yaml"), str(path))
    assert done.returncode == 1
    assert "~ version: 1 -> 2" in done.stdout
    assert "~ signal_groups[A].max_green_s: 110.0 -> 100.0" in done.stdout
    assert "- conflicts[B-C]" in done.stdout and "conflicts[A-E]" not in done.stdout
    assert "~ intergreens_s.P2.A: 17.0 -> 18.0" in done.stdout
    assert '+ stages[S4]: {"id": "S4", "green": ["P1", "P2"]}' in done.stdout
    assert "5 change(s)" in done.stdout
    # the longer P2 -> A intergreen lengthens the S3 -> S1 interstage: the default timing no longer adds up
    assert "K01 v2: 1 violation(s)" in done.stdout and "cycle_mismatch: greens and interstages add up to 101.000 s" in done.stdout
    same = run("plan", "diff", str(PLANS_DIR / "K01.yaml"), str(PLANS_DIR / "K01.yaml"), "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["changes"] == []


def test_plan_schedule_says_what_runs_and_why() -> None:
    done = run("plan", "schedule", str(PLANS_DIR / "K01.yaml"), "--at", "2027-03-09T07:00:00+08:00")
    assert done.returncode == 0, done.stderr
    assert "K01 at 2027-03-09T07:00:00+08:00: flash (flashing amber)" in done.stdout
    assert "day plan NYEPI (exception 2027-03-09: Nyepi, Saka 1949), since 2027-03-09 06:00 local" in done.stdout
    as_json = json.loads(run("plan", "schedule", str(PLANS_DIR / "K01.yaml"), "--at", "2027-03-03T00:30:00Z", "--json").stdout)
    assert as_json["timing"] == "AM_PEAK" and as_json["timing_detail"]["cycle_s"] == 130
    naive = run("plan", "schedule", str(PLANS_DIR / "K01.yaml"), "--at", "2027-03-03T08:30:00")
    assert naive.returncode == 2 and "has no time zone" in naive.stderr
