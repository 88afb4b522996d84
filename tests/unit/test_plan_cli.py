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
