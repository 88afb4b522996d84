"""What a VMS board does, as pure functions: the firmware logic the OPC UA board simulator runs
(and the behaviour docs/opcua-model.md specifies).

Rules, in the order they apply to a ShowMessage request:

1. A MessageId the board has handled before changes nothing: a refused one is refused again
   with the same reason, an accepted one answers ``repeated`` (idempotent requests).
2. A board without power, or with its display controller faulted, refuses (``board_off``).
3. The message must fit the board's capabilities (:func:`devices.vms_model.check_message`).
4. A message does not replace one of higher priority (smaller number) still shown.
5. An activation time in the future makes the message ``pending`` (one pending slot; a newer
   request replaces it); when it comes due it is shown unless a message of higher priority is
   shown then, in which case it is discarded.
6. A shown message with a duration expires at activation + duration and the board blanks.

Blank(MessageId) takes down that message (shown or pending) and nothing else. Time is passed
in (timezone-aware datetimes), durations are seconds. No I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from devices.vms_model import MESSAGE_ID_MAX, Capabilities, Refusal, check_message

Result = Literal["accepted", "pending", "repeated", "refused", "not_displayed"]
Status = Literal["displaying", "blank", "fault", "off"]
HANDLED_MEMORY = 256  # message ids remembered for idempotency


class MessageRequest(msgspec.Struct, frozen=True):
    """A ShowMessage request: pages in wire form, priority (1 highest), times in seconds."""

    message_id: str
    pages: tuple[str, ...]
    priority: int
    activation_time: datetime | None  # None: at once
    duration_s: float  # 0: until replaced or blanked
    page_time_s: float


class Shown(msgspec.Struct, frozen=True):
    """The message on the board."""

    message_id: str
    pages: tuple[str, ...]
    priority: int
    page_time_s: float
    activated_at: datetime
    expires_at: datetime | None


class Outcome(msgspec.Struct, frozen=True):
    """How a request was taken; ``refusal`` set when refused."""

    result: Result
    refusal: Refusal | None = None


class BoardState(msgspec.Struct, frozen=True):
    """A board at an instant."""

    shown: Shown | None = None
    pending: MessageRequest | None = None
    handled: tuple[tuple[str, Outcome], ...] = ()
    power_failure: bool = False
    display_fault: bool = False


def status(state: BoardState) -> Status:
    """What the board reports: off (no power), fault (display controller), displaying or blank."""
    if state.power_failure:
        return "off"
    if state.display_fault:
        return "fault"
    return "displaying" if state.shown is not None else "blank"


def _remember(state: BoardState, message_id: str, outcome: Outcome) -> BoardState:
    handled = (*state.handled, (message_id, outcome))[-HANDLED_MEMORY:]
    return msgspec.structs.replace(state, handled=handled)


def _previous(state: BoardState, message_id: str) -> Outcome | None:
    for handled_id, outcome in reversed(state.handled):
        if handled_id == message_id:
            return outcome
    return None


def _shown_from(request: MessageRequest, now: datetime) -> Shown:
    expires = now + timedelta(seconds=request.duration_s) if request.duration_s > 0 else None
    return Shown(message_id=request.message_id, pages=request.pages, priority=request.priority,
                 page_time_s=request.page_time_s, activated_at=now, expires_at=expires)


def _refusal(state: BoardState, caps: Capabilities, request: MessageRequest, now: datetime) -> Refusal | None:
    if not 1 <= len(request.message_id) <= MESSAGE_ID_MAX:
        return Refusal("malformed", f"MessageId of {len(request.message_id)} characters; 1 to {MESSAGE_ID_MAX} are accepted")
    if state.power_failure or state.display_fault:
        return Refusal("board_off", "the board has no power" if state.power_failure else "the display controller is faulted")
    refusal = check_message(caps, request.pages, request.priority, request.duration_s, request.page_time_s)
    if refusal is not None:
        return refusal
    shown = advance(state, now).shown
    due = request.activation_time if request.activation_time is not None and request.activation_time > now else now
    still_shown = shown is not None and (shown.expires_at is None or shown.expires_at > due)
    if shown is not None and still_shown and shown.priority < request.priority:
        until = "until blanked" if shown.expires_at is None else f"until {shown.expires_at.isoformat()}"
        return Refusal("lower_priority", f"priority {request.priority} is below the shown message "
                                         f"{shown.message_id!r} of priority {shown.priority} ({until})")
    return None


def show(state: BoardState, caps: Capabilities, request: MessageRequest, now: datetime) -> tuple[BoardState, Outcome]:
    """Handle a ShowMessage request at ``now``: the new state and the outcome (see the module rules)."""
    previous = _previous(state, request.message_id)
    if previous is not None:
        return state, previous if previous.result == "refused" else Outcome("repeated")
    state = advance(state, now)
    refusal = _refusal(state, caps, request, now)
    if refusal is not None:
        outcome = Outcome("refused", refusal)
        return _remember(state, request.message_id, outcome), outcome
    if request.activation_time is not None and request.activation_time > now:
        outcome = Outcome("pending")
        return _remember(msgspec.structs.replace(state, pending=request), request.message_id, outcome), outcome
    outcome = Outcome("accepted")
    return _remember(msgspec.structs.replace(state, shown=_shown_from(request, now)), request.message_id, outcome), outcome


def blank(state: BoardState, message_id: str, now: datetime) -> tuple[BoardState, Outcome]:
    """Take down ``message_id`` (shown or pending) at ``now``; ``not_displayed`` when it is neither."""
    state = advance(state, now)
    shown = None if state.shown is not None and state.shown.message_id == message_id else state.shown
    pending = None if state.pending is not None and state.pending.message_id == message_id else state.pending
    if shown is state.shown and pending is state.pending:
        return state, Outcome("not_displayed")
    return msgspec.structs.replace(state, shown=shown, pending=pending), Outcome("accepted")


def advance(state: BoardState, now: datetime) -> BoardState:
    """The state at ``now``: a due pending message shown (or discarded), an expired message blanked."""
    shown, pending = state.shown, state.pending
    if pending is not None and pending.activation_time is not None and pending.activation_time <= now:
        due = pending.activation_time
        if shown is not None and shown.expires_at is not None and shown.expires_at <= due:
            shown = None  # it expired before the pending message came due
        if shown is None or shown.priority >= pending.priority:
            shown = _shown_from(pending, due)
        pending = None  # shown, or discarded: a message of higher priority was shown when it came due
    if shown is not None and shown.expires_at is not None and shown.expires_at <= now:
        shown = None
    if shown is state.shown and pending is state.pending:
        return state
    return msgspec.structs.replace(state, shown=shown, pending=pending)


def next_change_at(state: BoardState) -> datetime | None:
    """When :func:`advance` will next change the state by itself (expiry or activation), or None."""
    times = [t for t in (state.shown.expires_at if state.shown else None,
                         state.pending.activation_time if state.pending else None) if t is not None]
    return min(times) if times else None


def set_power_failure(state: BoardState, failed: bool) -> BoardState:
    """Mains power lost (the board goes dark and forgets what it showed) or restored (blank)."""
    if failed:
        return msgspec.structs.replace(state, power_failure=True, shown=None, pending=None)
    return msgspec.structs.replace(state, power_failure=False)


def set_display_fault(state: BoardState, faulted: bool) -> BoardState:
    """The display controller failed (the board goes dark) or was repaired (blank)."""
    if faulted:
        return msgspec.structs.replace(state, display_fault=True, shown=None, pending=None)
    return msgspec.structs.replace(state, display_fault=False)
