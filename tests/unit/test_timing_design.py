"""Timing design (critical path, Webster, equisaturation splits, HCM delay and queue): the
compiled kernel equals its twin bit for bit, the worked example matches hand arithmetic, and
no designed timing ever violates its plan."""

from __future__ import annotations

import array
import copy
import csv
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cext import timing, timing_py
from controllers.capacity import control_delay_s, webster_cycle_s
from controllers.demand import demand_from_rows
from controllers.errors import InvalidDemand, TimingInfeasible
from controllers.plan import Plan
from controllers.safety import validate
from controllers.timing_design import design_timing
from infra.plans import PLANS_DIR, load_plan
from tests.strategies import plans_with_demand, refusal_is_justified

K01 = load_plan(PLANS_DIR / "K01.yaml")
COUNTS = PLANS_DIR.parent / "counts" / "K01_am_peak.csv"
ROWS = list(csv.DictReader(COUNTS.open()))


# --- kernel parity on raw random inputs -------------------------------------------------------------
@st.composite
def raw_batches(draw):
    width, mwidth, rows = draw(st.integers(2, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 6))
    cols = {k: [] for k in ("n", "nm", "cmin", "cmax", "cfix", "period", "smin", "smax", "inter", "mask", "flow",
                            "sat", "lanes", "pf")}
    for _ in range(rows):
        n, nm = draw(st.integers(1, width)), draw(st.integers(0, mwidth))
        cmin = draw(st.floats(20, 90))
        cols["n"].append(n)
        cols["nm"].append(nm)
        cols["cmin"].append(cmin)
        cols["cmax"].append(cmin + draw(st.floats(0, 150)))
        cols["cfix"].append(draw(st.sampled_from([0.0, 0.0, draw(st.floats(10, 250))])))
        cols["period"].append(draw(st.sampled_from([0.25, 1.0])))
        for _ in range(width):
            low = draw(st.floats(0, 20))
            cols["smin"].append(low)
            cols["smax"].append(draw(st.sampled_from([math.inf, low + draw(st.floats(0, 60))])))
            cols["inter"].append(draw(st.floats(0, 12)))
        for _ in range(mwidth):
            cols["mask"].append(draw(st.integers(1, (1 << n) - 1)))
            sat = draw(st.floats(300, 6000))
            cols["sat"].append(sat)
            cols["flow"].append(draw(st.floats(0, 1.2)) * sat)
            cols["lanes"].append(float(draw(st.integers(1, 4))))
            cols["pf"].append(draw(st.floats(0, 1.5)))
    ints = {"n", "nm", "mask"}
    inputs = [array.array("i" if k in ints else "d", v) for k, v in cols.items()]
    return rows, width, mwidth, inputs


def outputs(rows: int, width: int, mwidth: int) -> list[array.array]:
    return ([array.array("d", [0.0] * rows) for _ in range(5)] + [array.array("i", [0] * rows)]
            + [array.array("d", [0.0] * (rows * width)) for _ in range(2)]
            + [array.array("d", [0.0] * (rows * mwidth)) for _ in range(4)])


@settings(max_examples=300, deadline=None)
@given(raw_batches())
def test_the_compiled_design_kernel_equals_its_twin_bit_for_bit(batch) -> None:
    rows, width, mwidth, inputs = batch
    compiled, twin = outputs(rows, width, mwidth), outputs(rows, width, mwidth)
    timing.design_timings(*inputs, *compiled, width, mwidth)
    timing_py.design_timings(*inputs, *twin, width, mwidth)
    assert [a.tobytes() for a in compiled] == [a.tobytes() for a in twin]


@pytest.mark.parametrize("kernel", [timing.design_timings, timing_py.design_timings])
def test_the_design_kernel_names_bad_input(kernel) -> None:
    rows, width, mwidth = 1, 2, 1
    good = [array.array("i", [2]), array.array("i", [1]), *(array.array("d", [v]) for v in (60.0, 120.0, 0.0, 0.25)),
            array.array("d", [5.0, 5.0]), array.array("d", [50.0, 50.0]), array.array("d", [4.0, 4.0]),
            array.array("i", [1]), *(array.array("d", [v]) for v in (500.0, 1800.0, 1.0, 1.0))]
    bad = list(good)
    bad[9] = array.array("i", [4])  # stage mask beyond 2 stages
    with pytest.raises(ValueError, match="row 0 movement 0: stage mask 4 is outside 1..3"):
        kernel(*bad, *outputs(rows, width, mwidth), width, mwidth)
    bad = list(good)
    bad[10] = array.array("d", [-1.0])
    with pytest.raises(ValueError, match=r"flow -1.0 pcu/h"):
        kernel(*bad, *outputs(rows, width, mwidth), width, mwidth)
    with pytest.raises(ValueError, match="cycle_out holds 2 values, expected 1"):
        kernel(*good, array.array("d", [0.0, 0.0]), *outputs(rows, width, mwidth)[1:], width, mwidth)


# --- worked example (docs/timing.md), by hand -------------------------------------------------------
def test_k01_demand_in_pcu_with_the_mkji_factors() -> None:
    demand = demand_from_rows(K01, ROWS)
    assert demand["N_T"].pcu_h == pytest.approx(2600 * 0.2 + 900 * 1.0 + 60 * 1.3)  # 1498 pcu/h
    assert demand["S_TR"].pcu_h == pytest.approx(1600 * 0.2 + 600 + 40 * 1.3)     # 972 pcu/h
    assert K01.movement("N_T").saturation_pcu_h() == 600 * 7.0                     # 4200 pcu/h
    assert K01.movement("S_TR").saturation_pcu_h() == pytest.approx(600 * 7.0 * 0.9)  # 3780 pcu/h


def test_k01_worked_example() -> None:
    design = design_timing(K01, demand_from_rows(K01, ROWS))
    y = {"S1": 972 / 3780, "S2": 286.5 / 1890, "S3": 495.6 / 3300}  # B, C, and the larger of D and E
    big_y = sum(y.values())                                            # 0.5589
    assert design.critical_flow_ratio == pytest.approx(big_y)
    assert design.critical_lost_time_s == 34
    assert design.webster_cycle_s == pytest.approx((1.5 * 34 + 5) / (1 - big_y))  # 126.96 s
    assert design.webster_cycle_s == pytest.approx(webster_cycle_s(34, big_y))
    assert design.cycle_s == pytest.approx(126.9588, abs=1e-4)
    for stage in design.stages:                                        # g_i = y_i / Y (C - L)
        assert stage.green_s == pytest.approx(y[stage.stage] / big_y * (design.cycle_s - 34))
        assert stage.degree_of_saturation == pytest.approx(big_y * design.cycle_s / (design.cycle_s - 34))  # 0.763
    n_t = next(m for m in design.movements if m.movement == "N_T")
    green_a = design.stages[0].green_s + 10 + design.stages[1].green_s  # A keeps the S1->S2 interstage
    assert n_t.effective_green_s == pytest.approx(green_a)
    delay, x = control_delay_s(design.cycle_s, green_a, 1498, 4200)
    assert (n_t.delay_s, n_t.degree_of_saturation) == (pytest.approx(delay), pytest.approx(x))
    assert (round(n_t.capacity_pcu_h), round(x, 2), round(delay, 1), n_t.los) == (2580, 0.58, 15.6, "B")  # docs/timing.md
    s_tr = next(m for m in design.movements if m.movement == "S_TR")
    c, g, v, s, lanes = design.cycle_s, design.stages[0].green_s, 972.0, 3780.0, 2
    x = v / (s * g / c)
    q1 = (v / lanes) * c / 3600 * (1 - g / c) / (1 - min(1, x) * g / c)
    c_lane, k_b = s * g / c / lanes, 0.12 * (s / lanes * g / 3600) ** 0.7
    q2 = 0.25 * c_lane * 0.25 * ((x - 1) + math.sqrt((x - 1) ** 2 + 8 * k_b * x / (c_lane * 0.25)))
    assert s_tr.back_of_queue_pcu_per_lane == pytest.approx(q1 + q2)
    assert s_tr.back_of_queue_m == pytest.approx((q1 + q2) * 6.0)
    flows = {m.movement: m.flow_pcu_h for m in design.movements}
    assert design.delay_s == pytest.approx(sum(m.flow_pcu_h * m.delay_s for m in design.movements) / sum(flows.values()))
    assert design.los == "D" and validate(K01, design.timing()) == []


def test_an_overlapping_movement_that_is_critical_lengthens_both_its_stages() -> None:
    rows = [dict(r, motorcycle="5000", car="1000") if r["movement"] == "N_T" else r for r in ROWS]  # y_A = 0.495
    design = design_timing(K01, demand_from_rows(K01, rows))
    n_t = next(m for m in design.movements if m.movement == "N_T")
    assert design.critical_lost_time_s == 24  # path (S1 S2 by A) + S3: only S2->S3 and S3->S1 are lost
    assert design.critical_flow_ratio == pytest.approx((5000 * 0.2 + 1000 + 60 * 1.3) / 4200 + 495.6 / 3300)  # 0.645
    assert n_t.degree_of_saturation == pytest.approx(design.stages[2].degree_of_saturation, rel=1e-3)  # equisaturated


def test_oversaturation_gives_the_longest_cycle_and_a_flag_not_a_crash() -> None:
    rows = [dict(r, motorcycle=str(float(r["motorcycle"]) * 3), car=str(float(r["car"]) * 3)) for r in ROWS]
    design = design_timing(K01, demand_from_rows(K01, rows))
    assert design.oversaturated and design.webster_cycle_s is None and design.critical_flow_ratio >= 1
    assert design.cycle_s == K01.cycle.max_s and design.over_capacity and design.los == "F"
    assert any("oversaturated" in note for note in design.notes)
    assert validate(K01, design.timing()) == []


def test_a_fixed_cycle_is_kept_or_clamped_and_said_so() -> None:
    demand = demand_from_rows(K01, ROWS)
    assert design_timing(K01, demand, cycle_s=100).cycle_s == pytest.approx(100)
    clamped = design_timing(K01, demand, cycle_s=300)
    assert clamped.cycle_s == 150 and clamped.cycle_clamped and "brought within" in clamped.notes[0]


# --- bad counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"car": "-5"}, r"counts row 3: car -5 veh/h must be a finite count >= 0"),
    ({"unit": "pcu/h"}, r"counts row 3: unit 'pcu/h' is unknown; use one of veh/h, veh/15min"),
    ({"heavy": "lots"}, r"counts row 3: heavy 'lots' is not a number \(veh/h\)"),
    ({"movement": "X_9"}, r"counts row 3: movement 'X_9' is not in plan K01"),
    ({"movement": "N_L"}, r"counts row 3: movement 'N_L' is counted twice"),
])
def test_bad_counts_name_the_row_field_and_unit(change, message) -> None:
    rows = copy.deepcopy(ROWS)
    rows[1].update(change)
    with pytest.raises(InvalidDemand, match=message):
        demand_from_rows(K01, rows)


def test_missing_movements_are_named() -> None:
    with pytest.raises(InvalidDemand, match="no counts for signalised movement.s. E_A, W_A of plan K01"):
        demand_from_rows(K01, [r for r in ROWS if r["movement"] not in ("E_A", "W_A")])
    demand = demand_from_rows(K01, ROWS)
    del demand["E_A"]
    with pytest.raises(InvalidDemand, match="plan K01: no demand for signalised movement E_A"):
        design_timing(K01, demand)


def test_counts_in_15_minute_units_are_scaled_to_hourly_flows() -> None:
    quarter = [dict(r, unit="veh/15min", motorcycle=str(float(r["motorcycle"]) / 4), car=str(float(r["car"]) / 4),
                    heavy=str(float(r["heavy"]) / 4)) for r in ROWS]
    assert demand_from_rows(K01, quarter)["N_T"].pcu_h == pytest.approx(demand_from_rows(K01, ROWS)["N_T"].pcu_h)


# --- no designed timing ever violates its plan ------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(plans_with_demand(max_load=1.0), st.none() | st.floats(20, 300))
def test_no_designed_timing_ever_violates_its_plan(case: tuple[Plan, list[dict[str, str]]], cycle: float | None) -> None:
    plan, rows = case
    try:
        design = design_timing(plan, demand_from_rows(plan, rows), cycle_s=cycle)
    except TimingInfeasible as err:
        assert refusal_is_justified(plan), err
        return
    assert validate(plan, design.timing()) == []
    assert plan.cycle.min_s - 1e-9 <= design.cycle_s <= plan.cycle.max_s + 1e-9
    assert design.oversaturated == (design.critical_flow_ratio >= 1.0)
    assert all(m.degree_of_saturation >= 0 and m.delay_s >= 0 and m.back_of_queue_pcu_per_lane >= 0
               for m in design.movements)
