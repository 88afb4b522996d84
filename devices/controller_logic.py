"""What a signal controller does, as pure functions: the firmware logic that the Modbus
controller simulator runs (and the behaviour docs/modbus-map.md specifies).

State advances with :func:`advance` (time passed in, seconds); commands enter through
:func:`handle_command`. The controller runs its plan's stage sequence: each stage's green, then
the interstage to the next stage, during which losing vehicle groups show amber for their
declared amber and then red, losing pedestrian groups flashing green for their clearance and
then red, and gaining groups wait for the whole interstage. A commanded or scheduled flash
starts when the running stage's green ends, after a *flash entry* interval in which every
group of that stage clears as before any conflicting green (amber and all-red, or a
crossing's flashing clearance), so no green is cut and no clearance skipped. Leaving flash
goes through an all-red *start-up* interval as long as the plan's longest intergreen before
the first stage's green (the start of a cycle). A coordinated cycle starts when the
controller's clock minus the offset is a whole number of cycles; a controller off its offset
shortens or lengthens its greens (within their minimum and maximum, at most a fifth of the
cycle per cycle, the quicker way) until it is on. A new timing is checked with
lalin's own safety rules (:func:`controllers.safety.validate`) — the controller's second,
independent check — and waits for the next cycle boundary. No I/O, no clock.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from controllers.clearance import clearance_required_s, interstage_s
from controllers.plan import Plan, Timing
from controllers.safety import validate
from controllers.splits import stage_bounds_s

Aspect = Literal["dark", "red", "green", "amber", "flashing_amber", "flashing_green"]
Mode = Literal["central", "local_tod", "flash"]
Interval = Literal["green", "intergreen", "flash", "startup", "flash_entry"]

#: Reject reasons the register map knows; any other safety code maps to ``unsafe_other``.
KNOWN_REASONS = {"conflicting_green", "intergreen_below_clearance", "green_below_minimum", "green_above_maximum",
                 "cycle_mismatch", "cycle_out_of_bounds", "offset_outside_cycle"}


class ControllerState(msgspec.Struct, frozen=True):
    """A controller at an instant (seconds)."""

    mode: Mode
    timing: Timing
    stage_index: int = 0
    interval: Interval = "green"
    interval_elapsed_s: float = 0.0
    cycle_elapsed_s: float = 0.0
    pending_seq: int = 0
    pending_timing: Timing | None = None
    pending_mode: Mode = "central"  # the mode the pending change runs in (local_tod after a fallback)
    pending_flash: bool = False  # flash requested: it starts at the cycle boundary
    applied_seq: int = 0
    rejected_seq: int = 0
    reject_reason: str = "none"
    last_seq: int = 0
    faults: frozenset[str] = frozenset()
    clock_s: float = 0.0  # the controller's synchronised clock, seconds since the Unix epoch: offsets count from it
    green_adjust_s: tuple[float, ...] = ()  # this cycle's change to each stage's green, bringing the cycle onto its offset


class Outcome(msgspec.Struct, frozen=True):
    """How a command was taken: ``accepted`` (pending or done), ``repeated`` (same seq: nothing done), ``rejected``."""

    result: Literal["accepted", "repeated", "rejected"]
    reason: str = "none"


def power_up(plan: Plan, local_timing: Timing | None, idle_timing: Timing, clock_s: float = 0.0) -> ControllerState:
    """A controller switched on at ``clock_s`` (epoch seconds): flashing if its schedule says so
    (``local_timing`` None), else the all-red start-up and then ``local_timing`` from the first
    stage. ``idle_timing`` (safe) fills the state while flashing."""
    if local_timing is None:
        return msgspec.structs.replace(_flash(start(plan, idle_timing, clock_s=clock_s), 0), mode="local_tod")
    return msgspec.structs.replace(start(plan, local_timing, clock_s=clock_s), interval="startup")


def start(plan: Plan, timing: Timing, mode: Mode = "local_tod", clock_s: float = 0.0) -> ControllerState:
    """A controller at the start of the first stage's green running ``timing`` (which must be safe), at ``clock_s``."""
    violations = validate(plan, timing)
    if violations:
        raise ValueError(f"plan {plan.id}: the start timing is unsafe: {violations[0].message}")
    return ControllerState(mode=mode, timing=timing, clock_s=clock_s)


#: The most a cycle may be lengthened or shortened to reach its offset (fraction of the cycle).
MAX_OFFSET_CORRECTION = 0.2


def offset_error_s(timing: Timing, clock_s: float) -> float:
    """Seconds since the last ideal cycle start: a coordinated cycle starts when ``(clock - offset) mod cycle = 0``."""
    return (clock_s - timing.offset_s) % timing.cycle_s


def offset_correction_s(plan: Plan, timing: Timing, clock_s: float) -> tuple[float, ...]:
    """Changes (s, per stage of the sequence) to the greens of a cycle starting at ``clock_s`` that move the
    next cycle start towards the offset, the quicker way: shorten the cycle by the error or lengthen it by
    the rest of the cycle, at most ``MAX_OFFSET_CORRECTION`` of the cycle per cycle, shared between the
    stages in proportion to their room within their minimum and maximum greens (several cycles when the
    error is large). All zeros when the cycle is on its offset."""
    error = offset_error_s(timing, clock_s)
    cycle = timing.cycle_s
    seq = plan.sequence
    if error < 0.05 or cycle - error < 0.05:
        return (0.0,) * len(seq)
    bounds = stage_bounds_s(plan)
    limit = MAX_OFFSET_CORRECTION * cycle
    shrink = [max(0.0, timing.stage_greens_s[s] - bounds[s][0]) for s in seq]
    grow = [max(0.0, min(bounds[s][1], timing.stage_greens_s[s] + limit) - timing.stage_greens_s[s]) for s in seq]
    per_cycle_short, per_cycle_long = min(limit, sum(shrink)), min(limit, sum(grow))
    cycles_short = math.ceil(error / per_cycle_short) if per_cycle_short > 0 else math.inf
    cycles_long = math.ceil((cycle - error) / per_cycle_long) if per_cycle_long > 0 else math.inf
    if cycles_short == cycles_long == math.inf:
        return (0.0,) * len(seq)
    if cycles_short <= cycles_long:
        total, room = -min(error, per_cycle_short), shrink
    else:
        total, room = min(cycle - error, per_cycle_long), grow
    return tuple(total * r / sum(room) for r in room)


def handle_command(plan: Plan, state: ControllerState, seq: int, command: str,
                   timing: Timing | None = None) -> tuple[ControllerState, Outcome]:
    """Take a command (``apply_timing``, ``flash``, ``reset_fault``, ``release_to_local``) numbered ``seq``.

    The same ``seq`` twice does nothing the second time. A timing must pass the safety check
    and waits for the cycle boundary; so does a flash (entered when every group is red, so no
    green is cut). ``release_to_local`` and ``reset_fault`` act at once; leaving flash goes
    through the all-red start-up. While ``conflict_monitor`` is latched only ``reset_fault`` is
    taken.
    """
    if seq == state.last_seq:
        return state, Outcome("repeated")
    state = msgspec.structs.replace(state, last_seq=seq)
    if "conflict_monitor" in state.faults and command != "reset_fault":
        return _reject(state, seq, "fault_latched")
    if command == "apply_timing":
        if timing is None:
            return _reject(state, seq, "malformed")
        violations = validate(plan, timing)
        if violations:
            code = violations[0].code
            return _reject(state, seq, code if code in KNOWN_REASONS else "unsafe_other")
        pending = msgspec.structs.replace(state, pending_seq=seq, pending_timing=timing, pending_mode="central",
                                          pending_flash=False)
        return _leave_flash(pending), Outcome("accepted")
    if command == "flash":
        return _request_flash(state, seq, "flash"), Outcome("accepted")
    if command == "reset_fault":
        if "conflict_monitor" not in state.faults:  # nothing latched: control and aspects stay as they are
            return msgspec.structs.replace(state, applied_seq=seq), Outcome("accepted")
        reset = msgspec.structs.replace(state, faults=state.faults - {"conflict_monitor"}, mode="local_tod", applied_seq=seq)
        return _leave_flash(reset), Outcome("accepted")
    if command == "release_to_local":
        released = msgspec.structs.replace(state, mode="local_tod", applied_seq=seq, pending_seq=0, pending_timing=None,
                                           pending_flash=False)  # the central's pending change goes with it
        return _leave_flash(released), Outcome("accepted")
    return _reject(state, seq, "malformed")


def _leave_flash(state: ControllerState) -> ControllerState:
    """From flash, start over through the all-red start-up interval; otherwise unchanged."""
    if state.interval != "flash":
        return state
    return msgspec.structs.replace(state, interval="startup", interval_elapsed_s=0.0, stage_index=0, cycle_elapsed_s=0.0)


def startup_s(plan: Plan) -> float:
    """All-red time before the first green after flash (seconds): the plan's longest intergreen."""
    return max((s for row in plan.intergreens_s.values() for s in row.values()), default=0.0)


def _reject(state: ControllerState, seq: int, reason: str) -> tuple[ControllerState, Outcome]:
    return msgspec.structs.replace(state, rejected_seq=seq, reject_reason=reason), Outcome("rejected", reason)


def _flash(state: ControllerState, seq: int) -> ControllerState:
    return msgspec.structs.replace(state, mode="flash", interval="flash", interval_elapsed_s=0.0, pending_seq=0,
                                   pending_timing=None, pending_flash=False, applied_seq=seq)


def _request_flash(state: ControllerState, seq: int, mode: Mode) -> ControllerState:
    """Flash when the running (or next) stage's green ends, after its groups cleared (see
    :func:`flash_entry_s`), so no green is cut, or when the all-red start-up ends; at once when
    already flashing. ``seq`` 0: the schedule asked."""
    if state.interval == "flash":
        return msgspec.structs.replace(state, mode=mode, applied_seq=seq or state.applied_seq)
    return msgspec.structs.replace(state, pending_flash=True, pending_timing=None, pending_seq=seq, pending_mode=mode)


def flash_entry_s(plan: Plan, stage_id: str) -> float:
    """Clearance before flash after ``stage_id``'s green (seconds): in flash every vehicle group may
    proceed with caution, so the stage's groups get their longest declared intergreen to any
    conflicting group (at least their own clearance: the declared amber and the all-red, or the walking
    time)."""
    stage = plan.stage(stage_id)
    assert stage is not None, stage_id
    needs = [max([clearance_required_s(g, plan), g.amber_s, *plan.intergreens_s.get(g.id, {}).values()])
             for g in plan.signal_groups if g.id in stage.green]
    return max(needs, default=0.0)


def fall_back(state: ControllerState, local_timing: Timing | None) -> ControllerState:
    """The central heartbeat stopped: run the local time-of-day timing from the next cycle boundary.

    ``local_timing`` is what the local schedule runs now (None: the schedule says flash, entered
    as any flash is). A timing still pending from the central is dropped: the central that sent
    it is gone. A flash the central commanded stays (flash is the safe state; an operator may
    have flashed the junction for an incident) until a release or a new command. The
    ``central_heartbeat_lost`` fault stays set until :func:`heartbeat_resumed`.
    """
    lost = msgspec.structs.replace(state, faults=state.faults | {"central_heartbeat_lost"})
    if state.mode == "flash" or (state.pending_flash and state.pending_mode == "flash"):
        return lost  # an operator's flash (an incident, a crash scene) outlasts the central: flash is the safe state
    lost = msgspec.structs.replace(lost, pending_seq=0, pending_timing=None, pending_flash=False)
    return follow_schedule(lost, local_timing)


def follow_schedule(state: ControllerState, local_timing: Timing | None) -> ControllerState:
    """Under local time-of-day control, run what the schedule says now: ``local_timing`` from the next
    cycle boundary (leaving flash through the start-up interval), or flash when it is None.

    A latched conflict keeps the controller flashing whatever the schedule says.
    """
    if "conflict_monitor" in state.faults:
        return state
    if local_timing is None:
        if state.interval == "flash" or state.pending_seq or (state.pending_flash and state.pending_mode == "local_tod"):
            return state
        return _request_flash(state, 0, "local_tod")
    if state.mode != "local_tod":
        state = msgspec.structs.replace(state, mode="local_tod")
    if state.pending_seq:  # a command of the central waits for the cycle boundary: it goes first
        return state
    if state.pending_timing is not None or (local_timing == state.timing and state.interval != "flash"
                                            and not state.pending_flash):
        return state
    return _leave_flash(msgspec.structs.replace(state, pending_timing=local_timing, pending_seq=0, pending_mode="local_tod",
                                                pending_flash=False))


def heartbeat_resumed(state: ControllerState) -> ControllerState:
    """The central's heartbeat changes again: clear the fault (control returns with its next command)."""
    return msgspec.structs.replace(state, faults=state.faults - {"central_heartbeat_lost"})


def conflict_detected(state: ControllerState) -> ControllerState:
    """The conflict monitor tripped: flashing amber, latched until ``reset_fault``."""
    return msgspec.structs.replace(_flash(state, state.applied_seq), faults=state.faults | {"conflict_monitor"})


def advance(plan: Plan, state: ControllerState, dt_s: float) -> ControllerState:
    """The state ``dt_s`` seconds later (any step size: intervals are crossed one by one)."""
    if dt_s < 0:
        raise ValueError(f"time step {dt_s} s must be >= 0")
    seq = plan.sequence
    while True:
        if state.interval == "flash":  # also entered at a cycle boundary crossed below
            return msgspec.structs.replace(state, interval_elapsed_s=state.interval_elapsed_s + dt_s,
                                           clock_s=state.clock_s + dt_s)
        length = _interval_length_s(plan, state)
        left = max(0.0, length - state.interval_elapsed_s)
        if dt_s < left:
            return msgspec.structs.replace(state, interval_elapsed_s=state.interval_elapsed_s + dt_s,
                                           cycle_elapsed_s=state.cycle_elapsed_s + dt_s, clock_s=state.clock_s + dt_s)
        dt_s -= left
        state = msgspec.structs.replace(state, clock_s=state.clock_s + left)
        if state.interval == "startup" and not state.pending_flash:
            state = _start_cycle(plan, state)
            continue
        if state.interval in ("flash_entry", "startup"):  # the clearance into flash, or a start-up ending in flash
            applied = state.pending_seq or state.applied_seq
            state = msgspec.structs.replace(state, mode=state.pending_mode, interval="flash", interval_elapsed_s=0.0,
                                            pending_flash=False, pending_seq=0, applied_seq=applied,
                                            cycle_elapsed_s=state.cycle_elapsed_s + left)
            continue
        if state.interval == "green" and state.pending_flash:
            state = msgspec.structs.replace(state, interval="flash_entry", interval_elapsed_s=0.0,
                                            cycle_elapsed_s=state.cycle_elapsed_s + left)
            continue
        if state.interval == "green":
            state = msgspec.structs.replace(state, interval="intergreen", interval_elapsed_s=0.0,
                                            cycle_elapsed_s=state.cycle_elapsed_s + left)
            continue
        nxt = (state.stage_index + 1) % len(seq)
        state = msgspec.structs.replace(state, stage_index=nxt, interval="green", interval_elapsed_s=0.0,
                                        cycle_elapsed_s=state.cycle_elapsed_s + left)
        if nxt == 0:
            state = _start_cycle(plan, state)


def _start_cycle(plan: Plan, state: ControllerState) -> ControllerState:
    """The first stage's green begins: a new cycle, a pending timing becomes active, and the cycle's
    first green is corrected towards the offset."""
    state = msgspec.structs.replace(state, stage_index=0, interval="green", interval_elapsed_s=0.0, cycle_elapsed_s=0.0)
    if state.pending_timing is not None:
        applied = state.pending_seq if state.pending_mode == "central" else state.applied_seq
        state = msgspec.structs.replace(state, timing=state.pending_timing, applied_seq=applied, pending_timing=None,
                                        pending_seq=0, mode=state.pending_mode)
    return msgspec.structs.replace(state, green_adjust_s=offset_correction_s(plan, state.timing, state.clock_s))


def _interval_length_s(plan: Plan, state: ControllerState) -> float:
    seq = plan.sequence
    stage = seq[state.stage_index]
    if state.interval == "startup":
        return startup_s(plan)
    if state.interval == "flash_entry":
        return flash_entry_s(plan, stage)
    if state.interval == "green":
        adjust = state.green_adjust_s[state.stage_index] if state.green_adjust_s else 0.0
        return state.timing.stage_greens_s[stage] + adjust
    return interstage_s(plan, stage, seq[(state.stage_index + 1) % len(seq)])


def aspects(plan: Plan, state: ControllerState) -> dict[str, Aspect]:
    """What every signal group shows now."""
    if state.interval == "flash":
        return {g.id: ("flashing_amber" if g.kind == "vehicle" else "dark") for g in plan.signal_groups}
    if state.interval == "startup":
        return {g.id: "red" for g in plan.signal_groups}
    seq = plan.sequence
    greens = {s.id: set(s.green) for s in plan.stages}
    current = greens[seq[state.stage_index]]
    if state.interval == "green":
        return {g.id: ("green" if g.id in current else "red") for g in plan.signal_groups}
    following = set() if state.interval == "flash_entry" else greens[seq[(state.stage_index + 1) % len(seq)]]
    out: dict[str, Aspect] = {}
    t = state.interval_elapsed_s
    for g in plan.signal_groups:
        if g.id in current and g.id in following:
            out[g.id] = "green"
        elif g.id in current and g.kind == "vehicle":
            out[g.id] = "amber" if t < g.amber_s else "red"
        elif g.id in current:
            out[g.id] = "flashing_green" if t < clearance_required_s(g, plan) else "red"
        else:
            out[g.id] = "red"
    return out


def next_change_s(plan: Plan, state: ControllerState) -> float:
    """Seconds until the aspects may next change without a command: the end of the running interval, or within an
    interstage the end of a group's amber or crossing clearance (infinite while flashing). Stepping
    :func:`advance` by at most this much sees every aspect change at its instant."""
    if state.interval == "flash":
        return math.inf
    left = max(0.0, _interval_length_s(plan, state) - state.interval_elapsed_s)
    if state.interval in ("intergreen", "flash_entry"):
        t = state.interval_elapsed_s
        for g in plan.signal_groups:
            end = g.amber_s if g.kind == "vehicle" else clearance_required_s(g, plan)
            if end > t:
                left = min(left, end - t)
    return left
