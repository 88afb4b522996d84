"""The decision loop of one corridor as a fold (pure): traffic summaries in, commands out.

:class:`CorridorDecisions` keeps the latest ``TrafficMeasured`` of every intersection of a
corridor and the command it last issued to each. When every live member has reported a
window, it asks the strategy for each member's next command with the same view of the
corridor (a *round*, like a SCATS regional master deciding a subsystem), at the instant
``now`` = that window's end (never a clock), so the members' cycles and offsets agree. Its
input is one partition of ``lalin.state`` (keyed by corridor), so live and replay see the
summaries in the same order; a summary already seen (a fold worker re-emitting after a
restart) changes nothing. The state is small and snapshots as msgpack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from controllers.payloads import CommandIssued, TimingPlanCommand, TrafficMeasured
from controllers.plan import Plan
from controllers.strategy import DecisionContext, IssuedTiming, Strategy


@dataclass(frozen=True)
class CorridorMember:
    """An intersection the loop decides for: its id, plan and the plan number its controller knows."""

    intersection_id: str
    plan: Plan
    plan_number: int


class DecisionState(msgspec.Struct):
    """The latest summary of every intersection and the last command issued to each."""

    latest: dict[str, TrafficMeasured] = {}
    issued: dict[str, IssuedTiming] = {}
    commands: dict[str, int] = {}  # commands issued per intersection (their envelopes' sequence numbers)
    decisions: int = 0
    decided_until: datetime | None = None  # the window end of the last round decided
    first_window_end: datetime | None = None  # of the first summary the loop saw
    learned: dict[str, dict[str, float]] = {}  # the strategy's ``learn`` per intersection (saturation flows)


class CorridorDecisions:
    """Decisions for the intersections of one corridor (or one isolated intersection)."""

    def __init__(self, members: Sequence[CorridorMember], strategy: Strategy, config_checksum: str,
                 state: DecisionState | None = None, *, stale_after_s: float = 150.0) -> None:
        self.stale_after_s = stale_after_s
        self.members = {m.intersection_id: m for m in members}
        self.plans = {m.intersection_id: m.plan for m in members}
        self.strategy, self.config_checksum = strategy, config_checksum
        self.state = state if state is not None else DecisionState()

    def on_measured(self, summary: TrafficMeasured) -> list[CommandIssued]:
        """Fold one summary; when it completes a *round*, the commands the strategy issues for the corridor.

        A round is a window end ``t`` that every live member has reported (a member whose latest
        summary is more than ``stale_after_s`` older than the newest, or that has not reported
        ``stale_after_s`` after the first summary, is not waited for: it is down or unreachable).
        Then every member is decided at ``now = t`` with the same view of the corridor, in id
        order, so cycles and offsets agree. Summaries of intersections outside the corridor, and
        summaries not newer than the one held (re-emitted after a fold worker
        restarted), change nothing.
        """
        member = self.members.get(summary.intersection_id)
        if member is None:
            return []
        held = self.state.latest.get(summary.intersection_id)
        if held is not None and summary.window.end <= held.window.end:
            return []
        self.state.latest[summary.intersection_id] = summary
        self.state.learned[summary.intersection_id] = self.strategy.learn(
            self.state.learned.get(summary.intersection_id, {}), member.plan, summary)
        newest = max(m.window.end for m in self.state.latest.values())
        first = self.state.first_window_end = min(self.state.first_window_end or summary.window.end, summary.window.end)
        if len(self.state.latest) < len(self.members) and (newest - first).total_seconds() <= self.stale_after_s:
            return []  # a member has not reported yet: wait for it (a while)
        live = [m.window.end for m in self.state.latest.values()
                if (newest - m.window.end).total_seconds() <= self.stale_after_s]
        round_end = min(live)
        if self.state.decided_until is not None and round_end <= self.state.decided_until:
            return []
        self.state.decided_until = round_end
        commands = []
        view = dict(self.state.latest)
        for intersection_id in sorted(self.state.latest):
            if (newest - view[intersection_id].window.end).total_seconds() > self.stale_after_s:
                continue  # no fresh summary: nothing to decide on (the strategy sees it as absent)
            command = self._decide(self.members[intersection_id], view, round_end)
            if command is not None:
                commands.append(command)
        return commands

    def _decide(self, member: CorridorMember, view: dict[str, TrafficMeasured], now: datetime) -> CommandIssued | None:
        context = DecisionContext(intersection_id=member.intersection_id, plan_number=member.plan_number,
                                  measured=view[member.intersection_id], corridor=view, plans=self.plans,
                                  last_issued=self.state.issued.get(member.intersection_id),
                                  config_checksum=self.config_checksum, learned=self.state.learned)
        command = self.strategy.decide(context, member.plan, now)
        self.state.decisions += 1
        if command is not None:
            timing = command.command if isinstance(command.command, TimingPlanCommand) else None
            previous = self.state.issued.get(member.intersection_id)
            same_cycle = (previous is not None and previous.timing is not None and timing is not None
                          and previous.timing.cycle_s == timing.cycle_s)
            since = previous.cycle_since if same_cycle and previous is not None else (now if timing is not None else None)
            self.state.issued[member.intersection_id] = IssuedTiming(now, command.command_id, timing, since)
            self.state.commands[member.intersection_id] = self.state.commands.get(member.intersection_id, 0) + 1
        return command

    def snapshot(self) -> bytes:
        """The state as msgpack bytes."""
        return msgspec.msgpack.encode(self.state)

    @staticmethod
    def restore_state(data: bytes) -> DecisionState:
        """A state from :meth:`snapshot` bytes."""
        return msgspec.msgpack.decode(data, type=DecisionState)
