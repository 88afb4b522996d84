"""The central's side of the controller protocol: the driver's own safety check refuses exactly the
unsafe commands, command blocks and status blocks survive the register codec, and read-backs are
judged right (nothing counts as done unless the controller shows it)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.payloads import ControlMode, ModeChangeCommand, ResetFaultCommand, TimingPlanCommand, VmsMessageCommand
from controllers.plan import Timing
from controllers.safety import validate
from devices.controller_protocol import (
    CommandRefused,
    ControllerStatus,
    PreparedCommand,
    command_registers,
    next_seq,
    numbers_in_use,
    parse_status,
    plan_checksum32,
    prepare_command,
    verdict,
)
from devices.fleet import load_fleet
from devices.register_map import decode, encode, load_register_map

SITE = load_fleet().site("K01")
PLAN = SITE.load_plan()
CHECKSUM = plan_checksum32(PLAN)
REGMAP = load_register_map()
TIMING = PreparedCommand("apply_timing", plan_number=1, plan_checksum=CHECKSUM, cycle_ds=1300, offset_ds=0,
                         greens_ds=(440, 260, 260))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1200) | st.integers(50, 450), min_size=3, max_size=3), st.integers(0, 50))
def test_the_driver_refuses_exactly_the_timings_the_safety_rules_refuse(greens_ds: list[int], extra_ds: int) -> None:
    greens = [g / 10 for g in greens_ds]
    cycle = round(sum(greens) + 34 + extra_ds / 10 * (extra_ds % 2), 1)  # sometimes the cycle does not add up
    timing = Timing(cycle_s=cycle, offset_s=0, stage_greens_s=dict(zip(PLAN.sequence, greens, strict=True)))
    command = TimingPlanCommand(plan_id=1, cycle_s=cycle, offset_s=0, stage_greens_s=greens)
    unsafe = validate(PLAN, timing)
    if unsafe:
        with pytest.raises(CommandRefused, match=unsafe[0].code):
            prepare_command(SITE, PLAN, command, CHECKSUM)
    else:
        prepared = prepare_command(SITE, PLAN, command, CHECKSUM)
        assert prepared.greens_ds == tuple(greens_ds) and prepared.cycle_ds == round(cycle * 10)


def test_commands_that_cannot_be_sent_are_refused_with_the_reason() -> None:
    cases = {
        "runs plan 1": TimingPlanCommand(plan_id=2, cycle_s=100, offset_s=0, stage_greens_s=[30, 12, 24]),
        "2 stage greens": TimingPlanCommand(plan_id=1, cycle_s=100, offset_s=0, stage_greens_s=[30, 36]),
        "tenths of a second": TimingPlanCommand(plan_id=1, cycle_s=100.05, offset_s=0, stage_greens_s=[30.05, 12, 24]),
        "central control starts with a timing_plan": ModeChangeCommand(mode=ControlMode.CENTRAL),
        "not a signal-controller command": VmsMessageCommand(pages=[["JALAN DITUTUP"]], priority=2, duration_s=60),
    }
    for reason, body in cases.items():
        with pytest.raises(CommandRefused, match=reason):
            prepare_command(SITE, PLAN, body, CHECKSUM)
    assert prepare_command(SITE, PLAN, ModeChangeCommand(mode=ControlMode.FLASH), CHECKSUM).command == "flash"
    assert prepare_command(SITE, PLAN, ModeChangeCommand(mode=ControlMode.TIME_OF_DAY), CHECKSUM).command == "release_to_local"
    assert prepare_command(SITE, PLAN, ResetFaultCommand(), CHECKSUM).command == "reset_fault"


def test_a_command_block_is_24_registers_the_controller_decodes_back() -> None:
    block = command_registers(REGMAP, TIMING, 65535)
    assert len(block) == 24
    fields = decode(REGMAP, "holding", [*block, 0, 0])
    assert (fields["command_seq"], fields["command"], fields["plan_checksum"], fields["cycle"]) == (65535, "apply_timing",
                                                                                                 CHECKSUM, 1300)
    assert fields["stage_green"][:4] == [440, 260, 260, 0]  # type: ignore[index]
    with pytest.raises(ValueError, match="outside 1..65535"):
        command_registers(REGMAP, TIMING, 0)


def test_sequence_numbers_skip_zero_and_every_number_the_controller_still_shows() -> None:
    assert next_seq(0) == 1 and next_seq(7) == 8 and next_seq(65534) == 65535 and next_seq(65535) == 1
    # after the wrap, 1 was refused long ago and still sits in rejected_seq; 2 is applied: take 3
    shown = numbers_in_use(status(rejected_seq=1, applied_seq=2, last_command_seq=65535), holding_seq=65535)
    assert next_seq(65535, *shown) == 3


def test_a_stale_refusal_is_never_read_as_the_new_commands_fate() -> None:
    """Found in review: checked first, an old rejected_seq equal to the new seq turned an accepted command into a refusal."""
    assert verdict(TIMING, 1, status(rejected_seq=1, pending_seq=1), seen_pending=False)[0] == "pending"
    assert verdict(TIMING, 1, status(rejected_seq=1, applied_seq=1), seen_pending=True)[0] == "acknowledged"


def status(**values: object) -> ControllerStatus:
    base = {"map_version": 1, "control_mode": "central", "plan_number": 1, "plan_checksum": CHECKSUM, "cycle": 1300,
            "n_stages": 3, "stage_green": [440, 260, 260], "interval": "green", "boot_count": 1}
    return parse_status(REGMAP, encode(REGMAP, "input", {**base, **values}))  # type: ignore[arg-type]


def test_a_status_block_parses_with_its_unknown_codes_named() -> None:
    good = status(faults=frozenset({"door_open"}), detector_count=[5, 2**32 - 1])
    assert good.greens_ds == (440, 260, 260) and good.faults == {"door_open"} and good.detector_counts[1] == 2**32 - 1
    assert good.unknown_codes() == []
    registers = encode(REGMAP, "input", {"map_version": 1, "n_stages": 3})
    registers[REGMAP.field("input", "control_mode").address] = 9
    registers[REGMAP.field("input", "group_state").address + 2] = 42
    assert parse_status(REGMAP, registers).unknown_codes() == ["control_mode=unknown_9", "group_state[2]=unknown_42"]


def test_nothing_is_done_unless_the_read_back_shows_it() -> None:
    assert verdict(TIMING, 5, status(applied_seq=5), seen_pending=True)[0] == "acknowledged"
    assert verdict(TIMING, 5, status(pending_seq=5), seen_pending=False)[0] == "pending"
    assert verdict(TIMING, 5, status(rejected_seq=5, reject_reason="cycle_mismatch"), False) == (
        "rejected", "refused by the controller: cycle_mismatch")
    found, detail = verdict(TIMING, 5, status(applied_seq=5, cycle=1000, stage_green=[300, 120, 240]), True)
    assert found == "mismatch" and "read-back mismatch" in detail
    assert verdict(TIMING, 5, status(applied_seq=4), seen_pending=True)[0] == "dropped"
    assert verdict(TIMING, 5, status(applied_seq=4), seen_pending=False)[0] == "unseen"
    flash = PreparedCommand("flash")
    assert verdict(flash, 6, status(applied_seq=6, control_mode="flash", interval="flash"), False)[0] == "acknowledged"
    assert verdict(flash, 6, status(applied_seq=6, interval="green"), False)[0] == "mismatch"
    reset = PreparedCommand("reset_fault")
    assert verdict(reset, 7, status(applied_seq=7, faults=frozenset({"conflict_monitor"})), False)[0] == "mismatch"
