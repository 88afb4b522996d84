"""Plans, clearance arithmetic and the safety check, on the K01 demo plan and on random plans."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from controllers.clearance import all_red_required_s, amber_required_s, clearance_required_s, interstage_s, lost_time_s
from controllers.errors import TimingInfeasible
from controllers.plan import Plan, Timing
from controllers.safety import cycle_of_s, green_intervals_s, validate
from controllers.splits import split_cycle, stage_bounds_s
from infra.plans import PLANS_DIR
from tests.strategies import plans, refusal_is_justified

K01_DATA = yaml.safe_load((PLANS_DIR / "K01.yaml").read_text())
K01 = Plan.model_validate(K01_DATA)


def k01(**changes) -> dict:
    data = copy.deepcopy(K01_DATA)
    data.update(changes)
    return data


def codes(plan_data: dict, timing: dict | None = None) -> list[str]:
    plan = Plan.model_validate(plan_data)
    return [v.code for v in validate(plan, Timing.model_validate(timing) if timing else plan.default_timing)]


# --- worked example (docs/timing.md): numbers computed by hand from the formulas ---------------
def test_vehicle_clearance_by_the_ite_formulas() -> None:
    a, c, d = (K01.group(g) for g in "ACD")
    assert amber_required_s(a, K01) == pytest.approx(1 + (50 / 3.6) / 6)          # 3.315 s
    assert all_red_required_s(a, K01) == pytest.approx((24 + 6) / (50 / 3.6))      # 2.160 s
    assert clearance_required_s(c, K01) == pytest.approx(1 + (30 / 3.6) / 6 + 36 / (30 / 3.6))  # 6.709 s
    assert clearance_required_s(d, K01) == pytest.approx(1 + (40 / 3.6) / 6 + 26 / (40 / 3.6))  # 5.192 s


def test_grade_shortens_or_lengthens_the_amber() -> None:
    uphill = K01.group("A").model_copy(update={"grade": 0.05})
    downhill = K01.group("A").model_copy(update={"grade": -0.05})
    assert amber_required_s(uphill, K01) == pytest.approx(1 + (50 / 3.6) / (6 + 2 * 0.05 * 9.81))  # 2.990 s
    assert amber_required_s(downhill, K01) > amber_required_s(K01.group("A"), K01)


def test_pedestrian_clearance_is_crossing_over_walking_speed() -> None:
    assert clearance_required_s(K01.group("P2"), K01) == pytest.approx(20 / 1.2)  # 16.667 s


def test_interstages_and_lost_time_of_k01() -> None:
    assert [interstage_s(K01, *pair) for pair in (("S1", "S2"), ("S2", "S3"), ("S3", "S1"))] == [10, 7, 17]
    assert lost_time_s(K01) == 34
    assert cycle_of_s(K01, {"S1": 30, "S2": 12, "S3": 24}) == 100


def test_a_group_green_over_consecutive_stages_keeps_the_interstage() -> None:
    periods = green_intervals_s(K01, K01.default_timing)
    assert periods["A"] == [30 + 10 + 12]  # S1 green, S1->S2 interstage, S2 green
    assert periods["B"] == [30] and periods["C"] == [12] and periods["D"] == [24]


def test_a_copied_plan_answers_from_its_own_conflicts() -> None:
    assert not K01.conflict("A", "B")
    assert K01.model_copy(update={"conflicts": [*K01.conflicts, ("A", "B")]}).conflict("B", "A")


def test_the_demo_plan_and_its_default_timing_are_safe() -> None:
    assert validate(K01, K01.default_timing) == []


# --- every rule, broken once -------------------------------------------------------------------
def test_conflicting_greens() -> None:
    data = k01(stages=[{"id": "S1", "green": ["A", "B", "P1", "D"]}, *K01_DATA["stages"][1:]])
    violation = validate(Plan.model_validate(data))[0]
    assert (violation.code, violation.subjects) == ("conflicting_green", ("S1", "A", "D"))


def test_missing_and_short_intergreens_name_the_value_limit_and_unit() -> None:
    data = k01(intergreens_s={**K01_DATA["intergreens_s"], "A": {"E": 6, "P2": 6}, "P2": {"A": 10, "B": 17, "C": 17}})
    found = {v.code: v for v in validate(Plan.model_validate(data))}
    assert found["missing_intergreen"].subjects == ("A", "D")
    short = found["intergreen_below_clearance"]
    assert short.subjects == ("P2", "A") and short.value == 10 and short.limit == pytest.approx(20 / 1.2)
    assert short.unit == "s" and "16.67 s" in short.message


def test_amber_below_the_kinematic_minimum() -> None:
    groups = [dict(g, amber_s=2.5) if g["id"] == "A" else g for g in K01_DATA["signal_groups"]]
    [violation] = [v for v in validate(Plan.model_validate(k01(signal_groups=groups))) if v.code == "amber_below_minimum"]
    assert violation.value == 2.5 and violation.limit == pytest.approx(3.3148, abs=1e-4)


def test_dangling_references_and_duplicates() -> None:
    data = k01(stages=[*K01_DATA["stages"], {"id": "S1", "green": ["Z"]}], sequence=["S1", "S2", "S3", "S9"])
    found = sorted((v.code, v.subjects) for v in validate(Plan.model_validate(data)))
    assert ("duplicate_id", ("S1",)) in found
    assert ("dangling_reference", ("Z",)) in found and ("dangling_reference", ("S9",)) in found


def test_a_group_never_green() -> None:
    data = k01(stages=[{"id": "S1", "green": ["A", "B"]}, *K01_DATA["stages"][1:]])
    assert "group_never_green" in codes(data)


@pytest.mark.parametrize(("greens", "cycle", "offset", "expected"), [
    ({"S1": 30, "S2": 12, "S3": 24}, 95, 0, "cycle_mismatch"),
    ({"S1": 10, "S2": 5, "S3": 7}, 56, 0, "cycle_out_of_bounds"),
    ({"S1": 30, "S2": 3, "S3": 33}, 100, 0, "green_below_minimum"),
    ({"S1": 20, "S2": 12, "S3": 50}, 116, 0, "green_above_maximum"),
    ({"S1": 30, "S2": 12, "S3": 24}, 100, 100, "offset_outside_cycle"),
    ({"S1": 30, "S2": 12}, 100, 0, "missing_stage_green"),
    ({"S1": 30, "S2": 12, "S3": 24, "S4": 1}, 100, 0, "dangling_reference"),
    ({"S1": 50, "S2": -4, "S3": 20}, 100, 0, "negative_green"),
])
def test_every_timing_rule(greens, cycle, offset, expected) -> None:
    assert expected in codes(K01_DATA, {"cycle_s": cycle, "offset_s": offset, "stage_greens_s": greens})


def test_bad_plan_fields_are_refused_at_load_with_the_unit() -> None:
    groups = [dict(g, approach_speed_kmh=0) if g["id"] == "A" else g for g in K01_DATA["signal_groups"]]
    with pytest.raises(ValueError, match="approach_speed_kmh > 0 km/h"):
        Plan.model_validate(k01(signal_groups=groups))
    with pytest.raises(ValueError, match="allow_inf_nan|finite"):
        Plan.model_validate(k01(cycle={"min_s": float("nan"), "max_s": 120}))


# --- random plans (tests/strategies.py) ------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(plans(), st.floats(20, 300), st.data())
def test_no_split_ever_violates_its_plan(plan: Plan, cycle: float, data) -> None:
    weights = {s: data.draw(st.floats(0, 1)) for s in plan.sequence}
    try:
        split = split_cycle(plan, cycle, weights)
    except TimingInfeasible as err:  # allowed only for the three documented reasons, each re-checked here
        assert refusal_is_justified(plan), err
        return
    assert validate(plan, split.timing) == [], split
    assert split.cycle_adjusted == (abs(split.timing.cycle_s - cycle) > 1e-9)


@settings(max_examples=200, deadline=None)
@given(plans(), st.data())
def test_a_conflicting_green_added_anywhere_is_caught(plan: Plan, data) -> None:
    assume(plan.conflicts)
    a, b = data.draw(st.sampled_from(plan.conflicts))
    stages = [s.model_copy(update={"green": [*s.green, b]}) if a in s.green and b not in s.green else s
              for s in plan.stages]
    broken = plan.model_copy(update={"stages": stages})
    assert any(v.code == "conflicting_green" and {a, b} <= set(v.subjects) for v in validate(broken))


@settings(max_examples=200, deadline=None)
@given(plans(), st.data())
def test_a_cut_minimum_green_is_caught(plan: Plan, data) -> None:
    try:
        split = split_cycle(plan, 120, {s: 1.0 for s in plan.sequence})
    except TimingInfeasible:
        assume(False)
    stage = data.draw(st.sampled_from(plan.sequence))
    low, _ = stage_bounds_s(plan)[stage]
    cut = dict(split.timing.stage_greens_s, **{stage: low * 0.5})
    timing = Timing(cycle_s=cycle_of_s(plan, cut), stage_greens_s=cut)
    only_here = [g for g in plan.signal_groups
                 if [stage] == [s for s in plan.sequence if g.id in plan.stage(s).green] and g.min_green_s == low]
    assume(only_here and low > 0)
    assert any(v.code == "green_below_minimum" for v in validate(plan, timing))


def test_an_intergreen_across_a_short_stage_is_caught_and_splits_respect_it() -> None:
    """Found by the controller-logic property test: G4's green ends after S1, conflicting G3 starts at
    S0 two stages later; S2 in between must last long enough for G4's 12 s intergreen."""
    data = {"id": "R", "name": "cut", "version": 1, "cycle": {"min_s": 30, "max_s": 240},
            "signal_groups": [{"id": "G0", "kind": "vehicle", "min_green_s": 4, "amber_s": 4, "approach_speed_kmh": 20,
                               "crossing_m": 8},
                              {"id": "G3", "kind": "pedestrian", "min_green_s": 4, "crossing_m": 8},
                              {"id": "G4", "kind": "pedestrian", "min_green_s": 4, "crossing_m": 14}],
            "conflicts": [["G3", "G4"]], "intergreens_s": {"G3": {"G4": 7}, "G4": {"G3": 12}},
            "stages": [{"id": "S0", "green": ["G0", "G3"]}, {"id": "S1", "green": ["G4"]}, {"id": "S2", "green": ["G0"]}],
            "sequence": ["S0", "S1", "S2"]}
    plan = Plan.model_validate(data)
    cut = Timing(cycle_s=40, stage_greens_s={"S0": 22, "S1": 7, "S2": 4})  # interstages 7 + 0 + 0
    found = validate(plan, cut)
    assert [(v.code, v.subjects, v.value, v.limit) for v in found] == [("intergreen_cut", ("G4", "G3"), 4.0, 12.0)]
    assert stage_bounds_s(plan)["S2"][0] == 12.0  # S2 must hold the whole 12 s (no interstage on the way)
    split = split_cycle(plan, 40, {"S0": 1.0, "S1": 1.0, "S2": 0.0})
    assert split.timing.stage_greens_s["S2"] >= 12.0 and validate(plan, split.timing) == []
