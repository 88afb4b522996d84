"""The controller's high-resolution event log: the register layout, the simulator's ring and the central's read plan."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from devices import controller_logic as logic
from devices.controller_log import ControllerEventLog
from devices.controller_protocol import (
    LogEntry,
    LogHeader,
    log_entry_registers,
    log_requests,
    parse_log_entries,
    parse_log_header,
    plan_log_read,
)
from devices.controller_sim import ControllerSimulator
from devices.fleet import load_fleet
from devices.register_map import MAP_FILE, MAX_READ_REGISTERS, RegisterMap, load_register_map

MAP = load_register_map()
LOG = MAP.event_log
SITE = load_fleet().site("K03")
PLAN = SITE.load_plan()


def small_map(capacity: int) -> RegisterMap:
    return MAP.model_copy(update={"event_log": LOG.model_copy(update={"capacity": capacity})})


def test_the_log_lies_outside_the_status_block_and_an_entry_read_fits_one_request() -> None:
    assert LOG.header_address >= MAP.span("input") and LOG.entries_address >= LOG.header_address + LOG.header_size
    assert LOG.entry_size == 6 and LOG.entries_per_read * LOG.entry_size <= MAX_READ_REGISTERS
    assert LOG.end <= 0x10000 and LOG.slot_address(LOG.slot(LOG.capacity + 1)) == LOG.entries_address
    assert set(MAP.enums["event_code"]) == {1, 8, 10, 21, 22, 23, 81, 82}


def test_a_log_overlapping_the_status_block_is_refused() -> None:
    data = yaml.safe_load(MAP_FILE.read_text())
    data["event_log"]["header_address"] = 100
    with pytest.raises(ValueError, match="must follow the status block"):
        RegisterMap.model_validate(data)


def test_entries_and_header_round_trip_through_registers() -> None:
    entry = LogEntry(seq=70_000, clock_ds=4_000_000_000, code="detector_on", param=15)
    assert parse_log_entries(MAP, log_entry_registers(MAP, entry) * 2) == [entry, entry]
    registers = log_entry_registers(MAP, entry)
    registers[4] = 43  # a code the map does not know
    assert parse_log_entries(MAP, registers)[0].code == "unknown_43"


def test_the_read_plan_counts_overwritten_entries_and_caps_a_poll() -> None:
    header = LogHeader(head_seq=5000, oldest_seq=1001, clock_ds=0, boot=1, capacity=4000)
    first = plan_log_read(header, 1, 1024)
    assert (first.first_seq, first.last_seq, first.lost) == (1001, 2024, 1000)  # 1..1000 were overwritten
    assert plan_log_read(header, 4990, 1024).last_seq == 5000 and plan_log_read(header, 4990, 1024).lost == 0
    nothing = plan_log_read(header, 5001, 1024)
    assert nothing.first_seq > nothing.last_seq and nothing.lost == 0
    assert plan_log_read(LogHeader(0, 0, 0, 1, 4000), 1, 10).last_seq == 0


def test_reads_split_at_the_ring_end_and_at_one_request() -> None:
    requests = log_requests(MAP, LOG.capacity - 2, LOG.capacity + 30)
    assert requests[0] == (LOG.slot_address(LOG.capacity - 3), 3 * 6, LOG.capacity - 2)  # the last 3 slots
    assert requests[1] == (LOG.entries_address, LOG.entries_per_read * 6, LOG.capacity + 1)  # wraps to slot 0
    assert sum(count for _, count, _ in requests) == 33 * 6


def test_the_ring_keeps_time_order_and_overwrites_the_oldest() -> None:
    regmap = small_map(4)
    ring = ControllerEventLog(regmap, PLAN, detectors=2, boot=3, powered_at_s=100.0, hold_s=1.0)
    ring.detector_pulse(0, 101.0, 0.5)
    ring.detector_pulse(1, 101.2, 3.0)
    ring.detector_pulse(1, 102.0, 1.0)  # a second vehicle while the first is on: off and on now, presence extended
    ring.commit(103.0)  # up to 102.0 is due: five entries in a ring of four
    assert ring.head == 5
    header = parse_log_header(regmap, ring.read(regmap.event_log.header_address, regmap.event_log.header_size, 103.0))
    assert header == LogHeader(head_seq=5, oldest_seq=2, clock_ds=30, boot=3, capacity=4)
    entries = parse_log_entries(regmap, ring.read(regmap.event_log.entries_address, 4 * 6, 103.0))
    assert [(e.seq, e.clock_ds, e.code, e.param) for e in entries] == [  # slot 0 holds the newest (seq 5)
        (5, 20, "detector_on", 1), (2, 12, "detector_on", 1), (3, 15, "detector_off", 0), (4, 20, "detector_off", 1)]
    ring.detector_occupied(1, 104.0, 1.0)  # still on (its off, 102 + 3.2 + 1 s, is not committed): extended by 1 s
    ring.commit(110.0)
    header = parse_log_header(regmap, ring.read(regmap.event_log.header_address, regmap.event_log.header_size, 110.0))
    assert header == LogHeader(head_seq=6, oldest_seq=3, clock_ds=100, boot=3, capacity=4)
    newest = parse_log_entries(regmap, ring.read(regmap.event_log.entries_address, 2 * 6, 110.0))  # slots 0, 1
    assert [(e.seq, e.clock_ds, e.code) for e in newest] == [(5, 20, "detector_on"), (6, 62, "detector_off")]


def test_the_simulator_logs_every_aspect_change_at_its_instant() -> None:
    clock = [0.0]
    sim = ControllerSimulator(SITE, PLAN, clock=lambda: clock[0], start_at=datetime(2026, 11, 24, 4, 0, tzinfo=UTC),
                              log_hold_s=0.0)
    shown: dict[str, str] = {}
    changes: list[tuple[int, str, str]] = []
    for tenth in range(0, 3000):  # 300 s in steps of 0.1 s: what the field would see
        clock[0] = tenth / 10
        for group, aspect in sim.aspects().items():
            if shown.get(group) != aspect:
                shown[group] = aspect
                changes.append((tenth, group, aspect))
    log = sim.event_log
    entries = parse_log_entries(MAP, log.read(LOG.entries_address, log.head * 6, clock[0]))
    groups = [g.id for g in PLAN.signal_groups]
    logged = [(e.clock_ds, groups[e.param], e.code) for e in entries]
    codes = {"green": ("phase_begin_green", "pedestrian_begin_walk"), "amber": ("phase_begin_yellow_clearance",),
             "red": ("phase_begin_red_clearance", "pedestrian_begin_solid_dont_walk"),
             "flashing_green": ("pedestrian_begin_clearance",)}
    assert len(logged) == len(changes) > 30
    for (at_ds, group, code), (tenth, seen_group, aspect) in zip(logged, sorted(changes), strict=True):
        assert group == seen_group and code in codes[aspect]
        assert tenth - 1 <= at_ds <= tenth  # logged at the instant, seen at the next tenth
    assert logic.next_change_s(PLAN, logic.conflict_detected(sim.state)) == float("inf")
