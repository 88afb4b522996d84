"""What a signal controller does, as pure functions: the firmware logic that the Modbus
controller simulator runs (and the behaviour docs/modbus-map.md specifies).

State advances with :func:`advance` (time passed in, seconds); commands enter through
:func:`handle_command`. The controller runs its plan's stage sequence: each stage's green, then
the interstage to the next stage, during which losing vehicle groups show amber for their
declared amber and then red, losing pedestrian groups flashing green for their clearance and
then red, and gaining groups wait for the whole interstage. A new timing is checked with
lalin's own safety rules (:func:`controllers.safety.validate`) — the controller's second,
independent check — and waits for the next cycle boundary. No I/O, no clock.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from controllers.clearance import clearance_required_s, interstage_s
from controllers.plan import Plan, Timing
from controllers.safety import validate

Aspect = Literal["dark", "red", "green", "amber", "flashing_amber", "flashing_green"]
Mode = Literal["central", "local_tod", "flash"]
Interval = Literal["green", "intergreen", "flash"]

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
    applied_seq: int = 0
    rejected_seq: int = 0
    reject_reason: str = "none"
    last_seq: int = 0
    faults: frozenset[str] = frozenset()


class Outcome(msgspec.Struct, frozen=True):
    """How a command was taken: ``accepted`` (pending or done), ``repeated`` (same seq: nothing done), ``rejected``."""

    result: Literal["accepted", "repeated", "rejected"]
    reason: str = "none"


def start(plan: Plan, timing: Timing, mode: Mode = "local_tod") -> ControllerState:
    """A controller at the start of the first stage's green running ``timing`` (which must be safe)."""
    violations = validate(plan, timing)
    if violations:
        raise ValueError(f"plan {plan.id}: the start timing is unsafe: {violations[0].message}")
    return ControllerState(mode=mode, timing=timing)


def handle_command(plan: Plan, state: ControllerState, seq: int, command: str,
                   timing: Timing | None = None) -> tuple[ControllerState, Outcome]:
    """Take a command (``apply_timing``, ``flash``, ``reset_fault``, ``release_to_local``) numbered ``seq``.

    The same ``seq`` twice does nothing the second time. A timing must pass the safety check
    and waits for the cycle boundary; while ``conflict_monitor`` is latched only ``reset_fault``
    is taken.
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
        return msgspec.structs.replace(state, pending_seq=seq, pending_timing=timing), Outcome("accepted")
    if command == "flash":
        return _flash(state, seq), Outcome("accepted")
    if command == "reset_fault":
        restarted = msgspec.structs.replace(state, faults=state.faults - {"conflict_monitor"}, mode="local_tod",
                                            stage_index=0, interval="green", interval_elapsed_s=0.0,
                                            cycle_elapsed_s=0.0, applied_seq=seq)
        return restarted, Outcome("accepted")
    if command == "release_to_local":
        return msgspec.structs.replace(state, mode="local_tod", applied_seq=seq), Outcome("accepted")
    return _reject(state, seq, "malformed")


def _reject(state: ControllerState, seq: int, reason: str) -> tuple[ControllerState, Outcome]:
    return msgspec.structs.replace(state, rejected_seq=seq, reject_reason=reason), Outcome("rejected", reason)


def _flash(state: ControllerState, seq: int) -> ControllerState:
    return msgspec.structs.replace(state, mode="flash", interval="flash", interval_elapsed_s=0.0, pending_seq=0,
                                   pending_timing=None, applied_seq=seq)


def conflict_detected(state: ControllerState) -> ControllerState:
    """The conflict monitor tripped: flashing amber, latched until ``reset_fault``."""
    return msgspec.structs.replace(_flash(state, state.applied_seq), faults=state.faults | {"conflict_monitor"})


def advance(plan: Plan, state: ControllerState, dt_s: float) -> ControllerState:
    """The state ``dt_s`` seconds later (any step size: intervals are crossed one by one)."""
    if dt_s < 0:
        raise ValueError(f"time step {dt_s} s must be >= 0")
    if state.interval == "flash":
        return msgspec.structs.replace(state, interval_elapsed_s=state.interval_elapsed_s + dt_s)
    seq = plan.sequence
    while True:
        length = _interval_length_s(plan, state)
        left = length - state.interval_elapsed_s
        if dt_s < left:
            return msgspec.structs.replace(state, interval_elapsed_s=state.interval_elapsed_s + dt_s,
                                           cycle_elapsed_s=state.cycle_elapsed_s + dt_s)
        dt_s -= left
        if state.interval == "green":
            state = msgspec.structs.replace(state, interval="intergreen", interval_elapsed_s=0.0,
                                            cycle_elapsed_s=state.cycle_elapsed_s + left)
            continue
        nxt = (state.stage_index + 1) % len(seq)
        state = msgspec.structs.replace(state, stage_index=nxt, interval="green", interval_elapsed_s=0.0,
                                        cycle_elapsed_s=state.cycle_elapsed_s + left)
        if nxt == 0:  # cycle boundary: a pending timing becomes active
            state = msgspec.structs.replace(state, cycle_elapsed_s=0.0)
            if state.pending_timing is not None:
                state = msgspec.structs.replace(state, timing=state.pending_timing, applied_seq=state.pending_seq,
                                                pending_timing=None, pending_seq=0, mode="central")


def _interval_length_s(plan: Plan, state: ControllerState) -> float:
    seq = plan.sequence
    stage = seq[state.stage_index]
    if state.interval == "green":
        return state.timing.stage_greens_s[stage]
    return interstage_s(plan, stage, seq[(state.stage_index + 1) % len(seq)])


def aspects(plan: Plan, state: ControllerState) -> dict[str, Aspect]:
    """What every signal group shows now."""
    if state.interval == "flash":
        return {g.id: ("flashing_amber" if g.kind == "vehicle" else "dark") for g in plan.signal_groups}
    seq = plan.sequence
    greens = {s.id: set(s.green) for s in plan.stages}
    current = greens[seq[state.stage_index]]
    if state.interval == "green":
        return {g.id: ("green" if g.id in current else "red") for g in plan.signal_groups}
    following = greens[seq[(state.stage_index + 1) % len(seq)]]
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
