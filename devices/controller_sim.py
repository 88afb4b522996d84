"""A signal-controller simulator on Modbus TCP: the firmware logic of
:mod:`devices.controller_logic` behind the register map of ``docs/modbus-map.md``.

It behaves like a controller for lalin's driver and for demos: it runs its own stage
sequence, takes commands written as one function-16 request (refusing unsafe ones with
Modbus exception 03 and a reason register), applies timings at the cycle boundary, falls
back to its local time-of-day plan when the central heartbeat stops for ``backup_time``
seconds, counts detector pulses, reports faults, flashes with a latched fault on a
conflict, and keeps the high-resolution event log of its aspect changes and detector on/off
(:mod:`devices.controller_log`). Its time is the wall clock times ``speed`` (simulated time may run faster), so
state is computed lazily: each Modbus request (or call of :meth:`aspects`) first brings the
controller up to now, crossing intervals, watchdog expiry and cycle boundaries in order.

Test hooks: :meth:`detector_pulse`, :meth:`set_fault`, :meth:`inject_conflict`,
``response_delay_s`` (the controller answers late, after acting), ``faulty_apply`` (it
applies a timing other than the one acknowledged), :meth:`stop` / :meth:`start` (a crash
and a restart, with or without a power cycle).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.simulator import DataType, SimData, SimDevice

from controllers.plan import Plan, Timing
from controllers.schedule import active_timing, resolve_timing
from devices import controller_logic as logic
from devices.controller_log import DEFAULT_HOLD_S, ControllerEventLog
from devices.controller_protocol import command_block_size, plan_checksum32
from devices.fleet import ControllerSite
from devices.register_map import RegisterMap, decode, encode, load_register_map

log = logging.getLogger(__name__)

FC_READ_HOLDING = 3
FC_READ_INPUT = 4
WRITE_CODES = {6, 16}
_NO_BITS = SimData(0, count=1, values=False, datatype=DataType.BITS)  # unused: one coil, one discrete input


def timing_to_ds(plan: Plan, timing: Timing) -> tuple[int, int, list[int]]:
    """Cycle, offset and greens in sequence order, in tenths of a second (rounded)."""
    return (round(timing.cycle_s * 10), round(timing.offset_s * 10),
            [round(timing.stage_greens_s[s] * 10) for s in plan.sequence])


class ControllerSimulator:
    """One simulated controller serving the register map on ``host:port`` (port 0: a free one)."""

    def __init__(self, site: ControllerSite, plan: Plan, *, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0,
                 start_at: datetime | None = None, sslctx: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic, regmap: RegisterMap | None = None,
                 log_hold_s: float = DEFAULT_HOLD_S) -> None:
        """``log_hold_s``: controller seconds before an event-log entry is committed (see :mod:`devices.controller_log`)."""
        if speed <= 0:
            raise ValueError(f"speed {speed} (controller seconds per wall second) must be > 0")
        self.site, self.plan, self.host, self.port = site, plan, host, port
        self.speed, self.sslctx, self.clock = speed, sslctx, clock
        self.regmap = regmap or load_register_map()
        self._command_block = command_block_size(self.regmap)
        self._heartbeat_address = self.regmap.field("holding", "heartbeat").address
        self._backup_address = self.regmap.field("holding", "backup_time").address
        self.start_at = start_at or datetime.now(UTC)
        self._wall0 = clock()
        self.response_delay_s = 0.0
        self.faulty_apply = False
        self.carried_out: list[tuple[int, str]] = []  # (command_seq, command) of every command acted on
        self._server: ModbusTcpServer | None = None
        self._boots = 0
        self.command_writes = 0  # write requests touching the command block, whatever became of them
        self.log_hold_s = log_hold_s
        self._power_on()

    # --- controller time ---------------------------------------------------------------
    def now_s(self) -> float:
        """Controller seconds since the simulator was created (wall time times speed)."""
        return (self.clock() - self._wall0) * self.speed

    def local_time(self, at_s: float | None = None) -> datetime:
        """The controller's clock (aware) at controller second ``at_s`` (default: now)."""
        return self.start_at + timedelta(seconds=self.now_s() if at_s is None else at_s)

    def _local_timing(self, at_s: float) -> Timing | None:
        name = active_timing(self.plan, self.local_time(at_s)).timing
        return resolve_timing(self.plan, name)

    def _power_on(self, latched: bool = False) -> None:
        """Switch on (again): volatile state starts afresh; a latched conflict (non-volatile, as in a
        conflict monitor unit) comes back latched, flashing."""
        self._boots = (self._boots + 1) & 0xFFFF
        now = self.now_s()
        self._powered_at = self._last_s = now
        local = self._local_timing(now)
        idle = local or self.plan.default_timing or next(iter(self.plan.timings.values()))
        self._state = logic.power_up(self.plan, local, idle, clock_s=self.local_time(now).timestamp())
        if latched:
            self._state = logic.conflict_detected(self._state)
        self._holding = [0] * self.regmap.span("holding")
        self._holding[self._backup_address] = self.site.backup_time_s
        self._heartbeat_seen = 0
        self._heartbeat_at: float | None = None  # controller second of the last heartbeat change
        self._counts = [0] * self.regmap.limits["detectors"]
        self._occupied_ds = [0.0] * self.regmap.limits["detectors"]
        self._injected: set[str] = set()
        self.event_log = ControllerEventLog(self.regmap, self.plan, len(self._counts), self._boots, now, self.log_hold_s)
        self.event_log.aspects(logic.aspects(self.plan, self._state), now)

    # --- lifecycle --------------------------------------------------------------------
    async def start(self, *, power_cycle: bool = False) -> None:
        """Serve Modbus (TCP, or TLS when an SSL context was given); ``power_cycle`` restarts the controller too."""
        if self._server is not None:
            raise RuntimeError(f"controller {self.site.id} is already serving on port {self.port}")
        if power_cycle:
            self._power_on(latched="conflict_monitor" in self._state.faults)
        holding = SimData(0, values=list(self._holding), datatype=DataType.REGISTERS)
        inputs = SimData(0, count=self.regmap.span("input"), values=0, datatype=DataType.REGISTERS)
        layout = self.regmap.event_log
        log = SimData(layout.header_address, count=layout.end - layout.header_address, values=0, datatype=DataType.REGISTERS)
        device = SimDevice(self.regmap.unit_id, simdata=([_NO_BITS], [_NO_BITS], [holding], [inputs, log]),
                           action=self._action)
        if self.sslctx is not None:
            server: ModbusTcpServer = ModbusTlsServer(device, address=(self.host, self.port), sslctx=self.sslctx)
        else:
            server = ModbusTcpServer(device, address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        transport: Any = server.transport
        self.port = transport.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving (connections drop); the controller keeps running its sequence unless power-cycled at start."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    @property
    def serving(self) -> bool:
        """Whether the Modbus server is up."""
        return self._server is not None

    # --- what the field sees ------------------------------------------------------------
    @property
    def state(self) -> logic.ControllerState:
        """The controller's state now."""
        self._catch_up()
        return self._state

    def aspects(self) -> dict[str, logic.Aspect]:
        """What every signal group shows now."""
        self._catch_up()
        return logic.aspects(self.plan, self._state)

    def detector_pulse(self, index: int, occupied_s: float = 0.3) -> None:
        """A vehicle crossed detector ``index`` (0-based), occupying it ``occupied_s`` seconds."""
        if not 0 <= index < len(self._counts):
            raise IndexError(f"detector {index} outside 0..{len(self._counts) - 1}")
        if occupied_s < 0:
            raise ValueError(f"occupied time {occupied_s} s must be >= 0")
        self._counts[index] = (self._counts[index] + 1) & 0xFFFF_FFFF
        self._occupied_ds[index] += occupied_s * 10.0
        self.event_log.detector_pulse(index, self.now_s(), occupied_s)

    def detector_occupied(self, index: int, occupied_s: float) -> None:
        """Detector ``index`` was occupied ``occupied_s`` more seconds without a new vehicle (one standing on it)."""
        if not 0 <= index < len(self._counts):
            raise IndexError(f"detector {index} outside 0..{len(self._counts) - 1}")
        if occupied_s < 0:
            raise ValueError(f"occupied time {occupied_s} s must be >= 0")
        self._occupied_ds[index] += occupied_s * 10.0
        self.event_log.detector_occupied(index, self.now_s(), occupied_s)

    def set_fault(self, name: str, active: bool) -> None:
        """Raise or clear a hardware fault bit: ``lamp_failure``, ``detector_fault``, ``power_failure``,
        ``door_open`` or ``clock_invalid``."""
        if name not in self.regmap.bits["faults"].values() or name in {"conflict_monitor", "central_heartbeat_lost"}:
            raise ValueError(f"fault {name!r} cannot be injected; conflicts use inject_conflict()")
        (self._injected.add if active else self._injected.discard)(name)

    def inject_conflict(self) -> None:
        """The conflict monitor trips (e.g. a shorted load switch): flashing amber, latched until reset_fault."""
        self._catch_up()
        self._state = logic.conflict_detected(self._state)

    # --- the clockwork ------------------------------------------------------------------
    def _catch_up(self) -> None:
        now = self.now_s()
        state = self._state
        self.event_log.aspects(logic.aspects(self.plan, state), self._last_s)  # what a command changed since
        backup_s = self._holding[self._backup_address]
        if (self._heartbeat_at is not None and backup_s > 0 and "central_heartbeat_lost" not in state.faults
                and now - self._heartbeat_at >= backup_s):
            expiry = self._heartbeat_at + backup_s
            state = self._advance(state, self._last_s, expiry)
            state = logic.fall_back(state, self._local_timing(expiry))
            log.info("controller %s: no central heartbeat for %d s, local time-of-day plan", self.site.id, backup_s)
            self._last_s = max(self._last_s, expiry)
        if state.mode == "local_tod":
            state = logic.follow_schedule(state, self._local_timing(now))
        state = self._advance(state, self._last_s, now)
        self._state, self._last_s = state, max(self._last_s, now)
        self.event_log.commit(self._last_s)

    def _advance(self, state: logic.ControllerState, from_s: float, to_s: float) -> logic.ControllerState:
        """``state`` from controller second ``from_s`` to ``to_s``, stepping to each aspect change to log it at its instant."""
        t = from_s
        while True:
            step = min(to_s - t, logic.next_change_s(self.plan, state) + 1e-7)  # just past a change: the new aspect shows
            state = logic.advance(self.plan, state, max(0.0, step))
            t += max(0.0, step)
            self.event_log.aspects(logic.aspects(self.plan, state), t)
            if t >= to_s:
                return state

    def _status_values(self) -> dict[str, Any]:
        state = self._state
        cycle, offset, greens = timing_to_ds(self.plan, state.timing)
        shown = logic.aspects(self.plan, state)
        mode = {"central": "central", "local_tod": "local_tod", "flash": "flash"}[state.mode]
        return {
            "map_version": self.regmap.version, "control_mode": mode, "plan_number": self.site.plan_number,
            "plan_checksum": plan_checksum32(self.plan), "cycle": cycle, "offset": offset,
            "n_stages": len(self.plan.sequence), "stage_green": greens, "current_stage": state.stage_index,
            "interval": state.interval, "stage_timer": min(0xFFFF, int(state.interval_elapsed_s * 10)),
            "cycle_timer": min(0xFFFF, int(state.cycle_elapsed_s * 10)), "applied_seq": state.applied_seq,
            "rejected_seq": state.rejected_seq, "reject_reason": state.reject_reason, "pending_seq": state.pending_seq,
            "faults": frozenset(state.faults | self._injected), "heartbeat_seen": self._heartbeat_seen,
            "group_state": [shown[g.id] for g in self.plan.signal_groups],
            "detector_count": self._counts, "uptime": int(self._last_s - self._powered_at) & 0xFFFF_FFFF,
            "detector_occupied": [int(o) & 0xFFFF for o in self._occupied_ds], "boot_count": self._boots,
            "last_command_seq": state.last_seq,
        }

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus calls this before every request: refresh status on reads, act on writes."""
        self._catch_up()
        if function_code == FC_READ_INPUT:
            at = address - start_address
            if address >= self.regmap.event_log.header_address:
                registers[at:at + count] = self.event_log.read(address, count, self._last_s)
            else:
                status = encode(self.regmap, "input", self._status_values())
                registers[:len(status)] = status
            return None
        if function_code == FC_READ_HOLDING:
            registers[:] = self._holding  # the controller's own copy (it outlives a restart of the server)
            return None
        if function_code not in WRITE_CODES or set_values is None:
            return None
        written = [int(v) for v in set_values]
        result = self._write(address, written)
        if result is None:
            self._holding[address:address + len(written)] = written
        if self.response_delay_s > 0:
            await asyncio.sleep(self.response_delay_s)  # acted already: a late answer, not a late action
        return result

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        end = address + len(values)
        if address < self._command_block and (address != 0 or end < self._command_block):
            return ExcCodes.ILLEGAL_VALUE  # the command block is written whole, in one request
        if address <= self._heartbeat_address < end:
            beat = values[self._heartbeat_address - address]
            if beat != self._heartbeat_seen or self._heartbeat_at is None:
                self._heartbeat_seen, self._heartbeat_at = beat, self._last_s
                self._state = logic.heartbeat_resumed(self._state)
        if address == 0:
            self.command_writes += 1
            return self._command(values[:self._command_block])
        return None

    def _command(self, block: list[int]) -> ExcCodes | None:
        fields = decode(self.regmap, "holding", block + [0] * (self.regmap.span("holding") - len(block)))
        seq, command = fields["command_seq"], str(fields["command"])
        assert isinstance(seq, int)
        timing: Timing | None = None
        reason = ""
        if command == "apply_timing":
            timing, reason = self._timing_of(fields)
        if seq == 0 or command == "none" or command.startswith("unknown_"):
            reason = "malformed"
        if reason:
            if seq == self._state.last_seq:
                return None
            self._state = msgspec.structs.replace(self._state, last_seq=seq, rejected_seq=seq, reject_reason=reason)
            return ExcCodes.ILLEGAL_VALUE
        state, outcome = logic.handle_command(self.plan, self._state, seq, command, timing)
        if outcome.result == "accepted":
            self.carried_out.append((seq, command))
            if self.faulty_apply and state.pending_timing is not None:  # a firmware bug: acknowledges, keeps the old timing
                state = msgspec.structs.replace(state, pending_timing=self._state.timing)
        self._state = state
        return ExcCodes.ILLEGAL_VALUE if outcome.result == "rejected" else None

    def _timing_of(self, fields: dict[str, Any]) -> tuple[Timing | None, str]:
        if fields["plan_number"] != self.site.plan_number:
            return None, "unknown_plan"
        if fields["plan_checksum"] != plan_checksum32(self.plan):
            return None, "plan_checksum_mismatch"
        if fields["n_stages"] != len(self.plan.sequence):
            return None, "malformed"
        greens = {stage: fields["stage_green"][k] / 10 for k, stage in enumerate(self.plan.sequence)}
        return Timing(cycle_s=fields["cycle"] / 10, offset_s=fields["offset"] / 10, stage_greens_s=greens), ""
