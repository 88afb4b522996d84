"""Decision strategies (pure): from the traffic state to the next command for one intersection.

A strategy is any object with ``name``, ``version``, ``decide(state, plan, now) -> CommandIssued | None``
and ``learn(learned, plan, measured)`` (:class:`Strategy`). ``state`` is a :class:`DecisionContext`:
the intersection's latest ``TrafficMeasured`` summary, the latest summaries of the other
intersections on its corridor, their plans, the command lalin last issued to it, the
configuration checksum and what ``learn`` folded from every summary so far (per intersection). ``now`` is the
decision instant (the end of the summary's window), passed in: a strategy reads no clock and
draws no random number, so a replay of the same summaries re-issues the same commands bit for
bit (command ids are UUIDv5 of intersection, rule and instant).

:class:`AdaptiveSaturation` — SCATS-style degree-of-saturation control:

1. **Can it act?** Nothing when the controller is unreachable (it falls back to its own
   time-of-day plan when lalin's heartbeat stops), in flash, manual or off, when it has not
   reported the timing it runs, when a timing change is less than one running cycle old, or
   while the 5-min window is still filling (warm-up).
2. **Fallback.** When a stage's degree of saturation is unknown (a movement without a healthy
   detector, bad data) the controller is released to its local time-of-day plan
   (``ModeChangeCommand(time_of_day)``), once; adaptive control resumes when the data is healthy.
3. **Cycle.** Each intersection needs ``C = L / (1 - Y / x_target)`` (the cycle that brings the
   most saturated stage to the target degree of saturation at equisaturation splits; ``Y`` the
   sum of the stages' highest flow ratios ``q/S`` from the 5-min window, ``L`` the lost time).
   ``q`` is the served flow plus the movement's *overflow queue* (the approach camera's queue
   beyond one red time's arrivals) cleared within ``queue_horizon_s``: under saturation the
   loops count capacity, not demand, and only the queue shows what is left waiting.
   Intersections of a corridor run the largest of their needs (a common cycle), within every
   plan's bounds and at most ``cycle_step_s`` from the running cycle per decision; a need
   within ``cycle_hysteresis_s`` of the running cycle leaves it (every cycle change costs the
   controllers an offset transition).
4. **Splits.** Equisaturation greens at that cycle (:func:`controllers.splits.split_cycle`),
   reached at most ``split_step_s`` per stage per decision: the target is blended with the
   running greens re-split at the new cycle (both within the stage bounds, so the blend is too).
5. **Offsets.** Kept while the cycle stays. After a cycle change: the corridor's offsets for
   the new timings (widest two-way green wave, :func:`controllers.corridor.coordinate_offsets`),
   shifted as a whole so that the lowest-chainage member's next cycle starts where its running
   cycle would end — offsets count from the epoch, so without the shift every cycle change
   would throw every controller into an offset transition.
6. **Safety.** The timing is rounded to whole seconds, checked by
   :func:`controllers.safety.validate` and dropped (never sent) if anything is wrong; the
   driver checks again before writing. A change smaller than ``deadband_s`` everywhere is not sent.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import msgspec

from controllers.calibration import CalibrationConfig, learn_saturation, movement_green_s, overflow_pcu
from controllers.clearance import lost_time_s
from controllers.corridor import coordinate_offsets
from controllers.errors import TimingInfeasible
from controllers.payloads import (
    CommandIssued,
    ControlMode,
    ModeChangeCommand,
    Provenance,
    TimeWindow,
    TimingPlanCommand,
    TrafficMeasured,
)
from controllers.plan import Id, Plan, Timing
from controllers.safety import green_intervals_s, validate
from controllers.splits import split_cycle, stage_bounds_s
from controllers.traffic_state import summary_event_id

DECISION_NAMESPACE = uuid.UUID("0c0a4f9e-54d4-4a8f-8f5e-5b8c8f3b2a71")


class IssuedTiming(msgspec.Struct, frozen=True):
    """The last command lalin issued to an intersection: when (decision instant), what, and its id."""

    at: datetime
    command_id: uuid.UUID
    timing: TimingPlanCommand | None  # None: a mode change (release to the local plan)
    cycle_since: datetime | None = None  # when lalin first commanded the cycle it commands now


@dataclass(frozen=True)
class DecisionContext:
    """What a strategy may look at for one intersection (see the module docstring)."""

    intersection_id: str
    plan_number: int
    measured: TrafficMeasured
    corridor: Mapping[str, TrafficMeasured] = field(default_factory=dict)  # latest summaries of the corridor, this one included
    plans: Mapping[str, Plan] = field(default_factory=dict)  # plans of the corridor's intersections
    last_issued: IssuedTiming | None = None
    config_checksum: str = "0" * 64
    # what the strategy learned from the summaries so far (its ``learn``), by intersection
    learned: Mapping[str, Mapping[Id, float]] = field(default_factory=dict)


class Strategy(Protocol):
    """A pure decision rule; see the module docstring."""

    name: str
    version: str

    def decide(self, state: DecisionContext, plan: Plan, now: datetime) -> CommandIssued | None:
        """The command to issue to ``state.intersection_id`` at instant ``now``, or None."""
        ...

    def learn(self, learned: Mapping[Id, float], plan: Plan, measured: TrafficMeasured) -> dict[Id, float]:
        """Per-intersection values the strategy keeps learning from every summary (folded by the decision loop,
        handed back in ``DecisionContext.learned``); a strategy that learns nothing returns ``dict(learned)``."""
        ...


class AdaptiveConfig(msgspec.Struct, frozen=True):
    """Parameters of :class:`AdaptiveSaturation` (seconds; degree of saturation as a fraction)."""

    target_saturation: float = 0.9
    cycle_step_s: float = 10.0
    split_step_s: float = 6.0
    deadband_s: float = 2.0  # a timing that moves no value by this much is not sent
    cycle_hysteresis_s: float = 4.0  # the cycle changes only when the need differs by at least this much
    cycle_hold_s: float = 300.0  # and at most once in this long (each change costs an offset transition)
    max_summary_age_s: float = 180.0  # corridor members' summaries older than this are not used
    min_window_s: float = 300.0  # no adaptive decision before the hopping window is this long (warm-up)
    offset_step_s: float = 2.0  # grid of the corridor offset search (s): 2 s is finer than a platoon's spread
    queue_horizon_s: float = 300.0  # overflow queues (camera) count as demand cleared within this long; 0: ignore
    jam_spacing_m: float = 7.0  # metres per PCU per lane in a standing queue (camera queue length -> PCU)
    calibration: CalibrationConfig = CalibrationConfig()  # saturation flows learned from fully used greens


def command_id(intersection_id: str, rule: str, now: datetime) -> uuid.UUID:
    """The deterministic id of the command a rule issues to an intersection at ``now``."""
    return uuid.uuid5(DECISION_NAMESPACE, f"{intersection_id}/{rule}/{now.isoformat()}")


def config_checksum(plans: Mapping[str, Plan], strategy_config: msgspec.Struct) -> str:
    """SHA-256 (hex) over the plans' checksums and the strategy's parameters: the configuration a command cites."""
    digest = hashlib.sha256()
    for plan_id in sorted(plans):
        digest.update(f"{plan_id}={plans[plan_id].checksum()};".encode())
    digest.update(msgspec.json.encode(strategy_config))
    return digest.hexdigest()


def flow_ratio_sum(plan: Plan, measured: TrafficMeasured, queue_horizon_s: float = 0.0,
                   jam_spacing_m: float = 7.0, saturation_pcu_h: Mapping[Id, float] | None = None) -> dict[Id, float] | None:
    """Each stage's highest flow ratio ``q / S`` (5-min PCU flow over saturation flow), or None when one is unknown.

    ``S`` is the movement's learned saturation flow (``saturation_pcu_h``, pcu/h of green, see
    :mod:`controllers.calibration`) where there is one, else the plan's.

    With ``queue_horizon_s`` > 0 the demand of a movement is its served flow plus its *overflow
    queue* cleared within that horizon: stop-line loops count what crossed, which under
    saturation is capacity, not demand. The approach camera's longest queue (m) over
    ``jam_spacing_m`` (m per PCU per lane in a standing queue) gives the PCU queued in each of
    the movement's lanes; what one red time of the running timing accumulates at the served
    flow is a normal cyclic queue and is not counted.
    """
    by_movement = {m.movement: m for m in measured.movements}
    queues = {a.approach: a.queue_length_m for a in measured.approaches if a.queue_length_m is not None}
    running = running_timing(plan, measured) if queue_horizon_s > 0 and queues else None
    intervals = green_intervals_s(plan, running) if running is not None else {}
    ratios: dict[Id, float] = {}
    for stage_id in plan.sequence:
        stage = plan.stage(stage_id)
        assert stage is not None
        best = 0.0
        for movement in plan.movements:
            if movement.free_flow or movement.signal_group not in stage.green:
                continue
            m = by_movement.get(movement.id)
            if m is None or m.flow_pcu_h is None:
                return None
            demand_pcu_h = m.flow_pcu_h
            queue_m = queues.get(movement.approach)
            if running is not None and queue_m is not None:
                # the queue beyond one red time's arrivals, cleared within the horizon
                green = movement_green_s(intervals, movement)
                demand_pcu_h += overflow_pcu(movement, m.flow_pcu_h, queue_m, running.cycle_s, green, jam_spacing_m) \
                    * 3600.0 / queue_horizon_s
            saturation = (saturation_pcu_h or {}).get(movement.id) or movement.saturation_pcu_h()
            best = max(best, demand_pcu_h / saturation)
        ratios[stage_id] = best
    return ratios


def needed_cycle_s(plan: Plan, ratios: Mapping[Id, float], target: float) -> float:
    """The cycle (s) at which equisaturation splits give the most saturated stage the target degree of saturation."""
    lost = lost_time_s(plan)
    y = sum(ratios.values())
    if y >= target * 0.98:
        return plan.cycle.max_s
    return min(max(lost / (1.0 - y / target), plan.cycle.min_s), plan.cycle.max_s)


def running_timing(plan: Plan, measured: TrafficMeasured) -> Timing | None:
    """The timing the controller reported running, as a plan timing, or None."""
    r = measured.running
    if r is None or r.stage_greens_s is None or len(r.stage_greens_s) != len(plan.sequence):
        return None
    return Timing(cycle_s=r.cycle_s, offset_s=min(r.offset_s or 0.0, r.cycle_s),
                  stage_greens_s=dict(zip(plan.sequence, r.stage_greens_s, strict=True)))


def whole_seconds(plan: Plan, timing: Timing) -> Timing:
    """``timing`` with whole-second greens and cycle, the rounding absorbed by the stage with the most room (s)."""
    bounds = stage_bounds_s(plan)
    cycle = round(timing.cycle_s)
    greens = {s: float(min(max(round(g), math.ceil(bounds[s][0] - 1e-9)), math.floor(bounds[s][1] + 1e-9)))
              for s, g in timing.stage_greens_s.items()}
    lost = lost_time_s(plan)
    excess = round(sum(greens.values()) + lost - cycle)
    order = sorted(greens, key=lambda s: (-(greens[s] - bounds[s][0]) if excess > 0 else -(bounds[s][1] - greens[s]), s))
    for s in order:
        if excess == 0:
            break
        room = math.floor(greens[s] - bounds[s][0] + 1e-9) if excess > 0 else math.floor(bounds[s][1] - greens[s] + 1e-9)
        take = min(abs(excess), max(room, 0))
        greens[s] += -take if excess > 0 else take
        excess += -take if excess > 0 else take
    cycle_s = float(round(sum(greens.values()) + lost, 6))
    return Timing(cycle_s=cycle_s, offset_s=float(round(timing.offset_s) % max(1, round(cycle_s))), stage_greens_s=greens)


class AdaptiveSaturation:
    """Degree-of-saturation-driven cycle and splits with corridor offsets (see the module docstring)."""

    name = "adaptive_saturation"
    version = "3"

    def __init__(self, config: AdaptiveConfig | None = None) -> None:
        self.config = config if config is not None else AdaptiveConfig()
        self._offset_memo: dict[tuple[float, tuple[tuple[str, str, tuple[tuple[str, float], ...]], ...]], dict[Id, float]] = {}

    def decide(self, state: DecisionContext, plan: Plan, now: datetime) -> CommandIssued | None:
        """The next command for ``state.intersection_id`` at ``now``, or None (see the module docstring)."""
        measured = state.measured
        if not measured.controller_reachable:
            return None
        running = running_timing(plan, measured)
        if running is None or measured.controller_mode in (ControlMode.FLASH, ControlMode.MANUAL, ControlMode.OFF):
            return None
        last = state.last_issued
        if last is not None and last.timing is not None and (now - last.at).total_seconds() < running.cycle_s:
            return None
        if (measured.window_5min.end - measured.window_5min.start).total_seconds() < self.config.min_window_s:
            return None  # warming up: too little data for a flow
        ratios = self._ratios(plan, measured, state.learned)
        unhealthy = [d.detector_id for d in measured.detectors_unhealthy]
        if ratios is None:
            if measured.controller_mode is ControlMode.TIME_OF_DAY or (last is not None and last.timing is None):
                return None
            reason = (f"time-of-day fallback: a stage's degree of saturation is unknown (detectors not ok: "
                      f"{', '.join(unhealthy) or 'none'}; timing reported: {measured.running is not None})")
            return self._issue(state, now, ModeChangeCommand(mode=ControlMode.TIME_OF_DAY), "time_of_day_fallback", reason)
        cycle = self._common_cycle(state, plan, ratios, running, now)
        target = self._splits(plan, ratios, running, cycle)
        if target is None:
            return None
        offsets = self._offsets(state, plan, target, running, now)
        timing = whole_seconds(plan, Timing(cycle_s=target.cycle_s, offset_s=offsets, stage_greens_s=target.stage_greens_s))
        if validate(plan, timing):
            return None  # never send what the safety kernel refuses (the driver would refuse it too)
        if self._within_deadband(running, timing) and measured.controller_mode is ControlMode.CENTRAL:
            return None
        body = TimingPlanCommand(plan_id=state.plan_number, cycle_s=timing.cycle_s, offset_s=timing.offset_s,
                                 stage_greens_s=[timing.stage_greens_s[s] for s in plan.sequence])
        stages = ", ".join(f"{s.stage} X={s.degree_of_saturation:.2f}" for s in measured.stages
                           if s.degree_of_saturation is not None)
        reason = (f"cycle {running.cycle_s:g} -> {timing.cycle_s:g} s (corridor need), flow ratios "
                  f"{', '.join(f'{k} {v:.3f}' for k, v in ratios.items())}; {stages}")
        return self._issue(state, now, body, self.name, reason)

    # --- steps ---------------------------------------------------------------------------
    def learn(self, learned: Mapping[Id, float], plan: Plan, measured: TrafficMeasured) -> dict[Id, float]:
        """The movements' saturation flows learned from fully used greens (see :mod:`controllers.calibration`)."""
        return learn_saturation(learned, plan, measured, running_timing(plan, measured), self.config.calibration)

    def _ratios(self, plan: Plan, measured: TrafficMeasured, learned: Mapping[str, Mapping[Id, float]]) -> dict[Id, float] | None:
        return flow_ratio_sum(plan, measured, self.config.queue_horizon_s, self.config.jam_spacing_m,
                              learned.get(measured.intersection_id))

    def _fresh(self, state: DecisionContext, now: datetime) -> dict[str, TrafficMeasured]:
        limit = self.config.max_summary_age_s
        return {k: m for k, m in state.corridor.items()
                if k != state.intersection_id and k in state.plans and (now - m.window.end).total_seconds() <= limit}

    def _common_cycle(self, state: DecisionContext, plan: Plan, ratios: Mapping[Id, float], running: Timing,
                      now: datetime) -> float:
        cfg = self.config
        need = needed_cycle_s(plan, ratios, cfg.target_saturation)
        low, high = plan.cycle.min_s, plan.cycle.max_s
        for other_id, other in self._fresh(state, now).items():
            other_plan = state.plans[other_id]
            other_ratios = self._ratios(other_plan, other, state.learned)
            if other_ratios is not None:
                need = max(need, needed_cycle_s(other_plan, other_ratios, cfg.target_saturation))
            low, high = max(low, other_plan.cycle.min_s), min(high, other_plan.cycle.max_s)
        if low <= high:
            need = min(max(need, low), high)
        if abs(need - running.cycle_s) < cfg.cycle_hysteresis_s:
            return running.cycle_s  # small changes of need do not move the cycle (each move costs an offset transition)
        last = state.last_issued
        if last is not None and last.cycle_since is not None and (now - last.cycle_since).total_seconds() < cfg.cycle_hold_s:
            return running.cycle_s  # changed recently: hold it
        return min(max(need, running.cycle_s - cfg.cycle_step_s), running.cycle_s + cfg.cycle_step_s)

    def _splits(self, plan: Plan, ratios: Mapping[Id, float], running: Timing, cycle_s: float) -> Timing | None:
        weights = {s: max(r, 1e-3) for s, r in ratios.items()}
        try:
            target = split_cycle(plan, cycle_s, weights).timing
            current = split_cycle(plan, target.cycle_s, {s: max(g, 1e-3) for s, g in running.stage_greens_s.items()}).timing
        except TimingInfeasible:
            return None
        biggest = max(abs(target.stage_greens_s[s] - current.stage_greens_s[s]) for s in plan.sequence)
        alpha = 1.0 if biggest <= self.config.split_step_s else self.config.split_step_s / biggest
        greens = {s: current.stage_greens_s[s] + alpha * (target.stage_greens_s[s] - current.stage_greens_s[s])
                  for s in plan.sequence}
        return Timing(cycle_s=target.cycle_s, offset_s=0.0, stage_greens_s=greens)

    def _offsets(self, state: DecisionContext, plan: Plan, target: Timing, running: Timing, now: datetime) -> float:
        """The offset (s) for the new timing: the running one while the cycle stays; after a cycle change the
        corridor's offsets for the new timings, shifted as a whole so that the lowest-chainage member's next
        cycle starts where its running cycle would end (no transition there, consistent ones elsewhere)."""
        if plan.coordination is None:
            return running.offset_s % target.cycle_s
        if abs(target.cycle_s - running.cycle_s) < 1e-6:
            return running.offset_s
        members: list[tuple[Plan, Timing]] = [(plan, target)]
        runs = {plan.id: running}
        for other_id, other in self._fresh(state, now).items():
            other_plan = state.plans[other_id]
            other_running = running_timing(other_plan, other)
            if other_plan.coordination is None or other_running is None:
                continue
            ratios = self._ratios(other_plan, other, state.learned)
            other_target = self._splits(other_plan, ratios, other_running, target.cycle_s) if ratios is not None else None
            if other_target is None or abs(other_target.cycle_s - target.cycle_s) > 1e-6:
                continue
            members.append((other_plan, other_target))
            runs[other_plan.id] = other_running
        desired = {plan.id: 0.0}
        if len(members) >= 2:
            desired = self._coordinated(members, target.cycle_s)
        reference = min(members, key=lambda m: (m[0].coordination.chainage_m if m[0].coordination else 0.0, m[0].id))[0]
        ref_run = runs[reference.id]
        t = now.timestamp()
        next_boundary = ref_run.offset_s + ref_run.cycle_s * math.ceil((t - ref_run.offset_s) / ref_run.cycle_s)
        shift = next_boundary - desired[reference.id]
        return (desired[plan.id] + shift) % target.cycle_s

    def _coordinated(self, members: list[tuple[Plan, Timing]], cycle_s: float) -> dict[Id, float]:
        """The corridor's offsets for these timings (s, by plan id), computed once per distinct question.

        Every member of a round asks the same question (the same timings at the same cycle); the
        bandwidth search costs tens of milliseconds, so answers are remembered (a pure memo: the
        same question always has the same answer)."""
        key = (cycle_s, tuple(sorted((p.id, p.checksum(), tuple(sorted(t.stage_greens_s.items()))) for p, t in members)))
        found = self._offset_memo.get(key)
        if found is None:
            try:
                found, _, _ = coordinate_offsets(members, cycle_s, self.config.offset_step_s)
            except TimingInfeasible:
                found = {p.id: 0.0 for p, _ in members}
            if len(self._offset_memo) >= 256:
                self._offset_memo.clear()
            self._offset_memo[key] = found
        return found

    def _within_deadband(self, running: Timing, timing: Timing) -> bool:
        band = self.config.deadband_s
        return (abs(running.cycle_s - timing.cycle_s) < band and abs(running.offset_s - timing.offset_s) < band
                and all(abs(running.stage_greens_s[s] - g) < band for s, g in timing.stage_greens_s.items()))

    def _issue(self, state: DecisionContext, now: datetime, body: TimingPlanCommand | ModeChangeCommand, rule: str,
               reason: str) -> CommandIssued:
        measured = state.measured
        inputs = [measured, *(m for k, m in sorted(state.corridor.items()) if k != state.intersection_id)]
        provenance = Provenance(rule=rule, rule_version=self.version, config_checksum=state.config_checksum,
                                input_event_ids=[summary_event_id(m.intersection_id, m.window.start) for m in inputs],
                                input_window=TimeWindow(measured.window_5min.start, measured.window_5min.end),
                                reason=reason[:500])
        return CommandIssued(command_id=command_id(state.intersection_id, rule, now), target=state.intersection_id,
                             command=body, provenance=provenance)
