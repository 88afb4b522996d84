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
