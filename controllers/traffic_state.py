"""Traffic state as a fold of one intersection's events (pure): windows, measures, detector health.

:class:`IntersectionFold` takes the intersection's events one at a time — detector counts
(``DetectorCounted``, or one controller's lanes in ``DetectorsCounted``), camera analytics
(``CameraObserved``), the controller's reported state, faults and command outcomes — and
returns a :class:`~controllers.payloads.TrafficMeasured` summary each time a 1-min window closes.

Windows and time
    Tumbling windows of ``window_s`` (60 s) are aligned to the epoch; the 5-min hopping window
    is the last ``hop_windows`` (5) tumbling windows, so it hops by one minute. A count
    belongs to the window holding the middle of its interval. *Stream time* is the latest event
    time seen for the intersection; window ``[t, t + 60)`` closes when stream time reaches
    ``t + 60 + grace_s``. An event for a window already closed is *late*: counted in the next
    summary's ``late_events`` and kept out of the measures (it stays in the archive).

Determinism (what makes replay exact)
    Between two summaries every update is commutative — sums, maxima, "latest by (event time,
    sequence)" — and only the event that moves stream time past a window's end closes it. So a
    summary is a function of the state after the previous summary and the *set* of events
    folded since, which the summary cites (``input_event_ids``). A replay that folds each
    summary's cited events (:meth:`IntersectionFold.apply_batch`, in any order) and then closes
    reaches the same summaries bit for bit. Before the first window closes nothing is late.

Measures
    Per movement (lane group): vehicles by class (1-min and 5-min, measured lanes), PCU flow
    (5-min; unclassified loop counts are converted with the class mix its approach's camera
    saw in the 5-min window, or the configured default mix; unhealthy lanes are replaced by
    the mean of the movement's healthy lanes), occupancy, speed and the degree of saturation
    ``X = q C / (S g)`` at the timing the controller reports running. Per stage: the highest
    X of its movements. Per approach: camera counts, longest queue (m), incident. Only
    *stop-line* detectors measure a movement (``DetectorSite.kind``, from the fleet's data): an
    advance loop upstream sees the same vehicles again, so its counts are folded (and its
    health judged) but never added to a movement's volume, flow or occupancy.

Detector health (from the retained minute windows; one status per detector, worst first)
    ``bad_data`` a reading was refused within ``bad_data_windows``; ``no_reports`` nothing
    received for ``no_report_windows``; ``stuck_on`` occupancy ≥ ``stuck_occupancy`` and at most
    ``stuck_max_veh`` vehicles in each of the last ``stuck_windows`` (a queue standing on a
    stop-line loop in congestion still counts vehicles crossing at green); ``chatter`` more than
    ``chatter_veh_per_min`` vehicles per minute, or counts with an implausibly short occupied time per vehicle; ``no_counts`` zero
    vehicles over ``silent_windows`` while the rest of the intersection counted at least
    ``silent_neighbour_veh``. A faulted detector returns to ``ok`` only after
    ``recover_windows`` consecutive clean windows (no flapping).

Units: seconds (``_s``), vehicles (``veh``), passenger-car units per hour (``pcu_h``), metres.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import msgspec

from controllers.envelope import Envelope
from controllers.errors import InvalidEvent
from controllers.payloads import (
    ApproachMeasure,
    CameraObserved,
    CommandAcknowledged,
    ControllerFaulted,
    DetectorCounted,
    DetectorHealth,
    DetectorReading,
    DetectorsCounted,
    DetectorStatus,
    FaultKind,
    Incident,
    MovementMeasure,
    RejectedInput,
    RunningTiming,
    SignalStateReported,
    StageMeasure,
    TimeWindow,
    TrafficMeasured,
    VolumeByClass,
)
from controllers.plan import Id, Plan, Timing
from controllers.safety import green_intervals_s

#: Namespace of the fold's deterministic ids (summary event ids).
FOLD_NAMESPACE = uuid.UUID("6f1d0b52-7c55-4f4e-9a63-2b5c1f0e9d40")
MAX_CITED_INPUTS = 5000

# accumulator slots of one detector in one window
_MOTO, _CAR, _HEAVY, _UNCL, _OCC_S, _COVER_S, _SPEED_SUM, _SPEED_N = range(8)
# accumulator slots of one camera approach in one window
_C_MOTO, _C_CAR, _C_HEAVY, _C_QUEUE, _C_REPORTS = range(5)


class UnknownInput(InvalidEvent):
    """An event that is valid on its own but names a detector, approach or controller this intersection does not have."""


class HealthConfig(msgspec.Struct, frozen=True):
    """Thresholds of the detector-health rules (windows are tumbling windows; see the module docstring)."""

    bad_data_windows: int = 5
    no_report_windows: int = 2
    stuck_occupancy: float = 0.95
    stuck_windows: int = 3
    stuck_max_veh: int = 1  # at most this many vehicles per window while "occupied" (congestion still counts)
    chatter_veh_per_min: float = 90.0
    chatter_min_occupied_s_per_veh: float = 0.05
    chatter_min_veh: int = 30
    silent_windows: int = 10
    silent_neighbour_veh: int = 30
    recover_windows: int = 3


class FoldConfig(msgspec.Struct, frozen=True):
    """Window sizes (s, windows), grace (s), the default class mix (shares) and the health rules."""

    window_s: int = 60
    hop_windows: int = 5
    grace_s: float = 10.0
    default_mix: tuple[float, float, float] = (0.72, 0.24, 0.04)  # motorcycle, car, heavy (Badung's mix)
    min_camera_veh: int = 20  # camera counts below this (5-min window) do not set the class mix
    max_empty_windows: int = 30  # after a longer silence only the last this many empty windows are summarised
    health: HealthConfig = HealthConfig()

    def retained_windows(self) -> int:
        """Closed windows kept in the state: enough for the hopping window and every health rule."""
        h = self.health
        return max(self.hop_windows, h.silent_windows, h.stuck_windows, h.no_report_windows, h.bad_data_windows)


DEFAULT_FOLD_CONFIG = FoldConfig()


#: Where a loop lies on its lane: at the stop line (counts vehicles entering the junction: the movement's flow and
#: occupancy) or upstream of it (``advance``: arrivals for signal performance measures, never a movement's flow).
DetectorKind = Literal["stop_line", "advance"]


@dataclass(frozen=True)
class DetectorSite:
    """A loop detector: its id, the movement and lane (1 = kerb side) it watches, its kind and, for an advance loop,
    its distance upstream of the stop line (m)."""

    id: str
    movement: Id
    lane: int
    kind: DetectorKind = "stop_line"
    distance_m: float = 0.0


@dataclass(frozen=True)
class IntersectionLayout:
    """What the fold needs to know about an intersection: its plan, detectors and camera approaches."""

    intersection_id: str
    plan: Plan
    detectors: tuple[DetectorSite, ...]
    corridor: str | None = None
    approaches: tuple[Id, ...] = ()
    detector_by_id: Mapping[str, DetectorSite] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detector_by_id", {d.id: d for d in self.detectors})
        for d in self.detectors:
            if self.plan.movement(d.movement) is None:
                raise UnknownInput(f"detector {d.id}: plan {self.plan.id} has no movement {d.movement!r}")
            if d.kind not in ("stop_line", "advance"):
                raise UnknownInput(f"detector {d.id}: kind {d.kind!r} is neither stop_line nor advance")

    def stop_line_detectors(self) -> tuple[DetectorSite, ...]:
        """The stop-line detectors: the only ones that measure a movement's flow and occupancy."""
        return tuple(d for d in self.detectors if d.kind == "stop_line")

    @classmethod
    def of(cls, intersection_id: str, plan: Plan,
           detectors: Sequence[tuple[str, str, int] | tuple[str, str, int, DetectorKind, float]]) -> IntersectionLayout:
        """A layout from the plan (approaches, corridor) and (detector id, movement, lane[, kind, distance m]) tuples
        (without kind: a stop-line detector)."""
        corridor = plan.coordination.corridor if plan.coordination is not None else None
        return cls(intersection_id, plan, tuple(DetectorSite(*d) for d in detectors), corridor,
                   tuple(a.id for a in plan.approaches))


class _Window(msgspec.Struct):
    det: dict[str, list[float]] = {}
    cam: dict[str, list[float]] = {}
    incidents: dict[str, Incident] = {}


class _Health(msgspec.Struct):
    status: DetectorHealth = DetectorHealth.OK
    since_s: float = 0.0
    clean_streak: int = 0
    bad_data_w: int | None = None  # window index of the last refused reading


class FoldState(msgspec.Struct):
    """Everything the fold remembers (snapshotted with the offsets it covers)."""

    open_w: int | None = None  # the oldest open window (every window before it is closed)
    first_w: int | None = None  # the first window the fold saw (the hopping window starts no earlier)
    stream_time_s: float = -math.inf
    windows: dict[int, _Window] = {}
    signal: SignalStateReported | None = None
    signal_order: tuple[float, int] = (-math.inf, 0)
    faults: dict[str, tuple[bool, float, int]] = {}  # fault kind -> (active, event time s, seq)
    last_command: CommandAcknowledged | None = None
    last_command_order: tuple[float, int] = (-math.inf, 0)
    health: dict[str, _Health] = {}
    cited: list[uuid.UUID] = []
    uncited: int = 0
    late: int = 0
    rejected: list[RejectedInput] = []
    summaries: int = 0


def summary_event_id(intersection_id: str, window_start: datetime) -> uuid.UUID:
    """The deterministic event id of an intersection's summary of the window starting at ``window_start``."""
    return uuid.uuid5(FOLD_NAMESPACE, f"TrafficMeasured/{intersection_id}/{window_start.astimezone(UTC).isoformat()}")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _volume(acc: Sequence[float]) -> VolumeByClass:
    return VolumeByClass(motorcycle=round(acc[0]), car=round(acc[1]), heavy=round(acc[2]),
                         unclassified=round(acc[3]) if len(acc) > 3 else 0)


class IntersectionFold:
    """The fold of one intersection (mutable; see the module docstring)."""

    def __init__(self, layout: IntersectionLayout, config: FoldConfig = DEFAULT_FOLD_CONFIG,
                 state: FoldState | None = None) -> None:
        self.layout, self.config = layout, config
        self.state = state if state is not None else FoldState()
        plan = layout.plan
        self._pcu = (plan.pcu_factors.motorcycle, plan.pcu_factors.car, plan.pcu_factors.heavy)
        self._movements = [m for m in plan.movements if not m.free_flow]
        # a movement's measures come from its stop-line loops only: an advance loop sees the same vehicles earlier
        self._detectors_of = {m.id: [d for d in layout.stop_line_detectors() if d.movement == m.id]
                              for m in self._movements}
        self._approaches = set(layout.approaches) | {m.approach for m in plan.movements}

    # --- input ----------------------------------------------------------------------------
    def apply(self, event: Envelope) -> list[TrafficMeasured]:
        """Fold one event; returns the summaries of the windows it closed (usually none, at most ``max_empty_windows``).

        Raises :class:`UnknownInput` (nothing folded) for a detector, approach or controller
        that is not this intersection's: the caller dead-letters it and calls :meth:`reject`.
        """
        self._fold(event)
        return self._advance()

    def apply_batch(self, events: Sequence[Envelope], rejected: Sequence[RejectedInput] = ()) -> list[TrafficMeasured]:
        """Fold a summary's cited events and refused inputs (in any order), then close windows: how a replay
        re-runs the fold.

        Live, no window closed before the last event of such a batch, so folding the whole
        set first and closing once gives the same summaries bit for bit.
        """
        for event in events:
            self._fold(event)
        for r in rejected:
            self.reject(r.ref, r.reason, r.detector_id, r.at)
        return self._advance()

    def _fold(self, event: Envelope) -> None:
        payload, t = event.payload, event.event_time.timestamp()
        if isinstance(payload, DetectorsCounted):
            self._check_controller(payload.controller_id, event)
            self._count(payload.readings, t, payload.interval_s)
        elif isinstance(payload, DetectorCounted):
            reading = DetectorReading(payload.detector_id, payload.volume, payload.occupancy, payload.mean_speed_kmh,
                                      payload.lane)
            self._count((reading,), t, payload.interval_s)
        elif isinstance(payload, CameraObserved):
            self._camera(payload, t)
        elif isinstance(payload, SignalStateReported):
            self._check_controller(payload.controller_id, event)
            if (t, event.seq) > self.state.signal_order:
                self.state.signal, self.state.signal_order = payload, (t, event.seq)
        elif isinstance(payload, ControllerFaulted):
            self._check_controller(payload.controller_id, event)
            previous = self.state.faults.get(payload.fault.value)
            if previous is None or (t, event.seq) > (previous[1], previous[2]):
                self.state.faults[payload.fault.value] = (payload.active, t, event.seq)
        elif isinstance(payload, CommandAcknowledged):
            if (t, event.seq) > self.state.last_command_order:
                self.state.last_command, self.state.last_command_order = payload, (t, event.seq)
        else:
            raise UnknownInput(f"event type {event.type} is not folded into traffic state")
        self._cite(event.event_id)
        self.state.stream_time_s = max(self.state.stream_time_s, t)

    def reject(self, ref: str, reason: str, detector_id: str | None, at: datetime | None) -> None:
        """Note an input refused and dead-lettered by the caller (``ref``: broker epoch/topic/partition/offset).

        A known detector turns ``bad_data`` from the window of ``at`` (default: stream time). The
        next summary lists the input with the time used, so a replay refuses it the same way.
        """
        known = detector_id if detector_id is not None and detector_id in self.layout.detector_by_id else None
        t = at.timestamp() if at is not None else self.state.stream_time_s
        when = _at(t) if math.isfinite(t) else None
        if len(self.state.rejected) < 1000:
            self.state.rejected.append(RejectedInput(ref=ref[:200], reason=reason, detector_id=known, at=when))
        if known is not None and when is not None:
            w = self._window_of(t)
            h = self.state.health.setdefault(known, _Health())
            h.bad_data_w = w if h.bad_data_w is None else max(h.bad_data_w, w)

    def _check_controller(self, controller_id: str, event: Envelope) -> None:
        if controller_id != self.layout.intersection_id:
            raise UnknownInput(f"event {event.event_id} of controller {controller_id!r} reached intersection "
                               f"{self.layout.intersection_id}")

    def _cite(self, event_id: uuid.UUID) -> None:
        if len(self.state.cited) < MAX_CITED_INPUTS:
            self.state.cited.append(event_id)
        else:
            self.state.uncited += 1

    def _window_of(self, t: float) -> int:
        return math.floor(t / self.config.window_s)

    def _bucket(self, middle_s: float) -> _Window | None:
        """The open window holding ``middle_s``, or None (late: counted). Before the first close nothing is late."""
        w = self._window_of(middle_s)
        st = self.state
        if st.open_w is not None and w < st.open_w:
            st.late += 1
            return None
        window = st.windows.get(w)
        if window is None:
            window = st.windows[w] = _Window(det={}, cam={}, incidents={})
        return window

    def _count(self, readings: Sequence[DetectorReading], end_s: float, interval_s: float) -> None:
        known = self.layout.detector_by_id
        unknown = [r.detector_id for r in readings if r.detector_id not in known]
        if unknown:
            raise UnknownInput(f"intersection {self.layout.intersection_id} has no detector {unknown[0]!r}")
        window = self._bucket(end_s - interval_s / 2)
        if window is None:
            return
        for r in readings:
            acc = window.det.get(r.detector_id)
            if acc is None:
                acc = window.det[r.detector_id] = [0.0] * 8
            v = r.volume
            acc[_MOTO] += v.motorcycle
            acc[_CAR] += v.car
            acc[_HEAVY] += v.heavy
            acc[_UNCL] += v.unclassified
            acc[_OCC_S] += r.occupancy * interval_s
            acc[_COVER_S] += interval_s
            if r.mean_speed_kmh is not None:
                n = v.total_veh
                acc[_SPEED_SUM] += r.mean_speed_kmh * n
                acc[_SPEED_N] += n

    def _camera(self, payload: CameraObserved, end_s: float) -> None:
        if payload.approach not in self._approaches:
            raise UnknownInput(f"intersection {self.layout.intersection_id} has no approach {payload.approach!r} "
                               f"(camera {payload.camera_id})")
        window = self._bucket(end_s - payload.interval_s / 2)
        if window is None:
            return
        acc = window.cam.get(payload.approach)
        if acc is None:
            acc = window.cam[payload.approach] = [0.0] * 5
        c = payload.counts
        acc[_C_MOTO] += c.motorcycle
        acc[_C_CAR] += c.car
        acc[_C_HEAVY] += c.heavy  # an unclassified camera count says nothing about the mix
        acc[_C_QUEUE] = max(acc[_C_QUEUE], payload.queue_length_m)
        acc[_C_REPORTS] += 1
        if payload.incident is not None:
            seen = window.incidents.get(payload.approach)
            if seen is None or (payload.incident.confidence, payload.incident.kind.value) > (seen.confidence, seen.kind.value):
                window.incidents[payload.approach] = payload.incident

    # --- closing windows ------------------------------------------------------------------
    def _advance(self) -> list[TrafficMeasured]:
        """Close every window that stream time has passed (end + grace); the first close starts at the earliest window seen."""
        st, cfg = self.state, self.config
        closable = math.floor((st.stream_time_s - cfg.grace_s) / cfg.window_s)  # windows below this may close
        if st.open_w is None:
            if not st.windows or closable <= min(st.windows):
                return []
            st.open_w = st.first_w = min(st.windows)
        if closable <= st.open_w:
            return []
        out = []
        while st.open_w < closable:
            if st.open_w not in st.windows and closable - st.open_w > cfg.max_empty_windows:
                # a long silence: skip empty windows, summarise only the last max_empty_windows and any with data
                later = [w for w in st.windows if st.open_w < w < closable]
                st.open_w = min([*later, closable - cfg.max_empty_windows])
                continue
            out.append(self._close(st.open_w))
            st.open_w += 1
        keep_from = st.open_w - cfg.retained_windows()
        for w in [w for w in st.windows if w < keep_from]:
            del st.windows[w]
        return out

    def _close(self, w: int) -> TrafficMeasured:
        st, cfg, plan = self.state, self.config, self.layout.plan
        size = cfg.window_s
        start_s, end_s = w * size, (w + 1) * size
        assert st.first_w is not None
        hop_from = max(w - cfg.hop_windows + 1, st.first_w)
        hop = [st.windows.get(k) for k in range(hop_from, w + 1)]
        hop_s = (w + 1 - hop_from) * size
        self._update_health(w, end_s)
        running = self._running()
        timing = self._timing(running)
        greens = green_intervals_s(plan, timing) if timing is not None else {}
        movements = [self._movement(m.id, w, hop, hop_s, timing, greens) for m in self._movements]
        stage_x = self._stage_saturation(movements)
        summary = TrafficMeasured(
            intersection_id=self.layout.intersection_id,
            corridor=self.layout.corridor,
            window=TimeWindow(_at(start_s), _at(end_s)),
            window_5min=TimeWindow(_at(hop_from * size), _at(end_s)),
            movements=movements,
            approaches=[self._approach(a, st.windows.get(w)) for a in sorted(self._approaches)],
            stages=stage_x,
            detectors_unhealthy=[DetectorStatus(d.id, h.status, _at(h.since_s)) for d in self.layout.detectors
                                 if (h := st.health.get(d.id)) is not None and h.status is not DetectorHealth.OK],
            detectors_total=len(self.layout.detectors),
            controller_mode=st.signal.mode if st.signal is not None else None,
            controller_reachable=not self._fault_active(FaultKind.COMMS_LOST),
            running=running,
            faults_active=sorted((FaultKind(k) for k, (active, _, _) in st.faults.items() if active), key=str),
            late_events=st.late,
            rejected_inputs=sorted(st.rejected, key=lambda r: r.ref),
            input_event_ids=sorted(st.cited),
            inputs_uncited=st.uncited,
        )
        st.cited, st.uncited, st.late, st.rejected = [], 0, 0, []
        st.summaries += 1
        return summary

    def _fault_active(self, kind: FaultKind) -> bool:
        entry = self.state.faults.get(kind.value)
        return entry is not None and entry[0]

    def _running(self) -> RunningTiming | None:
        s = self.state.signal
        if s is None or s.cycle_s <= 0:
            return None
        # floats throughout, whatever the producer wrote (a snapshot or a replay then encodes the same bytes)
        return RunningTiming(s.plan_checksum, float(s.cycle_s), None if s.offset_s is None else float(s.offset_s),
                             None if s.stage_greens_s is None else [float(g) for g in s.stage_greens_s])

    def _timing(self, running: RunningTiming | None) -> Timing | None:
        plan = self.layout.plan
        if running is None or running.stage_greens_s is None or len(running.stage_greens_s) != len(plan.sequence):
            return None
        return Timing(cycle_s=running.cycle_s, offset_s=running.offset_s or 0.0,
                      stage_greens_s=dict(zip(plan.sequence, running.stage_greens_s, strict=True)))

    def _pcu_per_veh(self, approach: Id, hop: Sequence[_Window | None]) -> float:
        seen = [0.0, 0.0, 0.0]  # motorcycle, car, heavy
        for window in hop:
            if window is not None and (acc := window.cam.get(approach)) is not None:
                seen = [seen[0] + acc[_C_MOTO], seen[1] + acc[_C_CAR], seen[2] + acc[_C_HEAVY]]
        total = sum(seen)
        shares = tuple(v / total for v in seen) if total >= self.config.min_camera_veh else self.config.default_mix
        return sum(s * f for s, f in zip(shares, self._pcu, strict=True)) / sum(shares)

    def _movement(self, movement_id: Id, w: int, hop: Sequence[_Window | None], hop_s: float, timing: Timing | None,
                  greens: Mapping[Id, list[float]]) -> MovementMeasure:
        plan, st = self.layout.plan, self.state
        movement = plan.movement(movement_id)
        assert movement is not None
        detectors = self._detectors_of[movement_id]
        healthy = [d.id for d in detectors if (h := st.health.get(d.id)) is None or h.status is DetectorHealth.OK]
        now = st.windows.get(w)
        one = [0.0] * 8
        five = [0.0] * 8
        for d in healthy:
            if now is not None and (acc := now.det.get(d)) is not None:
                one = [a + b for a, b in zip(one, acc, strict=True)]
            for window in hop:
                if window is not None and (acc := window.det.get(d)) is not None:
                    five = [a + b for a, b in zip(five, acc, strict=True)]
        flow: float | None = None
        x: float | None = None
        if healthy:
            pcu = (five[_MOTO] * self._pcu[0] + five[_CAR] * self._pcu[1] + five[_HEAVY] * self._pcu[2]
                   + five[_UNCL] * self._pcu_per_veh(movement.approach, hop))
            flow = pcu * 3600.0 / hop_s * movement.lanes / len(healthy)
            if timing is not None and movement.signal_group is not None:
                green_s = sum(greens.get(movement.signal_group, []))
                capacity = movement.saturation_pcu_h() * green_s / timing.cycle_s
                x = min(flow / capacity, 100.0) if capacity > 0 else None
        occupancy = min(1.0, one[_OCC_S] / one[_COVER_S]) if one[_COVER_S] > 0 else None
        speed = min(250.0, one[_SPEED_SUM] / one[_SPEED_N]) if one[_SPEED_N] > 0 else None
        return MovementMeasure(movement=movement_id, lanes_measured=len(healthy), lanes_total=movement.lanes,
                               volume_1min=_volume(one), volume_5min=_volume(five),
                               flow_pcu_h=min(flow, 100_000.0) if flow is not None else None,
                               occupancy=occupancy, mean_speed_kmh=speed, degree_of_saturation=x)

    def _stage_saturation(self, movements: Sequence[MovementMeasure]) -> list[StageMeasure]:
        plan = self.layout.plan
        x_of_group: dict[Id, list[float | None]] = {}
        for m in movements:
            declared = plan.movement(m.movement)
            if declared is not None and declared.signal_group is not None:
                x_of_group.setdefault(declared.signal_group, []).append(m.degree_of_saturation)
        out = []
        for stage_id in plan.sequence:
            stage = plan.stage(stage_id)
            assert stage is not None
            values = [x for g in stage.green for x in x_of_group.get(g, [])]
            known = [x for x in values if x is not None]
            # a stage is known when every movement it serves is measured (a stage of pedestrians only: None)
            out.append(StageMeasure(stage_id, max(known) if known and len(known) == len(values) else None))
        return out

    def _approach(self, approach: Id, window: _Window | None) -> ApproachMeasure:
        acc = window.cam.get(approach) if window is not None else None
        if acc is None:
            return ApproachMeasure(approach=approach)
        incident = window.incidents.get(approach) if window is not None else None
        return ApproachMeasure(approach=approach, counts_1min=_volume(acc[:3]),
                               queue_length_m=min(acc[_C_QUEUE], 10_000.0), incident=incident)

    # --- detector health ------------------------------------------------------------------
    def _update_health(self, w: int, end_s: float) -> None:
        st, h_cfg = self.state, self.config.health
        totals: dict[str, tuple[float, float, float]] = {}  # detector -> vehicles, occupied s, covered s over silent_windows
        for d in self.layout.detectors:
            veh = occ = cov = 0.0
            for k in range(w - h_cfg.silent_windows + 1, w + 1):
                window = st.windows.get(k)
                if window is not None and (acc := window.det.get(d.id)) is not None:
                    veh += acc[_MOTO] + acc[_CAR] + acc[_HEAVY] + acc[_UNCL]
                    occ += acc[_OCC_S]
                    cov += acc[_COVER_S]
            totals[d.id] = (veh, occ, cov)
        all_veh = sum(v for v, _, _ in totals.values())
        for d in self.layout.detectors:
            h = st.health.setdefault(d.id, _Health())
            found = self._condition(d.id, w, h, totals[d.id], all_veh - totals[d.id][0])
            if found is not DetectorHealth.OK:
                if found is not h.status:
                    h.status, h.since_s = found, end_s
                h.clean_streak = 0
            elif h.status is not DetectorHealth.OK:
                h.clean_streak += 1
                if h.clean_streak >= h_cfg.recover_windows:
                    h.status, h.since_s, h.clean_streak = DetectorHealth.OK, end_s, 0

    def _window_acc(self, detector_id: str, w: int) -> list[float] | None:
        window = self.state.windows.get(w)
        return window.det.get(detector_id) if window is not None else None

    def _condition(self, detector_id: str, w: int, h: _Health, total: tuple[float, float, float],
                   others_veh: float) -> DetectorHealth:
        cfg = self.config.health
        first = self.state.first_w if self.state.first_w is not None else w
        seen = w - first + 1  # windows since the fold started
        if h.bad_data_w is not None and w - h.bad_data_w < cfg.bad_data_windows:
            return DetectorHealth.BAD_DATA
        recent = [self._window_acc(detector_id, k) for k in range(w - cfg.no_report_windows + 1, w + 1)]
        if seen >= cfg.no_report_windows and all(acc is None or acc[_COVER_S] <= 0 for acc in recent):
            return DetectorHealth.NO_REPORTS
        if seen >= cfg.stuck_windows:
            last = [self._window_acc(detector_id, k) for k in range(w - cfg.stuck_windows + 1, w + 1)]
            # occupied all the time and (almost) nothing counted: a queue standing on a stop-line loop in congestion
            # keeps counting as vehicles cross at green, a loop stuck on does not
            if all(acc is not None and acc[_COVER_S] > 0 and acc[_OCC_S] / acc[_COVER_S] >= cfg.stuck_occupancy
                   and acc[_MOTO] + acc[_CAR] + acc[_HEAVY] + acc[_UNCL] <= cfg.stuck_max_veh for acc in last):
                return DetectorHealth.STUCK_ON
        now = self._window_acc(detector_id, w)
        if now is not None and now[_COVER_S] > 0:
            veh = now[_MOTO] + now[_CAR] + now[_HEAVY] + now[_UNCL]
            per_min = veh * 60.0 / now[_COVER_S]
            if per_min > cfg.chatter_veh_per_min or (
                    veh >= cfg.chatter_min_veh and now[_OCC_S] / veh < cfg.chatter_min_occupied_s_per_veh):
                return DetectorHealth.CHATTER
        veh, _, covered = total
        if seen >= cfg.silent_windows and covered > 0 and veh == 0 and others_veh >= cfg.silent_neighbour_veh:
            return DetectorHealth.NO_COUNTS
        return DetectorHealth.OK

    # --- snapshots ------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The state as bytes (msgpack), to store with the offsets it covers."""
        return msgspec.msgpack.encode(self.state)

    @classmethod
    def restore(cls, layout: IntersectionLayout, data: bytes, config: FoldConfig = DEFAULT_FOLD_CONFIG) -> IntersectionFold:
        """A fold continuing from :meth:`snapshot` bytes."""
        return cls(layout, config, msgspec.msgpack.decode(data, type=FoldState))
