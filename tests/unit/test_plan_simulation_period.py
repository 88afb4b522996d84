"""The what-if's measured period: within the modelled morning (06:00-09:00 WITA), on 5-minute marks, with a
warm-up that never starts before the demand does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.plan_simulation import (
    DEFAULT_DURATION_S,
    DEFAULT_WARMUP_S,
    SimulationPeriodError,
    default_start_s,
    measured_period,
    period_starts,
)
from infra.web_plans import parse_period_start

H = 3600.0


def test_the_latest_period_ends_with_the_demand() -> None:
    earliest, latest = period_starts(DEFAULT_DURATION_S)
    assert (earliest, latest) == (6 * H, 8 * H + 40 * 60)  # 20 min measured: 06:00 to 08:40
    assert measured_period(latest) == (latest - DEFAULT_WARMUP_S, latest, 9 * H)


def test_a_warm_up_is_cut_at_the_demands_start() -> None:
    assert measured_period(6 * H) == (6 * H, 6 * H, 6 * H + DEFAULT_DURATION_S)  # an empty network at 06:00
    assert measured_period(6 * H + 300) == (6 * H, 6 * H + 300, 6 * H + 300 + DEFAULT_DURATION_S)
    assert measured_period(7.25 * H) == (7.25 * H - 600, 7.25 * H, 7.25 * H + 1200)


def test_a_period_off_a_5_minute_mark_is_refused() -> None:
    with pytest.raises(SimulationPeriodError, match="5-minute mark; got 07:13"):
        measured_period(7 * H + 13 * 60)


@pytest.mark.parametrize("start_s", [5 * H + 3300, 8 * H + 45 * 60, 12 * H])
def test_a_period_outside_the_modelled_morning_is_refused_naming_the_bounds(start_s: float) -> None:
    with pytest.raises(SimulationPeriodError, match="between 06:00 and 08:40 WITA"):
        measured_period(start_s)


@given(st.floats(min_value=0, max_value=24 * H - 1))
def test_the_default_period_is_on_a_mark_within_the_morning_and_at_most_5_min_before_now(now_s: float) -> None:
    start = default_start_s(now_s)
    earliest, latest = period_starts()
    assert earliest <= start <= latest and start % 300 == 0
    measured_period(start)  # accepted
    if earliest <= now_s < latest + 300:
        assert now_s - 300 < start <= now_s


def test_the_forms_time_is_read_as_local_seconds_or_refused() -> None:
    assert parse_period_start("07:15", 0) == 7.25 * H
    assert parse_period_start("", 7.3 * H) == 7.25 * H  # empty: now, on its mark
    for bad in ("7.15", "25:00", "07:61", "noon"):
        with pytest.raises(SimulationPeriodError, match="not a time of day"):
            parse_period_start(bad, 0)
