"""A fold task: records in, summaries out; snapshot + offsets resume exactly; refused records are never lost."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from controllers.envelope import encode_event, make_event
from controllers.payloads import DetectorCounted, DetectorReading, DetectorsCounted, Payload, TrafficMeasured, VolumeByClass
from controllers.traffic_state import IntersectionLayout
from devices.fleet import load_fleet
from streams.fold_task import FoldTask, corridor_key

T0 = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def layouts() -> dict[str, IntersectionLayout]:
    out = {}
    for site in load_fleet().controllers:
        out[site.id] = site.layout()
    return out


LAYOUTS = layouts()


def record(payload: Payload, at: datetime, seq: int, key: str = "K01") -> bytes:
    return encode_event(make_event(payload, event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{key}/{seq}"), event_time=at,
                                   ingest_time=at, source=f"modbus:{key}", key=key, seq=seq))


def minute_counts(k: int, n: int = 6) -> bytes:
    lay = LAYOUTS["K01"]
    payload = DetectorsCounted(controller_id="K01", interval_s=60.0, readings=[
        DetectorReading(d.id, VolumeByClass(unclassified=n), 0.2) for d in lay.detectors])
    return record(payload, T0 + timedelta(minutes=k + 1), k + 1)


def record_key(value: bytes) -> bytes:
    """The Kafka key lalin's producers give a record: its envelope's key (K01 for a broken one)."""
    try:
        return str(msgspec.json.decode(value).get("key", "K01")).encode()
    except msgspec.DecodeError:
        return b"K01"


def feed(task: FoldTask, records: list[tuple[str, int, bytes]]) -> list[TrafficMeasured]:
    out = []
    for topic, offset, value in records:
        out += [e.payload for e in task.handle(topic, offset, record_key(value), value, NOW, lambda: NOW)]
    return [p for p in out if isinstance(p, TrafficMeasured)]


def test_summaries_are_enveloped_for_the_corridor_with_deterministic_ids_and_numbers() -> None:
    task = FoldTask(0, LAYOUTS, "epoch-1")
    envelopes = []
    for k in range(4):
        envelopes += task.handle("lalin.detector", k, b"K01", minute_counts(k), NOW, lambda: NOW)
    assert [e.key for e in envelopes] == ["jl-sunset-road"] * 3 == [corridor_key(LAYOUTS["K01"])] * 3
    assert [e.seq for e in envelopes] == [1, 2, 3] and envelopes[0].source == "lalin:fold:K01"
    again = FoldTask(0, LAYOUTS, "epoch-1")
    replayed = [e for k in range(4) for e in again.handle("lalin.detector", k, b"K01", minute_counts(k), NOW, lambda: NOW)]
    assert [e.event_id for e in replayed] == [e.event_id for e in envelopes]
    assert task.position("lalin.detector") == 4 and task.folded == 4 and task.emitted == 3


def test_a_restored_snapshot_resumes_at_its_offsets_without_loss_or_double_counting() -> None:
    records = [("lalin.detector", k, minute_counts(k)) for k in range(12)]
    whole = feed(FoldTask(0, LAYOUTS, "e"), records)
    first = FoldTask(0, LAYOUTS, "e")
    head = feed(first, records[:5])
    stored = first.snapshot()
    resumed = FoldTask(0, LAYOUTS, "e", snapshot=msgspec.msgpack.decode(msgspec.msgpack.encode(stored),
                                                                         type=type(stored)))
    # the broker re-delivers from before the snapshot's offset (a seek to a committed offset): skipped
    tail = feed(resumed, records[2:])
    assert [msgspec.json.encode(s) for s in head + tail] == [msgspec.json.encode(s) for s in whole]


def test_snapshot_offsets_of_another_broker_epoch_start_again_at_zero() -> None:
    task = FoldTask(0, LAYOUTS, "old")
    feed(task, [("lalin.detector", k, minute_counts(k)) for k in range(3)])
    from infra.fold_store import TaskSnapshot
    moved = TaskSnapshot(task.snapshot().state, {}, task.folded, task.emitted, "new")
    fresh = FoldTask(0, LAYOUTS, "new", snapshot=moved)
    assert fresh.position("lalin.detector") == 0 and "K01" in fresh.folds


def test_refused_records_are_dead_lettered_or_listed_and_mark_the_detector_bad() -> None:
    task = FoldTask(0, LAYOUTS, "e")
    broken = b'{"type": "DetectorCounted", "payload": {"detector_id": "K01-E_A-1", "occupancy": 7}}'
    unknown = record(DetectorCounted(detector_id="K01-Z-9", interval_s=60, volume=VolumeByClass(car=1), occupancy=0.1),
                     T0 + timedelta(seconds=30), 99)
    stranger = record(DetectorCounted(detector_id="X", interval_s=60, volume=VolumeByClass(car=1), occupancy=0.1),
                      T0 + timedelta(seconds=30), 1, key="K99")
    summaries = feed(task, [("lalin.detector", 0, minute_counts(0)), ("lalin.detector", 1, broken),
                            ("lalin.detector", 2, unknown), ("lalin.detector", 3, stranger),
                            ("lalin.detector", 4, minute_counts(1)), ("lalin.detector", 5, minute_counts(2))])
    assert [(d.offset, d.reason) for d in task.dead_letters] == [(2, "unknown_input"), (3, "unknown_intersection")]
    rejected = [r for s in summaries for r in s.rejected_inputs]
    assert [(r.ref, r.detector_id) for r in rejected] == [("e/lalin.detector/0/1", "K01-E_A-1"),
                                                          ("e/lalin.detector/0/2", None)]
    assert any(d.detector_id == "K01-E_A-1" and d.health == "bad_data" for s in summaries for d in s.detectors_unhealthy)
    assert task.position("lalin.detector") == 6  # every record, refused or not, is behind the stored offset


def test_the_replay_splits_intersections_into_disjoint_groups_balanced_by_detectors() -> None:
    from infra.replay import split_intersections
    from streams.topology import load_topology

    layouts = dict(load_topology().layouts)
    for jobs in (1, 2, 3, len(layouts), len(layouts) + 4):
        groups = split_intersections(layouts, jobs)
        flat = [i for g in groups for i in g]
        assert sorted(flat) == sorted(layouts) and len(flat) == len(set(flat))
        assert len(groups) == min(jobs, len(layouts))
        weights = [sum(len(layouts[i].detectors) for i in g) for g in groups]
        assert max(weights) - min(weights) <= max(len(v.detectors) for v in layouts.values())


def test_a_defect_in_the_fold_dead_letters_the_record_and_the_partition_goes_on(monkeypatch) -> None:
    """Fault injection: the fold raises an unexpected error on one record (a defect); the task goes on."""
    from controllers.traffic_state import IntersectionFold
    real_apply = IntersectionFold.apply
    poison = minute_counts(1)

    def apply(self: IntersectionFold, event):  # type: ignore[no-untyped-def]
        if event.seq == 2:
            raise ZeroDivisionError("division by zero")
        return real_apply(self, event)

    monkeypatch.setattr(IntersectionFold, "apply", apply)
    task = FoldTask(0, LAYOUTS, "e")
    summaries = feed(task, [("lalin.detector", 0, minute_counts(0)), ("lalin.detector", 1, poison)]
                     + [("lalin.detector", k, minute_counts(k)) for k in range(2, 6)])
    assert [(d.offset, d.reason, d.detail) for d in task.dead_letters] == [
        (1, "fold_failed", "ZeroDivisionError: division by zero")]
    assert [d.raw for d in task.dead_letters] == [poison]
    assert summaries, "the records after it are folded"
    assert any(r.reason == "fold_failed" for s in summaries for r in s.rejected_inputs)


def test_records_keyed_by_a_vms_board_are_left_to_the_vms_loop_not_dead_lettered() -> None:
    from controllers.payloads import CommandAcknowledged, CommandOutcome
    from streams.topology import load_topology
    topology = load_topology()
    board = sorted(topology.boards)[0]
    ack = encode_event(make_event(CommandAcknowledged(command_id=uuid.uuid4(), target=board, outcome=CommandOutcome.ACKNOWLEDGED),
                                  event_id=uuid.uuid4(), event_time=T0, ingest_time=T0, source=f"opcua:{board}",
                                  key=board, seq=1))
    task = FoldTask(0, topology.layouts, "e", boards=topology.boards)
    assert task.handle("lalin.controller", 0, board.encode(), ack, NOW, lambda: NOW) == []
    assert task.dead_letters == []
    unknown = FoldTask(0, topology.layouts, "e")  # without the boards: an intersection nobody configured
    unknown.handle("lalin.controller", 0, board.encode(), ack, NOW, lambda: NOW)
    assert [d.reason for d in unknown.dead_letters] == ["unknown_intersection"]
