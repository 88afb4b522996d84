"""The plan workflow of traffic engineers (pure): propose a new version of a junction's plan, have a second
engineer approve or reject it, deploy it, hold the junction on it, release the hold.

State is a fold of the workflow's events (:class:`PlanRegistry.apply`): ``PlanProposed``, ``PlanReviewed``,
``PlanDeployed``, ``PlanTimingScheduled``, ``PlanHoldReleased`` (and the acknowledgements of the commands
sent under a hold), starting from the catalogued plans. Each step is a pure function of
(registry, request, clock and ids passed in) that returns the event to publish, or raises:

* :func:`propose` — the safety check first (:func:`controllers.safety.validate_all`: conflicting greens,
  clearances, minimum and maximum greens, cycle, references: every violation named), then the rules of the
  workflow: the plan is the junction's, written on the version deployed now, changes something, and keeps the
  controller's **safety configuration** (groups, conflicts, intergreens, stages, cycle bounds:
  :meth:`Plan.safety_checksum`) — lalin deploys timings and schedules, never a conflict matrix, which is loaded
  at the controller itself. Refusals raise :class:`ProposalRefused` with every problem.
* :func:`review` — only a pending proposal, never by its author (:func:`controllers.access.check_second_person`),
  and an approval only while the proposal's base version is still the deployed one (no stale approvals).
* :func:`deployment` — the approved version becomes the junction's plan, and the timing its schedule runs
  now goes out as a ``timing_plan`` command whose provenance names the proposal and the approval (the input
  events), the rule ``plan.deploy``, the plan's checksum, the approver and the reason; the controller's driver
  and the controller check it again.
* :func:`schedule_step` — a held junction runs its deployed version's schedule: each time-of-day entry goes
  out as a command (rule ``plan.schedule``), sent again when the last one timed out.
* :func:`hold_refusal` — while a junction is held on a deployed timing, a command from any other rule (the
  adaptive strategy's) is refused by the executor with this reason, as an event; :func:`release` ends the hold
  and hands the controller back to its own time-of-day plan (rule ``plan.release``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import msgspec

from controllers.access import check_second_person
from controllers.envelope import Envelope
from controllers.errors import LalinError
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    ControlMode,
    ModeChangeCommand,
    PlanDeployed,
    PlanHoldReleased,
    PlanProposed,
    PlanReviewed,
    PlanTimingScheduled,
    Provenance,
    ReviewDecision,
    TimingPlanCommand,
)
from controllers.plan import SAFETY_FIELDS, Plan, Timing
from controllers.plan_diff import diff_plans
from controllers.safety import validate_all
from controllers.schedule import active_timing, resolve_timing

DEPLOY_RULE = "plan.deploy"
SCHEDULE_RULE = "plan.schedule"
RELEASE_RULE = "plan.release"
RULE_VERSION = "1"
#: Rules whose commands a hold lets through (the deployment, its schedule's later entries, the release).
HOLD_RULES = frozenset({DEPLOY_RULE, SCHEDULE_RULE, RELEASE_RULE})


class ProposalRefused(LalinError):
    """A proposal or a review that the workflow refuses; ``problems`` names every reason."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(f"{what}: " + "; ".join(problems))
        self.what, self.problems = what, problems


class ProposalStatus(enum.StrEnum):
    """Where a proposal stands."""

    PENDING = "pending"          # waiting for a second engineer
    APPROVED = "approved"        # approved, its deployment not recorded yet
    REJECTED = "rejected"
    DEPLOYED = "deployed"        # approved and sent out
    SUPERSEDED = "superseded"    # another version was deployed first: it can no longer be approved


#: A proposal still in the workflow.
OPEN = frozenset({ProposalStatus.PENDING, ProposalStatus.APPROVED})


@dataclass
class Proposal:
    """A proposal and what became of it."""

    event_id: uuid.UUID
    proposed_at: datetime
    proposed: PlanProposed
    status: ProposalStatus = ProposalStatus.PENDING
    review: PlanReviewed | None = None
    review_event_id: uuid.UUID | None = None
    deployment: PlanDeployed | None = None
    deployment_event_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Hold:
    """A junction held on a deployed version's timings (adaptive commands refused) since ``since``."""

    version: int
    proposal_id: uuid.UUID
    operator: str
    since: datetime
    timing: str = ""  # the schedule's timing last sent ("": none yet, a deployment during flash sends nothing)
    deployed_event_id: uuid.UUID | None = None  # the PlanDeployed event the hold began with
    command_id: uuid.UUID | None = None  # the last command sent under the hold (deployment or schedule entry)
    outcome: CommandOutcome | None = None  # how that command ended, once its acknowledgement is folded
    outcome_event_id: uuid.UUID | None = None  # that acknowledgement


@dataclass
class PlanRegistry:
    """The deployed plan of every junction, the proposals and the holds: a fold of the workflow's events."""

    plans: dict[str, Plan]
    deployed_at: dict[str, datetime] = field(default_factory=dict)
    deployed_by: dict[str, str] = field(default_factory=dict)
    proposals: dict[uuid.UUID, Proposal] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)

    def apply(self, event: Envelope) -> bool:
        """Fold one event; True when it is one of the workflow's."""
        p = event.payload
        if isinstance(p, PlanProposed):
            self.proposals[p.proposal_id] = Proposal(event.event_id, event.event_time, p)
        elif isinstance(p, PlanReviewed) and p.proposal_id in self.proposals:
            proposal = self.proposals[p.proposal_id]
            proposal.review, proposal.review_event_id = p, event.event_id
            proposal.status = (ProposalStatus.APPROVED if p.decision == ReviewDecision.APPROVED
                               else ProposalStatus.REJECTED)
        elif isinstance(p, PlanDeployed) and p.proposal_id in self.proposals:
            self._deployed(self.proposals[p.proposal_id], p, event)
        elif isinstance(p, PlanHoldReleased):
            self.holds.pop(p.plan_id, None)
        elif isinstance(p, PlanTimingScheduled):
            hold = self.holds.get(p.plan_id)
            if hold is not None and hold.version == p.version:
                self.holds[p.plan_id] = replace(hold, timing=p.timing, command_id=p.command_id, outcome=None,
                                                outcome_event_id=None)
        elif isinstance(p, CommandAcknowledged):
            hold = self.holds.get(p.target)
            if hold is None or hold.command_id != p.command_id:
                return False
            self.holds[p.target] = replace(hold, outcome=p.outcome, outcome_event_id=event.event_id)
        else:
            return False
        return True

    def _deployed(self, proposal: Proposal, p: PlanDeployed, event: Envelope) -> None:
        proposal.status, proposal.deployment, proposal.deployment_event_id = ProposalStatus.DEPLOYED, p, event.event_id
        self.plans[p.plan_id] = plan_of(proposal.proposed)
        self.deployed_at[p.plan_id], self.deployed_by[p.plan_id] = event.event_time, p.operator
        for other in self.proposals.values():  # written on the version just replaced: no longer approvable
            if (other.proposed.plan_id == p.plan_id and other.status in OPEN
                    and other.proposed.base_version != p.version):
                other.status = ProposalStatus.SUPERSEDED
        if p.hold:
            self.holds[p.plan_id] = Hold(p.version, p.proposal_id, p.operator, event.event_time,
                                         p.timing if p.command_id is not None else "", event.event_id, p.command_id)
        else:
            self.holds.pop(p.plan_id, None)

    def next_version(self, plan_id: str) -> int:
        """The version number a new proposal for ``plan_id`` gets (one past every version seen)."""
        seen = [self.plans[plan_id].version] + [p.proposed.version for p in self.proposals.values()
                                                 if p.proposed.plan_id == plan_id]
        return max(seen) + 1

    def pending(self, plan_id: str | None = None) -> list[Proposal]:
        """Open proposals — pending, or approved and not deployed yet — (of one junction), oldest first."""
        return [p for p in self.proposals.values() if p.status in OPEN
                and (plan_id is None or p.proposed.plan_id == plan_id)]


def plan_of(proposed: PlanProposed) -> Plan:
    """The plan a proposal carries."""
    return Plan.model_validate_json(proposed.document)


#: The one problem that does not stop a what-if (a prediction of the deployed plan itself is still an answer).
NO_CHANGE = "changes nothing from the deployed version"


def check_candidate(registry: PlanRegistry, plan_id: str, candidate: Plan, base_version: int) -> list[str]:
    """Every reason ``candidate`` cannot be proposed for ``plan_id`` (empty: it can); safety violations first."""
    problems = [f"{v.code}: {v.message}" for v in validate_all(candidate)]
    deployed = registry.plans.get(plan_id)
    if deployed is None:
        return [*problems, f"no junction plan {plan_id!r}"]
    if candidate.id != plan_id:
        problems.append(f"the plan's id is {candidate.id!r}, not {plan_id!r}")
    if base_version != deployed.version:
        problems.append(f"written on version {base_version}, but version {deployed.version} is deployed now: "
                        "open the plan again")
    if candidate.safety_checksum() != deployed.safety_checksum():
        changed = sorted({c.path.split("[")[0].split(".")[0] for c in diff_plans(deployed, candidate)
                          if c.path.split("[")[0].split(".")[0] in SAFETY_FIELDS})
        problems.append(f"changes the controller's safety configuration ({', '.join(changed)}): that is loaded at "
                        "the controller itself, lalin deploys timings and schedules only")
    if not changes(deployed, candidate):
        problems.append(NO_CHANGE)
    return problems


def changes(before: Plan, after: Plan) -> list[str]:
    """What ``after`` changes from ``before`` (the version number aside), one line each."""
    return [f"{c.kind} {c.path}: {_short(c.before)} -> {_short(c.after)}" for c in diff_plans(before, after)
            if c.path not in {"version", "name"}][:64]


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode() if value is not None else "-"
    return text if len(text) <= 120 else text[:117] + "..."


def propose(registry: PlanRegistry, plan_id: str, candidate: Plan, *, base_version: int, author: str, reason: str,
            proposal_id: uuid.UUID) -> PlanProposed:
    """The ``PlanProposed`` event of a candidate plan (its version set to the next one); ProposalRefused naming every
    problem (safety violations first)."""
    problems = check_candidate(registry, plan_id, candidate, base_version)
    if problems:
        raise ProposalRefused(f"plan {plan_id} refused", problems)
    deployed = registry.plans[plan_id]
    numbered = candidate.model_copy(update={"version": registry.next_version(plan_id)})
    return PlanProposed(proposal_id=proposal_id, plan_id=plan_id, version=numbered.version, base_version=base_version,
                        base_checksum=deployed.checksum(), checksum=numbered.checksum(),
                        safety_checksum=numbered.safety_checksum(), document=numbered.model_dump_json(), author=author,
                        reason=reason, changes=[c[:500] for c in changes(deployed, numbered)])


def review(registry: PlanRegistry, proposal_id: uuid.UUID, *, reviewer: str, decision: ReviewDecision,
           reason: str) -> PlanReviewed:
    """The ``PlanReviewed`` event of a second engineer's decision; AccessDenied for the author, ProposalRefused when
    the proposal is not pending or (for an approval) another version was deployed since it was written."""
    proposal = registry.proposals.get(proposal_id)
    if proposal is None:
        raise ProposalRefused("review refused", [f"no proposal {proposal_id}"])
    check_second_person(reviewer, proposal.proposed.author)
    if proposal.status != ProposalStatus.PENDING:
        raise ProposalRefused("review refused", [f"proposal {proposal_id} is {proposal.status.value}, not pending"])
    deployed = registry.plans[proposal.proposed.plan_id]
    if decision == ReviewDecision.APPROVED and deployed.version != proposal.proposed.base_version:
        raise ProposalRefused("approval refused", [f"written on version {proposal.proposed.base_version}, but "
                                                   f"version {deployed.version} is deployed now"])
    return PlanReviewed(proposal_id=proposal_id, plan_id=proposal.proposed.plan_id, reviewer=reviewer,
                        decision=decision, reason=reason)


def deployment(registry: PlanRegistry, proposal_id: uuid.UUID, *, at: datetime, plan_number: int,
               command_id: uuid.UUID, hold: bool) -> tuple[PlanDeployed, CommandIssued | None]:
    """The deployment of an approved proposal (its ``PlanReviewed`` folded) at instant ``at``: the ``PlanDeployed``
    event and the timing command its schedule runs now (None when it runs flash: nothing is sent), with provenance
    back to the proposal and its approval. ``plan_number``: the controller's number of the plan (its register map)."""
    proposal = registry.proposals[proposal_id]
    if proposal.review is None or proposal.review.decision != ReviewDecision.APPROVED or proposal.review_event_id is None:
        raise ProposalRefused("deployment refused", [f"proposal {proposal_id} is not approved"])
    if proposal.status != ProposalStatus.APPROVED:
        raise ProposalRefused("deployment refused", [f"proposal {proposal_id} is {proposal.status.value}"])
    plan, approval = plan_of(proposal.proposed), proposal.review
    active = active_timing(plan, at)
    timing = resolve_timing(plan, active.timing)
    command = None
    if timing is not None:
        body = timing_command(plan, timing, plan_number)
        provenance = Provenance(rule=DEPLOY_RULE, rule_version=RULE_VERSION, config_checksum=proposal.proposed.checksum,
                                input_event_ids=[proposal.event_id, proposal.review_event_id],
                                operator=approval.reviewer, reason=approval.reason)
        command = CommandIssued(command_id=command_id, target=plan.id, command=body, provenance=provenance)
    deployed = PlanDeployed(proposal_id=proposal_id, plan_id=plan.id, version=plan.version, checksum=plan.checksum(),
                            timing=active.timing, command_id=command.command_id if command else None, hold=hold,
                            operator=approval.reviewer)
    return deployed, command


def timing_command(plan: Plan, timing: Timing, plan_number: int) -> TimingPlanCommand:
    """The command that runs ``timing`` of ``plan`` (greens in the plan's stage sequence, s)."""
    return TimingPlanCommand(plan_id=plan_number, cycle_s=timing.cycle_s, offset_s=timing.offset_s,
                             stage_greens_s=[timing.stage_greens_s[s] for s in plan.sequence])


def schedule_step(registry: PlanRegistry, plan_id: str, *, at: datetime, plan_number: int,
                  command_id: uuid.UUID) -> tuple[PlanTimingScheduled, CommandIssued] | None:
    """At a held junction, the deployed version's schedule at instant ``at``: when its timing is not the one the
    junction was last sent, the ``PlanTimingScheduled`` event and the command — the timing, or a change to flash
    for a ``flash`` entry (the controller enters it at the cycle boundary and leaves it through its all-red
    start-up when the next timing comes) — with provenance back to the deployment; None when nothing changes or
    the junction is not held. ``plan_number``: the controller's number of the plan."""
    hold = registry.holds.get(plan_id)
    plan = registry.plans.get(plan_id)
    if hold is None or plan is None or plan.version != hold.version:
        return None
    active = active_timing(plan, at)
    again = active.timing == hold.timing and hold.outcome == CommandOutcome.TIMED_OUT
    if active.timing == hold.timing and not again:
        return None
    timing = resolve_timing(plan, active.timing)
    body: TimingPlanCommand | ModeChangeCommand = (timing_command(plan, timing, plan_number) if timing is not None
                                                   else ModeChangeCommand(mode=ControlMode.FLASH))
    why = (f"schedule of version {plan.version}: {active.timing} from {active.since_local:%Y-%m-%d %H:%M} local "
           f"({active.day_plan or active.day})" + (f"; sent again: command {hold.command_id} timed out" if again else ""))
    inputs = [i for i in (hold.deployed_event_id, hold.outcome_event_id if again else None) if i is not None]
    provenance = Provenance(rule=SCHEDULE_RULE, rule_version=RULE_VERSION, config_checksum=plan.checksum(),
                            input_event_ids=inputs, operator=hold.operator, reason=why[:500])
    command = CommandIssued(command_id=command_id, target=plan_id, command=body, provenance=provenance)
    return PlanTimingScheduled(plan_id=plan_id, version=hold.version, timing=active.timing, command_id=command_id), command


def release(registry: PlanRegistry, plan_id: str, *, operator: str, reason: str,
            command_id: uuid.UUID) -> tuple[PlanHoldReleased, CommandIssued]:
    """The end of the hold on ``plan_id`` and the command that hands the controller back to its own time-of-day
    plan (out of a scheduled flash too), from which the adaptive strategy takes it again when its data allows;
    ProposalRefused when the junction is not held."""
    hold = registry.holds.get(plan_id)
    if hold is None:
        raise ProposalRefused("release refused", [f"junction {plan_id} is not held"])
    provenance = Provenance(rule=RELEASE_RULE, rule_version=RULE_VERSION, config_checksum=registry.plans[plan_id].checksum(),
                            input_event_ids=[hold.deployed_event_id] if hold.deployed_event_id else [],
                            operator=operator, reason=reason)
    command = CommandIssued(command_id=command_id, target=plan_id,
                            command=ModeChangeCommand(mode=ControlMode.TIME_OF_DAY), provenance=provenance)
    return PlanHoldReleased(plan_id=plan_id, version=hold.version, operator=operator, reason=reason,
                            command_id=command_id), command


def hold_refusal(holds: Mapping[str, Hold], command: CommandIssued) -> str | None:
    """Why the executor must refuse ``command`` — a timing or a mode change from another rule (the adaptive
    strategy's timings and its release to the local plan) at a held junction — or None."""
    hold = holds.get(command.target)
    body = command.command
    if hold is None or not isinstance(body, TimingPlanCommand | ModeChangeCommand) or command.provenance.rule in HOLD_RULES:
        return None
    what = "timing" if isinstance(body, TimingPlanCommand) else f"change to {body.mode.value}"
    return (f"held: junction {command.target} runs plan version {hold.version} deployed by {hold.operator} "
            f"(proposal {hold.proposal_id}) until released; {command.provenance.rule} {what} not sent")
