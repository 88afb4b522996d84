"""Webster and HCM formulas against values computed by hand (docs/timing.md)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllers.capacity import (
    control_delay_s,
    incremental_delay_s,
    level_of_service,
    uniform_delay_s,
    webster_cycle_s,
)


def test_webster_optimal_cycle() -> None:
    assert webster_cycle_s(12, 0.6) == pytest.approx((1.5 * 12 + 5) / 0.4)  # 57.5 s
    assert webster_cycle_s(34, 0.55) == pytest.approx(56 / 0.45)           # K01: 124.4 s
    assert webster_cycle_s(34, 1.0) == math.inf                            # oversaturated: flagged, not a crash


def test_hcm_delays_by_hand() -> None:
    assert uniform_delay_s(100, 40, 0.8) == pytest.approx(0.5 * 100 * 0.6**2 / (1 - 0.8 * 0.4))  # 26.47 s
    assert incremental_delay_s(0.8, 800) == pytest.approx(225 * (-0.2 + math.sqrt(0.04 + 3.2 / 200)))  # 8.24 s
    delay, x = control_delay_s(100, 40, 640, 2000)  # c = 2000 * 40/100 = 800 veh/h, X = 0.8
    assert x == pytest.approx(0.8) and delay == pytest.approx(26.4706 + 8.2447, abs=1e-3)
    assert level_of_service(delay, x) == "C"


@pytest.mark.parametrize(("delay", "x", "letter"), [(10, 0.5, "A"), (10.01, 0.5, "B"), (35, 0.9, "C"),
                                                    (55, 0.9, "D"), (80, 0.9, "E"), (80.1, 0.9, "F"), (5, 1.05, "F")])
def test_level_of_service_boundaries(delay, x, letter) -> None:
    assert level_of_service(delay, x) == letter


@given(st.floats(30, 200), st.floats(0.05, 0.95), st.floats(0.05, 1.5))
def test_delay_grows_with_saturation_and_never_goes_negative(cycle, green_ratio, x) -> None:
    green = cycle * green_ratio
    assert uniform_delay_s(cycle, green, x) >= 0
    assert incremental_delay_s(x, 600) >= 0
    assert incremental_delay_s(x + 0.1, 600) > incremental_delay_s(x, 600)
