"""The controller logic the simulator runs: its signal aspects never show conflicting greens,
never cut an intergreen or a minimum green, and commands are idempotent and wait for the
cycle boundary."""

from __future__ import annotations

import math
from itertools import pairwise

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from controllers.errors import TimingInfeasible
from controllers.plan import Timing
from controllers.splits import split_cycle
from devices.controller_logic import (
    advance,
    aspects,
    conflict_detected,
    fall_back,
    flash_entry_s,
    follow_schedule,
    handle_command,
    heartbeat_resumed,
    power_up,
    start,
    startup_s,
)
from infra.plans import PLANS_DIR, load_plan
from tests.strategies import plans

K01 = load_plan(PLANS_DIR / "K01.yaml")
SHOWS_GREEN = {"green", "flashing_green"}


def timeline(plan, timing, step_s: float, cycles: int = 2):
    state = start(plan, timing)
    samples = []
    for k in range(math.ceil(cycles * timing.cycle_s / step_s)):
        samples.append((k * step_s, aspects(plan, state)))
        state = advance(plan, state, step_s)
    return samples


def check_timeline(plan, samples, step_s: float) -> None:
    """No conflicting groups show green (steady or a crossing's flashing clearance) together; a group
    starts green no earlier than the intergreen after the end of a conflicting group's steady green;
    every whole green lasts its minimum."""
    tolerance = step_s + 1e-6
    green_start: dict[str, float] = {}
    green_end: dict[str, float] = {}
    pairs = plan.conflicts + [(b, a) for a, b in plan.conflicts]
    for t, shown in samples:
        for a, b in plan.conflicts:
            assert not (shown[a] in SHOWS_GREEN and shown[b] in SHOWS_GREEN), (t, a, b, shown)
        for g in plan.signal_groups:
            if shown[g.id] == "green" and g.id not in green_start:
                for losing, gaining in pairs:
                    if gaining == g.id and losing in green_end:
                        assert t - green_end[losing] >= plan.intergreens_s[losing][gaining] - tolerance, (t, losing, g.id)
                green_start[g.id] = t
            elif shown[g.id] != "green" and g.id in green_start:
                if green_start[g.id] > 0:  # a whole green period was seen: it lasted at least the minimum
                    assert t - green_start[g.id] >= g.min_green_s - tolerance, (g.id, green_start[g.id], t)
                del green_start[g.id]
                green_end[g.id] = t


def test_k01_default_timing_timeline() -> None:
    samples = timeline(K01, K01.default_timing, 0.5)
    check_timeline(K01, samples, 0.5)
    at = dict(samples)
    assert at[0.0]["A"] == at[0.0]["B"] == "green" and at[0.0]["D"] == "red"
    assert at[30.0]["B"] == "amber" and at[30.0]["A"] == "green" and at[30.0]["P1"] == "flashing_green"  # S1 -> S2
    assert at[33.5]["B"] == "red" and at[40.0]["C"] == "green"  # after the 10 s interstage


@settings(max_examples=40, deadline=None)
@given(plans(), st.floats(40, 200), st.sampled_from([0.1, 0.25]), st.data())
def test_no_timeline_shows_conflicting_greens_or_cuts_a_clearance(plan, cycle, step, data) -> None:
    weights = {s: data.draw(st.floats(0, 1)) for s in plan.sequence}
    try:
        timing = split_cycle(plan, cycle, weights).timing
    except TimingInfeasible:
        assume(False)
    check_timeline(plan, timeline(plan, timing, step), step)


def test_a_new_timing_waits_for_the_cycle_boundary_and_a_repeat_does_nothing() -> None:
    state = start(K01, K01.default_timing)
    new = Timing(cycle_s=130, offset_s=0, stage_greens_s={"S1": 44, "S2": 26, "S3": 26})
    state = advance(K01, state, 20)
    state, outcome = handle_command(K01, state, 7, "apply_timing", new)
    assert outcome.result == "accepted" and state.pending_seq == 7 and state.timing == K01.default_timing
    state, outcome = handle_command(K01, state, 7, "apply_timing", new)
    assert outcome.result == "repeated"
    state = advance(K01, state, 79.9)
    assert state.timing == K01.default_timing and state.applied_seq == 0
    state = advance(K01, state, 0.1)  # 100 s: the cycle boundary
    assert state.timing == new and state.applied_seq == 7 and state.pending_seq == 0 and state.mode == "central"


def test_unsafe_timings_are_refused_with_the_reason() -> None:
    state = start(K01, K01.default_timing)
    short = Timing(cycle_s=94, offset_s=0, stage_greens_s={"S1": 30, "S2": 6, "S3": 24})
    state, outcome = handle_command(K01, state, 3, "apply_timing", short.model_copy(update={"cycle_s": 95}))
    assert (outcome.result, outcome.reason, state.rejected_seq) == ("rejected", "cycle_mismatch", 3)
    state, outcome = handle_command(K01, state, 4, "apply_timing", Timing(cycle_s=92, offset_s=0,
                                                                          stage_greens_s={"S1": 30, "S2": 4, "S3": 24}))
    assert outcome.reason == "green_below_minimum" and state.rejected_seq == 4


def test_a_conflict_latches_flash_until_reset() -> None:
    state = conflict_detected(start(K01, K01.default_timing))
    assert set(aspects(K01, state).values()) == {"flashing_amber", "dark"}
    state, outcome = handle_command(K01, state, 5, "apply_timing", K01.default_timing)
    assert (outcome.result, outcome.reason) == ("rejected", "fault_latched")
    state = advance(K01, state, 300)
    assert state.interval == "flash"
    state, outcome = handle_command(K01, state, 6, "reset_fault")
    assert outcome.result == "accepted" and "conflict_monitor" not in state.faults
    assert state.interval == "startup" and set(aspects(K01, state).values()) == {"red"}  # all red first
    state = advance(K01, state, startup_s(K01) - 0.1)
    assert set(aspects(K01, state).values()) == {"red"}
    state = advance(K01, state, 0.2)
    assert (state.interval, state.stage_index) == ("green", 0) and aspects(K01, state)["A"] == "green"


def test_leaving_flash_always_passes_the_longest_intergreen_in_all_red() -> None:
    """From flashing amber, a conflicting group may be in the junction: the first green waits."""
    assert startup_s(K01) == 17  # P2 -> A, B, C: the pedestrian clearance of Sunset Road
    requested, _ = handle_command(K01, start(K01, K01.default_timing), 1, "flash")
    assert requested.interval == "green" and requested.pending_flash  # flash waits for the end of S1's green ...
    assert flash_entry_s(K01, "S1") == 10.0  # P1 crosses 12 m at 1.2 m/s; A and B need amber 3.5 s + all-red
    entering = advance(K01, requested, 30.0 + 3.0)
    assert entering.interval == "flash_entry"
    assert aspects(K01, entering) == {"A": "amber", "B": "amber", "C": "red", "D": "red", "E": "red", "P1": "flashing_green",
                                      "P2": "red"}  # ... its groups clear as before a conflicting green ...
    entering = advance(K01, entering, 6.9)
    assert aspects(K01, entering)["P1"] == "flashing_green" and aspects(K01, entering)["A"] == "red"
    flashing = advance(K01, entering, 0.2)
    assert flashing.interval == "flash" and flashing.applied_seq == 1  # ... and only then flash
    for command in ("release_to_local", "apply_timing"):
        state, outcome = handle_command(K01, flashing, 2, command, K01.timings["AM_PEAK"])
        assert outcome.result == "accepted" and state.interval == "startup"
        state = advance(K01, state, 17.0)
        assert state.interval == "green" and state.cycle_elapsed_s == 0.0
    # the timing sent with the command is the one the first cycle runs, and it counts as applied
    assert (state.timing, state.applied_seq, state.mode) == (K01.timings["AM_PEAK"], 2, "central")


def test_heartbeat_loss_falls_back_to_the_local_plan_at_the_cycle_boundary() -> None:
    central, _ = handle_command(K01, start(K01, K01.default_timing), 1, "apply_timing", K01.timings["AM_PEAK"])
    central = advance(K01, central, 100.0)  # the OFF_PEAK cycle (100 s) ends: AM_PEAK runs, centrally
    assert (central.mode, central.timing, central.applied_seq) == ("central", K01.timings["AM_PEAK"], 1)
    pending, _ = handle_command(K01, central, 2, "apply_timing", K01.timings["OFF_PEAK"])
    lost = fall_back(pending, K01.timings["OFF_PEAK"])
    assert lost.mode == "local_tod" and "central_heartbeat_lost" in lost.faults
    assert lost.pending_seq == 0  # the central's pending timing is dropped ...
    assert lost.pending_timing == K01.timings["OFF_PEAK"] and lost.pending_mode == "local_tod"  # ... the local one waits
    assert aspects(K01, lost) == aspects(K01, central)  # nothing changes mid-cycle
    later = advance(K01, lost, 130.0 + sum(lost.green_adjust_s))  # this cycle is corrected towards its offset
    assert (later.timing, later.mode, later.applied_seq) == (K01.timings["OFF_PEAK"], "local_tod", 1)
    assert "central_heartbeat_lost" not in heartbeat_resumed(later).faults


def test_a_local_schedule_that_says_flash_flashes_and_leaves_flash_through_startup() -> None:
    state = follow_schedule(start(K01, K01.default_timing), None)
    assert state.pending_flash and state.interval == "green"
    state = advance(K01, state, 30.0 + flash_entry_s(K01, "S1"))
    assert state.interval == "flash" and state.mode == "local_tod"
    state = follow_schedule(state, K01.default_timing)
    assert state.interval == "startup"
    latched = conflict_detected(start(K01, K01.default_timing))
    assert follow_schedule(latched, K01.default_timing).interval == "flash"  # a latched conflict stays dark-and-flashing


def test_every_reason_the_logic_gives_is_in_the_register_map() -> None:
    from devices.controller_logic import KNOWN_REASONS
    from devices.register_map import load_register_map

    codes = set(load_register_map().enums["reject_reason"].values())
    assert KNOWN_REASONS | {"malformed", "fault_latched", "unsafe_other", "none"} <= codes


COMMANDS = ("wait", "wait", "wait", "apply", "flash", "release", "reset", "conflict", "fallback", "schedule_flash",
            "schedule", "heartbeat", "power_cycle")


@settings(max_examples=300, deadline=None)
@given(plans(), st.data())
def test_no_sequence_of_commands_faults_and_fallbacks_shows_conflicting_greens_or_cuts_a_clearance(plan, data) -> None:
    """Whatever the central, the schedule, the heartbeat and the hardware do, in any order and at any
    instant, the aspects never show conflicting greens, a green never follows a conflicting green
    (or flashing amber) sooner than the intergreen, and only a tripped conflict monitor or a power
    cut ends a green short of its minimum."""
    timings = []
    for cycle in (60.0, 90.0, 140.0):
        try:
            timings.append(split_cycle(plan, cycle, {s: 1.0 for s in plan.sequence}).timing)
        except TimingInfeasible:
            continue
    assume(timings)
    state = start(plan, timings[0])
    step, tick = 0.1, 0
    samples: list[tuple[float, dict[str, str]]] = []
    tripped: set[int] = set()  # ticks at which the conflict monitor cut everything
    for seq in range(1, data.draw(st.integers(4, 30)) + 1):
        action = data.draw(st.sampled_from(COMMANDS))
        if action == "wait":
            for _ in range(data.draw(st.sampled_from([3, 41, 177, 600, 1500]) | st.integers(1, 1500))):
                samples.append((round(tick * step, 1), aspects(plan, state)))
                state = advance(plan, state, step)
                tick += 1
        elif action == "apply":
            state, _ = handle_command(plan, state, seq, "apply_timing", data.draw(st.sampled_from(timings)))
        elif action in ("flash", "reset"):
            state, _ = handle_command(plan, state, seq, "flash" if action == "flash" else "reset_fault")
        elif action == "release":
            state, _ = handle_command(plan, state, seq, "release_to_local")
        elif action == "conflict":
            state = conflict_detected(state)
            tripped.add(tick)
        elif action == "power_cycle":  # the lamps go dark; on power-up: flash, or all red and then the first stage
            state = power_up(plan, data.draw(st.none() | st.sampled_from(timings)), timings[0])
            tripped.add(tick)
        elif action == "fallback":
            state = fall_back(state, data.draw(st.none() | st.sampled_from(timings)))
        elif action in ("schedule", "schedule_flash"):
            if state.mode == "local_tod":
                state = follow_schedule(state, None if action == "schedule_flash" else data.draw(st.sampled_from(timings)))
        else:
            state = heartbeat_resumed(state)
    check_commanded_timeline(plan, samples, step, {round(t * step, 1) for t in tripped})


def check_commanded_timeline(plan, samples, step_s: float, trips: set[float]) -> None:
    tolerance = step_s + 1e-6
    green_start: dict[str, float] = {}
    released: dict[str, float] = {}  # when a group last stopped showing green or flashing amber
    pairs = plan.conflicts + [(b, a) for a, b in plan.conflicts]
    previous: dict[str, str] = {}
    clearing_since: dict[str, float] = {}  # when a vehicle group's amber began
    for t, shown in samples:
        cut = any(previous and t - step_s - 1e-6 <= trip <= t for trip in trips)  # a trip or power cut just now
        for a, b in plan.conflicts:
            assert not (shown[a] in SHOWS_GREEN and shown[b] in SHOWS_GREEN), (t, a, b, shown)
        for g in plan.signal_groups:
            now, before = shown[g.id], previous.get(g.id)
            if g.kind == "vehicle" and before == "green" and now not in ("green", "amber") and not cut:
                raise AssertionError(f"{g.id} went from green to {now} at {t} s without amber")
            if now == "amber" and before != "amber":
                clearing_since[g.id] = t
            if before == "amber" and now != "amber" and g.id in clearing_since and not cut:
                assert t - clearing_since[g.id] >= g.amber_s - tolerance, (g.id, clearing_since[g.id], t, g.amber_s)
            if before in ("green", "flashing_amber") and now != before:
                released[g.id] = t
            if now in ("green", "flashing_amber") and before != now and not cut:  # a permissive aspect starts
                for losing, gaining in pairs:
                    if gaining == g.id and losing in released:
                        need = plan.intergreens_s[losing][gaining]
                        assert t - released[losing] >= need - tolerance, (t, losing, g.id, released[losing], need)
            if now == "green" and before != "green":
                green_start[g.id] = t
            elif now != "green" and before == "green" and g.id in green_start:
                cut_by_fault = any(green_start[g.id] < trip <= t for trip in trips)
                if green_start[g.id] > 0 and not cut_by_fault:
                    assert t - green_start[g.id] >= g.min_green_s - tolerance, (g.id, green_start[g.id], t)
                del green_start[g.id]
        previous = shown


def test_an_operators_flash_outlasts_the_central_and_a_reset_without_a_latch_changes_nothing() -> None:
    central, _ = handle_command(K01, start(K01, K01.default_timing), 1, "apply_timing", K01.timings["AM_PEAK"])
    central = advance(K01, central, 100.0)
    flashing, _ = handle_command(K01, central, 2, "flash")
    flashing = advance(K01, flashing, 130.0)
    assert flashing.interval == "flash" and flashing.mode == "flash"
    lost = fall_back(flashing, K01.timings["OFF_PEAK"])  # lalin goes quiet during an incident flash
    assert lost.interval == "flash" and lost.mode == "flash" and "central_heartbeat_lost" in lost.faults
    assert advance(K01, lost, 600.0).interval == "flash"
    reset, outcome = handle_command(K01, central, 3, "reset_fault")  # e.g. after a lamp repair: nothing latched
    assert outcome.result == "accepted" and reset.applied_seq == 3
    assert (reset.mode, reset.timing, reset.interval) == (central.mode, central.timing, central.interval)


def test_a_flash_requested_during_the_startup_waits_for_its_end_in_all_red() -> None:
    latched = conflict_detected(start(K01, K01.default_timing))
    starting, _ = handle_command(K01, latched, 1, "reset_fault")
    assert starting.interval == "startup"
    starting, _ = handle_command(K01, starting, 2, "flash")
    assert advance(K01, starting, startup_s(K01) - 0.1).interval == "startup"
    assert advance(K01, starting, startup_s(K01) + 0.1).interval == "flash"


def _cycle_starts(plan, state, horizon_s: float, step_s: float = 0.5) -> list[float]:  # type: ignore[no-untyped-def]
    starts, t = [], 0.0
    while t < horizon_s:
        before = state.cycle_elapsed_s
        state = advance(plan, state, step_s)
        t += step_s
        if state.cycle_elapsed_s < before and state.interval == "green" and state.stage_index == 0:
            starts.append(state.clock_s - state.interval_elapsed_s)
    return starts


@settings(max_examples=40, deadline=None)
@given(clock0=st.floats(0, 1e9), offset=st.integers(0, 129))
def test_a_coordinated_controller_reaches_its_offset_within_a_few_cycles_without_cutting_a_green(clock0: float,
                                                                                                 offset: int) -> None:
    """Cycles start where (clock - offset) mod cycle = 0 once corrected; corrections stay within the stage bounds."""
    from controllers.splits import stage_bounds_s
    from devices.controller_logic import offset_error_s
    timing = Timing(cycle_s=130, offset_s=offset, stage_greens_s=K01.timings["AM_PEAK"].stage_greens_s)
    state = start(K01, timing, mode="central", clock_s=clock0)
    starts = _cycle_starts(K01, state, 130 * 8)
    errors = [min(offset_error_s(timing, t), 130 - offset_error_s(timing, t)) for t in starts]
    assert errors[-1] < 0.6 and errors[-2] < 0.6  # on the offset (0.5 s sampling) and staying there
    lengths = [b - a for a, b in pairwise(starts)]
    assert all(130 - 0.2 * 130 - 0.6 <= n <= 130 + 0.2 * 130 + 0.6 for n in lengths)  # at most a fifth of a cycle per cycle
    bounds = stage_bounds_s(K01)
    room_short = sum(g - bounds[s][0] for s, g in timing.stage_greens_s.items())
    assert all(n >= 130 - room_short - 0.6 for n in lengths)  # no green below its minimum
