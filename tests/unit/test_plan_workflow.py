"""The plan workflow's rules (pure): the safety check first, four eyes, no stale approvals, deployment with
provenance, holds; and the roles as data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.access import PERMISSIONS, ROLES, AccessDenied, AccessPolicy
from controllers.envelope import Envelope, make_event
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    ControlMode,
    ModeChangeCommand,
    PlanProposed,
    Provenance,
    ReviewDecision,
    TimingPlanCommand,
)
from controllers.plan import Plan, Timing
from controllers.plan_whatif import predict
from controllers.plan_workflow import (
    DEPLOY_RULE,
    SCHEDULE_RULE,
    PlanRegistry,
    ProposalRefused,
    ProposalStatus,
    deployment,
    hold_refusal,
    plan_of,
    propose,
    release,
    review,
    schedule_step,
)
from controllers.safety import validate_all
from infra.accounts import load_access
from infra.plans import PLANS_DIR, load_plan

K03 = load_plan(PLANS_DIR / "K03.yaml")
AT = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)  # 08:30 WITA


def event(payload, seq: int = 1) -> Envelope:
    return make_event(payload, event_id=uuid.uuid4(), event_time=AT, ingest_time=AT, source="test", key="K03", seq=seq)


def retimed(plan: Plan, **greens: float) -> Plan:
    assert plan.default_timing is not None
    timing = plan.default_timing.model_copy(update={"stage_greens_s": {**plan.default_timing.stage_greens_s, **greens}})
    return plan.model_copy(update={"default_timing": timing})


def registry() -> PlanRegistry:
    return PlanRegistry(plans={"K03": K03})


def proposed(reg: PlanRegistry, candidate: Plan, author: str = "eng1") -> PlanProposed:
    payload = propose(reg, "K03", candidate, base_version=K03.version, author=author, reason="AM peak: more to S1",
                      proposal_id=uuid.uuid4())
    reg.apply(event(payload))
    return payload


def test_a_safe_retiming_is_proposed_as_the_next_version_with_its_changes() -> None:
    reg = registry()
    payload = proposed(reg, retimed(K03, S1=34, S3=20))
    assert payload.version == K03.version + 1 and payload.base_version == K03.version
    assert payload.base_checksum == K03.checksum() and payload.safety_checksum == K03.safety_checksum()
    assert payload.changes == ["changed default_timing.stage_greens_s.S1: 30.0 -> 34.0",
                               "changed default_timing.stage_greens_s.S3: 24.0 -> 20.0"]
    assert plan_of(payload).default_timing.stage_greens_s == {"S1": 34, "S2": 12, "S3": 20}
    assert reg.pending("K03")[0].proposed == payload


def test_a_conflicting_green_is_refused_before_anything_else_and_named() -> None:
    stages = [s.model_copy(update={"green": [*s.green, "D"]}) if s.id == "S1" else s for s in K03.stages]
    with pytest.raises(ProposalRefused) as refused:
        propose(registry(), "K03", K03.model_copy(update={"stages": stages}), base_version=1, author="eng1",
                reason="try", proposal_id=uuid.uuid4())
    problems = refused.value.problems
    assert problems[0].startswith("conflicting_green: stage S1 shows conflicting groups A and D")
    assert any("safety configuration (stages)" in p for p in problems)  # and it is not deployable from lalin anyway


def test_a_cut_minimum_green_and_a_cycle_that_does_not_add_up_are_refused() -> None:
    with pytest.raises(ProposalRefused) as refused:
        propose(registry(), "K03", retimed(K03, S2=3), base_version=1, author="eng1", reason="shorter S2",
                proposal_id=uuid.uuid4())
    codes = [p.split(":")[0] for p in refused.value.problems]
    assert "green_below_minimum" in codes and "cycle_mismatch" in codes


def test_a_stale_base_no_change_and_a_changed_safety_configuration_are_refused() -> None:
    with pytest.raises(ProposalRefused, match="written on version 7"):
        propose(registry(), "K03", retimed(K03, S1=34, S3=20), base_version=7, author="eng1", reason="x y z",
                proposal_id=uuid.uuid4())
    with pytest.raises(ProposalRefused, match="changes nothing"):
        propose(registry(), "K03", K03, base_version=1, author="eng1", reason="x y z", proposal_id=uuid.uuid4())
    groups = [g.model_copy(update={"min_green_s": 12}) if g.id == "A" else g for g in K03.signal_groups]
    with pytest.raises(ProposalRefused, match=r"safety configuration \(signal_groups\)"):
        propose(registry(), "K03", K03.model_copy(update={"signal_groups": groups}), base_version=1, author="eng1",
                reason="x y z", proposal_id=uuid.uuid4())


def test_the_author_cannot_approve_and_a_second_engineer_deploys_with_provenance() -> None:
    reg = registry()
    payload = proposed(reg, retimed(K03, S1=34, S3=20))
    with pytest.raises(AccessDenied, match="second person"):
        review(reg, payload.proposal_id, reviewer="eng1", decision=ReviewDecision.APPROVED, reason="mine")
    approval = review(reg, payload.proposal_id, reviewer="eng2", decision=ReviewDecision.APPROVED, reason="checked")
    approved = event(approval, 2)
    reg.apply(approved)
    assert reg.proposals[payload.proposal_id].status == ProposalStatus.APPROVED
    command_id = uuid.uuid4()
    deployed, command = deployment(reg, payload.proposal_id, at=AT, plan_number=3, command_id=command_id, hold=True)
    assert command is not None and command.command_id == command_id and command.target == "K03"
    assert command.command == TimingPlanCommand(plan_id=3, cycle_s=100, offset_s=0, stage_greens_s=[34, 12, 20])
    proposal = reg.proposals[payload.proposal_id]
    assert command.provenance == Provenance(rule=DEPLOY_RULE, rule_version="1", config_checksum=payload.checksum,
                                            input_event_ids=[proposal.event_id, approved.event_id], operator="eng2",
                                            reason="checked")
    reg.apply(event(deployed, 3))
    assert reg.plans["K03"].version == 2 and reg.proposals[payload.proposal_id].status == ProposalStatus.DEPLOYED
    assert reg.holds["K03"].operator == "eng2"
    with pytest.raises(ProposalRefused, match="deployed, not pending"):
        review(reg, payload.proposal_id, reviewer="eng3", decision=ReviewDecision.REJECTED, reason="late")


def test_deploying_one_version_supersedes_the_others_written_on_the_old_one() -> None:
    reg = registry()
    first, second = proposed(reg, retimed(K03, S1=34, S3=20)), proposed(reg, retimed(K03, S1=32, S3=22), "eng3")
    assert (first.version, second.version) == (2, 3)
    reg.apply(event(review(reg, first.proposal_id, reviewer="eng2", decision=ReviewDecision.APPROVED, reason="ok ok")))
    deployed, _ = deployment(reg, first.proposal_id, at=AT, plan_number=1, command_id=uuid.uuid4(), hold=False)
    reg.apply(event(deployed))
    assert reg.proposals[second.proposal_id].status == ProposalStatus.SUPERSEDED
    with pytest.raises(ProposalRefused, match="superseded"):
        review(reg, second.proposal_id, reviewer="eng2", decision=ReviewDecision.APPROVED, reason="too late")
    assert "K03" not in reg.holds


def test_a_rejected_proposal_is_never_deployed() -> None:
    reg = registry()
    payload = proposed(reg, retimed(K03, S1=34, S3=20))
    reg.apply(event(review(reg, payload.proposal_id, reviewer="eng2", decision=ReviewDecision.REJECTED, reason="no")))
    with pytest.raises(ProposalRefused, match="not approved"):
        deployment(reg, payload.proposal_id, at=AT, plan_number=1, command_id=uuid.uuid4(), hold=True)


def adaptive_timing(target: str = "K03", rule: str = "adaptive_saturation") -> CommandIssued:
    return CommandIssued(command_id=uuid.uuid4(), target=target,
                         command=TimingPlanCommand(plan_id=1, cycle_s=100, offset_s=0, stage_greens_s=[30, 12, 24]),
                         provenance=Provenance(rule=rule, rule_version="3", config_checksum="0" * 64))


def test_a_hold_refuses_other_rules_timings_until_released() -> None:
    reg = registry()
    payload = proposed(reg, retimed(K03, S1=34, S3=20))
    reg.apply(event(review(reg, payload.proposal_id, reviewer="eng2", decision=ReviewDecision.APPROVED, reason="ok ok")))
    deployed, command = deployment(reg, payload.proposal_id, at=AT, plan_number=1, command_id=uuid.uuid4(), hold=True)
    reg.apply(event(deployed))
    assert command is not None and hold_refusal(reg.holds, command) is None  # the deployment itself goes out
    refusal = hold_refusal(reg.holds, adaptive_timing())
    assert refusal is not None and "held: junction K03 runs plan version 2 deployed by eng2" in refusal
    assert hold_refusal(reg.holds, adaptive_timing("K01")) is None
    fallback = CommandIssued(command_id=uuid.uuid4(), target="K03", command=ModeChangeCommand(mode=ControlMode.TIME_OF_DAY),
                             provenance=Provenance(rule="time_of_day_fallback", rule_version="3", config_checksum="0" * 64))
    assert "time_of_day_fallback change to time_of_day not sent" in (hold_refusal(reg.holds, fallback) or "")
    released, handback = release(reg, "K03", operator="op1", reason="peak over", command_id=uuid.uuid4())
    assert released.command_id == handback.command_id and hold_refusal(reg.holds, handback) is None
    assert handback.command == ModeChangeCommand(mode=ControlMode.TIME_OF_DAY)  # back to the controller's own plan
    assert handback.provenance.rule == "plan.release" and handback.provenance.operator == "op1"
    reg.apply(event(released))
    assert hold_refusal(reg.holds, adaptive_timing()) is None
    with pytest.raises(ProposalRefused, match="not held"):
        release(reg, "K03", operator="op1", reason="again", command_id=uuid.uuid4())


def k01_held_on_version_2(at: datetime) -> tuple[PlanRegistry, Envelope]:
    """K01 (a weekday schedule: AM_PEAK 06:00, OFF_PEAK 09:30, PM_PEAK 16:00 ...) retimed and deployed held at ``at``."""
    k01 = load_plan(PLANS_DIR / "K01.yaml")
    reg = PlanRegistry(plans={"K01": k01})
    am = k01.timings["AM_PEAK"]
    candidate = k01.model_copy(update={"timings": {**k01.timings, "AM_PEAK": am.model_copy(update={
        "stage_greens_s": {**am.stage_greens_s, "S1": am.stage_greens_s["S1"] + 4, "S3": am.stage_greens_s["S3"] - 4}})}})
    payload = propose(reg, "K01", candidate, base_version=k01.version, author="eng1", reason="AM peak retimed",
                      proposal_id=uuid.uuid4())
    reg.apply(event(payload))
    reg.apply(event(review(reg, payload.proposal_id, reviewer="eng2", decision=ReviewDecision.APPROVED, reason="ok ok")))
    deployed, _ = deployment(reg, payload.proposal_id, at=at, plan_number=1, command_id=uuid.uuid4(), hold=True)
    envelope = make_event(deployed, event_id=uuid.uuid4(), event_time=at, ingest_time=at, source="test", key="K01", seq=3)
    reg.apply(envelope)
    return reg, envelope


def test_a_held_junction_follows_its_deployed_schedule_with_provenance() -> None:
    deployed_at = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 09:00 WITA: AM_PEAK
    reg, deployed = k01_held_on_version_2(deployed_at)
    assert reg.holds["K01"].timing == "AM_PEAK"
    assert schedule_step(reg, "K01", at=deployed_at + timedelta(minutes=29), plan_number=1, command_id=uuid.uuid4()) is None
    at = deployed_at + timedelta(minutes=30)  # 09:30: OFF_PEAK begins
    step = schedule_step(reg, "K01", at=at, plan_number=1, command_id=uuid.uuid4())
    assert step is not None
    scheduled, command = step
    assert (scheduled.plan_id, scheduled.version, scheduled.timing) == ("K01", 2, "OFF_PEAK")
    off_peak = reg.plans["K01"].timings["OFF_PEAK"]
    assert command.command == TimingPlanCommand(
        plan_id=1, cycle_s=off_peak.cycle_s, offset_s=off_peak.offset_s,
        stage_greens_s=[off_peak.stage_greens_s[s] for s in reg.plans["K01"].sequence])
    assert command.provenance.rule == SCHEDULE_RULE and command.provenance.input_event_ids == [deployed.event_id]
    assert command.provenance.operator == "eng2" and "OFF_PEAK from 2026-11-24 09:30 local" in command.provenance.reason
    assert command.provenance.config_checksum == reg.plans["K01"].checksum()
    assert hold_refusal(reg.holds, command) is None  # the hold lets its own schedule through
    reg.apply(event(scheduled))
    assert schedule_step(reg, "K01", at=at + timedelta(hours=6), plan_number=1, command_id=uuid.uuid4()) is None
    pm = schedule_step(reg, "K01", at=at + timedelta(hours=6, minutes=30), plan_number=1, command_id=uuid.uuid4())
    assert pm is not None and pm[0].timing == "PM_PEAK"
    reg.apply(event(release(reg, "K01", operator="op1", reason="back to adaptive", command_id=uuid.uuid4())[0]))
    assert schedule_step(reg, "K01", at=at + timedelta(hours=7), plan_number=1, command_id=uuid.uuid4()) is None


def test_a_held_junctions_flash_entry_is_a_change_to_flash_and_the_next_entry_a_timing_again() -> None:
    evening = datetime(2027, 3, 8, 8, 0, tzinfo=UTC)  # 16:00 WITA on the ogoh-ogoh day: OFF_PEAK, flash at 17:00
    reg, _ = k01_held_on_version_2(evening)
    step = schedule_step(reg, "K01", at=evening + timedelta(hours=1), plan_number=1, command_id=uuid.uuid4())
    assert step is not None and step[0].timing == "flash" and step[0].command_id == step[1].command_id
    assert step[1].command == ModeChangeCommand(mode=ControlMode.FLASH) and step[1].provenance.rule == SCHEDULE_RULE
    assert hold_refusal(reg.holds, step[1]) is None
    reg.apply(event(step[0]))
    night = schedule_step(reg, "K01", at=evening + timedelta(hours=7), plan_number=1, command_id=uuid.uuid4())
    assert night is not None and night[0].timing == "NIGHT" and isinstance(night[1].command, TimingPlanCommand)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 60), st.floats(0, 30), st.floats(0, 60), st.floats(0, 20))
def test_whatever_greens_an_engineer_types_a_proposal_is_safe_or_refused(s1: float, s2: float, s3: float,
                                                                          offset: float) -> None:
    candidate = retimed(K03, S1=s1, S2=s2, S3=s3)
    assert candidate.default_timing is not None
    cycle = 100 + (s1 - 30) + (s2 - 12) + (s3 - 24)  # the interstages of K03 add up to 34 s
    timing = candidate.default_timing.model_copy(update={"cycle_s": cycle, "offset_s": offset})
    candidate = candidate.model_copy(update={"default_timing": timing})
    try:
        payload = propose(registry(), "K03", candidate, base_version=1, author="eng1", reason="random",
                          proposal_id=uuid.uuid4())
    except ProposalRefused as refused:
        assert refused.problems
        return
    proposed_plan = plan_of(payload)
    assert validate_all(proposed_plan) == [] and proposed_plan.safety_checksum() == K03.safety_checksum()


def test_the_hcm_prediction_of_a_given_timing_matches_the_formulas() -> None:
    assert K03.default_timing is not None
    demand = {"N_T": 900.0, "N_R": 150.0, "S_TR": 700.0, "E_A": 300.0}
    prediction = predict(K03, K03.default_timing, demand)
    by = {m.movement: m for m in prediction.movements}
    # N_T runs on A, green through S1 and S2 and the interstage between them: 30 + 12 + interstage S1->S2
    a_green = by["N_T"].green_s
    assert a_green > 42
    s = K03.movement("N_T").saturation_pcu_h()
    assert by["N_T"].capacity_pcu_h == pytest.approx(s * a_green / 100, abs=0.1)
    assert by["N_T"].degree_of_saturation == pytest.approx(900 / (s * a_green / 100), abs=1e-3)
    assert prediction.delay_s == pytest.approx(sum(m.delay_s * m.demand_pcu_h for m in prediction.movements) / 2050,
                                               abs=0.1)
    assert "W_A: no demand measured" in prediction.notes
    more_s3 = predict(K03, Timing(cycle_s=100, stage_greens_s={"S1": 26, "S2": 12, "S3": 28}), demand)
    assert {m.movement: m for m in more_s3.movements}["E_A"].delay_s < by["E_A"].delay_s


def test_every_role_and_permission_is_declared_and_separation_of_duties_holds() -> None:
    policy = load_access()
    assert set(policy.roles) == set(ROLES)
    granted = set().union(*policy.roles.values())
    assert granted == set(PERMISSIONS)  # nothing declared that nobody holds
    assert not policy.allows("admin", "plan.approve") and not policy.allows("engineer", "users.manage")
    assert not policy.allows("viewer", "plan.propose") and not policy.allows("auditor", "plan.approve")
    with pytest.raises(AccessDenied, match=r"op1 \(operator\) may not plan.propose"):
        policy.require("op1", "operator", "plan.propose")
    with pytest.raises(ValueError, match="roles without permissions"):
        AccessPolicy.model_validate({"roles": {"viewer": ["view"]}})


def acknowledgement(command_id: uuid.UUID, outcome: CommandOutcome) -> Envelope:
    ack = CommandAcknowledged(command_id=command_id, target="K01", outcome=outcome, detail="")
    return make_event(ack, event_id=uuid.uuid4(), event_time=AT, ingest_time=AT, source="modbus:K01", key="K01", seq=9)


def test_a_schedule_command_that_timed_out_is_sent_again_citing_its_acknowledgement() -> None:
    deployed_at = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 09:00 WITA: AM_PEAK
    reg, deployed = k01_held_on_version_2(deployed_at)
    at = deployed_at + timedelta(minutes=30)
    step = schedule_step(reg, "K01", at=at, plan_number=1, command_id=uuid.uuid4())
    assert step is not None
    reg.apply(event(step[0]))
    later = at + timedelta(minutes=5)
    assert schedule_step(reg, "K01", at=later, plan_number=1, command_id=uuid.uuid4()) is None  # no outcome yet
    assert reg.apply(acknowledgement(uuid.uuid4(), CommandOutcome.TIMED_OUT)) is False  # another command's: ignored
    timed_out = acknowledgement(step[1].command_id, CommandOutcome.TIMED_OUT)
    reg.apply(timed_out)
    again = schedule_step(reg, "K01", at=later, plan_number=1, command_id=uuid.uuid4())
    assert again is not None and again[0].timing == "OFF_PEAK" and again[1].command == step[1].command
    assert again[1].provenance.input_event_ids == [deployed.event_id, timed_out.event_id]
    assert "sent again" in again[1].provenance.reason
    reg.apply(event(again[0]))
    reg.apply(acknowledgement(again[1].command_id, CommandOutcome.ACKNOWLEDGED))
    assert schedule_step(reg, "K01", at=later, plan_number=1, command_id=uuid.uuid4()) is None
    rejected = schedule_step(reg, "K01", at=at + timedelta(hours=6, minutes=30), plan_number=1, command_id=uuid.uuid4())
    assert rejected is not None
    reg.apply(event(rejected[0]))
    reg.apply(acknowledgement(rejected[1].command_id, CommandOutcome.REJECTED))  # the controller refused: not again
    assert schedule_step(reg, "K01", at=at + timedelta(hours=6, minutes=31), plan_number=1, command_id=uuid.uuid4()) is None


def test_a_held_deployment_during_a_flash_entry_sends_the_flash_at_the_next_look() -> None:
    parade = datetime(2027, 3, 8, 9, 30, tzinfo=UTC)  # 17:30 WITA on the ogoh-ogoh day: flash
    reg, _ = k01_held_on_version_2(parade)
    assert reg.holds["K01"].timing == ""  # the deployment sent nothing
    step = schedule_step(reg, "K01", at=parade, plan_number=1, command_id=uuid.uuid4())
    assert step is not None and step[0].timing == "flash" and step[1].command == ModeChangeCommand(mode=ControlMode.FLASH)
