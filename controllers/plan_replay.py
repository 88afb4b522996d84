"""Replay of the plan workflow (pure): the fourth check of ``lalin replay``.

Every recorded step of the workflow is derived again, in archive order, from the steps before it, with the
same pure functions the plan service used (:mod:`controllers.plan_workflow`): each ``PlanProposed`` must
pass the safety check and the proposal rules again and come out identical; each ``PlanReviewed`` must be
allowed (four eyes, still pending, not stale); each ``PlanDeployed`` and each ``PlanTimingScheduled`` is
re-computed at its event time, and so is the ``CommandIssued`` it caused (timing, provenance); each
``PlanHoldReleased`` must find the hold, and its command (back to the controller's own plan) is re-computed;
a command of the workflow's source that no step caused is a difference too. The acknowledgements of the
commands sent under a hold are folded as state (a timed-out schedule command is sent again). A step the
rules refuse, or one that comes out different, is a difference (kind ``plan``); the people's choices
themselves (who proposed what, approved or rejected, why) are inputs, not re-decided.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

import msgspec

from controllers.access import AccessDenied
from controllers.envelope import Envelope
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    PlanDeployed,
    PlanHoldReleased,
    PlanProposed,
    PlanReviewed,
    PlanTimingScheduled,
)
from controllers.plan import Plan
from controllers.plan_workflow import (
    PlanRegistry,
    ProposalRefused,
    deployment,
    plan_of,
    propose,
    release,
    review,
    schedule_step,
)
from controllers.replay import Difference, ReplayReport, canonical_json

#: The source of the workflow's own events and commands (deployments, schedule entries).
PLANS_SOURCE = "lalin:plans"
NO_COMMAND = uuid.UUID(int=0)  # the id a deployment that sends nothing is re-computed with


def check_plan_workflow(events: Iterable[Envelope], plans: Mapping[str, Plan],
                        plan_numbers: Mapping[str, int]) -> ReplayReport:
    """Re-derive every workflow step of ``events`` (archive order: the workflow's events and the commands the
    plan service issued) from the catalogued ``plans``; ``plan_numbers``: each controller's number of its plan."""
    ordered = list(events)
    commands = {e.payload.command_id: e.payload for e in ordered
                if isinstance(e.payload, CommandIssued) and e.source == PLANS_SOURCE}
    registry = PlanRegistry(plans=dict(plans))
    report = ReplayReport()
    caused: set[uuid.UUID | None] = set()
    for event in ordered:
        report.events += 1
        if isinstance(event.payload, CommandIssued):  # checked with the step that caused it
            continue
        if isinstance(event.payload, CommandAcknowledged):  # how a command under a hold ended: state, not a step
            registry.apply(event)
            continue
        try:
            recorded, replayed = _step(registry, event, commands, plan_numbers)
        except (ProposalRefused, AccessDenied, KeyError) as err:
            report.differences.append(Difference("plan", event.key, event.seq, canonical_json(event.payload), "",
                                                 f"{event.type} {event.event_id}: the workflow's rules refuse it: {err}",
                                                 event.event_time))
            return report
        report.plan_steps_checked += 1
        if canonical_json(recorded) != canonical_json(replayed):
            report.differences.append(Difference("plan", event.key, event.seq, canonical_json(recorded),
                                                 canonical_json(replayed),
                                                 f"{event.type} {event.event_id} is not what the workflow gives",
                                                 event.event_time))
            return report
        registry.apply(event)
        caused.add(getattr(event.payload, "command_id", None))
    stray = [e for e in ordered if isinstance(e.payload, CommandIssued) and e.source == PLANS_SOURCE
             and e.payload.command_id not in caused]
    if stray:
        report.differences.append(Difference("plan", stray[0].key, stray[0].seq, canonical_json(stray[0].payload), "",
                                             f"command {stray[0].event_id} of {PLANS_SOURCE} was caused by no step of "
                                             f"the workflow ({len(stray)} such)", stray[0].event_time))
    return report


class _Step(msgspec.Struct, frozen=True):
    """A step and the command it caused (None: none), compared as one."""

    event: msgspec.Struct
    command: CommandIssued | None


def _step(registry: PlanRegistry, event: Envelope, commands: Mapping[uuid.UUID, CommandIssued],
          plan_numbers: Mapping[str, int]) -> tuple[msgspec.Struct, msgspec.Struct | None]:
    """(what was recorded, what the workflow gives) for one step; raises what the workflow raises."""
    p, at = event.payload, event.event_time
    if isinstance(p, PlanProposed):
        return p, propose(registry, p.plan_id, plan_of(p), base_version=p.base_version, author=p.author,
                          reason=p.reason, proposal_id=p.proposal_id)
    if isinstance(p, PlanReviewed):
        return p, review(registry, p.proposal_id, reviewer=p.reviewer, decision=p.decision, reason=p.reason)
    if isinstance(p, PlanHoldReleased):
        released, handback = release(registry, p.plan_id, operator=p.operator, reason=p.reason,
                                     command_id=p.command_id or NO_COMMAND)
        if p.command_id is None:  # recorded before a release sent a command
            return p, msgspec.structs.replace(released, command_id=None)
        return _Step(p, commands.get(p.command_id)), _Step(released, handback)
    if isinstance(p, PlanDeployed):
        deployed, command = deployment(registry, p.proposal_id, at=at, plan_number=plan_numbers.get(p.plan_id, 1),
                                       command_id=p.command_id or NO_COMMAND, hold=p.hold)
        recorded_command = commands.get(p.command_id) if p.command_id else None
        return _Step(p, recorded_command), _Step(deployed, command)
    if isinstance(p, PlanTimingScheduled):
        step = schedule_step(registry, p.plan_id, at=at, plan_number=plan_numbers.get(p.plan_id, 1),
                             command_id=p.command_id)
        return _Step(p, commands.get(p.command_id)), (_Step(*step) if step is not None else None)
    raise KeyError(f"{event.type} is not a step of the plan workflow")
