"""A VMS board simulator: an asyncua OPC UA server implementing lalin's board model.

The address space is built from ``vms_model.yaml`` (every declared variable and method); the
board's behaviour is :mod:`devices.vms_board` (pure), with a short render delay before what the
board shows is published. Security is on and cannot be turned off
(:func:`devices.opcua_server.secure_server`): SignAndEncrypt endpoints only (Basic256Sha256,
Aes256Sha256RsaPss), user name and password only (no anonymous), client certificates validated
against the site CA and bound to the secure channel, and the model's roles enforced per OPC UA
service.

Hooks for tests and demos change the simulated hardware: :meth:`VmsBoardSimulator.set_pixel_faults`,
:meth:`~VmsBoardSimulator.set_door_open`, :meth:`~VmsBoardSimulator.set_power_failure`,
:meth:`~VmsBoardSimulator.set_display_fault`, :meth:`~VmsBoardSimulator.set_brightness` and
:meth:`~VmsBoardSimulator.set_faulty_display` (the board then shows its first page dark while
reporting the message as shown: a read-back mismatch to catch).

A restart (:meth:`~VmsBoardSimulator.stop` then :meth:`~VmsBoardSimulator.start`) is a reboot on
the same port: the display, pending message and remembered ids are lost; the hardware
conditions set by the hooks stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds

from controllers.errors import ConfigurationError
from devices import vms_board
from devices.events import utc_now
from devices.opcua_common import MIN_DATETIME, VARIANT_TYPES, data_value, make_status, node_id, numeric_node_id, status_code
from devices.opcua_server import SecureInternalServer, secure_server
from devices.pki import Issued, PkiError, PkiPaths
from devices.users import UserStore
from devices.vms_model import BoardSpec, Capabilities, Refusal, VmsModel, capabilities, load_model

_log = logging.getLogger(__name__)
Key = tuple[str, str]  # (folder, name)


class _Malformed(ValueError):
    pass


def _arg(args: tuple[ua.Variant, ...], index: int, kinds: type | tuple[type, ...], what: str) -> Any:
    value = args[index].Value
    if (isinstance(value, bool) and kinds is not bool) or not isinstance(value, kinds):
        raise _Malformed(f"{what} is {type(value).__name__} {value!r}")
    return value


class VmsBoardSimulator:
    """One simulated board: an OPC UA server on ``host:port`` (port 0 picks a free one, kept on restart).

    ``render_delay_s`` (seconds) passes between accepting a message and showing it.
    ``address_space_cache`` (from :func:`devices.opcua_server.prepare_address_space_cache`) makes
    :meth:`start` take about 0.05 s instead of 1 s: use it when running many boards.
    """

    def __init__(self, spec: BoardSpec, pki_dir: Path, *, model: VmsModel | None = None, host: str = "127.0.0.1",
                 port: int = 0, render_delay_s: float = 0.2, clock: Callable[[], datetime] = utc_now,
                 users: UserStore | None = None, certificate: Issued | None = None,
                 address_space_cache: Path | None = None) -> None:
        self.spec, self.model = spec, model or load_model()
        self.caps: Capabilities = capabilities(self.model, spec)
        self.pki, self.host, self._port = PkiPaths(pki_dir), host, port
        self.render_delay_s, self._clock = render_delay_s, clock
        self._users, self._certificate, self._address_space_cache = users, certificate, address_space_cache
        self.state = vms_board.BoardState()
        self._last: tuple[str, str, str] = ("", "", "")  # last request: id, result, refusal reason
        self._hardware: dict[str, Any] = {"BrightnessPct": 100, "PixelFaultCount": 0, "DoorOpen": False,
                                          "PowerFailure": False, "DisplayFault": False}
        self._faulty_display = False
        self._server: Server | None = None
        self._nodes: dict[Key, ua.NodeId] = {}
        self._published: dict[Key, Any] = {}
        self._render_due: float | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------

    @property
    def board_id(self) -> str:
        """The board's id."""
        return self.spec.id

    @property
    def port(self) -> int:
        """The TCP port the server listens on (0 before the first start with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The server's endpoint URL (``opc.tcp://host:port/lalin/vms``)."""
        return f"opc.tcp://{self.host}:{self._port}/lalin/vms"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def start(self) -> None:
        """Build the address space and listen (about 1 s: asyncua loads the standard address space;
        0.05 s with an address space cache)."""
        if self._server is not None:
            raise RuntimeError(f"board simulator {self.board_id} is already running on port {self._port}")
        self.state, self._last, self._published = vms_board.BoardState(), ("", "", ""), {}  # a reboot
        self.state = vms_board.set_power_failure(self.state, self._power_failed)
        self.state = vms_board.set_display_fault(self.state, bool(self._hardware["DisplayFault"]))
        self._wake, self._render_due = asyncio.Event(), None
        server = await self._secure_server()
        await self._build_address_space(server)
        await server.start()
        if server.bserver is None or server.bserver.port is None:
            raise RuntimeError(f"board simulator {self.board_id}: the server did not bind {self.host}:{self._port}")
        self._server, self._port = server, server.bserver.port
        await self._publish(self._request_values() | self._display_values())
        self._loop_task = asyncio.create_task(self._run(), name=f"vms-sim-{self.board_id}")

    async def stop(self) -> None:
        """Stop listening (clients see the connection drop) and stop the board's timers."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
            if isinstance(server.iserver, SecureInternalServer):
                await server.iserver.close_sessions()

    async def __aenter__(self) -> VmsBoardSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _secure_server(self) -> Server:
        cert = self._certificate or self.pki.board(self.board_id)
        if not cert.certificate.exists():
            raise PkiError(f"no certificate for board {self.board_id} at {cert.certificate} "
                           "(lalin pki init, or devices.pki.issue_board_certificate)")
        users = self._users if self._users is not None else UserStore.load(self.pki.users_file)
        server = await secure_server(self.model, self.pki, cert, users, endpoint_url=self.url,
                                     application_uri=self.model.application_uri(self.board_id),
                                     name=f"lalin VMS board {self.board_id}", address_space_cache=self._address_space_cache)
        # asyncua's 1 Hz ServerStatus.CurrentTime task makes stop() wait up to 1 s: a simulator goes without it
        server.disable_clock()
        return server

    # --- address space ------------------------------------------------------------------

    def _static_values(self) -> dict[Key, Any]:
        s, m = self.spec, self.model
        return {("Identity", "BoardId"): s.id, ("Identity", "Site"): s.site, ("Identity", "Manufacturer"): s.manufacturer,
                ("Identity", "Model"): s.model, ("Identity", "ModelVersion"): m.version,
                ("Capabilities", "LineCount"): s.lines, ("Capabilities", "CharactersPerLine"): s.characters_per_line,
                ("Capabilities", "MaxPages"): s.max_pages, ("Capabilities", "CharacterSet"): m.charsets[s.charset],
                ("Capabilities", "LowestPriority"): m.priority.lowest, ("Capabilities", "MinPageTimeS"): s.min_page_time_s,
                ("Capabilities", "MaxDurationS"): s.max_duration_s}

    async def _build_address_space(self, server: Server) -> None:
        idx = await server.register_namespace(self.model.namespace_uri)
        root = self.model.board_object
        board = await server.nodes.objects.add_object(node_id(root, idx), ua.QualifiedName(root, idx))
        values = self._static_values() | self._request_values() | self._display_values()
        declared = {(v.folder, v.name) for v in self.model.variables}
        if declared != set(values):
            raise ConfigurationError(f"the simulator binds {sorted(set(values) ^ declared)} unlike the model declares")
        folders: dict[str, Any] = {}
        for v in self.model.variables:
            if v.folder not in folders:
                folders[v.folder] = await board.add_object(node_id(f"{root}.{v.folder}", idx), ua.QualifiedName(v.folder, idx))
            nid = node_id(self.model.node_id(v.folder, v.name), idx)
            node = await folders[v.folder].add_variable(nid, ua.QualifiedName(v.name, idx),
                                                        ua.Variant(values[(v.folder, v.name)], VARIANT_TYPES[v.type]))
            if v.unit:
                await node.write_attribute(AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(
                    f"{v.description} ({v.unit})"))))
            self._nodes[(v.folder, v.name)] = nid
        handlers = {"ShowMessage": self._show_message, "Blank": self._blank}
        for m in self.model.methods:
            inputs = [ua.Argument(Name=a.name, DataType=numeric_node_id(VARIANT_TYPES[a.type].value),
                                  ValueRank=1 if a.type.endswith("[]") else -1, Description=ua.LocalizedText(a.description))
                      for a in m.inputs]
            outputs = [ua.Argument(Name=a.name, DataType=numeric_node_id(VARIANT_TYPES[a.type].value), ValueRank=-1,
                                   Description=ua.LocalizedText(a.description)) for a in m.outputs]
            await board.add_method(node_id(self.model.method_node_id(m.name), idx), ua.QualifiedName(m.name, idx),
                                   handlers[m.name], inputs, outputs)

    # --- what the board publishes ------------------------------------------------------

    def _request_values(self) -> dict[Key, Any]:
        pending = self.state.pending
        return {("Request", "LastRequestId"): self._last[0], ("Request", "LastResult"): self._last[1],
                ("Request", "LastRefusalReason"): self._last[2],
                ("Request", "PendingMessageId"): pending.message_id if pending else "",
                ("Request", "PendingActivationTime"): (pending.activation_time or MIN_DATETIME) if pending else MIN_DATETIME}

    def _display_values(self) -> dict[Key, Any]:
        shown = self.state.shown
        pages = list(shown.pages) if shown else []
        if self._faulty_display and pages:
            pages[0] = ""  # the first page stays dark while the board reports the message as shown
        hw = self._hardware
        return {("Display", "Status"): vms_board.status(self.state), ("Display", "Pages"): pages,
                ("Display", "Priority"): shown.priority if shown else 0,
                ("Display", "PageTimeS"): shown.page_time_s if shown else 0.0,
                ("Display", "ActivatedAt"): shown.activated_at if shown else MIN_DATETIME,
                ("Display", "ExpiresAt"): (shown.expires_at or MIN_DATETIME) if shown else MIN_DATETIME,
                ("Health", "BrightnessPct"): hw["BrightnessPct"], ("Health", "PixelFaultCount"): hw["PixelFaultCount"],
                ("Health", "DoorOpen"): hw["DoorOpen"], ("Health", "PowerFailure"): self._power_failed,
                ("Display", "MessageId"): shown.message_id if shown else ""}  # last: readers act on the id

    async def _publish(self, values: dict[Key, Any]) -> None:
        """Write the values that changed, in order, without yielding in between (one notification batch)."""
        server = self._server
        if server is None:
            return
        now = self._clock()
        for key, value in values.items():
            if key in self._published and self._published[key] == value:
                continue
            vtype = VARIANT_TYPES[self.model.variable(*key).type]
            await server.write_attribute_value(self._nodes[key], data_value(value, vtype, now))
            self._published[key] = value

    def _changed(self, delay_s: float | None = None) -> None:
        """Something changed: render after ``delay_s`` (default the render delay) unless a render is due sooner."""
        due = asyncio.get_running_loop().time() + (self.render_delay_s if delay_s is None else delay_s)
        self._render_due = due if self._render_due is None else min(self._render_due, due)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self._clock()
            advanced = vms_board.advance(self.state, now)
            if advanced is not self.state:
                self.state = advanced
                self._changed()
            if self._render_due is not None and loop.time() >= self._render_due:
                self._render_due = None
                await self._publish(self._request_values() | self._display_values())
            waits = [self._render_due - loop.time()] if self._render_due is not None else []
            change = vms_board.next_change_at(self.state)
            if change is not None:
                waits.append((change - now).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(waits)) if waits else None)

    # --- methods --------------------------------------------------------------------------

    def _answer(self, message_id: str, outcome: vms_board.Outcome) -> ua.CallMethodResult:
        refusal: Refusal | None = outcome.refusal
        reason = str(refusal) if refusal is not None else ""
        self._last = (message_id, outcome.result, reason)
        result = ua.CallMethodResult()
        if refusal is not None:
            result.StatusCode = make_status(status_code(self.model.refusals[refusal.code].status))  # type: ignore[index]
        result.OutputArguments = [ua.Variant(outcome.result, ua.VariantType.String), ua.Variant(reason, ua.VariantType.String)]
        return result

    def _parse_show(self, args: tuple[ua.Variant, ...]) -> vms_board.MessageRequest:
        if len(args) != len(self.model.method("ShowMessage").inputs):
            raise _Malformed(f"{len(args)} arguments; ShowMessage takes {len(self.model.method('ShowMessage').inputs)}")
        pages = args[1].Value if args[1].Value is not None else []
        if not isinstance(pages, list) or not all(isinstance(p, str) for p in pages):
            raise _Malformed(f"Pages is {pages!r}, not an array of strings")
        activation = _arg(args, 3, datetime, "ActivationTime")
        return vms_board.MessageRequest(
            message_id=_arg(args, 0, str, "MessageId"), pages=tuple(pages), priority=_arg(args, 2, int, "Priority"),
            activation_time=None if activation <= MIN_DATETIME else activation,
            duration_s=float(_arg(args, 4, (int, float), "DurationS")),
            page_time_s=float(_arg(args, 5, (int, float), "PageTimeS")))

    async def _show_message(self, parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
        try:
            request = self._parse_show(args)
        except _Malformed as err:
            message_id = args[0].Value if args and isinstance(args[0].Value, str) else ""
            answer = self._answer(message_id, vms_board.Outcome("refused", Refusal("malformed", str(err))))
        else:
            before = self.state
            self.state, outcome = vms_board.show(self.state, self.caps, request, self._clock())
            answer = self._answer(request.message_id, outcome)
            if self.state.shown is not before.shown:
                self._changed()
        await self._publish(self._request_values())
        self._wake.set()
        return answer

    async def _blank(self, parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
        if len(args) != 1 or not isinstance(args[0].Value, str):
            answer = self._answer("", vms_board.Outcome("refused", Refusal("malformed", "Blank takes one String MessageId")))
        else:
            before = self.state
            self.state, outcome = vms_board.blank(self.state, args[0].Value, self._clock())
            answer = self._answer(args[0].Value, outcome)
            if self.state.shown is not before.shown:
                self._changed()
        await self._publish(self._request_values())
        self._wake.set()
        return answer

    # --- hooks: the simulated hardware ----------------------------------------------------

    @property
    def _power_failed(self) -> bool:
        return bool(self._hardware.get("PowerFailure", False))

    async def _hardware_changed(self) -> None:
        if self._server is not None:
            await self._publish(self._request_values() | self._display_values())

    async def set_pixel_faults(self, count: int) -> None:
        """The self-test found ``count`` dead pixels (0 or more)."""
        if count < 0:
            raise ValueError(f"pixel fault count {count} pixels is negative")
        self._hardware["PixelFaultCount"] = count
        await self._hardware_changed()

    async def set_door_open(self, is_open: bool) -> None:
        """The cabinet door opens (True) or closes (False)."""
        self._hardware["DoorOpen"] = is_open
        await self._hardware_changed()

    async def set_brightness(self, pct: int) -> None:
        """The board dims to ``pct`` percent (0..100)."""
        if not 0 <= pct <= 100:
            raise ValueError(f"brightness {pct} % is outside 0..100 %")
        self._hardware["BrightnessPct"] = pct
        await self._hardware_changed()

    async def set_power_failure(self, failed: bool) -> None:
        """Mains power fails (the board goes off and forgets its message) or returns (blank)."""
        self._hardware["PowerFailure"] = failed
        self.state = vms_board.set_power_failure(self.state, failed)
        await self._hardware_changed()

    async def set_display_fault(self, faulted: bool) -> None:
        """The display controller fails (status fault, the board goes dark) or is repaired (blank)."""
        self._hardware["DisplayFault"] = faulted
        self.state = vms_board.set_display_fault(self.state, faulted)
        await self._hardware_changed()

    async def set_faulty_display(self, faulty: bool) -> None:
        """From now on the board renders messages wrongly (first page dark) while reporting them as shown."""
        self._faulty_display = faulty
        await self._hardware_changed()
