"""The automatic-VMS policy's cost against its own input fold, measured in the same run.

A seeded day of traffic state on the demo network (every junction's summary each minute, with
congestion, detector faults and camera incidents coming and going; every command acknowledged by
its board a few seconds later) is fed three ways:

* **fold only** (baseline) — ``VmsFold.apply`` of every summary and acknowledgement;
* **policy** — the same, plus an evaluation after each minute's summaries and after each batch
  of acknowledgements, as ``infra.vms_loop`` does;
* **replay** — ``controllers.vms_replay.check_vms`` over the recorded evaluations (what
  ``lalin replay --verify`` and ``lalin vms explain`` do).

    .venv/bin/python -P bench/vms_policy.py [--hours 12] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.envelope import Envelope, make_event
from controllers.payloads import (
    CommandAcknowledged,
    CommandIssued,
    CommandOutcome,
    IncidentKind,
    VmsEvaluated,
)
from controllers.vms_policy import VmsPolicy
from controllers.vms_replay import check_vms
from controllers.vms_state import VmsFold, VmsState
from infra.vms_catalogue import load_policy, vms_checksum, vms_network
from tests.unit.test_vms_policy import summary


def day(hours: float, seed: int) -> list[tuple[datetime, list[Envelope]]]:
    """Minute by minute: the junctions' summaries (congestion waves, a stuck detector now and then, incidents)."""
    network = vms_network()
    rng = random.Random(seed)
    start = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)  # 06:00 WITA
    seq = 0
    out = []
    incident: tuple[str, datetime] | None = None
    for minute in range(int(hours * 60)):
        t = start + timedelta(minutes=minute)
        wave = 0.75 + 0.35 * abs(((minute % 120) - 60) / 60)
        if incident is None and rng.random() < 0.01:
            incident = (rng.choice(sorted(network.plans)), t + timedelta(minutes=rng.randint(3, 20)))
        if incident is not None and t > incident[1]:
            incident = None
        batch = []
        for junction in sorted(network.plans):
            seq += 1
            stuck = [next(iter(network.detectors[junction].values()))[0]] if rng.random() < 0.02 else []
            stalled = ("S", IncidentKind.STALLED_VEHICLE, 0.9) if incident and incident[0] == junction else None
            payload = summary(junction, t, x=wave * rng.uniform(0.8, 1.2), queue_m=rng.uniform(0, 300), unhealthy=stuck,
                              incident=stalled)
            batch.append(make_event(payload, event_id=uuid.uuid4(), event_time=t, ingest_time=t, source="bench:fold",
                                    key="jl-sunset-road", seq=seq))
        out.append((t, batch))
    return out


def acks(commands: list[CommandIssued], at: datetime, seq: int) -> list[Envelope]:
    """Each command acknowledged by its board 3 s later."""
    return [make_event(CommandAcknowledged(command_id=c.command_id, target=c.target, outcome=CommandOutcome.ACKNOWLEDGED),
                       event_id=uuid.uuid4(), event_time=at + timedelta(seconds=3), ingest_time=at, source="bench:board",
                       key=c.target, seq=seq + k + 1) for k, c in enumerate(commands)]


def main() -> None:
    """Run the three measurements and print their rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    config, network = load_policy(), vms_network()
    checksum = vms_checksum(config, network)
    minutes = day(args.hours, args.seed)
    summaries = sum(len(b) for _, b in minutes)

    # the policy: fold + evaluate, acknowledgements folded (and evaluated) as the loop would
    policy = VmsPolicy(config, network, checksum)
    records: list[Envelope] = []
    inputs: dict[uuid.UUID, Envelope] = {}
    issued: dict[uuid.UUID, CommandIssued] = {}
    ack_seq = 0
    fed: list[Envelope] = []
    began = time.perf_counter()
    for t, batch in minutes:
        for event in batch:
            policy.apply(event)
        record, commands = policy.evaluate(t)
        records.append(make_event(record, event_id=uuid.uuid4(), event_time=t, ingest_time=t, source="bench:vms", key="vms",
                                  seq=record.evaluation))
        if commands:
            answers = acks(commands, t, ack_seq)
            ack_seq += len(answers)
            for event in answers:
                policy.apply(event)
            fed += answers
            record, more = policy.evaluate(t + timedelta(seconds=3))
            records.append(make_event(record, event_id=uuid.uuid4(), event_time=t, ingest_time=t, source="bench:vms",
                                      key="vms", seq=record.evaluation))
            commands += more
        issued.update({c.command_id: c for c in commands})
        fed += batch
    policy_s = time.perf_counter() - began
    inputs = {e.event_id: e for e in fed}

    # the baseline: the same events through the fold alone
    fold = VmsFold(network, VmsState())
    began = time.perf_counter()
    for event in fed:
        fold.apply(event)
    fold_s = time.perf_counter() - began

    began = time.perf_counter()
    report, _ = check_vms(records, inputs, issued, config, network, checksum)
    replay_s = time.perf_counter() - began
    evaluations = sum(1 for r in records if isinstance(r.payload, VmsEvaluated))
    assert report.ok, report.differences[:1]

    print(f"{args.hours:g} simulated hours, {len(network.plans)} junctions, {len(network.boards)} boards: "
          f"{summaries:,} summaries, {len(fed) - summaries:,} acknowledgements, {evaluations:,} evaluations, "
          f"{len(issued):,} commands")
    print(f"  fold only (baseline)     {len(fed) / fold_s:>12,.0f} events/s")
    print(f"  policy (fold + evaluate) {len(fed) / policy_s:>12,.0f} events/s   {evaluations / policy_s:>9,.0f} evaluations/s"
          f"   ratio to the fold {fold_s / policy_s:.3f}")
    print(f"  replay (check_vms)       {len(fed) / replay_s:>12,.0f} events/s   {evaluations / replay_s:>9,.0f} evaluations/s"
          f"   ratio to the live policy {policy_s / replay_s:.2f}; reproduced: {report.ok}")


if __name__ == "__main__":
    main()
