"""Signal performance measures (PCD, arrivals on green, platoon ratio, split failures) against hand-computed cycles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.envelope import decode_event, encode_event, make_event
from controllers.payloads import ControllerEventsLogged, EventCode, LoggedEvent
from controllers.pcd_chart import pcd_svg
from controllers.replay import check_folds
from controllers.signal_performance import (
    arrival_detectors,
    arrivals_on_green,
    coordinated_groups,
    group_detectors,
    junction_performance,
    split_failures,
    travel_time_s,
)
from controllers.traffic_state import IntersectionLayout
from devices.fleet import load_fleet
from infra.signal_performance_view import as_view, merge_batches
from infra.topics import load_catalogue
from streams.fold_task import FoldTask
from streams.worker import FOLD_INPUTS

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00 WITA
SITE = load_fleet().site("K03")
LAYOUT = SITE.layout()  # K03 as catalogued: stop-line loops, and advance loops 120 m upstream on N_T (A) and S_TR (B)
#: K03 with its stop-line loops only: coordinated groups fall back to them for arrivals.
STOP_LINE_ONLY = IntersectionLayout.of(SITE.id, SITE.load_plan(), [(d.id, d.movement, d.lane)
                                                                   for d in SITE.detector_list() if d.kind == "stop_line"])
GREEN, YELLOW, RED = EventCode.PHASE_BEGIN_GREEN, EventCode.PHASE_BEGIN_YELLOW_CLEARANCE, EventCode.PHASE_BEGIN_RED_CLEARANCE
ON, OFF = EventCode.DETECTOR_ON, EventCode.DETECTOR_OFF


def log(*items: tuple[float, int, str]) -> list[LoggedEvent]:
    """Entries from (seconds after T0, code, group or detector id), numbered in order."""
    return [LoggedEvent(seq=k + 1, code=code, param=param, at=T0 + timedelta(seconds=t))
            for k, (t, code, param) in enumerate(sorted(items))]


def vehicle(t: float, detector: str, occupied_s: float = 0.5) -> list[tuple[float, int, str]]:
    return [(t, ON, detector), (t + occupied_s, OFF, detector)]


def test_detectors_follow_the_plans_movements_to_their_groups() -> None:
    assert coordinated_groups(LAYOUT) == ["B", "A"]  # K03: outbound B (northbound), inbound A
    assert group_detectors(LAYOUT, "B") == ["K03-S_TR-1", "K03-S_TR-2"]  # movement S_TR is served by B
    assert group_detectors(LAYOUT, "A") == ["K03-N_T-1", "K03-N_T-2", "K03-N_T-3"]
    assert group_detectors(LAYOUT, "D") == ["K03-E_A-1", "K03-E_A-2"]
    assert group_detectors(LAYOUT, "P1") == []
    # arrivals: B's and A's advance loops, each shifted by 120 m at the group's 50 km/h: 120 / (50 / 3.6) = 8.64 s
    assert arrival_detectors(LAYOUT, "B") == ("advance", {"K03-S_TR-A1": 8.64, "K03-S_TR-A2": 8.64})
    kind, shifts = arrival_detectors(LAYOUT, "A")
    assert kind == "advance" and list(shifts) == ["K03-N_T-A1", "K03-N_T-A2", "K03-N_T-A3"]
    assert arrival_detectors(LAYOUT, "D") == ("stop_line", {"K03-E_A-1": 0.0, "K03-E_A-2": 0.0})  # no advance loop
    assert arrival_detectors(STOP_LINE_ONLY, "B") == ("stop_line", {"K03-S_TR-1": 0.0, "K03-S_TR-2": 0.0})


def test_travel_time_is_distance_over_the_groups_approach_speed() -> None:
    assert travel_time_s(120.0, 50.0) == 120.0 / (50.0 / 3.6) == 8.64
    assert travel_time_s(100.0, 36.0) == 10.0
    with pytest.raises(ValueError, match="above 0 km/h"):
        travel_time_s(120.0, 0.0)


def two_cycles_of_b() -> list[LoggedEvent]:
    signals = [(0, RED, "B"), (30, GREEN, "B"), (60, YELLOW, "B"), (63, RED, "B"), (93, GREEN, "B"), (123, YELLOW, "B"),
               (126, RED, "B")]
    arrivals = [*vehicle(10, "K03-S_TR-1"), *vehicle(35, "K03-S_TR-2"), *vehicle(40, "K03-S_TR-1"),
                *vehicle(61, "K03-S_TR-1"), *vehicle(70, "K03-S_TR-2"), *vehicle(100, "K03-S_TR-1"),
                *vehicle(45, "K03-N_T-1")]  # an arrival on A's detectors: not B's
    return log(*signals, *arrivals)


def test_arrivals_on_green_and_platoon_ratio_of_two_hand_computed_cycles() -> None:
    b = arrivals_on_green(STOP_LINE_ONLY, two_cycles_of_b(), "B", T0, T0 + timedelta(seconds=200))
    assert [(c.start, c.length_s, c.green_s, c.yellow_s) for c in b.cycles] == [
        (T0, 63.0, 30.0, 60.0), (T0 + timedelta(seconds=63), 63.0, 30.0, 60.0)]
    first, second = b.cycles
    assert first.arrivals_s == [10.0, 35.0, 40.0, 61.0] and (first.on_red, first.on_green, first.on_yellow) == (1, 2, 1)
    assert second.arrivals_s == [7.0, 37.0] and (second.on_red, second.on_green, second.on_yellow) == (1, 1, 0)
    assert first.aog_pct == 50.0 and second.aog_pct == 50.0
    assert b.arrivals == 6 and b.arrivals_on_green == 3 and b.aog_pct == 50.0
    assert b.green_pct is not None and abs(b.green_pct - 100 * 60 / 126) < 1e-9  # 60 s of green in 126 s
    assert b.platoon_ratio is not None and abs(b.platoon_ratio - 50 / (100 * 60 / 126)) < 1e-9  # 1.05
    assert b.incomplete_cycles == 0
    assert b.arrival_detectors == "stop_line" and b.detectors == ["K03-S_TR-1", "K03-S_TR-2"]
    assert b.travel_times_s == [0.0, 0.0]


def test_advance_arrivals_are_shifted_by_the_travel_time_to_the_stop_line() -> None:
    """B's two cycles (red 0-30 s, green 30-60 s, yellow 60-63 s; again from 63 s) with vehicles on its advance loops:
    each detector-on + 8.64 s (120 m at 50 km/h) is the arrival at the stop line."""
    signals = [(0, RED, "B"), (30, GREEN, "B"), (60, YELLOW, "B"), (63, RED, "B"), (93, GREEN, "B"), (123, YELLOW, "B"),
               (126, RED, "B")]
    advance = [*vehicle(15, "K03-S_TR-A1"), *vehicle(22, "K03-S_TR-A2"), *vehicle(50, "K03-S_TR-A1"),
               *vehicle(53, "K03-S_TR-A2"), *vehicle(55, "K03-S_TR-A1"), *vehicle(85, "K03-S_TR-A2"),
               *vehicle(120, "K03-S_TR-A1")]  # reaches the stop line at 128.64 s: after the last cycle
    stop_line = [*vehicle(31, "K03-S_TR-1"), *vehicle(40, "K03-S_TR-2")]  # the discharge: not arrivals here
    b = arrivals_on_green(LAYOUT, log(*signals, *advance, *stop_line), "B", T0, T0 + timedelta(seconds=200))
    assert b.arrival_detectors == "advance" and b.detectors == ["K03-S_TR-A1", "K03-S_TR-A2"]
    assert b.travel_times_s == [8.64, 8.64]
    first, second = b.cycles
    # 15 -> 23.64 red, 22 -> 30.64 green, 50 -> 58.64 green, 53 -> 61.64 yellow; 55 -> 63.64 is the next cycle's
    assert first.arrivals_s == pytest.approx([23.64, 30.64, 58.64, 61.64])
    assert (first.on_red, first.on_green, first.on_yellow) == (1, 2, 1)
    # second cycle from 63 s: 63.64 -> 0.64 red, 85 -> 93.64 -> 30.64 green (its green begins at 30 s)
    assert second.arrivals_s == pytest.approx([0.64, 30.64]) and (second.on_red, second.on_green) == (1, 1)
    assert b.arrivals == 6 and b.arrivals_on_green == 3 and b.aog_pct == 50.0
    # unshifted, the same detector-ons would read 15, 22 red, 50, 53, 55 green, 85 (22 s into cycle 2) red: 50 % too,
    # but classed differently; the stop-line fallback sees only the two discharging vehicles, both on green
    fallback = arrivals_on_green(STOP_LINE_ONLY, log(*signals, *advance, *stop_line), "B", T0,
                                 T0 + timedelta(seconds=200))
    assert fallback.arrival_detectors == "stop_line" and (fallback.arrivals, fallback.aog_pct) == (2, 100.0)


def test_a_group_without_advance_loops_falls_back_to_its_stop_line_loops_and_says_so() -> None:
    no_b_advance = IntersectionLayout.of(SITE.id, SITE.load_plan(), [
        (d.id, d.movement, d.lane, d.kind, d.distance_m) for d in SITE.detector_list()
        if not (d.kind == "advance" and d.movement == "S_TR")])
    signals = [(0, RED, "A"), (0, RED, "B"), (30, GREEN, "A"), (30, GREEN, "B"), (60, YELLOW, "A"), (60, YELLOW, "B"),
               (63, RED, "A"), (63, RED, "B")]
    # A: an advance vehicle at 10 s arrives at 18.64 s (red); B: a stop-line vehicle at 10 s is an arrival at 10 s (red)
    # and one at 35 s (green); A's stop-line vehicle at 35 s is not one of A's arrivals
    vehicles = [*vehicle(10, "K03-N_T-A2"), *vehicle(25, "K03-N_T-A1"), *vehicle(10, "K03-S_TR-1"),
                *vehicle(35, "K03-S_TR-2"), *vehicle(35, "K03-N_T-1")]
    result = junction_performance(no_b_advance, log(*signals, *vehicles), T0, T0 + timedelta(seconds=60))
    b, a = result.coordinated
    assert (b.group, b.arrival_detectors, b.detectors) == ("B", "stop_line", ["K03-S_TR-1", "K03-S_TR-2"])
    assert (b.arrivals, b.arrivals_on_green, b.cycles[0].arrivals_s) == (2, 1, [10.0, 35.0])
    assert (a.group, a.arrival_detectors) == ("A", "advance")
    assert a.cycles[0].arrivals_s == pytest.approx([18.64, 33.64]) and (a.arrivals, a.arrivals_on_green) == (2, 1)
    view = as_view(result)["coordinated"]
    assert [(g["group"], g["arrival_detectors"], g["travel_times_s"]) for g in view] == [
        ("B", "stop_line", [0.0, 0.0]), ("A", "advance", [8.64, 8.64, 8.64])]


def test_split_failures_ignore_a_queue_standing_on_the_advance_loops() -> None:
    signals = [(0, GREEN, "B"), (20, YELLOW, "B"), (23, RED, "B"), (60, GREEN, "B")]
    queue = [(-5, ON, "K03-S_TR-A1"), (90, OFF, "K03-S_TR-A1")]  # the advance loop occupied the whole time
    b = split_failures(LAYOUT, log(*signals, *queue, *vehicle(5, "K03-S_TR-1")), "B", T0, T0 + timedelta(seconds=30))
    assert b.detectors == ["K03-S_TR-1", "K03-S_TR-2"]
    (cycle,) = b.cycles
    assert (cycle.green_occupancy, cycle.red_occupancy, cycle.failed) == (0.5 / 20, 0.0, False)


def test_cycles_outside_the_period_or_missing_events_or_touching_a_gap_are_left_out() -> None:
    entries = two_cycles_of_b()
    later = arrivals_on_green(STOP_LINE_ONLY, entries, "B", T0 + timedelta(seconds=1), T0 + timedelta(seconds=200))
    assert [c.start for c in later.cycles] == [T0 + timedelta(seconds=63)]
    no_second_yellow = [e for e in entries if not (e.code == YELLOW and e.at == T0 + timedelta(seconds=123))]
    broken = arrivals_on_green(STOP_LINE_ONLY, no_second_yellow, "B", T0, T0 + timedelta(seconds=200))
    assert len(broken.cycles) == 1 and broken.incomplete_cycles == 1
    gap = (T0 + timedelta(seconds=80), T0 + timedelta(seconds=85))
    gapped = arrivals_on_green(STOP_LINE_ONLY, entries, "B", T0, T0 + timedelta(seconds=200), gaps=[gap])
    assert len(gapped.cycles) == 1 and gapped.incomplete_cycles == 1 and gapped.arrivals == 4


def test_split_failure_needs_both_an_occupied_green_and_an_occupied_start_of_red() -> None:
    signals = [(0, GREEN, "D"), (20, YELLOW, "D"), (23, RED, "D"), (60, GREEN, "D"), (80, YELLOW, "D"), (83, RED, "D"),
               (120, GREEN, "D")]
    presence = [(-5, ON, "K03-E_A-1"), (19, OFF, "K03-E_A-1"), (19.5, ON, "K03-E_A-2"), (30, OFF, "K03-E_A-2"),
                *vehicle(60, "K03-E_A-1", 2.0), (83, ON, "K03-E_A-2"), (90, OFF, "K03-E_A-2")]
    d = split_failures(LAYOUT, log(*signals, *presence), "D", T0, T0 + timedelta(seconds=100))
    assert d.detectors == ["K03-E_A-1", "K03-E_A-2"]
    first, second = d.cycles
    # green [0, 20): E_A-1 until 19 and E_A-2 from 19.5 -> 19.5 s occupied; red [23, 28): E_A-2 throughout
    assert (first.green_s, first.green_occupancy, first.red_occupancy, first.failed) == (20.0, 19.5 / 20, 1.0, True)
    # green [60, 80): 2 s occupied; red [83, 88) fully occupied, but the queue cleared in green
    assert (second.green_occupancy, second.red_occupancy, second.failed) == (0.1, 1.0, False)
    assert d.failures == 1
    assert split_failures(LAYOUT, log(*signals), "P1", T0, T0 + timedelta(seconds=100)).cycles == []  # no detectors


def test_the_red_window_ends_at_the_next_green_and_presence_open_at_the_edges_counts() -> None:
    signals = [(0, GREEN, "E"), (10, YELLOW, "E"), (13, RED, "E"), (15, GREEN, "E")]
    presence = [(4, OFF, "K03-W_A-1"), (8, ON, "K03-W_A-1")]  # on since before the log; on until its end (15 s)
    e = split_failures(LAYOUT, log(*signals, *presence), "E", T0, T0 + timedelta(seconds=1))
    (cycle,) = e.cycles
    assert cycle.green_occupancy == (4 + 2) / 10 and cycle.red_occupancy == 1.0  # red window [13, 15): 2 s, occupied


def test_a_whole_junction_and_its_view_are_json_ready() -> None:
    result = junction_performance(STOP_LINE_ONLY, two_cycles_of_b(), T0, T0 + timedelta(seconds=200), lost_entries=3)
    assert [g.group for g in result.coordinated] == ["B", "A"]
    assert [s.group for s in result.split_failures] == ["A", "B", "C", "D", "E"]  # vehicle groups only
    view = as_view(result)
    assert view["coordinated"][0]["aog_pct"] == 50.0 and view["coordinated"][0]["cycles"] == 2
    assert view["lost_entries"] == 3 and view["pcd_svg"].count("<svg") == 2
    assert msgspec.json.decode(msgspec.json.encode(view)) == view


def test_the_pcd_draws_a_band_per_aspect_and_cycle_and_a_dot_per_arrival() -> None:
    b = arrivals_on_green(STOP_LINE_ONLY, two_cycles_of_b(), "B", T0, T0 + timedelta(seconds=200))
    svg = pcd_svg(b, T0, T0 + timedelta(seconds=200))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="band red"') == svg.count('class="band green"') == svg.count('class="band yellow"') == 2
    assert svg.count('class="arrival"') == 6 and "AoG 50 %" in svg and "platoon ratio 1.05" in svg
    empty = arrivals_on_green(STOP_LINE_ONLY, [], "B", T0, T0 + timedelta(seconds=200))
    assert "no complete cycle" in pcd_svg(empty, T0, T0 + timedelta(seconds=200))


@st.composite
def logged_cycles(draw: st.DrawFn) -> list[LoggedEvent]:
    items: list[tuple[float, int, str]] = []
    t = 0.0
    for _ in range(draw(st.integers(1, 6))):
        red, green, yellow = draw(st.floats(1, 60)), draw(st.floats(1, 60)), draw(st.floats(2, 5))
        items += [(t, RED, "B"), (t + red, GREEN, "B"), (t + red + green, YELLOW, "B")]
        t += red + green + yellow
    items.append((t, RED, "B"))
    for at in draw(st.lists(st.floats(-20, t + 20), max_size=60)):
        items.append((at, ON, draw(st.sampled_from(["K03-S_TR-1", "K03-S_TR-2"]))))
    return log(*items)


@settings(max_examples=60, deadline=None)
@given(logged_cycles())
def test_arrivals_are_partitioned_between_the_aspects_and_aog_is_a_percentage(entries: list[LoggedEvent]) -> None:
    b = arrivals_on_green(STOP_LINE_ONLY, entries, "B", T0 - timedelta(seconds=1), T0 + timedelta(hours=1))
    reds = sorted(e.at for e in entries if e.code == RED)
    inside = [e for e in entries if e.code == ON and reds[0] <= e.at < reds[-1]]
    assert b.arrivals == len(inside) == sum(c.on_red + c.on_green + c.on_yellow for c in b.cycles)
    for c in b.cycles:
        assert c.on_red == sum(a < c.green_s for a in c.arrivals_s)
        assert all(0 <= a < c.length_s for a in c.arrivals_s)
    if b.aog_pct is not None:
        assert 0.0 <= b.aog_pct <= 100.0
    assert b.green_pct is not None and 0.0 < b.green_pct < 100.0


def batch(boot: int, entries: list[LoggedEvent], lost: int = 0) -> ControllerEventsLogged:
    return ControllerEventsLogged(controller_id="K03", boot=boot, entries=entries, lost=lost)


def test_merging_batches_keeps_one_copy_per_boot_and_seq_and_turns_losses_into_gaps() -> None:
    entries = two_cycles_of_b()
    first, again, after_loss = batch(1, entries[:5]), batch(1, entries[:8]), batch(1, entries[12:], lost=4)
    other_boot = batch(2, entries[:2])
    merged, gaps, lost = merge_batches([first, again, after_loss, other_boot], T0 - timedelta(minutes=6))
    assert [(e.seq) for e in merged] == [*range(1, 9), *range(13, len(entries) + 1), 1, 2]
    assert gaps == [(entries[7].at, entries[12].at)] and lost == 4


def test_a_batch_is_a_valid_event_on_a_topic_no_fold_reads_and_the_fold_ignores_it() -> None:
    payload = batch(1, two_cycles_of_b())
    event = make_event(payload, event_id=uuid.uuid4(), event_time=T0 + timedelta(minutes=3), ingest_time=T0,
                       source="modbus:K03", key="K03", seq=1)
    raw = encode_event(event)
    assert decode_event(raw, T0 + timedelta(minutes=3)).event.payload == payload
    topic = load_catalogue().topic_of_type["ControllerEventsLogged"]
    assert topic == "lalin.hires" and topic not in FOLD_INPUTS
    task = FoldTask(0, {"K03": LAYOUT}, "epoch")
    assert task.handle("lalin.controller", 0, b"K03", raw, T0 + timedelta(minutes=3), lambda: T0) == []
    assert task.dead_letters == []
    assert check_folds([event], {"K03": LAYOUT}).ok  # replay's fold check passes over it
