"""The decision loop of one corridor as a fold (pure): traffic summaries in, commands out.

:class:`CorridorDecisions` keeps the latest ``TrafficMeasured`` of every intersection of a
corridor and the command it last issued to each; on every new summary it asks the strategy
for that intersection's next command, with the instant ``now`` = the end of the summary's
window (never a clock). Its input is one partition of ``lalin.state`` (keyed by corridor), so
live and replay see the summaries in the same order; a summary already seen (a fold worker
re-emitting after a restart) changes nothing. The state is small and snapshots as msgpack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


class CorridorDecisions:
    """Decisions for the intersections of one corridor (or one isolated intersection)."""

    def __init__(self, members: Sequence[CorridorMember], strategy: Strategy, config_checksum: str,
                 state: DecisionState | None = None) -> None:
        self.members = {m.intersection_id: m for m in members}
        self.plans = {m.intersection_id: m.plan for m in members}
        self.strategy, self.config_checksum = strategy, config_checksum
        self.state = state if state is not None else DecisionState()

    def on_measured(self, summary: TrafficMeasured) -> CommandIssued | None:
        """Fold one summary; the command the strategy issues for its intersection, or None.

        Summaries of intersections outside the corridor, and summaries not newer than the one
        already held (re-emitted after a fold worker restarted), are ignored.
        """
        member = self.members.get(summary.intersection_id)
        if member is None:
            return None
        held = self.state.latest.get(summary.intersection_id)
        if held is not None and summary.window.end <= held.window.end:
            return None
        self.state.latest[summary.intersection_id] = summary
        context = DecisionContext(intersection_id=member.intersection_id, plan_number=member.plan_number,
                                  measured=summary, corridor=dict(self.state.latest), plans=self.plans,
                                  last_issued=self.state.issued.get(member.intersection_id),
                                  config_checksum=self.config_checksum)
        now = summary.window.end
        command = self.strategy.decide(context, member.plan, now)
        self.state.decisions += 1
        if command is not None:
            timing = command.command if isinstance(command.command, TimingPlanCommand) else None
            self.state.issued[member.intersection_id] = IssuedTiming(now, command.command_id, timing)
            self.state.commands[member.intersection_id] = self.state.commands.get(member.intersection_id, 0) + 1
        return command

    def snapshot(self) -> bytes:
        """The state as msgpack bytes."""
        return msgspec.msgpack.encode(self.state)

    @staticmethod
    def restore_state(data: bytes) -> DecisionState:
        """A state from :meth:`snapshot` bytes."""
        return msgspec.msgpack.decode(data, type=DecisionState)
