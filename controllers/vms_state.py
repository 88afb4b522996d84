"""The automatic-VMS policy's state and the fold of its inputs (pure).

Each update commutes with the others (the latest by event time and sequence, sets by id), so the
events an evaluation cites fold to the same state in any order: what makes a replay exact.
Times in the state are seconds since the epoch.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from controllers.envelope import Envelope
from controllers.payloads import CommandAcknowledged, OperatorActed, TrafficMeasured, VmsDisplayReported, VmsFaulted
from controllers.plan import Plan
from controllers.vms_config import BoardSite
from controllers.vms_evidence import DetectorsByMovement
from controllers.vms_text import operator_pages

SEND_ACTION, CANCEL_ACTION = "vms_send", "vms_cancel"
MAX_CITED = 5000


# --- the state --------------------------------------------------------------------------------
class Sighting(msgspec.Struct):
    """A camera incident on an approach: the last window that saw it (s), its kind and confidence then."""

    kind: str
    confidence: float
    last_s: float
    summary_id: uuid.UUID
    seq: int = 0


class Feedback(msgspec.Struct):
    """What a board last reported (by event time and sequence)."""

    status: str = "blank"
    message_id: str | None = None
    priority: int | None = None
    order: tuple[float, int] = (-math.inf, 0)


class Order(msgspec.Struct, frozen=True):
    """An operator's message for a board until ``until_s`` (s), with who and why."""

    order_id: uuid.UUID
    board_id: str
    pages: list[list[str]]
    until_s: float
    operator: str
    reason: str
    issued_s: float
    cancelled_s: float | None = None


class CauseTrack(msgspec.Struct):
    """Hysteresis of one cause: when its condition started to hold (s), when it went live, when it started to clear."""

    on: bool = False
    pending_since_s: float | None = None
    onset_s: float | None = None
    clear_since_s: float | None = None


class Showing(msgspec.Struct):
    """What lalin keeps on a board: the cause, text, priority, when this text went up, and its delivery."""

    cause: str
    rule: str
    category: str
    priority: int
    pages: list[list[str]]
    since_s: float
    command_id: uuid.UUID
    sent_s: float
    attempt: int
    hold_until_s: float
    value: int | None = None  # the travel time shown (min)
    operator: str | None = None
    reason: str | None = None
    inputs: list[uuid.UUID] = []


class VmsState(msgspec.Struct):
    """Everything the policy remembers (snapshotted with the offsets it covers)."""

    at_s: float = -math.inf
    stream_time_s: float = -math.inf
    evaluations: int = 0
    commands: int = 0
    summaries: dict[str, TrafficMeasured] = {}
    summary_ids: dict[str, uuid.UUID] = {}
    summary_order: dict[str, tuple[float, int]] = {}
    sightings: dict[str, Sighting] = {}  # "<junction>/<approach>"
    feedback: dict[str, Feedback] = {}
    faults: dict[str, dict[str, tuple[bool, float, int]]] = {}  # board -> fault -> (active, t, seq)
    acks: dict[str, tuple[str, str]] = {}  # command id -> (outcome, detail)
    orders: dict[str, Order] = {}
    causes: dict[str, CauseTrack] = {}
    showing: dict[str, Showing] = {}
    failed: dict[str, dict[str, tuple[float, str]]] = {}  # board -> cause -> (since s, why)
    ours: dict[str, list[str]] = {}  # board -> the last message ids lalin sent it
    cited: list[uuid.UUID] = []


# --- the network the policy works on ------------------------------------------------------------
@dataclass(frozen=True)
class VmsNetwork:
    """The plans (junction id -> plan), each junction's detectors per movement, and the boards."""

    plans: Mapping[str, Plan]
    detectors: Mapping[str, DetectorsByMovement]
    boards: Sequence[BoardSite]
    board_by_id: Mapping[str, BoardSite] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "board_by_id", {b.id: b for b in self.boards})

    def chainage(self, junction: str) -> tuple[str, float, float] | None:
        """(corridor, chainage m, progression speed km/h) of a coordinated junction, else None."""
        plan = self.plans.get(junction)
        if plan is None or plan.coordination is None:
            return None
        c = plan.coordination
        return c.corridor, c.chainage_m, c.progression_speed_kmh


class VmsFold:
    """Folds the policy's inputs into a :class:`VmsState` (see the module docstring)."""

    def __init__(self, network: VmsNetwork, state: VmsState) -> None:
        self.network, self.state = network, state

    def apply(self, event: Envelope) -> bool:
        """Fold one event; True when it concerns the policy (it is then cited by the next evaluation)."""
        p, st = event.payload, self.state
        if isinstance(p, TrafficMeasured):
            concerns = self._summary(p, event)
        elif isinstance(p, (VmsDisplayReported, VmsFaulted, CommandAcknowledged)):
            concerns = self._board_report(p, event)
        elif isinstance(p, OperatorActed):
            concerns = self._order(p, event)
        else:
            concerns = False
        if concerns:
            if len(st.cited) < MAX_CITED:
                st.cited.append(event.event_id)
            st.stream_time_s = max(st.stream_time_s, event.event_time.timestamp())
        return concerns

    def _summary(self, p: TrafficMeasured, event: Envelope) -> bool:
        st = self.state
        if p.intersection_id not in self.network.plans:
            return False
        end_s = p.window.end.timestamp()
        order = (end_s, event.seq)  # the latest window wins (the sequence number only breaks ties)
        if order > st.summary_order.get(p.intersection_id, (-math.inf, 0)):
            st.summaries[p.intersection_id], st.summary_ids[p.intersection_id] = p, event.event_id
            st.summary_order[p.intersection_id] = order
        for a in p.approaches:
            if a.incident is not None:
                key = f"{p.intersection_id}/{a.approach}"
                seen = st.sightings.get(key)
                if seen is None or order > (seen.last_s, seen.seq):
                    st.sightings[key] = Sighting(a.incident.kind.value, a.incident.confidence, end_s, event.event_id, event.seq)
        return True

    def _board_report(self, p: VmsDisplayReported | VmsFaulted | CommandAcknowledged, event: Envelope) -> bool:
        st = self.state
        board_id = p.target if isinstance(p, CommandAcknowledged) else p.board_id
        if board_id not in self.network.board_by_id:
            return False
        order = (event.event_time.timestamp(), event.seq)
        if isinstance(p, VmsDisplayReported):
            fb = st.feedback.get(board_id)
            if fb is None or order > fb.order:
                st.feedback[board_id] = Feedback(p.status.value, p.message_id, p.priority, order)
        elif isinstance(p, VmsFaulted):
            faults = st.faults.setdefault(board_id, {})
            held = faults.get(p.fault.value)
            if held is None or order > (held[1], held[2]):
                faults[p.fault.value] = (p.active, *order)
        else:
            st.acks[str(p.command_id)] = (p.outcome.value, p.detail)
        return True

    def _order(self, p: OperatorActed, event: Envelope) -> bool:
        if p.action == SEND_ACTION and p.target in self.network.board_by_id:
            try:
                until_s = datetime.fromisoformat(p.detail["until"]).timestamp()
                pages = operator_pages(p.detail["text"])
            except (KeyError, ValueError):
                return False  # refused when it was given (the CLI checks it); nothing to carry out
            order = Order(event.event_id, p.target, pages, until_s, p.operator, p.reason, event.event_time.timestamp())
            self.state.orders.setdefault(str(event.event_id), order)
            return True
        if p.action == CANCEL_ACTION and p.target in self.network.board_by_id:
            for key, order in self.state.orders.items():
                if order.board_id == p.target and order.cancelled_s is None and order.issued_s <= event.event_time.timestamp():
                    self.state.orders[key] = msgspec.structs.replace(order, cancelled_s=event.event_time.timestamp())
            return True
        return False
