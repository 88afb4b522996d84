"""The central's side of the controller protocol (docs/modbus-map.md), as pure functions.

* :func:`prepare_command` turns a command body into what the controller is to do, refusing
  locally (:class:`CommandRefused`) what must never be sent: the driver's own safety check,
  before the controller's.
* :func:`command_registers` lays a prepared command out as the one-request command block.
* :func:`parse_status` reads the input block into a :class:`ControllerStatus`.
* :func:`verdict` tells from a status read back whether a command is done, refused, dropped,
  still pending, or was acknowledged with something else running (a read-back mismatch).

No I/O: the driver (:mod:`devices.controller_driver`) does the talking.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from controllers.payloads import (
    CommandBody,
    ControlMode,
    ModeChangeCommand,
    ResetFaultCommand,
    SignalInterval,
    TimingPlanCommand,
)
from controllers.plan import Plan, Timing
from controllers.safety import validate
from devices.fleet import ControllerSite
from devices.register_map import RegisterMap, Value, decode, encode

DS_PER_S = 10
REPRESENTABLE_TOLERANCE_DS = 1e-6


def plan_checksum32(plan: Plan) -> int:
    """The first 32 bits of the SHA-256 of the plan's safety configuration (the ``plan_checksum`` registers):
    a new plan version that changes only timings, schedule or movements keeps it (:meth:`Plan.safety_checksum`)."""
    return int(plan.safety_checksum()[:8], 16)


def command_block_size(regmap: RegisterMap) -> int:
    """Registers of the command block, written whole in one request: holding 0 to the end of ``stage_green``."""
    last = regmap.field("holding", "stage_green")
    return last.address + last.size


class CommandRefused(ValueError):
    """lalin will not send this command to this controller; the message says why."""


class PreparedCommand(msgspec.Struct, frozen=True):
    """A command ready for the register map: ``command`` code, and for a timing its values in ds."""

    command: Literal["apply_timing", "flash", "reset_fault", "release_to_local"]
    plan_number: int = 0
    plan_checksum: int = 0
    cycle_ds: int = 0
    offset_ds: int = 0
    greens_ds: tuple[int, ...] = ()


class ControllerStatus(msgspec.Struct, frozen=True):
    """The input block, decoded (times in ds as the controller reports them)."""

    map_version: int
    control_mode: str
    plan_number: int
    plan_checksum: int
    cycle_ds: int
    offset_ds: int
    n_stages: int
    greens_ds: tuple[int, ...]
    current_stage: int
    interval: str
    stage_timer_ds: int
    cycle_timer_ds: int
    applied_seq: int
    rejected_seq: int
    reject_reason: str
    pending_seq: int
    faults: frozenset[str]
    heartbeat_seen: int
    group_states: tuple[str, ...]
    detector_counts: tuple[int, ...]
    detector_occupied_ds: tuple[int, ...]
    uptime_s: int
    boot_count: int
    last_command_seq: int

    def unknown_codes(self) -> list[str]:
        """Fields whose code the register map does not know (``unknown_<n>``): a protocol fault."""
        named = {"control_mode": self.control_mode, "interval": self.interval, "reject_reason": self.reject_reason}
        out = [f"{k}={v}" for k, v in named.items() if v.startswith("unknown_")]
        out += [f"group_state[{i}]={v}" for i, v in enumerate(self.group_states) if v.startswith("unknown_")]
        out += [f"faults bit {b}" for b in sorted(self.faults) if b.startswith("bit")]
        return out


def _ds(value_s: float, what: str) -> int:
    tenths = value_s * DS_PER_S
    if not math.isfinite(tenths) or abs(tenths - round(tenths)) > REPRESENTABLE_TOLERANCE_DS:
        raise CommandRefused(f"{what} {value_s} s is not a whole number of tenths of a second (the register unit)")
    return round(tenths)


def prepare_command(site: ControllerSite, plan: Plan, body: CommandBody, plan_checksum: int) -> PreparedCommand:
    """What ``body`` asks of controller ``site`` (running ``plan``), or CommandRefused naming why not.

    A timing must be for the controller's plan number, have one green per stage of the
    sequence, be a whole number of tenths of a second everywhere, and pass
    :func:`controllers.safety.validate` (conflicts, intergreens, minimum and maximum greens,
    cycle). Mode changes: ``flash``, and ``time_of_day`` (release to the local plan); central
    control is taken by sending a timing.
    """
    if isinstance(body, TimingPlanCommand):
        if body.plan_id != site.plan_number:
            raise CommandRefused(f"timing for plan {body.plan_id}; controller {site.id} runs plan {site.plan_number}")
        if len(body.stage_greens_s) != len(plan.sequence):
            raise CommandRefused(f"{len(body.stage_greens_s)} stage greens; plan {plan.id} has {len(plan.sequence)} stages "
                                 f"in its sequence {plan.sequence}")
        timing = Timing(cycle_s=body.cycle_s, offset_s=body.offset_s,
                        stage_greens_s=dict(zip(plan.sequence, body.stage_greens_s, strict=True)))
        violations = validate(plan, timing)
        if violations:
            raise CommandRefused(f"unsafe timing ({violations[0].code}): {violations[0].message}")
        greens = tuple(_ds(g, f"stage {s} green") for s, g in zip(plan.sequence, body.stage_greens_s, strict=True))
        return PreparedCommand("apply_timing", plan_number=site.plan_number, plan_checksum=plan_checksum,
                               cycle_ds=_ds(body.cycle_s, "cycle"), offset_ds=_ds(body.offset_s, "offset"), greens_ds=greens)
    if isinstance(body, ModeChangeCommand):
        if body.mode == ControlMode.FLASH:
            return PreparedCommand("flash")
        if body.mode == ControlMode.TIME_OF_DAY:
            return PreparedCommand("release_to_local")
        raise CommandRefused(f"mode {body.mode.value!r} cannot be commanded; central control starts with a timing_plan")
    if isinstance(body, ResetFaultCommand):
        return PreparedCommand("reset_fault")
    raise CommandRefused(f"a {type(body).__name__} is not a signal-controller command")


def command_registers(regmap: RegisterMap, prepared: PreparedCommand, seq: int) -> list[int]:
    """The command block (holding registers 0..23) for ``prepared`` numbered ``seq`` (1..65535)."""
    if not 1 <= seq <= 0xFFFF:
        raise ValueError(f"command_seq {seq} outside 1..65535")
    values: dict[str, Value] = {"command_seq": seq, "command": prepared.command}
    if prepared.command == "apply_timing":
        values |= {"plan_number": prepared.plan_number, "plan_checksum": prepared.plan_checksum,
                   "cycle": prepared.cycle_ds, "offset": prepared.offset_ds, "n_stages": len(prepared.greens_ds),
                   "stage_green": list(prepared.greens_ds)}
    return encode(regmap, "holding", values)[:command_block_size(regmap)]


def next_seq(last: int, *avoid: int) -> int:
    """The command_seq after ``last`` (wrapping 65535 -> 1, never 0), skipping every number in
    ``avoid`` — the ones the controller shows (applied, pending, refused, last handled), so that a
    read-back can never mistake an old command's trace for the new one's."""
    seq = last % 0xFFFF + 1
    while seq in avoid:
        seq = seq % 0xFFFF + 1
    return seq


def numbers_in_use(status: ControllerStatus, holding_seq: int) -> tuple[int, ...]:
    """The command_seq values a controller's registers show now (a new command must differ from all)."""
    return (status.applied_seq, status.pending_seq, status.rejected_seq, status.last_command_seq, holding_seq)


def parse_status(regmap: RegisterMap, registers: list[int]) -> ControllerStatus:
    """The input block's registers (from address 0) as a status."""
    f = decode(regmap, "input", registers)

    def num(name: str) -> int:
        value = f[name]
        assert isinstance(value, int), name
        return value

    def nums(name: str) -> tuple[int, ...]:
        value = f[name]
        assert isinstance(value, list), name
        return tuple(int(v) for v in value)

    n_stages = num("n_stages")
    faults = f["faults"]
    assert isinstance(faults, frozenset)
    return ControllerStatus(
        map_version=num("map_version"), control_mode=str(f["control_mode"]), plan_number=num("plan_number"),
        plan_checksum=num("plan_checksum"), cycle_ds=num("cycle"), offset_ds=num("offset"), n_stages=n_stages,
        greens_ds=nums("stage_green")[:n_stages], current_stage=num("current_stage"), interval=str(f["interval"]),
        stage_timer_ds=num("stage_timer"), cycle_timer_ds=num("cycle_timer"), applied_seq=num("applied_seq"),
        rejected_seq=num("rejected_seq"), reject_reason=str(f["reject_reason"]), pending_seq=num("pending_seq"),
        faults=faults, heartbeat_seen=num("heartbeat_seen"), group_states=tuple(str(g) for g in f["group_state"]),  # type: ignore[union-attr]
        detector_counts=nums("detector_count"), detector_occupied_ds=nums("detector_occupied"), uptime_s=num("uptime"),
        boot_count=num("boot_count"), last_command_seq=num("last_command_seq"))


Verdict = Literal["acknowledged", "rejected", "dropped", "mismatch", "pending", "unseen"]


def verdict(prepared: PreparedCommand, seq: int, status: ControllerStatus, seen_pending: bool) -> tuple[Verdict, str]:
    """What a read-back says of command ``seq``, with a detail for the event.

    ``acknowledged``: carried out and the controller shows its effect; ``mismatch``: carried out
    (``applied_seq``) but the controller runs something else; ``rejected``: refused, with the
    controller's reason; ``dropped``: accepted as pending (``seen_pending``) and then discarded
    without being applied (e.g. the controller fell back to its local plan); ``pending``: waits
    for the cycle boundary; ``unseen``: the controller shows no trace of it (the write may not
    have landed).
    """
    if status.applied_seq == seq:
        wrong = _effect_mismatch(prepared, status)
        return ("mismatch", wrong) if wrong else ("acknowledged", _effect(prepared, status))
    if status.pending_seq == seq:
        return "pending", "accepted, waiting for the cycle boundary (or the end of the running green)"
    if status.rejected_seq == seq:
        return "rejected", f"refused by the controller: {status.reject_reason}"
    if seen_pending:
        return "dropped", (f"accepted as pending, then discarded without being applied (mode {status.control_mode}, "
                           f"faults {sorted(status.faults) or 'none'})")
    return "unseen", ("the controller holds this command_seq but shows no trace of carrying it out "
                      f"(applied {status.applied_seq}, pending {status.pending_seq}, mode {status.control_mode})")


def _effect(prepared: PreparedCommand, status: ControllerStatus) -> str:
    if prepared.command == "apply_timing":
        greens = [g / DS_PER_S for g in status.greens_ds]
        return (f"read back: plan {status.plan_number}, cycle {status.cycle_ds / DS_PER_S:g} s, offset "
                f"{status.offset_ds / DS_PER_S:g} s, greens {greens} s, mode {status.control_mode}")
    return f"read back: mode {status.control_mode}, interval {status.interval}"


def _effect_mismatch(prepared: PreparedCommand, status: ControllerStatus) -> str:
    if prepared.command == "apply_timing":
        sent = (prepared.plan_number, prepared.plan_checksum, prepared.cycle_ds, prepared.offset_ds, prepared.greens_ds)
        shown = (status.plan_number, status.plan_checksum, status.cycle_ds, status.offset_ds, status.greens_ds)
        if sent != shown:
            return (f"read-back mismatch: sent (plan, checksum, cycle, offset, greens) in ds {sent}, "
                    f"the controller runs {shown}")
        return ""
    if prepared.command == "flash" and status.interval != SignalInterval.FLASH.value:
        return f"read-back mismatch: flash acknowledged, the controller shows interval {status.interval}"
    if prepared.command == "release_to_local" and status.control_mode != "local_tod":
        return f"read-back mismatch: release acknowledged, the controller is in mode {status.control_mode}"
    if prepared.command == "reset_fault" and "conflict_monitor" in status.faults:
        return "read-back mismatch: reset acknowledged, the conflict fault is still latched"
    return ""


# --- the high-resolution event log (docs/modbus-map.md, "The event log") ------------------------
class LogHeader(msgspec.Struct, frozen=True):
    """The event log's header: newest and oldest sequence numbers held (0: none), the log clock now (ds since
    power-up), the boot it belongs to and the ring's capacity (entries)."""

    head_seq: int
    oldest_seq: int
    clock_ds: int
    boot: int
    capacity: int


class LogEntry(msgspec.Struct, frozen=True):
    """One entry as the controller holds it: sequence number, log clock (ds), code (the map's name, or
    ``unknown_<n>``) and parameter (a group or detector index)."""

    seq: int
    clock_ds: int
    code: str
    param: int


class LogRead(msgspec.Struct, frozen=True):
    """What to read next: entries ``first_seq`` to ``last_seq`` (none when ``first_seq > last_seq``), and how many
    entries the ring overwrote before the central read them (``lost``, just before ``first_seq``)."""

    first_seq: int
    last_seq: int
    lost: int


def parse_log_header(regmap: RegisterMap, registers: list[int]) -> LogHeader:
    """The log header's registers (from ``event_log.header_address``) as a :class:`LogHeader`."""
    f = decode(regmap, "log_header", registers)
    values = [f[n] for n in ("log_head_seq", "log_oldest_seq", "log_clock", "log_boot", "log_capacity")]
    assert all(isinstance(v, int) for v in values)
    return LogHeader(*values)  # type: ignore[arg-type]


def parse_log_entries(regmap: RegisterMap, registers: list[int]) -> list[LogEntry]:
    """Consecutive ring slots' registers as entries (a whole number of entries)."""
    size = regmap.event_log.entry_size
    out: list[LogEntry] = []
    for at in range(0, len(registers) - size + 1, size):
        f = decode(regmap, "log_entry", registers[at:at + size])
        seq, clock, param = f["seq"], f["clock"], f["param"]
        assert isinstance(seq, int) and isinstance(clock, int) and isinstance(param, int)
        out.append(LogEntry(seq, clock, str(f["code"]), param))
    return out


def log_entry_registers(regmap: RegisterMap, entry: LogEntry) -> list[int]:
    """The registers of one entry (the controller's side)."""
    return encode(regmap, "log_entry", {"seq": entry.seq, "clock": entry.clock_ds, "code": entry.code,
                                        "param": entry.param})


def plan_log_read(header: LogHeader, next_seq: int, max_entries: int) -> LogRead:
    """The entries to read given the header and the next sequence number the central wants (1 after a restart).

    Entries before ``header.oldest_seq`` are gone (overwritten): they count as ``lost``. At most
    ``max_entries`` are planned (the rest wait for the next poll).
    """
    if header.head_seq == 0 or next_seq > header.head_seq:
        return LogRead(next_seq, next_seq - 1, 0)
    oldest = max(1, header.oldest_seq)
    first = max(next_seq, oldest)
    return LogRead(first, min(header.head_seq, first + max_entries - 1), max(0, oldest - next_seq))


def log_requests(regmap: RegisterMap, first_seq: int, last_seq: int) -> list[tuple[int, int, int]]:
    """The read requests (address, register count, first sequence number) covering entries ``first_seq`` to
    ``last_seq``: contiguous slots, at most one read's worth each, split where the ring wraps."""
    log = regmap.event_log
    out: list[tuple[int, int, int]] = []
    seq = first_seq
    while seq <= last_seq:
        slot = log.slot(seq)
        n = min(last_seq - seq + 1, log.entries_per_read, log.capacity - slot)
        out.append((log.slot_address(slot), n * log.entry_size, seq))
        seq += n
    return out
