"""The plan workflow's replay (pure): every recorded step is derived again from the ones before it; an altered
command, a review the rules refuse, or a schedule entry at the wrong time is named as the first difference."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from controllers.envelope import Envelope, make_event
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    Payload,
    ReviewDecision,
    TimingPlanCommand,
)
from controllers.plan_replay import PLANS_SOURCE, check_plan_workflow
from controllers.plan_workflow import PlanRegistry, deployment, propose, release, review, schedule_step
from infra.plans import PLANS_DIR, load_plan

K01 = load_plan(PLANS_DIR / "K01.yaml")
DEPLOYED_AT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 09:00 WITA: AM_PEAK until 09:30


def recorded_workflow() -> list[Envelope]:
    """Proposal, approval, deployment (held) and the 09:30 schedule entry, as the plan service records them."""
    reg, log = PlanRegistry(plans={"K01": K01}), []

    def record(payload: Payload, at: datetime, source: str = "web:eng1", event_id: uuid.UUID | None = None) -> Envelope:
        envelope = make_event(payload, event_id=event_id or uuid.uuid4(), event_time=at, ingest_time=at, source=source,
                              key="K01", seq=len(log) + 1)
        reg.apply(envelope)
        log.append(envelope)
        return envelope

    am = K01.timings["AM_PEAK"]
    candidate = K01.model_copy(update={"timings": {**K01.timings, "AM_PEAK": am.model_copy(update={
        "stage_greens_s": {**am.stage_greens_s, "S1": am.stage_greens_s["S1"] + 4, "S3": am.stage_greens_s["S3"] - 4}})}})
    proposed = propose(reg, "K01", candidate, base_version=1, author="eng1", reason="AM peak", proposal_id=uuid.uuid4())
    record(proposed, DEPLOYED_AT - timedelta(minutes=20))
    approval = review(reg, proposed.proposal_id, reviewer="eng2", decision=ReviewDecision.APPROVED, reason="checked")
    record(approval, DEPLOYED_AT, "web:eng2")
    deployed, command = deployment(reg, proposed.proposal_id, at=DEPLOYED_AT, plan_number=1, command_id=uuid.uuid4(),
                                   hold=True)
    cause = record(deployed, DEPLOYED_AT, PLANS_SOURCE)
    assert command is not None
    record(command, DEPLOYED_AT, PLANS_SOURCE, command.command_id)
    at = DEPLOYED_AT + timedelta(minutes=30, seconds=0.4)
    step = schedule_step(reg, "K01", at=at, plan_number=1, command_id=uuid.uuid4())
    assert step is not None and cause.event_id in step[1].provenance.input_event_ids
    record(step[0], at, PLANS_SOURCE)
    record(step[1], at, PLANS_SOURCE, step[1].command_id)
    # the controller did not confirm it in time: the entry goes out again, then the hold is released
    record(CommandAcknowledged(command_id=step[1].command_id, target="K01", outcome=CommandOutcome.TIMED_OUT,
                               detail="no read-back"), at + timedelta(minutes=4), "modbus:K01")
    again_at = at + timedelta(minutes=4, seconds=1)
    again = schedule_step(reg, "K01", at=again_at, plan_number=1, command_id=uuid.uuid4())
    assert again is not None and again[0].timing == "OFF_PEAK"
    record(again[0], again_at, PLANS_SOURCE)
    record(again[1], again_at, PLANS_SOURCE, again[1].command_id)
    released, handback = release(reg, "K01", operator="op1", reason="back to adaptive", command_id=uuid.uuid4())
    record(released, again_at + timedelta(hours=1), "web:op1")
    record(handback, again_at + timedelta(hours=1), PLANS_SOURCE, handback.command_id)
    return log


def replaced(envelope: Envelope, **changes: object) -> Envelope:
    """The same event with its payload (or, for ``event_time``, its time) altered."""
    if "event_time" in changes:
        return msgspec.structs.replace(envelope, event_time=changes["event_time"])
    return msgspec.structs.replace(envelope, payload=msgspec.structs.replace(envelope.payload, **changes))


def test_a_recorded_workflow_is_reproduced_step_by_step() -> None:
    report = check_plan_workflow(recorded_workflow(), {"K01": K01}, {"K01": 1})
    assert report.differences == [] and report.plan_steps_checked == 6 and report.events == 11


def test_a_deployments_command_altered_afterwards_is_the_first_difference() -> None:
    log = recorded_workflow()
    k = next(i for i, e in enumerate(log) if isinstance(e.payload, CommandIssued))
    body = log[k].payload.command
    assert isinstance(body, TimingPlanCommand)
    log[k] = replaced(log[k], command=msgspec.structs.replace(body, stage_greens_s=[60, 10, 10]))
    report = check_plan_workflow(log, {"K01": K01}, {"K01": 1})
    assert [d.kind for d in report.differences] == ["plan"]
    assert "PlanDeployed" in report.differences[0].detail and "[60,10,10]" in report.differences[0].recorded


def test_a_self_approval_written_into_the_log_is_refused_by_the_rules() -> None:
    log = recorded_workflow()
    log[1] = replaced(log[1], reviewer="eng1")
    report = check_plan_workflow(log, {"K01": K01}, {"K01": 1})
    assert report.plan_steps_checked == 1 and "refuse it" in report.differences[0].detail
    assert "second person" in report.differences[0].detail


def test_a_schedule_entry_recorded_before_its_time_is_a_difference() -> None:
    log = recorded_workflow()
    k = next(i for i, e in enumerate(log) if e.type == "PlanTimingScheduled")
    log[k] = replaced(log[k], event_time=DEPLOYED_AT + timedelta(minutes=10))  # 09:10: AM_PEAK still runs
    report = check_plan_workflow(log, {"K01": K01}, {"K01": 1})
    assert report.plan_steps_checked == 4 and report.differences[0].replayed == "null"


def test_a_command_no_step_caused_is_a_difference() -> None:
    log = recorded_workflow()
    k = next(i for i, e in enumerate(log) if e.type == "CommandIssued" and e.payload.provenance.rule == "plan.schedule")
    extra = msgspec.structs.replace(log[k].payload, command_id=uuid.uuid4())
    log.insert(k + 1, msgspec.structs.replace(log[k], event_id=extra.command_id, payload=extra))
    report = check_plan_workflow(log, {"K01": K01}, {"K01": 1})
    assert report.plan_steps_checked == 6 and "caused by no step" in report.differences[0].detail


def test_a_schedule_command_sent_again_without_a_timeout_on_record_is_a_difference() -> None:
    log = [e for e in recorded_workflow() if e.type != "CommandAcknowledged"]
    report = check_plan_workflow(log, {"K01": K01}, {"K01": 1})
    assert report.plan_steps_checked == 5 and report.differences[0].replayed == "null"
