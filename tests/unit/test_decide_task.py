"""Fold task -> decision task, without a broker: the corridor's summaries become commands with provenance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from controllers.envelope import Envelope, encode_event, make_event
from controllers.payloads import (
    CommandIssued,
    ControlMode,
    DetectorReading,
    DetectorsCounted,
    GroupState,
    Payload,
    SignalStateReported,
    TimingPlanCommand,
    VolumeByClass,
)
from controllers.strategy import AdaptiveConfig, AdaptiveSaturation
from streams.decide_task import DecideTask
from streams.fold_task import FoldTask
from streams.topology import load_topology

T0 = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
TOPOLOGY = load_topology()


def wire(payload: Payload, at: datetime, key: str, seq: int) -> bytes:
    return encode_event(make_event(payload, event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{key}/{seq}"), event_time=at,
                                   ingest_time=at, source=f"modbus:{key}", key=key, seq=seq))


def controller_minute(site: str, k: int, per_lane: int) -> list[bytes]:
    """A minute of one controller: its running timing (once) and its lanes' counts."""
    plan, layout = TOPOLOGY.plans[site], TOPOLOGY.layouts[site]
    timing = plan.timings.get("AM_PEAK") or plan.default_timing
    assert timing is not None
    out = []
    if k == 0:
        out.append(wire(SignalStateReported(controller_id=site, mode=ControlMode.TIME_OF_DAY, plan_id=1, cycle_s=timing.cycle_s,
                                            stage=0, stage_elapsed_s=0.0, group_states={"A": GroupState.GREEN},
                                            offset_s=0.0, stage_greens_s=[timing.stage_greens_s[s] for s in plan.sequence]),
                        T0 + timedelta(seconds=1), site, 1))
    out.append(wire(DetectorsCounted(controller_id=site, interval_s=60.0, readings=[
        DetectorReading(d.id, VolumeByClass(unclassified=per_lane), 0.3) for d in layout.detectors]),
        T0 + timedelta(minutes=k + 1), site, k + 2))
    return out


def test_summaries_of_a_corridor_become_coordinated_commands_with_provenance() -> None:
    fold = FoldTask(0, TOPOLOGY.layouts, "e")
    strategy = AdaptiveSaturation(AdaptiveConfig())
    decide = DecideTask(0, TOPOLOGY.corridors, strategy, TOPOLOGY.checksum(strategy.config), "e")
    offsets = {"fold": 0, "state": 0}
    commands: list[Envelope] = []
    for k in range(12):
        for site in sorted(TOPOLOGY.plans):
            for value in controller_minute(site, k, per_lane=22):
                summaries = fold.handle("lalin.detector", offsets["fold"], site.encode(), value, NOW, lambda: NOW)
                offsets["fold"] += 1
                for s in summaries:
                    commands += decide.handle("lalin.state", offsets["state"], s.key.encode(), encode_event(s), NOW,
                                              lambda: NOW)
                    offsets["state"] += 1
    issued = [c.payload for c in commands if isinstance(c.payload, CommandIssued)]
    assert {c.target for c in issued} == set(TOPOLOGY.plans)  # every controller got a timing once warmed up
    first = {c.target: c for c in reversed(issued)}
    bodies = [c.command for c in first.values() if isinstance(c.command, TimingPlanCommand)]
    assert len(bodies) == 5
    for envelope in commands:
        command = envelope.payload
        assert isinstance(command, CommandIssued)
        assert envelope.event_id == command.command_id and envelope.key == command.target
        assert command.provenance.config_checksum == TOPOLOGY.checksum(strategy.config)
        assert command.provenance.input_event_ids  # the summaries it used
    # the decision instant is the end of the summary's window: never earlier than the 5-min warm-up
    assert min(e.event_time for e in commands) >= T0 + timedelta(minutes=5)
    restored = DecideTask(0, TOPOLOGY.corridors, strategy, TOPOLOGY.checksum(strategy.config), "e",
                          snapshot=decide.snapshot())
    assert restored.position("lalin.state") == offsets["state"]
    assert restored.loops["jl-sunset-road"].state.commands == decide.loops["jl-sunset-road"].state.commands


def _run_pipeline() -> tuple[list[Envelope], list[Envelope], list[Envelope], AdaptiveSaturation]:
    """Inputs, summaries and commands of a 14-minute broker-less run of the corridor."""
    fold = FoldTask(0, TOPOLOGY.layouts, "e")
    strategy = AdaptiveSaturation()
    decide = DecideTask(0, TOPOLOGY.corridors, strategy, TOPOLOGY.checksum(strategy.config), "e")
    from controllers.envelope import decode_archived
    inputs, summaries, commands = [], [], []
    for k in range(14):
        for site in sorted(TOPOLOGY.plans):
            for value in controller_minute(site, k, per_lane=10 + 3 * k):
                inputs.append(decode_archived(value))
                for s in fold.handle("lalin.detector", len(inputs) - 1, site.encode(), value, NOW, lambda: NOW):
                    summaries.append(s)
                    commands += decide.handle("lalin.state", len(summaries) - 1, s.key.encode(), encode_event(s), NOW,
                                              lambda: NOW)
    return inputs, summaries, commands, strategy


def test_replay_reproduces_every_summary_and_command_and_names_the_first_difference() -> None:
    import msgspec

    from controllers.payloads import DetectorsCounted
    from controllers.replay import replay
    inputs, summaries, commands, strategy = _run_pipeline()
    assert commands, "the run must have issued commands for the replay to check"
    checksum = TOPOLOGY.checksum(strategy.config)
    report = replay([*inputs, *summaries, *commands], TOPOLOGY.layouts, TOPOLOGY.corridors, strategy, checksum)
    assert report.ok, report.differences[:1]
    assert report.summaries_checked == len(summaries) and report.commands_checked == len(commands)
    # an altered input (one more vehicle on one lane) is found in the fold, at the summary that cites it
    victim = next(i for i, e in enumerate(inputs) if isinstance(e.payload, DetectorsCounted) and e.key == "K03")
    payload = inputs[victim].payload
    assert isinstance(payload, DetectorsCounted)
    first = payload.readings[0]
    bumped = msgspec.structs.replace(first, volume=VolumeByClass(unclassified=first.volume.unclassified + 1))
    altered = [*inputs[:victim], msgspec.structs.replace(inputs[victim], payload=msgspec.structs.replace(
        payload, readings=[bumped, *payload.readings[1:]])), *inputs[victim + 1:]]
    report = replay([*altered, *summaries, *commands], TOPOLOGY.layouts, TOPOLOGY.corridors, strategy, checksum)
    assert not report.ok and report.differences[0].kind == "fold" and report.differences[0].key == "K03"
    # another strategy configuration issues other commands: found in the decisions
    from controllers.strategy import AdaptiveConfig
    other = AdaptiveSaturation(AdaptiveConfig(target_saturation=0.7))
    report = replay([*inputs, *summaries, *commands], TOPOLOGY.layouts, TOPOLOGY.corridors, other, checksum)
    assert [d.kind for d in report.differences] == ["decision"]


def test_a_defect_in_the_decisions_dead_letters_the_summary_and_the_task_goes_on(monkeypatch) -> None:
    """Fault injection: the decision loop raises on the first summary; the next ones are still decided."""
    from controllers.decisions import CorridorDecisions
    fold = FoldTask(0, TOPOLOGY.layouts, "e")
    strategy = AdaptiveSaturation(AdaptiveConfig())
    decide = DecideTask(0, TOPOLOGY.corridors, strategy, TOPOLOGY.checksum(strategy.config), "e")
    real = CorridorDecisions.on_measured
    calls = {"n": 0}

    def on_measured(self, summary):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("stage 9")
        return real(self, summary)

    monkeypatch.setattr(CorridorDecisions, "on_measured", on_measured)
    offsets = {"fold": 0, "state": 0}
    commands: list[Envelope] = []
    for k in range(12):
        for site in sorted(TOPOLOGY.plans):
            for value in controller_minute(site, k, per_lane=22):
                for summary in fold.handle("lalin.detector", offsets["fold"], site.encode(), value, NOW, lambda: NOW):
                    commands += decide.handle("lalin.state", offsets["state"], summary.key.encode(),
                                              encode_event(summary), NOW, lambda: NOW)
                    offsets["state"] += 1
                offsets["fold"] += 1
    assert [(d.reason, d.detail) for d in decide.dead_letters] == [("decision_failed", "KeyError: 'stage 9'")]
    assert calls["n"] > 1 and decide.position("lalin.state") == offsets["state"]
