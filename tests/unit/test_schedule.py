"""Time-of-day schedules with exception days (Nyepi, ogoh-ogoh night) on the K01 demo plan."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import yaml

from controllers.plan import Plan
from controllers.safety import validate_all
from controllers.schedule import active_timing, resolve_timing
from infra.plans import PLANS_DIR

K01_DATA = yaml.safe_load((PLANS_DIR / "K01.yaml").read_text())
K01 = Plan.model_validate(K01_DATA)
WITA = timezone(timedelta(hours=8))


def at(text: str) -> str:
    return active_timing(K01, datetime.fromisoformat(text).replace(tzinfo=WITA)).timing


def test_a_weekday_runs_its_peaks() -> None:  # 2027-03-03 is a Wednesday
    assert [at(f"2027-03-03T{t}") for t in ("05:59", "06:00", "09:29", "09:30", "16:00", "19:30", "23:00")] == [
        "NIGHT", "AM_PEAK", "AM_PEAK", "OFF_PEAK", "PM_PEAK", "OFF_PEAK", "NIGHT"]
    assert at("2027-03-06T08:00") == "OFF_PEAK"  # Saturday


def test_the_instant_is_taken_in_wita_whatever_zone_it_comes_in() -> None:
    utc = datetime(2027, 3, 2, 22, 0, tzinfo=UTC)  # = 06:00 WITA on Wednesday 3 March
    active = active_timing(K01, utc)
    assert active.timing == "AM_PEAK" and active.day == "weekday wed"
    assert active.since_local == datetime(2027, 3, 3, 6, 0)


def test_nyepi_flashes_from_six_to_six_and_the_parade_evening_before() -> None:
    assert at("2027-03-08T16:59") == "OFF_PEAK" and at("2027-03-08T17:00") == "flash"   # ogoh-ogoh parades
    assert at("2027-03-09T05:59") == "NIGHT"                                            # Nyepi has not begun
    nyepi = active_timing(K01, datetime(2027, 3, 9, 6, 0, tzinfo=WITA))
    assert nyepi.flash and nyepi.day_plan == "NYEPI" and "Nyepi, Saka 1949" in nyepi.day
    assert at("2027-03-10T05:59") == "flash"  # before the first switch of Ngembak Geni: Nyepi continues
    assert at("2027-03-10T06:00") == "OFF_PEAK"
    assert resolve_timing(K01, "flash") is None and resolve_timing(K01, "AM_PEAK").cycle_s == 130


def test_before_the_first_switch_the_previous_day_continues() -> None:
    data = copy.deepcopy(K01_DATA)
    data["schedule"]["day_plans"]["WEEKEND"] = [{"at": "07:00", "timing": "OFF_PEAK"}, {"at": "22:00", "timing": "NIGHT"}]
    plan = Plan.model_validate(data)
    assert active_timing(plan, datetime(2027, 3, 7, 3, 0, tzinfo=WITA)).timing == "NIGHT"  # Sunday 03:00: Saturday's


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        active_timing(K01, datetime(2027, 3, 3, 8, 0))


def test_schedule_mistakes_are_reported() -> None:
    data = copy.deepcopy(K01_DATA)
    data["schedule"]["day_plans"]["WEEKEND"][1]["timing"] = "MIDDAY"
    data["schedule"]["exceptions"].append({"date": date(2027, 8, 17), "name": "Hari Kemerdekaan", "day_plan": "HOLIDAY"})
    data["timings"]["NIGHT"]["stage_greens_s"]["S2"] = 4  # below C's 6 s minimum
    found = validate_all(Plan.model_validate(data))
    messages = [v.message for v in found]
    assert "day plan WEEKEND names unknown timing 'MIDDAY'" in messages
    assert "exception 2027-08-17 (Hari Kemerdekaan) names unknown day plan 'HOLIDAY'" in messages
    data = copy.deepcopy(K01_DATA)
    data["timings"]["NIGHT"]["stage_greens_s"]["S2"] = 4
    data["timings"]["NIGHT"]["cycle_s"] = 66
    found = validate_all(Plan.model_validate(data))
    assert {v.code for v in found} == {"green_below_minimum"} and all(v.subjects[0] == "NIGHT" for v in found)
    assert found[0].message.startswith("timing NIGHT: C is green 4.00 s")
    data = copy.deepcopy(K01_DATA)
    data["timings"]["flash"] = data["timings"]["NIGHT"]
    assert [v.code for v in validate_all(Plan.model_validate(data))] == ["reserved_name"]
    with pytest.raises(ValueError, match="strictly increasing"):
        bad = copy.deepcopy(K01_DATA)
        bad["schedule"]["day_plans"]["NYEPI"] = [{"at": "06:00", "timing": "flash"}, {"at": "06:00", "timing": "NIGHT"}]
        Plan.model_validate(bad)
    with pytest.raises(ValueError, match="no day plan for \\['sun'\\]"):
        bad = copy.deepcopy(K01_DATA)
        del bad["schedule"]["week"]["sun"]
        Plan.model_validate(bad)
