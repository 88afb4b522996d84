"""The Modbus TCP driver of one signal controller (pymodbus client): lalin's side of docs/modbus-map.md.

One connection per controller, re-established with exponential backoff. While connected the
driver writes the central heartbeat every ``heartbeat_s`` seconds and reads the whole status
block every ``poll_s`` seconds (one function-4 request: a consistent snapshot), turning it into
events: ``SignalStateReported`` on every change of mode, plan, stage, interval or aspects,
``ControllerFaulted`` when a fault bit, the connection or the protocol changes, and one
``DetectorsCounted`` (all its detectors in one event) every ``count_interval_s`` seconds (counter differences,
wrap-aware). After each status read it reads the controller's high-resolution event log from the
entry after the last one read (:meth:`ControllerDriver.read_event_log`) and emits the new entries as
``ControllerEventsLogged`` batches, group and detector indices turned into lalin's ids and the log
clock into lalin's clock; entries the ring overwrote before they were read become a
``ControllerFaulted`` notice (``event_log``) and the batch's ``lost``. Every event goes through
an :class:`~devices.events.EventSink`, numbered per
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
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ModbusException

from controllers.payloads import (
    CommandAcknowledged,
    CommandBody,
    CommandOutcome,
    ControllerEventsLogged,
    ControllerFaulted,
    ControlMode,
    DetectorReading,
    DetectorsCounted,
    FaultKind,
    GroupState,
    LoggedEvent,
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
    ControllerStatus,
    LogEntry,
    LogHeader,
    PreparedCommand,
    command_registers,
    log_requests,
    next_seq,
    numbers_in_use,
    parse_log_entries,
    parse_log_header,
    parse_status,
    plan_checksum32,
    plan_log_read,
    prepare_command,
    verdict,
)
from devices.events import EventSink, utc_now
from devices.fleet import ControllerSite
from devices.register_map import RegisterMap, load_register_map

log = logging.getLogger(__name__)

#: Timed-out commands remembered, to report one carried out late.
TIMED_OUT_MEMORY = 64
#: Recent notices (faults that are never active: a restart, lost event-log entries, a late application) kept
#: for the command centre's alarm list (:attr:`ControllerDriver.notices`).
NOTICES_KEPT = 16
NOTICE_KINDS = frozenset({FaultKind.RESTARTED, FaultKind.LATE_APPLICATION, FaultKind.EVENT_LOG})
#: Faults lalin finds itself (no fault bit of the controller reports them): kept while active
#: (:attr:`ControllerDriver.findings`).
FINDING_KINDS = frozenset({FaultKind.PROTOCOL, FaultKind.READBACK_MISMATCH})

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
#: Event-log codes whose parameter is a detector index (the others' is a signal group index).
DETECTOR_CODES = frozenset({"detector_on", "detector_off"})
#: Entries per ControllerEventsLogged event (the payload's bound).
LOG_BATCH = 256
#: The event log's times: the controller's clock (ds since power-up) is tied to lalin's once per boot, at the
#: first header read, and tied again only when the two drift apart by more than this (s): entries then keep the
#: controller's own spacing and order instead of each read's request latency.
LOG_REANCHOR_S = 2.0
MODES = {"local_tod": ControlMode.TIME_OF_DAY, "central": ControlMode.CENTRAL, "flash": ControlMode.FLASH,
         "manual": ControlMode.MANUAL, "dark": ControlMode.OFF}


class ControllerDriver:
    """Drives one controller: connection, heartbeat, status and detector events, commands."""

    def __init__(self, site: ControllerSite, plan: Plan, host: str, port: int, sink: EventSink, *,
                 sslctx: ssl.SSLContext | None = None, poll_s: float = 1.0, heartbeat_s: float = 1.0,
                 count_interval_s: float = 60.0, request_timeout_s: float = 1.0, command_poll_s: float = 0.2,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 10.0,
                 clock: Callable[[], datetime] = utc_now, regmap: RegisterMap | None = None,
                 log_max_entries: int = 1024) -> None:
        """``log_max_entries``: event-log entries read per poll at most (the rest at the next poll)."""
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
        self._stopped = asyncio.Event()  # wakes commands waiting for a connection when the driver stops
        self._observing = asyncio.Lock()  # one status read + its events at a time (polls and commands both read)
        self._timed_out: dict[int, uuid.UUID] = {}  # command_seq -> command id of commands reported timed_out
        self._heartbeat = 0
        self._comms_lost = False
        self._active_faults: frozenset[str] = frozenset()
        #: the latest notices emitted, oldest first: (event time, notice)
        self.notices: deque[tuple[datetime, ControllerFaulted]] = deque(maxlen=NOTICES_KEPT)
        #: lalin's own findings that are active now (protocol, read-back mismatch), by kind
        self.findings: dict[FaultKind, ControllerFaulted] = {}
        self._protocol_fault = ""
        self._mismatch = False
        self._last_seq: int | None = None  # the highest command_seq known to the controller, once read
        self._last_state_key: tuple[Any, ...] | None = None
        self._count_base: tuple[datetime, tuple[int, ...], tuple[int, ...]] | None = None
        self._heartbeat_address = self.regmap.field("holding", "heartbeat").address
        self._backup_address = self.regmap.field("holding", "backup_time").address
        self.log_max_entries = log_max_entries
        self._log_lock = asyncio.Lock()
        self._log_boot: int | None = None  # the boot whose log is being read
        self._log_origin: tuple[int, datetime] | None = None  # (boot, lalin's time at the controller's clock 0)
        self._log_next = 1  # the next entry to read
        self._log_served = True  # False once the controller refused the log's registers (until a reconnect)
        self._log_codes = {name: code for code, name in self.regmap.enums["event_code"].items()}

    # --- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting and polling in the background."""
        if self._task is not None:
            raise RuntimeError(f"driver of {self.site.id} already started")
        self._task = asyncio.create_task(self._run(), name=f"modbus-driver-{self.site.id}")

    async def stop(self) -> None:
        """Stop polling and close the connection; a command in progress ends timed_out at once."""
        self._stopping = True
        self._stopped.set()
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
            try:
                if not self.connected.is_set():
                    if await self._connect():
                        backoff = self.reconnect_min_s
                    else:
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.reconnect_max_s)
                        continue
                await self.read_status()  # before the heartbeat: a fallback during an outage is seen, then cleared
                await self.read_event_log()
                if loop.time() >= next_beat:
                    next_beat = loop.time() + self.heartbeat_s
                    self._heartbeat = (self._heartbeat + 1) & 0xFFFF
                    await self._write_checked(self._heartbeat_address, self._heartbeat, "heartbeat")
            except (ModbusException, OSError, TimeoutError) as err:
                await self._lost(err)
                continue
            except Exception as err:
                log.exception("controller %s: polling failed; reconnecting", self.site.id)
                await self._lost(err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.reconnect_max_s)
                continue
            # the next poll, or the next heartbeat when that comes sooner (a heartbeat shorter than the poll is kept)
            await asyncio.sleep(max(0.0, min(self.poll_s, next_beat - loop.time())))

    async def _write_checked(self, address: int, value: int, what: str) -> None:
        response = await self._request("write_register", address, value)
        if response.isError():
            raise ModbusException(f"the controller refused the {what} write with exception {response.exception_code}")

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
                await self._write_checked(self._backup_address, self.site.backup_time_s, "backup_time")
        except (ModbusException, OSError, TimeoutError) as err:
            log.info("controller %s: connecting to %s:%d failed: %r", self.site.id, self.host, self.port, err)
            ok = False
        if not ok:
            client.close()
            self._client = None
            await self._raise_comms_lost(f"cannot connect to {self.host}:{self.port}")
            return False
        self._last_seq = None  # the controller may have restarted: read its numbering again
        self._log_served = True
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
        try:
            await self._raise_comms_lost(f"no answer from {self.host}:{self.port}: {type(err).__name__}: {err}")
        except Exception:
            log.exception("controller %s: could not report the lost connection", self.site.id)

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
        """Read the status block (one request) and emit what changed; raises on I/O failure.

        Reads and their events are serialised (the poller and a command both read), and what was
        seen is recorded before the events go out, so nothing is counted or reported twice.
        """
        async with self._observing:
            response = await self._request("read_input_registers", 0, count=self.regmap.span("input"))
            if response.isError():
                raise ModbusException(f"controller {self.site.id}: status read refused with exception "
                                      f"{response.exception_code}")
            status = parse_status(self.regmap, list(response.registers))
            at = self.clock()
            events = self._observe(status, at)
            self.status = status
            for payload in events:
                await self._emit(payload, at)
            return status

    def _observe(self, status: ControllerStatus, at: datetime) -> list[Payload]:
        """The events ``status`` calls for, given what was seen before (and records it as seen)."""
        events: list[Payload] = []
        problems = status.unknown_codes()
        if status.map_version != self.regmap.version:
            problems.insert(0, f"register map version {status.map_version}, lalin speaks {self.regmap.version}")
        if status.plan_number != self.site.plan_number or status.plan_checksum != self.plan_checksum:
            problems.append(f"runs plan {status.plan_number} checksum {status.plan_checksum:08x}, lalin has plan "
                            f"{self.site.plan_number} checksum {self.plan_checksum:08x}")
        problem = "; ".join(problems)
        if problem != self._protocol_fault:
            self._protocol_fault = problem
            events.append(self._fault(FaultKind.PROTOCOL, Severity.CRITICAL, bool(problem),
                                      problem or "the controller answers within its register map"))
        last = self.status
        if last is not None and (status.boot_count != last.boot_count or status.uptime_s < last.uptime_s):
            events.append(self._fault(FaultKind.RESTARTED, Severity.WARNING, False,
                                      f"the controller restarted (boot {last.boot_count} -> {status.boot_count}, uptime "
                                      f"{status.uptime_s} s): it forgot pending commands; its counters start again"))
            self._count_base = None
        for bit in sorted(status.faults ^ self._active_faults):
            kind, severity = FAULT_BITS.get(bit, (FaultKind.OTHER, Severity.WARNING))
            events.append(self._fault(kind, severity, bit in status.faults, f"fault bit {bit}"))
        self._active_faults = status.faults
        late = self._timed_out.pop(status.applied_seq, None) if status.applied_seq else None
        if late is not None:
            events.append(self._fault(FaultKind.LATE_APPLICATION, Severity.WARNING, False,
                                      f"command {late} (command_seq {status.applied_seq}), reported timed_out, has now "
                                      f"been carried out: cycle {status.cycle_ds / DS_PER_S:g} s, mode {status.control_mode}"))
        events += self._state_event(status)
        events += self._count_events(status, at)
        return events

    def _fault(self, kind: FaultKind, severity: Severity, active: bool, detail: str) -> ControllerFaulted:
        return ControllerFaulted(controller_id=self.site.id, fault=kind, severity=severity, active=active, detail=detail[:500])

    def _state_event(self, status: ControllerStatus) -> list[Payload]:
        groups = {g.id: status.group_states[k] for k, g in enumerate(self.plan.signal_groups)}
        key = (status.control_mode, status.plan_number, status.plan_checksum, status.cycle_ds, status.offset_ds,
               status.greens_ds, status.current_stage, status.interval, tuple(groups.values()))
        unknown = status.control_mode not in MODES or any(v.startswith("unknown_") for v in (status.interval, *groups.values()))
        if key == self._last_state_key or unknown:  # unknown codes are reported as a protocol fault
            return []
        self._last_state_key = key
        return [SignalStateReported(
            controller_id=self.site.id, mode=MODES[status.control_mode], plan_id=status.plan_number,
            cycle_s=status.cycle_ds / DS_PER_S, stage=status.current_stage, stage_elapsed_s=status.stage_timer_ds / DS_PER_S,
            group_states={g: GroupState(s) for g, s in groups.items()}, interval=SignalInterval(status.interval),
            cycle_elapsed_s=status.cycle_timer_ds / DS_PER_S, plan_checksum=f"{status.plan_checksum:08x}",
            offset_s=status.offset_ds / DS_PER_S, stage_greens_s=[g / DS_PER_S for g in status.greens_ds])]

    def _count_events(self, status: ControllerStatus, at: datetime) -> list[Payload]:
        base = self._count_base
        if base is None:
            self._count_base = (at, status.detector_counts, status.detector_occupied_ds)
            return []
        since, counts, occupied = base
        interval_s = (at - since).total_seconds()
        if interval_s < self.count_interval_s:
            return []
        self._count_base = (at, status.detector_counts, status.detector_occupied_ds)
        readings: list[DetectorReading] = []
        for k, detector in enumerate(self.detectors):
            vehicles = (status.detector_counts[k] - counts[k]) % 2**32
            occupied_s = ((status.detector_occupied_ds[k] - occupied[k]) % 2**16) / DS_PER_S
            readings.append(DetectorReading(detector_id=detector.id, volume=VolumeByClass(unclassified=min(vehicles, 100_000)),
                                            occupancy=min(1.0, occupied_s / interval_s),
                                            lane=f"{detector.movement}/{detector.lane}"))
        if not readings:
            return []
        return [DetectorsCounted(controller_id=self.site.id, interval_s=min(interval_s, 3600.0), readings=readings)]

    async def _emit(self, payload: Payload, at: datetime | None = None, causation_id: uuid.UUID | None = None) -> None:
        at = at or self.clock()
        await self.sink.emit(payload, source=self.source, key=self.site.id, event_time=at, causation_id=causation_id)
        if isinstance(payload, ControllerFaulted):
            if payload.fault in NOTICE_KINDS:
                self.notices.append((at, payload))
            elif payload.fault in FINDING_KINDS and payload.active:
                self.findings[payload.fault] = payload
            elif payload.fault in FINDING_KINDS:
                self.findings.pop(payload.fault, None)

    # --- the high-resolution event log ------------------------------------------------------
    async def read_event_log(self) -> int:
        """Read the log entries after the last one read (at most ``log_max_entries``), emit them; returns how many.

        The first read after the driver starts, and after the controller restarted, begins at the
        oldest entry the ring holds: a reader keeps one copy per (controller, boot, seq). A
        controller that refuses the log's registers gets one ``event_log`` notice and is not asked
        again until the next connection.
        """
        async with self._log_lock:
            if not self._log_served:
                return 0
            layout = self.regmap.event_log
            registers = await self._read_input(layout.header_address, layout.header_size)
            if registers is None:
                return 0
            header = parse_log_header(self.regmap, registers)
            read_at = self.clock()
            origin = self._clock_origin(header, read_at)
            if header.boot != self._log_boot or header.head_seq < self._log_next - 1:
                self._log_boot, self._log_next = header.boot, 1  # a new log (first read, or a restart)
            wanted = plan_log_read(header, self._log_next, self.log_max_entries)
            entries: list[LogEntry] = []
            for address, count, first in log_requests(self.regmap, wanted.first_seq, wanted.last_seq):
                got = await self._read_input(address, count)
                if got is None:
                    return 0
                batch = parse_log_entries(self.regmap, got)
                intact = [e for k, e in enumerate(batch) if e.seq == first + k]
                if len(intact) < len(batch):  # overwritten while being read: the next read counts what was lost
                    entries += batch[:next(k for k, e in enumerate(batch) if e.seq != first + k)]
                    break
                entries += batch
            self._log_next = entries[-1].seq + 1 if entries else wanted.first_seq
            for payload in self._log_events(header, origin, entries, wanted.first_seq, wanted.lost):
                await self._emit(payload, read_at)
            return len(entries)

    def _clock_origin(self, header: LogHeader, read_at: datetime) -> datetime:
        """lalin's time at the controller's clock 0 of this boot (see ``LOG_REANCHOR_S``)."""
        seen = read_at - timedelta(seconds=header.clock_ds / DS_PER_S)
        if (self._log_origin is None or self._log_origin[0] != header.boot
                or abs((seen - self._log_origin[1]).total_seconds()) > LOG_REANCHOR_S):
            if self._log_origin is not None and self._log_origin[0] == header.boot:
                log.warning("controller %s: its clock drifted %.1f s from lalin's; event-log times tied again", self.site.id,
                            (seen - self._log_origin[1]).total_seconds())
            self._log_origin = (header.boot, seen)
        return self._log_origin[1]

    async def _read_input(self, address: int, count: int) -> list[int] | None:
        """Input registers of the event log; None (and one notice) when the controller refuses them."""
        response = await self._request("read_input_registers", address, count=count)
        if not response.isError():
            return list(response.registers)
        self._log_served = False
        await self._emit(self._fault(FaultKind.EVENT_LOG, Severity.WARNING, False,
                                     f"the controller refuses the event log's registers {address}-{address + count - 1} "
                                     f"(exception {response.exception_code}): no high-resolution data until it reconnects"))
        return None

    def _log_events(self, header: LogHeader, origin: datetime, entries: list[LogEntry], first_seq: int,
                    lost: int) -> list[Payload]:
        """The notices and batches of one read: entries as lalin's ids and times (``origin``: lalin's time at the
        controller's clock 0)."""
        events: list[Payload] = []
        if lost:
            log.warning("controller %s: %d event-log entries lost before seq %d", self.site.id, lost, first_seq)
            events.append(self._fault(FaultKind.EVENT_LOG, Severity.WARNING, False,
                                      f"{lost} event-log entries (seq {first_seq - lost}-{first_seq - 1}, boot {header.boot}) "
                                      f"were overwritten before lalin read them: the ring holds {header.capacity}"))
        logged: list[LoggedEvent] = []
        problems: list[str] = []
        for e in entries:
            code = self._log_codes.get(e.code)
            ids = [d.id for d in self.detectors] if e.code in DETECTOR_CODES else [g.id for g in self.plan.signal_groups]
            if code is None or not 0 <= e.param < len(ids):
                problems.append(f"seq {e.seq}: {e.code} param {e.param}")
                continue
            logged.append(LoggedEvent(seq=e.seq, code=code, param=ids[e.param],
                                      at=origin + timedelta(seconds=e.clock_ds / DS_PER_S)))
        if problems:
            events.append(self._fault(FaultKind.EVENT_LOG, Severity.WARNING, False,
                                      f"{len(problems)} event-log entries name a code or an index lalin does not know: "
                                      + "; ".join(problems[:10])))
        for k in range(0, len(logged), LOG_BATCH):
            events.append(ControllerEventsLogged(controller_id=self.site.id, boot=header.boot,
                                                 entries=logged[k:k + LOG_BATCH], lost=lost if k == 0 else 0))
        return events

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
        read-back; after it — or when the driver stops — the command is ``timed_out``. Refused
        locally (any failure before the write), by the controller, dropped, or read back
        different: ``rejected`` with the reason.
        """
        async with self._commands:
            outcome, detail = CommandOutcome.TIMED_OUT, "no confirmation from the controller before the deadline"
            seq: list[int] = []  # the command_seq, once numbered
            try:
                try:
                    prepared = prepare_command(self.site, self.plan, body, self.plan_checksum)
                    command_registers(self.regmap, prepared, 1)  # every value fits its register
                except ValueError as refusal:  # CommandRefused, or a value outside its register's range
                    outcome, detail = CommandOutcome.REJECTED, f"refused by lalin before sending: {refusal}"
                else:
                    deadline = asyncio.get_running_loop().time() + (deadline_s if deadline_s is not None
                                                                    else self.default_deadline_s(body))
                    outcome, detail = await self._carry_out(prepared, deadline, seq)
            finally:
                if outcome == CommandOutcome.TIMED_OUT and seq:
                    self._timed_out[seq[0]] = command_id  # a late application gets reported
                    while len(self._timed_out) > TIMED_OUT_MEMORY:
                        del self._timed_out[next(iter(self._timed_out))]
                ack = CommandAcknowledged(command_id=command_id, target=self.site.id, outcome=outcome, detail=detail[:500])
                await self._emit(ack, causation_id=command_id)
            return ack

    async def _carry_out(self, prepared: PreparedCommand, deadline: float, numbered: list[int]) -> tuple[CommandOutcome, str]:
        loop = asyncio.get_running_loop()
        seq: int | None = None
        written = seen_pending = False
        while True:
            left = deadline - loop.time()
            if self._stopping or left <= 0:
                why = "the driver stopped before" if self._stopping else "no confirmation before the deadline of"
                return CommandOutcome.TIMED_OUT, (f"{why} command_seq {seq}"
                                                  f"{' (accepted, pending at the controller)' if seen_pending else ''}")
            if not self.connected.is_set():
                await self._wait_for_connection(left)
                continue
            try:
                if seq is None:
                    seq = await self._fresh_seq()
                    numbered.append(seq)
                if not written:
                    written = True  # from here on, a timeout may mean "applied": only a read-back decides
                    response = await self._request("write_registers", 0, command_registers(self.regmap, prepared, seq))
                    refused = await self._refused(prepared, seq, response.exception_code) if response.isError() else None
                    if refused is not None:
                        return refused
                status = await self.read_status()
                found, detail = verdict(prepared, seq, status, seen_pending)
                if found in ("dropped", "unseen") and status.last_command_seq != seq and await self._holding_seq() != seq:
                    # no trace of it: the write never landed, or the controller restarted and forgot it;
                    # send the same block again (the controller takes a command_seq at most once)
                    written = seen_pending = False
                    continue
                if found != "pending":
                    return await self._conclude(prepared, found, f"command_seq {seq}: {detail}")
                seen_pending = True
            except (ModbusException, OSError, TimeoutError) as err:
                if isinstance(err, ModbusException | TimeoutError):
                    await self._lost(err)
                continue
            await asyncio.sleep(min(self.command_poll_s, max(0.0, deadline - loop.time())))

    async def _refused(self, prepared: PreparedCommand, seq: int, code: int) -> tuple[CommandOutcome, str] | None:
        """An exception response: the read-back decides (a gateway may answer with an exception after
        the controller acted). None: the controller holds it pending after all, wait as for any command."""
        found, detail = verdict(prepared, seq, await self.read_status(), False)
        if found == "pending":
            return None
        if found in ("unseen", "dropped"):
            return CommandOutcome.REJECTED, f"command_seq {seq}: Modbus exception {code}"
        return await self._conclude(prepared, found, f"command_seq {seq}: {detail}")

    async def _wait_for_connection(self, timeout_s: float) -> None:
        waits = [asyncio.ensure_future(self.connected.wait()), asyncio.ensure_future(self._stopped.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _conclude(self, prepared: PreparedCommand, found: str, detail: str) -> tuple[CommandOutcome, str]:
        if found == "acknowledged":
            if self._mismatch and prepared.command == "apply_timing":  # only a timing read back as sent clears it
                self._mismatch = False
                await self._emit(self._fault(FaultKind.READBACK_MISMATCH, Severity.CRITICAL, False,
                                             f"a later timing read back as sent: {detail}"))
            return CommandOutcome.ACKNOWLEDGED, detail
        if found == "mismatch":
            self._mismatch = True
            await self._emit(self._fault(FaultKind.READBACK_MISMATCH, Severity.CRITICAL, True, detail))
        return CommandOutcome.REJECTED, detail  # rejected, dropped, or acknowledged with something else running

    async def _holding_seq(self) -> int:
        response = await self._request("read_holding_registers", 0, count=1)
        if response.isError():
            raise ModbusException(f"controller {self.site.id}: holding read refused with exception {response.exception_code}")
        return int(response.registers[0])

    async def _fresh_seq(self) -> int:
        """The next command_seq: past the highest the controller shows (read once per connection, then
        counted here: this driver is the controller's only central) and unlike every number its
        registers show now, so an old command's trace is never taken for the new one's."""
        if self._last_seq is None or self.status is None:
            status = await self.read_status()
            in_use = numbers_in_use(status, await self._holding_seq())
            self._last_seq = status.last_command_seq
        else:  # only this driver's commands move the numbers between polls (a restart means a reconnect)
            in_use = numbers_in_use(self.status, self._last_seq)
        self._last_seq = next_seq(self._last_seq, *in_use)
        return self._last_seq
