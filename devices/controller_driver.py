"""The Modbus TCP driver of one signal controller (pymodbus client): lalin's side of docs/modbus-map.md.

One connection per controller, re-established with exponential backoff. While connected the
driver writes the central heartbeat every ``heartbeat_s`` seconds and reads the whole status
block every ``poll_s`` seconds (one function-4 request: a consistent snapshot), turning it into
events: ``SignalStateReported`` on every change of mode, plan, stage, interval or aspects,
``ControllerFaulted`` when a fault bit, the connection or the protocol changes, and one
``DetectorCounted`` per detector every ``count_interval_s`` seconds (counter differences,
wrap-aware). Every event goes through an :class:`~devices.events.EventSink`, numbered per
stream (source ``modbus:<controller>``).

Commands (:meth:`ControllerDriver.send`) are checked (:func:`prepare_command`), written as ONE
function-16 request with a fresh ``command_seq``, and confirmed only by reading back: each ends
in exactly one ``CommandAcknowledged`` (acknowledged / rejected / timed_out). pymodbus never
re-sends a request here (``retries=0``): a write that timed out may have been applied, so the
driver reads back instead, and re-sends the *same* block (same ``command_seq``, which the
controller takes at most once) only when the controller shows no trace of it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from controllers.payloads import (
    CommandAcknowledged,
    CommandBody,
    CommandOutcome,
    ControllerFaulted,
    ControlMode,
    DetectorCounted,
    FaultKind,
    GroupState,
    Payload,
    Severity,
    SignalInterval,
    SignalStateReported,
    TimingPlanCommand,
    VolumeByClass,
)
from controllers.plan import Plan
from devices.controller_protocol import (
    DS_PER_S,
    CommandRefused,
    ControllerStatus,
    PreparedCommand,
    command_registers,
    next_seq,
    parse_status,
    prepare_command,
    verdict,
)
from devices.controller_sim import plan_checksum32
from devices.events import EventSink, utc_now
from devices.fleet import ControllerSite
from devices.register_map import RegisterMap, load_register_map

log = logging.getLogger(__name__)

HEARTBEAT_ADDRESS = 24
BACKUP_TIME_ADDRESS = 25

#: Controller fault bits -> (event fault kind, severity).
FAULT_BITS: dict[str, tuple[FaultKind, Severity]] = {
    "conflict_monitor": (FaultKind.CONFLICT, Severity.CRITICAL),
    "lamp_failure": (FaultKind.LAMP_FAILURE, Severity.WARNING),
    "detector_fault": (FaultKind.DETECTOR_FAULT, Severity.WARNING),
    "power_failure": (FaultKind.POWER, Severity.CRITICAL),
    "door_open": (FaultKind.CABINET_DOOR, Severity.WARNING),
    "central_heartbeat_lost": (FaultKind.WATCHDOG, Severity.WARNING),
    "clock_invalid": (FaultKind.CLOCK, Severity.WARNING),
}
MODES = {"local_tod": ControlMode.TIME_OF_DAY, "central": ControlMode.CENTRAL, "flash": ControlMode.FLASH,
         "manual": ControlMode.MANUAL, "dark": ControlMode.OFF}


class ControllerDriver:
    """Drives one controller: connection, heartbeat, status and detector events, commands."""

    def __init__(self, site: ControllerSite, plan: Plan, host: str, port: int, sink: EventSink, *,
                 sslctx: ssl.SSLContext | None = None, poll_s: float = 1.0, heartbeat_s: float = 1.0,
                 count_interval_s: float = 60.0, request_timeout_s: float = 1.0, command_poll_s: float = 0.2,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 10.0,
                 clock: Callable[[], datetime] = utc_now, regmap: RegisterMap | None = None) -> None:
        self.site, self.plan, self.host, self.port, self.sink = site, plan, host, port, sink
        self.sslctx, self.poll_s, self.heartbeat_s, self.count_interval_s = sslctx, poll_s, heartbeat_s, count_interval_s
        self.request_timeout_s, self.command_poll_s = request_timeout_s, command_poll_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.clock = clock
        self.regmap = regmap or load_register_map()
        self.source = f"modbus:{site.id}"
        self.plan_checksum = plan_checksum32(plan)
        self.detectors = site.detector_list()
        self.status: ControllerStatus | None = None
        self.connected = asyncio.Event()
        self._client: AsyncModbusTcpClient | None = None
        self._io = asyncio.Lock()  # one request at a time on the connection
        self._commands = asyncio.Lock()  # one command at a time per controller
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._heartbeat = 0
        self._comms_lost = False
        self._active_faults: frozenset[str] = frozenset()
        self._protocol_fault = ""
        self._mismatch = False
        self._last_seq: int | None = None  # the highest command_seq known to the controller, once read
        self._last_state_key: tuple[Any, ...] | None = None
        self._count_base: tuple[datetime, tuple[int, ...], tuple[int, ...]] | None = None
        self.outcomes = 0  # CommandAcknowledged events emitted

    # --- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting and polling in the background."""
        if self._task is not None:
            raise RuntimeError(f"driver of {self.site.id} already started")
        self._task = asyncio.create_task(self._run(), name=f"modbus-driver-{self.site.id}")

    async def stop(self) -> None:
        """Stop polling and close the connection (a command in progress ends timed_out)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._disconnect()

    async def _run(self) -> None:
        backoff = self.reconnect_min_s
        next_beat = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if not self.connected.is_set():
                if await self._connect():
                    backoff = self.reconnect_min_s
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.reconnect_max_s)
                    continue
            try:
                await self.read_status()  # before the heartbeat: a fallback during an outage is seen, then cleared
                if loop.time() >= next_beat:
                    next_beat = loop.time() + self.heartbeat_s
                    self._heartbeat = (self._heartbeat + 1) & 0xFFFF
                    await self._request("write_register", HEARTBEAT_ADDRESS, self._heartbeat)
            except (ModbusException, OSError, TimeoutError) as err:
                await self._lost(err)
                continue
            await asyncio.sleep(self.poll_s)

    async def _connect(self) -> bool:
        if self.sslctx is not None:
            client: AsyncModbusTcpClient = AsyncModbusTlsClient(self.host, port=self.port, sslctx=self.sslctx,
                                                                timeout=self.request_timeout_s, retries=0,
                                                                reconnect_delay=0)
        else:
            client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.request_timeout_s, retries=0,
                                          reconnect_delay=0)
        try:
            ok = await client.connect()
            if ok:
                self._client = client
                await self._request("write_register", BACKUP_TIME_ADDRESS, self.site.backup_time_s)
        except (ModbusException, OSError, TimeoutError) as err:
            log.info("controller %s: connecting to %s:%d failed: %r", self.site.id, self.host, self.port, err)
            ok = False
        if not ok:
            client.close()
            self._client = None
            await self._raise_comms_lost(f"cannot connect to {self.host}:{self.port}")
            return False
        self._last_seq = None  # the controller may have restarted: read its numbering again
        self.connected.set()
        if self._comms_lost:
            self._comms_lost = False
            await self._emit(ControllerFaulted(controller_id=self.site.id, fault=FaultKind.COMMS_LOST,
                                               severity=Severity.CRITICAL, active=False,
                                               detail=f"connected to {self.host}:{self.port}"))
        return True

    async def _lost(self, err: BaseException) -> None:
        log.info("controller %s: connection lost: %r", self.site.id, err)
        self._disconnect()
        await self._raise_comms_lost(f"no answer from {self.host}:{self.port}: {type(err).__name__}: {err}")

    async def _raise_comms_lost(self, detail: str) -> None:
        if not self._comms_lost:
            self._comms_lost = True
            await self._emit(ControllerFaulted(controller_id=self.site.id, fault=FaultKind.COMMS_LOST,
                                               severity=Severity.CRITICAL, active=True, detail=detail[:500]))

    def _disconnect(self) -> None:
        self.connected.clear()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One Modbus request; raises ConnectionError when there is no connection."""
        async with self._io:
            client = self._client
            if client is None:
                raise ConnectionError(f"controller {self.site.id}: not connected")
            return await getattr(client, method)(*args, device_id=self.regmap.unit_id, **kwargs)

    # --- status -----------------------------------------------------------------------
    async def read_status(self) -> ControllerStatus:
        """Read the status block (one request) and emit what changed; raises on I/O failure."""
        response = await self._request("read_input_registers", 0, count=self.regmap.span("input"))
        if response.isError():
            raise ModbusException(f"controller {self.site.id}: status read refused with exception {response.exception_code}")
        status = parse_status(self.regmap, list(response.registers))
        await self._observe(status, self.clock())
        self.status = status
        return status

    async def _observe(self, status: ControllerStatus, at: datetime) -> None:
        problems = status.unknown_codes()
        if status.map_version != self.regmap.version:
            problems.insert(0, f"register map version {status.map_version}, lalin speaks {self.regmap.version}")
        if status.plan_number != self.site.plan_number or status.plan_checksum != self.plan_checksum:
            problems.append(f"runs plan {status.plan_number} checksum {status.plan_checksum:08x}, lalin has plan "
                            f"{self.site.plan_number} checksum {self.plan_checksum:08x}")
        problem = "; ".join(problems)
        if problem != self._protocol_fault:
            self._protocol_fault = problem
            await self._emit(ControllerFaulted(controller_id=self.site.id, fault=FaultKind.PROTOCOL,
                                               severity=Severity.CRITICAL, active=bool(problem),
                                               detail=(problem or "the controller answers within its register map")[:500]), at)
        last = self.status
        if last is not None and (status.boot_count != last.boot_count or status.uptime_s < last.uptime_s):
            await self._emit(ControllerFaulted(controller_id=self.site.id, fault=FaultKind.POWER, severity=Severity.WARNING,
                                               active=False, detail=f"the controller restarted (boot {last.boot_count} -> "
                                               f"{status.boot_count}, uptime {status.uptime_s} s); its counters start again"), at)
            self._count_base = None
        for bit in sorted(status.faults ^ self._active_faults):
            kind, severity = FAULT_BITS.get(bit, (FaultKind.OTHER, Severity.WARNING))
            await self._emit(ControllerFaulted(controller_id=self.site.id, fault=kind, severity=severity,
                                               active=bit in status.faults, detail=f"fault bit {bit}"), at)
        self._active_faults = status.faults
        await self._report_state(status, at)
        await self._report_counts(status, at)

    async def _report_state(self, status: ControllerStatus, at: datetime) -> None:
        groups = {g.id: status.group_states[k] for k, g in enumerate(self.plan.signal_groups)}
        key = (status.control_mode, status.plan_number, status.cycle_ds, status.current_stage, status.interval,
               tuple(groups.values()))
        if key == self._last_state_key or status.control_mode not in MODES or status.interval.startswith("unknown_"):
            return
        if any(state.startswith("unknown_") for state in groups.values()):
            return
        self._last_state_key = key
        await self._emit(SignalStateReported(
            controller_id=self.site.id, mode=MODES[status.control_mode], plan_id=status.plan_number,
            cycle_s=status.cycle_ds / DS_PER_S, stage=status.current_stage, stage_elapsed_s=status.stage_timer_ds / DS_PER_S,
            group_states={g: GroupState(s) for g, s in groups.items()}, interval=SignalInterval(status.interval),
            cycle_elapsed_s=status.cycle_timer_ds / DS_PER_S, plan_checksum=f"{status.plan_checksum:08x}"), at)

    async def _report_counts(self, status: ControllerStatus, at: datetime) -> None:
        base = self._count_base
        if base is None:
            self._count_base = (at, status.detector_counts, status.detector_occupied_ds)
            return
        since, counts, occupied = base
        interval_s = (at - since).total_seconds()
        if interval_s < self.count_interval_s:
            return
        for k, detector in enumerate(self.detectors):
            vehicles = (status.detector_counts[k] - counts[k]) % 2**32
            occupied_s = ((status.detector_occupied_ds[k] - occupied[k]) % 2**16) / DS_PER_S
            await self._emit(DetectorCounted(detector_id=detector.id, interval_s=interval_s,
                                             volume=VolumeByClass(unclassified=min(vehicles, 100_000)),
                                             occupancy=min(1.0, occupied_s / interval_s),
                                             lane=f"{detector.movement}/{detector.lane}"), at)
        self._count_base = (at, status.detector_counts, status.detector_occupied_ds)

    async def _emit(self, payload: Payload, at: datetime | None = None, causation_id: uuid.UUID | None = None) -> None:
        await self.sink.emit(payload, source=self.source, key=self.site.id, event_time=at or self.clock(),
                             causation_id=causation_id)

    # --- commands ---------------------------------------------------------------------
    def default_deadline_s(self, body: CommandBody) -> float:
        """Seconds to wait for a read-back: a timing waits for a cycle boundary, so two cycles plus 10 s."""
        cycles = [self.status.cycle_ds / DS_PER_S] if self.status else [self.plan.cycle.max_s]
        if isinstance(body, TimingPlanCommand):
            cycles.append(body.cycle_s)
        return 2 * max(cycles) + 10.0

    async def send(self, command_id: uuid.UUID, body: CommandBody, *, deadline_s: float | None = None) -> CommandAcknowledged:
        """Carry out one command; returns (and emits) its single ``CommandAcknowledged``.

        ``deadline_s`` (seconds, default :meth:`default_deadline_s`) bounds the wait for the
        read-back; after it the command is ``timed_out``. Refused locally, by the controller,
        dropped, or read back different: ``rejected`` with the reason.
        """
        async with self._commands:
            outcome, detail = CommandOutcome.TIMED_OUT, "no confirmation from the controller before the deadline"
            try:
                prepared = prepare_command(self.site, self.plan, body, self.plan_checksum)
                deadline = asyncio.get_running_loop().time() + (deadline_s if deadline_s is not None
                                                                else self.default_deadline_s(body))
                outcome, detail = await self._carry_out(prepared, deadline)
            except CommandRefused as refusal:
                outcome, detail = CommandOutcome.REJECTED, f"refused by lalin before sending: {refusal}"
            finally:
                ack = CommandAcknowledged(command_id=command_id, target=self.site.id, outcome=outcome, detail=detail[:500])
                self.outcomes += 1
                await self._emit(ack, causation_id=command_id)
            return ack

    async def _carry_out(self, prepared: PreparedCommand, deadline: float) -> tuple[CommandOutcome, str]:
        loop = asyncio.get_running_loop()
        seq: int | None = None
        written = seen_pending = False
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return CommandOutcome.TIMED_OUT, (f"no confirmation of command_seq {seq} before the deadline"
                                                  f"{' (accepted, pending the cycle boundary)' if seen_pending else ''}")
            if not self.connected.is_set():
                try:
                    await asyncio.wait_for(self.connected.wait(), left)
                except TimeoutError:
                    continue
            try:
                if seq is None:
                    seq = await self._fresh_seq()
                if not written:
                    written = True  # from here on, a timeout may mean "applied": only a read-back decides
                    response = await self._request("write_registers", 0, command_registers(self.regmap, prepared, seq))
                    if response.isError():
                        status = await self.read_status()
                        if status.rejected_seq == seq:
                            return CommandOutcome.REJECTED, f"refused by the controller: {status.reject_reason}"
                        return CommandOutcome.REJECTED, f"Modbus exception {response.exception_code} to command_seq {seq}"
                status = await self.read_status()
                found, detail = verdict(prepared, seq, status, seen_pending)
                if found in ("dropped", "unseen") and await self._holding_seq() != seq:
                    # no trace of it: the write never landed, or the controller restarted and forgot it;
                    # send the same block again (the controller takes a command_seq at most once)
                    written = seen_pending = False
                    continue
                if found != "pending":
                    return await self._conclude(found, f"command_seq {seq}: {detail}")
                seen_pending = True
            except (ModbusException, OSError, TimeoutError) as err:
                if isinstance(err, ModbusException | TimeoutError):
                    await self._lost(err)
                continue
            await asyncio.sleep(min(self.command_poll_s, max(0.0, deadline - loop.time())))

    async def _conclude(self, found: str, detail: str) -> tuple[CommandOutcome, str]:
        if found == "acknowledged":
            if self._mismatch:
                self._mismatch = False
                await self._emit(ControllerFaulted(controller_id=self.site.id, fault=FaultKind.READBACK_MISMATCH,
                                                   severity=Severity.CRITICAL, active=False,
                                                   detail=f"a later command read back as sent: {detail}"[:500]))
            return CommandOutcome.ACKNOWLEDGED, detail
        if found == "mismatch":
            self._mismatch = True
            await self._emit(ControllerFaulted(controller_id=self.site.id, fault=FaultKind.READBACK_MISMATCH,
                                               severity=Severity.CRITICAL, active=True, detail=detail[:500]))
        return CommandOutcome.REJECTED, detail  # rejected, dropped, or acknowledged with something else running

    async def _holding_seq(self) -> int:
        response = await self._request("read_holding_registers", 0, count=1)
        if response.isError():
            raise ModbusException(f"controller {self.site.id}: holding read refused with exception {response.exception_code}")
        return int(response.registers[0])

    async def _fresh_seq(self) -> int:
        """The next command_seq: from the controller's registers once per connection, then counted here
        (this driver is the controller's only central, so nobody else moves the numbering on)."""
        if self._last_seq is None:
            status = await self.read_status()
            self._last_seq = max(await self._holding_seq(), status.applied_seq, status.rejected_seq, status.pending_seq)
        self._last_seq = next_seq(self._last_seq)
        return self._last_seq
