"""The traffic-state fold: windows, measures, detector health, and the replay property (cited inputs, any order)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.envelope import Envelope, make_event
from controllers.payloads import (
    CameraObserved,
    ControllerFaulted,
    ControlMode,
    DetectorCounted,
    DetectorHealth,
    DetectorReading,
    DetectorsCounted,
    FaultKind,
    GroupState,
    Incident,
    IncidentKind,
    Payload,
    Severity,
    SignalStateReported,
    TrafficMeasured,
    VolumeByClass,
)
from controllers.traffic_state import (
    FoldConfig,
    HealthConfig,
    IntersectionFold,
    IntersectionLayout,
    UnknownInput,
    summary_event_id,
)
from devices.fleet import load_fleet

T0 = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # 07:00 WITA


def layout(site_id: str = "K01") -> IntersectionLayout:
    site = load_fleet().site(site_id)
    return site.layout()


class Events:
    """Envelopes for one intersection, numbered per source."""

    def __init__(self, key: str = "K01") -> None:
        self.key, self.seq = key, 0

    def __call__(self, payload: Payload, at: datetime, source: str = "modbus:K01") -> Envelope:
        self.seq += 1
        return make_event(payload, event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{self.key}/{self.seq}"), event_time=at,
                          ingest_time=at, source=source, key=self.key, seq=self.seq)


def counts(lay: IntersectionLayout, per_detector: dict[str, int] | int, occupancy: float = 0.2,
           interval_s: float = 60.0) -> DetectorsCounted:
    def n(d: str) -> int:
        return per_detector if isinstance(per_detector, int) else per_detector.get(d, 0)
    return DetectorsCounted(controller_id=lay.intersection_id, interval_s=interval_s, readings=[
        DetectorReading(d.id, VolumeByClass(unclassified=n(d.id)), occupancy, lane=f"{d.movement}/{d.lane}")
        for d in lay.detectors])


def signal(greens: list[float], cycle_s: float) -> SignalStateReported:
    return SignalStateReported(controller_id="K01", mode=ControlMode.CENTRAL, plan_id=1, cycle_s=cycle_s, stage=1,
                               stage_elapsed_s=0.0, group_states={"A": GroupState.GREEN}, plan_checksum="0badcafe",
                               offset_s=0.0, stage_greens_s=greens)


def run(fold: IntersectionFold, events: list[Envelope]) -> list[TrafficMeasured]:
    out: list[TrafficMeasured] = []
    for e in events:
        out.extend(fold.apply(e))
    return out


def test_a_window_closes_after_its_end_plus_grace_and_measures_its_counts() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay, FoldConfig(grace_s=10))
    events = [ev(signal([44, 26, 26], 130), T0 + timedelta(seconds=1))]
    events += [ev(counts(lay, 10), T0 + timedelta(minutes=k + 1)) for k in range(5)]  # minutes 0..4
    summaries = run(fold, events)
    # the count ending at minute 5 (its middle in minute 4) closes minute 3 only after 60 s + 10 s grace
    assert [s.window.start for s in summaries] == [T0 + timedelta(minutes=k) for k in range(4)]
    assert run(fold, [ev(counts(lay, 10), T0 + timedelta(minutes=5, seconds=10))])[0].window.start == T0 + timedelta(minutes=4)
    last = summaries[-1]
    n_t = next(m for m in last.movements if m.movement == "N_T")
    assert n_t.volume_1min.unclassified == 20 and n_t.lanes_measured == 2 and n_t.lanes_total == 2
    assert n_t.volume_5min.unclassified == 80  # four windows so far
    assert last.window_5min.start == T0
    # PCU: Badung's default mix 0.72/0.24/0.04 with MKJI factors 0.2/1.0/1.3 = 0.436 pcu per vehicle
    assert n_t.flow_pcu_h == pytest.approx(80 * 0.436 * 3600 / 240)
    # X = q C / (S g): N_T is group A, green through S1, the S1-S2 interstage (10 s: P1 clears before C) and S2
    assert n_t.degree_of_saturation == pytest.approx(80 * 0.436 * 15 * 130 / (4200 * (44 + 10 + 26)))
    assert last.controller_mode is ControlMode.CENTRAL and last.running is not None and last.running.cycle_s == 130
    assert last.detectors_total == 11 and last.detectors_unhealthy == []  # 7 stop-line and 4 advance loops (health covers both)
    assert {s.stage for s in last.stages} == {"S1", "S2", "S3"} and all(s.degree_of_saturation for s in last.stages)
    assert summary_event_id("K01", T0) != summary_event_id("K01", T0 + timedelta(minutes=1))


def test_late_events_are_counted_not_measured() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    run(fold, [ev(counts(lay, 5), T0 + timedelta(minutes=k + 1)) for k in range(3)])
    late = ev(counts(lay, 100), T0 + timedelta(minutes=1))
    closing = run(fold, [late, ev(counts(lay, 5), T0 + timedelta(minutes=4))])
    assert len(closing) == 1 and closing[0].late_events == 1
    assert late.event_id in closing[0].input_event_ids
    assert all(m.volume_1min.unclassified <= 10 for m in closing[0].movements)


def test_camera_mix_sets_the_pcu_of_loop_counts_and_queue_and_incident_are_reported() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    events = []
    for k in range(3):
        at = T0 + timedelta(minutes=k + 1)
        events.append(ev(counts(lay, 10), at))
        events.append(ev(CameraObserved(camera_id="CAM-K01-N", approach="N", interval_s=60,
                                        counts=VolumeByClass(motorcycle=0, car=50, heavy=0), queue_length_m=40.0 + k,
                                        incident=Incident(IncidentKind.STALLED_VEHICLE, 0.9) if k == 1 else None),
                         at, source="camera:CAM-K01-N"))
    summaries = run(fold, events)
    second = summaries[1]
    north = next(a for a in second.approaches if a.approach == "N")
    assert north.queue_length_m == 41.0 and north.incident is not None
    assert north.incident.kind is IncidentKind.STALLED_VEHICLE and north.counts_1min is not None
    n_t = next(m for m in second.movements if m.movement == "N_T")
    s_tr = next(m for m in second.movements if m.movement == "S_TR")
    assert n_t.flow_pcu_h == pytest.approx(40 * 1.0 * 3600 / 120)  # the camera saw cars only
    assert s_tr.flow_pcu_h == pytest.approx(40 * 0.436 * 3600 / 120)  # no camera on S: the default mix


def test_unknown_detector_approach_or_controller_is_refused_and_nothing_is_folded() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    with pytest.raises(UnknownInput, match="K01-X-1"):
        fold.apply(ev(DetectorCounted(detector_id="K01-X-1", interval_s=60, volume=VolumeByClass(car=1), occupancy=0.1),
                      T0))
    with pytest.raises(UnknownInput, match="approach 'Q'"):
        fold.apply(ev(CameraObserved(camera_id="c", approach="Q", interval_s=60, counts=VolumeByClass(),
                                     queue_length_m=0), T0))
    with pytest.raises(UnknownInput, match="K02"):
        fold.apply(ev(DetectorsCounted(controller_id="K02", interval_s=60, readings=counts(lay, 1).readings), T0))
    assert fold.state.cited == [] and fold.state.windows == {}


def _health(summary: TrafficMeasured) -> dict[str, DetectorHealth]:
    return {d.detector_id: d.health for d in summary.detectors_unhealthy}


def test_stuck_on_detector_is_replaced_by_its_healthy_neighbour_and_recovers_after_clean_windows() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    summaries = []
    for k in range(12):
        readings = counts(lay, 10).readings
        if 2 <= k < 6:  # K01-N_T-2 occupied all the time for four minutes
            readings = [r if r.detector_id != "K01-N_T-2" else DetectorReading(r.detector_id, VolumeByClass(unclassified=1),
                                                                            1.0) for r in readings]
        summaries += run(fold, [ev(DetectorsCounted(controller_id="K01", interval_s=60, readings=readings),
                                   T0 + timedelta(minutes=k + 1))])
    status = [_health(s).get("K01-N_T-2", DetectorHealth.OK) for s in summaries]
    assert status[:4] == [DetectorHealth.OK] * 4
    assert status[4] == DetectorHealth.STUCK_ON and status[5] == DetectorHealth.STUCK_ON
    assert status[6:8] == [DetectorHealth.STUCK_ON] * 2 and status[8] == DetectorHealth.OK  # OK on the 3rd clean window
    n_t = next(m for m in summaries[5].movements if m.movement == "N_T")
    assert n_t.lanes_measured == 1 and n_t.lanes_total == 2
    assert n_t.flow_pcu_h == pytest.approx(50 * 0.436 * 3600 / 300 * 2)  # the healthy lane's five windows, times two lanes


def test_advance_loops_are_folded_and_health_checked_but_never_measure_a_movement() -> None:
    lay, ev = layout(), Events()
    kinds = {d.id: d.kind for d in lay.detectors}
    # K01 as catalogued: stop-line loops first, then the advance loops of its coordinated movements (A: N_T, B: S_TR)
    assert [d for d, k in kinds.items() if k == "advance"] == ["K01-N_T-A1", "K01-N_T-A2", "K01-S_TR-A1", "K01-S_TR-A2"]
    assert [d.id for d in lay.stop_line_detectors()] == [d for d, k in kinds.items() if k == "stop_line"]
    assert {d.distance_m for d in lay.detectors if d.kind == "advance"} == {120.0}
    fold = IntersectionFold(lay)
    summaries = []
    for k in range(12):
        # every stop-line loop counts 10 vehicles a minute; the advance loops 25 (N_T-A1 silent: no_counts later)
        per = {d: (10 if kind == "stop_line" else 25) for d, kind in kinds.items()}
        per["K01-N_T-A1"] = 0
        readings = counts(lay, per).readings
        # a queue stands on S_TR's advance loops (occupied the whole minute): the movement's occupancy stays 0.2
        readings = [DetectorReading(r.detector_id, r.volume, 1.0 if r.detector_id.startswith("K01-S_TR-A") else 0.2,
                                    lane=r.lane) for r in readings]
        summaries += run(fold, [ev(signal([44, 26, 26], 130), T0 + timedelta(minutes=k, seconds=1)),
                                ev(DetectorsCounted(controller_id="K01", interval_s=60, readings=readings),
                                   T0 + timedelta(minutes=k + 1))])
    last = summaries[-1]
    for movement, lanes in (("N_T", 2), ("S_TR", 2)):
        m = next(x for x in last.movements if x.movement == movement)
        # only the two stop-line lanes: 10 vehicles each per minute, five minutes; the advance counts are not added
        assert (m.lanes_measured, m.lanes_total) == (lanes, lanes), movement
        assert m.volume_1min.unclassified == 20 and m.volume_5min.unclassified == 100, movement
        assert m.flow_pcu_h == pytest.approx(100 * 0.436 * 3600 / 300), movement
        assert m.occupancy == pytest.approx(0.2), movement
    # health covers both kinds: the silent advance loop is reported, and does not take a lane from N_T's measures
    assert _health(last) == {"K01-N_T-A1": DetectorHealth.NO_COUNTS}
    assert last.detectors_total == 11
    # a stop-line-only layout of the same junction measures exactly the same movements from the same stop-line counts
    stop_only = IntersectionLayout.of("K01", lay.plan, [(d.id, d.movement, d.lane) for d in lay.stop_line_detectors()])
    plain, ev2 = IntersectionFold(stop_only), Events()
    alone = []
    for k in range(12):
        alone += run(plain, [ev2(signal([44, 26, 26], 130), T0 + timedelta(minutes=k, seconds=1)),
                             ev2(counts(stop_only, 10), T0 + timedelta(minutes=k + 1))])
    assert [s.movements for s in alone] == [s.movements for s in summaries]
    assert [s.stages for s in alone] == [s.stages for s in summaries]


def test_chatter_no_counts_bad_data_and_no_reports() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    summaries = []
    for k in range(12):
        per = {d.id: 10 for d in lay.detectors}
        per["K01-E_A-1"] = 0  # silent loop
        per["K01-W_A-1"] = 400 if k == 11 else 10  # chatter in the last minute
        summaries += run(fold, [ev(counts(lay, per), T0 + timedelta(minutes=k + 1))])
    fold.reject("e1/lalin.detector/0/17", "malformed", "K01-S_TR-1", T0 + timedelta(minutes=11))
    summaries += run(fold, [ev(counts(lay, 10), T0 + timedelta(minutes=13))])
    health = [_health(s) for s in summaries]
    assert health[9].get("K01-E_A-1") == DetectorHealth.NO_COUNTS and "K01-E_A-1" not in health[8]
    assert health[11].get("K01-W_A-1") == DetectorHealth.CHATTER and "K01-W_A-1" not in health[10]
    assert health[11].get("K01-S_TR-1") == DetectorHealth.BAD_DATA
    assert [(r.ref, r.detector_id) for r in summaries[11].rejected_inputs] == [("e1/lalin.detector/0/17", "K01-S_TR-1")]
    # nothing at all from the controller for two windows: every detector has no reports
    quiet = run(fold, [ev(CameraObserved(camera_id="CAM-K01-N", approach="N", interval_s=60, counts=VolumeByClass(),
                                         queue_length_m=0), T0 + timedelta(minutes=16))])
    assert set(_health(quiet[-1]).values()) >= {DetectorHealth.NO_REPORTS}
    w_a = next(m for m in quiet[-1].movements if m.movement == "W_A")
    assert w_a.lanes_measured == 0 and w_a.flow_pcu_h is None and w_a.degree_of_saturation is None


def test_comms_lost_makes_the_controller_unreachable_until_cleared() -> None:
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    lost = ControllerFaulted(controller_id="K01", fault=FaultKind.COMMS_LOST, severity=Severity.CRITICAL, active=True)
    back = ControllerFaulted(controller_id="K01", fault=FaultKind.COMMS_LOST, severity=Severity.INFO, active=False)
    s = run(fold, [ev(lost, T0 + timedelta(seconds=5)), ev(counts(lay, 1), T0 + timedelta(minutes=2)),
                   ev(counts(lay, 1), T0 + timedelta(minutes=3))])
    assert s[0].controller_reachable is False and s[0].faults_active == [FaultKind.COMMS_LOST]
    s = run(fold, [ev(back, T0 + timedelta(minutes=3, seconds=5)), ev(counts(lay, 1), T0 + timedelta(minutes=4))])
    assert s[0].controller_reachable is True and s[0].faults_active == []


@st.composite
def event_streams(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """(second offset, kind, count) triples: kind 0 = all-lane counts, 1 = camera, 2 = signal, 3 = one detector."""
    n = draw(st.integers(5, 60))
    return [(draw(st.integers(0, 900)), draw(st.integers(0, 3)), draw(st.integers(0, 40))) for _ in range(n)]


def _make(lay: IntersectionLayout, ev: Events, spec: list[tuple[int, int, int]]) -> list[Envelope]:
    out = []
    for second, kind, n in spec:
        at = T0 + timedelta(seconds=second)
        if kind == 0:
            out.append(ev(counts(lay, n, occupancy=min(1.0, n / 40)), at))
        elif kind == 1:
            out.append(ev(CameraObserved(camera_id="CAM-K01-S", approach="S", interval_s=60,
                                         counts=VolumeByClass(motorcycle=n, car=n // 3), queue_length_m=float(n)), at,
                          source="camera:CAM-K01-S"))
        elif kind == 2:
            out.append(ev(signal([30 + n % 10, 12, 24], 100 + n % 10), at))
        else:
            out.append(ev(DetectorCounted(detector_id="K01-W_A-1", interval_s=30, volume=VolumeByClass(motorcycle=n),
                                          occupancy=0.1, mean_speed_kmh=20.0 + n), at))
    return out


@settings(max_examples=60, deadline=None)
@given(event_streams(), st.randoms(use_true_random=False))
def test_replaying_each_summarys_cited_inputs_in_any_order_reproduces_every_summary(
        spec: list[tuple[int, int, int]], rnd: random.Random) -> None:
    """The replay property: a summary is a function of the state before it and the SET of events it cites."""
    lay = layout()
    events = _make(lay, Events(), spec)  # arrival order = as drawn (out of time order, late events included)
    live = IntersectionFold(lay)
    recorded = run(live, events)
    by_id = {e.event_id: e for e in events}
    replay = IntersectionFold(lay)
    produced: list[TrafficMeasured] = []
    for summary in recorded:
        if len(produced) > recorded.index(summary):
            continue  # produced by an earlier batch (one event closed several windows)
        batch = [by_id[i] for i in summary.input_event_ids]
        rnd.shuffle(batch)
        produced += replay.apply_batch(batch)
    assert [msgspec.json.encode(s) for s in produced] == [msgspec.json.encode(s) for s in recorded]
    cited = [i for s in recorded for i in s.input_event_ids]
    assert len(cited) == len(set(cited))  # every input cited at most once


@settings(max_examples=40, deadline=None)
@given(event_streams(), st.integers(1, 59))
def test_a_restored_snapshot_continues_exactly_like_the_original(spec: list[tuple[int, int, int]], cut: int) -> None:
    lay = layout()
    events = _make(lay, Events(), spec)
    whole = run(IntersectionFold(lay), events)
    first = IntersectionFold(lay)
    head = run(first, events[:cut])
    resumed = IntersectionFold.restore(lay, first.snapshot())
    tail = run(resumed, events[cut:])
    assert [msgspec.json.encode(s) for s in head + tail] == [msgspec.json.encode(s) for s in whole]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7200), st.integers(0, 30)), min_size=1, max_size=80))
def test_every_counted_vehicle_is_in_exactly_one_window_or_late(spec: list[tuple[int, int]]) -> None:
    """Count conservation on one detector: measured (1-min windows) + late + still open = sent."""
    lay, ev = layout(), Events()
    lenient = HealthConfig(recover_windows=1, chatter_veh_per_min=1e9, chatter_min_veh=10**9)
    fold = IntersectionFold(lay, FoldConfig(health=lenient))
    sent = measured = late_veh = 0
    for second, n in spec:
        event = ev(DetectorCounted(detector_id="K01-W_A-1", interval_s=20, volume=VolumeByClass(car=n), occupancy=0.3),
                   T0 + timedelta(seconds=second))
        before = fold.state.late
        for s in fold.apply(event):
            measured += next(m for m in s.movements if m.movement == "W_A").volume_1min.car
        late_veh += n if fold.state.late > before else 0
        sent += n
    open_w = fold.state.open_w
    still_open = sum(acc[1] for w, window in fold.state.windows.items() if open_w is None or w >= open_w
                     for d, acc in window.det.items() if d == "K01-W_A-1")
    assert measured + late_veh + still_open == sent


def test_a_loop_occupied_by_a_standing_queue_that_still_counts_is_not_stuck() -> None:
    """Congestion: a stop-line loop is occupied almost all the time, but vehicles keep crossing at green."""
    lay, ev = layout(), Events()
    fold = IntersectionFold(lay)
    summaries = run(fold, [ev(counts(lay, 12, occupancy=0.98), T0 + timedelta(minutes=k + 1)) for k in range(8)])
    assert all(s.detectors_unhealthy == [] for s in summaries)
