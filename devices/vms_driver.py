"""The VMS board driver: one asyncua client per board, turning what the board reports into events
and carrying out message commands with read-back.

* One SignAndEncrypt connection per board (the central's certificate, user name and password);
  the board's certificate must chain to the site CA and carry the board's application URI.
* A subscription on every variable of the model's Display and Health folders: each change
  becomes a :class:`VmsDisplayReported` (when the picture changed) and fault changes become
  :class:`VmsFaulted` (raised and cleared): pixel faults at or above the board's threshold,
  door open, power failure, display controller fault, read-back mismatch (the board shows a
  message lalin sent with other text or priority), and comms_lost (raised when the connection
  drops, cleared when asyncua's auto-reconnect has re-established it; subscriptions are
  re-created by asyncua, and the driver reads the whole picture again).
* :meth:`VmsDriver.send` calls ``ShowMessage`` once (never re-sent: the message id is the
  command id, and the board is idempotent by it) and ends in exactly ONE
  :class:`CommandAcknowledged`: ``acknowledged`` only when the subscription shows the board
  displaying exactly that message; ``rejected`` when the board refused (detail: its reason);
  ``timed_out`` when no confirmation came before the deadline (the board down, or showing
  something else).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509

from controllers.errors import LalinError
from controllers.payloads import (
    CommandAcknowledged,
    CommandBody,
    CommandOutcome,
    Payload,
    VmsBlankCommand,
    VmsDisplayReported,
    VmsFaulted,
    VmsFaultKind,
    VmsMessageCommand,
    VmsStatus,
)
from devices.events import EventSink, utc_now
from devices.opcua_common import CLIENT_POLICIES, MIN_DATETIME, node_id, site_trust_store, status_name
from devices.pki import CENTRAL_USER, PkiPaths, read_password
from devices.vms_model import BoardSpec, VmsModel, decode_pages, encode_pages, load_model

_log = logging.getLogger(__name__)
WATCHED_FOLDERS = ("Display", "Health")
SENT_MEMORY = 64  # messages remembered for read-back comparison
DETAIL_MAX = 500  # characters (CommandAcknowledged.detail, VmsFaulted.detail)
#: Service results that prove the board did not take the call (anything else leaves its fate unknown).
DEFINITE_REFUSALS = frozenset(getattr(StatusCodes, n) for n in (
    "BadUserAccessDenied", "BadNotExecutable", "BadMethodInvalid", "BadNodeIdUnknown", "BadNodeIdInvalid",
    "BadArgumentsMissing", "BadTooManyArguments", "BadTypeMismatch", "BadInvalidArgument", "BadOutOfRange",
    "BadInvalidState", "BadDeviceFailure", "BadIdentityTokenRejected"))


#: Session timeout asked of a board (milliseconds): asyncua servers grant at most 10 minutes.
SESSION_TIMEOUT_MS = 600_000


class BoardConnectionError(LalinError):
    """The driver could not connect to a board (unreachable, or refused: certificate, user, policy)."""


@dataclass(frozen=True)
class ClientCredentials:
    """What the central presents to a board: certificate and key (PEM), user and password, the
    application URI in its certificate, and the directory of trusted CA certificates."""

    certificate: Path
    private_key: Path
    trust_dir: Path
    username: str
    password: str
    application_uri: str

    @classmethod
    def central(cls, pki_dir: Path, user: str = CENTRAL_USER, model: VmsModel | None = None) -> ClientCredentials:
        """The central's credentials from a PKI directory made by ``lalin pki init``."""
        paths = PkiPaths(pki_dir)
        return cls(certificate=paths.central.certificate, private_key=paths.central.private_key,
                   trust_dir=paths.trust_dir, username=user, password=read_password(pki_dir, user),
                   application_uri=(model or load_model()).central_application_uri)


class Snapshot(msgspec.Struct, frozen=True):
    """What a board reports (Display and Health folders), pages in wire form."""

    status: str = "blank"
    message_id: str = ""
    pages: tuple[str, ...] = ()
    priority: int = 0
    brightness_pct: int = 100
    pixel_faults: int = 0
    door_open: bool = False
    power_failure: bool = False

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Snapshot:
        """From the board's variable values by name (a missing or null value keeps its default)."""
        def get(name: str, default: Any) -> Any:
            value = values.get(name)
            return default if value is None else value

        return cls(status=str(get("Status", "blank")), message_id=str(get("MessageId", "")),
                   pages=tuple(str(p) for p in get("Pages", ())), priority=int(get("Priority", 0)),
                   brightness_pct=int(get("BrightnessPct", 100)), pixel_faults=int(get("PixelFaultCount", 0)),
                   door_open=bool(get("DoorOpen", False)), power_failure=bool(get("PowerFailure", False)))


@dataclass
class _Waiter:
    confirms: Callable[[Snapshot], bool]
    done: asyncio.Future[None]


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_MAX else text[:DETAIL_MAX - 3] + "..."


class VmsDriver:
    """Drives one board at ``url``; events go to ``sink`` with source ``opcua:<board id>`` and key the board id.

    Times are seconds: ``request_timeout_s`` per OPC UA request, ``command_timeout_s`` the
    default deadline of a command, ``reconnect_max_delay_s`` the cap of the reconnect backoff;
    ``publish_interval_ms`` is the subscription's publishing interval (milliseconds).
    """

    def __init__(self, spec: BoardSpec, url: str, sink: EventSink, credentials: ClientCredentials, *,
                 model: VmsModel | None = None, policy: str = "Aes256Sha256RsaPss", clock: Callable[[], datetime] = utc_now,
                 publish_interval_ms: float = 100.0, request_timeout_s: float = 4.0, command_timeout_s: float = 10.0,
                 reconnect_max_delay_s: float = 2.0, watchdog_interval_s: float = 1.0) -> None:
        self.spec, self.url, self.sink, self.credentials = spec, url, sink, credentials
        self.model = model or load_model()
        if policy not in self.model.security.policies:
            raise ValueError(f"security policy {policy!r} is not one of the model's {self.model.security.policies}")
        self.policy, self._clock = policy, clock
        self.publish_interval_ms, self.request_timeout_s = publish_interval_ms, request_timeout_s
        self.command_timeout_s, self.reconnect_max_delay_s = command_timeout_s, reconnect_max_delay_s
        self.watchdog_interval_s = watchdog_interval_s
        self.source, self.key = f"opcua:{spec.id}", spec.id
        self.snapshot = Snapshot()
        self._values: dict[str, Any] = {}
        self._reported: Snapshot | None = None
        self._faults: dict[VmsFaultKind, bool] = {}
        self._sent: OrderedDict[str, tuple[tuple[str, ...], int]] = OrderedDict()
        self._waiters: dict[str, _Waiter] = {}
        self._client: Client | None = None
        self._ns = 0
        self._names: dict[ua.NodeId, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._connecting: asyncio.Task[None] | None = None  # the background connection attempts of start(retry=True)
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()

    # --- life cycle -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the OPC UA session is up now."""
        return self._client is not None and self._client.uaclient.state is UaClientState.CONNECTED

    def active_faults(self) -> list[str]:
        """The faults raised and not cleared (comms_lost, power_failure, ...), sorted."""
        return sorted(kind.value for kind, active in self._faults.items() if active)

    async def start(self, *, retry: bool = False) -> None:
        """Connect, read the board's picture, subscribe. BoardConnectionError (naming the board, URL
        and status code) when the board is unreachable or refuses the certificate, user or password.

        With ``retry`` a failure is reported instead (a ``comms_lost`` fault naming it) and the
        driver keeps trying in the background with exponential backoff (0.5 s doubling to
        ``reconnect_max_delay_s``), as a command centre needs when a board is down at start-up;
        the fault clears when the board answers. Commands meanwhile end ``timed_out``.
        """
        if not retry:
            await self._start_once()
            return
        try:
            await self._start_once()
        except BoardConnectionError as err:
            await self._set_fault(VmsFaultKind.COMMS_LOST, True, str(err))
            self._connecting = asyncio.create_task(self._keep_trying(), name=f"vms-driver-{self.spec.id}-connect")

    async def _keep_trying(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_delay_s)
            try:
                await self._start_once()
            except BoardConnectionError as err:
                _log.info("board %s: still unreachable: %s", self.spec.id, err)
                continue
            await self._set_fault(VmsFaultKind.COMMS_LOST, False, f"connected to {self.url}")
            return

    async def _start_once(self) -> None:
        client = await self._make_client()
        try:
            await client.connect()
        except (UaError, OSError, TimeoutError) as err:
            with contextlib.suppress(UaError, OSError, TimeoutError):
                await client.disconnect()
            raise BoardConnectionError(f"board {self.spec.id} at {self.url}: {_describe(err)}") from err
        self._client = client
        try:
            await self._subscribe(client)
        except (UaError, OSError, TimeoutError, ValueError) as err:
            await self.stop()
            raise BoardConnectionError(f"board {self.spec.id} at {self.url} does not serve the model "
                                       f"{self.model.namespace_uri}: {_describe(err)}") from err
        self._tasks = [asyncio.create_task(self._evaluate_changes(), name=f"vms-driver-{self.spec.id}-data"),
                       asyncio.create_task(self._watch_connection(client), name=f"vms-driver-{self.spec.id}-link")]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    async def _subscribe(self, client: Client) -> None:
        self._ns = await client.get_namespace_index(self.model.namespace_uri)
        watched = [v for v in self.model.variables if v.folder in WATCHED_FOLDERS]
        nodes = [client.get_node(node_id(self.model.node_id(v.folder, v.name), self._ns)) for v in watched]
        self._names = {node.nodeid: v.name for node, v in zip(nodes, watched, strict=True)}
        await self._refresh()
        subscription = await client.create_subscription(self.publish_interval_ms, self)
        await subscription.subscribe_data_change(nodes, sampling_interval=ua.Double(0))

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("board %s: driver task %s failed; the board is no longer followed", self.spec.id,
                       task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel the driver's tasks and close the connection (commands in flight end timed_out at their deadline)."""
        tasks, self._tasks = self._tasks, []
        connecting, self._connecting = self._connecting, None
        if connecting is not None and connecting is not asyncio.current_task():
            tasks.append(connecting)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(UaError, OSError, TimeoutError):
                await client.disconnect()
            # asyncua leaves its publish loop running when the connection was already gone (board down)
            publish: asyncio.Task[None] | None = getattr(client.uaclient, "_publish_task", None)
            if publish is not None and not publish.done():
                publish.cancel()
                with contextlib.suppress(asyncio.CancelledError, UaError, OSError, ConnectionError):
                    await publish

    async def __aenter__(self) -> VmsDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _make_client(self) -> Client:
        try:
            return await make_client(self.url, self.credentials, board_id=self.spec.id, model=self.model,
                                     policy=self.policy, request_timeout_s=self.request_timeout_s,
                                     reconnect_max_delay_s=self.reconnect_max_delay_s,
                                     reconnect_request_timeout_s=self.command_timeout_s,
                                     watchdog_interval_s=self.watchdog_interval_s)
        except (UaError, OSError, TimeoutError) as err:
            raise BoardConnectionError(f"board {self.spec.id} at {self.url}: endpoints not available: {_describe(err)}") from err

    # --- what the board reports ------------------------------------------------------------

    async def _refresh(self) -> None:
        """Read every watched variable and report (after start and after a reconnect)."""
        client = self._client
        if client is None:
            return
        nodes = [client.get_node(n) for n in self._names]
        values = await client.read_values(nodes)
        async with self._lock:
            self._values.update({self._names[n.nodeid]: v for n, v in zip(nodes, values, strict=True)})
            await self._evaluate()

    def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
        """asyncua subscription callback: keep the value; :meth:`_evaluate_changes` acts on the whole batch."""
        name = self._names.get(node.nodeid)
        if name is not None:
            self._values[name] = value
            self._dirty.set()

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        """asyncua subscription callback: the server changed the subscription's status (logged; comms
        loss is reported from the connection state)."""
        _log.info("board %s: subscription status %s", self.spec.id, status.Status)

    async def _evaluate_changes(self) -> None:
        # asyncua runs one callback task per value of a publish response, all queued before the
        # first runs: this task wakes after the whole batch is applied.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            async with self._lock:
                await self._evaluate()

    async def _watch_connection(self, client: Client) -> None:
        async with client.uaclient.subscribe_state() as states:
            while True:
                state = await states.next_change()
                lost = self._faults.get(VmsFaultKind.COMMS_LOST, False)
                if state in (UaClientState.DISCONNECTED, UaClientState.RECONNECTING) and not lost:
                    await self._set_fault(VmsFaultKind.COMMS_LOST, True, f"connection to {self.url} lost")
                elif state is UaClientState.CONNECTED and lost:
                    await self._set_fault(VmsFaultKind.COMMS_LOST, False, f"reconnected to {self.url}")
                    try:
                        await self._refresh()
                    except (UaError, OSError, TimeoutError) as err:
                        _log.warning("board %s: read after reconnect failed (%s); the subscription will report",
                                     self.spec.id, _describe(err))

    async def _evaluate(self) -> None:
        snap = Snapshot.from_values(self._values)
        self.snapshot = snap
        if snap != self._reported:
            self._reported = snap
            await self._emit(self._display_payload(snap))
        mismatch = self._mismatch(snap)
        wanted = {VmsFaultKind.PIXEL_FAILURE: snap.pixel_faults >= self.spec.pixel_fault_threshold,
                  VmsFaultKind.DOOR_OPEN: snap.door_open, VmsFaultKind.POWER_FAILURE: snap.power_failure,
                  VmsFaultKind.DISPLAY_FAULT: snap.status == "fault", VmsFaultKind.READBACK_MISMATCH: mismatch is not None}
        details = {VmsFaultKind.PIXEL_FAILURE: f"{snap.pixel_faults} pixels dead (threshold "
                                               f"{self.spec.pixel_fault_threshold} pixels)",
                   VmsFaultKind.DOOR_OPEN: "cabinet door open" if snap.door_open else "cabinet door closed",
                   VmsFaultKind.POWER_FAILURE: "mains power lost" if snap.power_failure else "mains power back",
                   VmsFaultKind.DISPLAY_FAULT: f"board status {snap.status}", VmsFaultKind.READBACK_MISMATCH: mismatch or
                   f"board shows {snap.message_id or 'nothing'} as sent"}
        for kind, active in wanted.items():
            if active != self._faults.get(kind, False):
                await self._set_fault(kind, active, details[kind])
        for waiter in self._waiters.values():
            if waiter.confirms(snap) and not waiter.done.done():
                waiter.done.set_result(None)

    def _display_payload(self, snap: Snapshot) -> VmsDisplayReported:
        status = snap.status if snap.status in {s.value for s in VmsStatus} else "fault"  # unknown: not trusted
        return VmsDisplayReported(board_id=self.spec.id, status=VmsStatus(status), pages=decode_pages(snap.pages),
                                  message_id=snap.message_id or None, priority=snap.priority or None,
                                  brightness_pct=snap.brightness_pct, pixel_faults=snap.pixel_faults,
                                  door_open=snap.door_open, power_ok=not snap.power_failure)

    def _mismatch(self, snap: Snapshot) -> str | None:
        sent = self._sent.get(snap.message_id)
        if sent is None or snap.status != "displaying" or (snap.pages, snap.priority) == sent:
            return None
        return (f"board shows message {snap.message_id} as {list(snap.pages)!r} at priority {snap.priority}; "
                f"lalin sent {list(sent[0])!r} at priority {sent[1]}")

    async def _set_fault(self, kind: VmsFaultKind, active: bool, detail: str) -> None:
        self._faults[kind] = active
        severity = self.model.faults[kind].severity
        await self._emit(VmsFaulted(board_id=self.spec.id, fault=kind, severity=severity, active=active, detail=_short(detail)))

    async def _emit(self, payload: Payload, causation_id: uuid.UUID | None = None) -> None:
        await self.sink.emit(payload, source=self.source, key=self.key, event_time=self._clock(), causation_id=causation_id)

    # --- commands ----------------------------------------------------------------------------

    async def send(self, command_id: uuid.UUID, command: VmsMessageCommand, *, deadline_s: float | None = None,
                   page_time_s: float | None = None, causation_id: uuid.UUID | None = None) -> CommandOutcome:
        """Show ``command`` on the board (message id = ``str(command_id)``) and report how it ended.

        ``deadline_s`` (default ``command_timeout_s``) bounds the whole command in seconds;
        ``page_time_s`` defaults to the board's minimum page time. Emits exactly one
        CommandAcknowledged and returns its outcome.
        """
        return (await self._show(command_id, command, deadline_s, page_time_s, causation_id)).outcome

    async def blank(self, command_id: uuid.UUID, message_id: str, *, deadline_s: float | None = None,
                    causation_id: uuid.UUID | None = None) -> CommandOutcome:
        """Take down ``message_id``; acknowledged when the board reports showing something else (or
        nothing). Emits exactly one CommandAcknowledged and returns its outcome."""
        return (await self._take_down(command_id, message_id, deadline_s, causation_id)).outcome

    async def execute(self, command_id: uuid.UUID, body: CommandBody, *, deadline_s: float | None = None) -> CommandAcknowledged:
        """Carry out a command of ``lalin.command`` (a message or a blank; anything else is rejected): exactly one
        CommandAcknowledged, also returned."""
        if isinstance(body, VmsMessageCommand):
            return await self._show(command_id, body, deadline_s, None, command_id)
        if isinstance(body, VmsBlankCommand):
            return await self._take_down(command_id, body.message_id, deadline_s, command_id)
        return await self._acknowledge(command_id, CommandOutcome.REJECTED, f"a {type(body).__name__} is not a VMS command",
                                       command_id)

    async def _show(self, command_id: uuid.UUID, command: VmsMessageCommand, deadline_s: float | None,
                    page_time_s: float | None, causation_id: uuid.UUID | None) -> CommandAcknowledged:
        message_id, pages = str(command_id), tuple(encode_pages(command.pages))
        page_time = page_time_s if page_time_s is not None else self.spec.min_page_time_s
        args = [ua.Variant(message_id, ua.VariantType.String), ua.Variant(list(pages), ua.VariantType.String),
                ua.Variant(command.priority, ua.VariantType.Byte), ua.Variant(MIN_DATETIME, ua.VariantType.DateTime),
                ua.Variant(float(command.duration_s), ua.VariantType.Double), ua.Variant(float(page_time), ua.VariantType.Double)]
        self._sent[message_id] = (pages, command.priority)
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)

        def shown(snap: Snapshot) -> bool:
            return snap.status == "displaying" and snap.message_id == message_id and snap.pages == pages \
                and snap.priority == command.priority

        return await self._command(command_id, "ShowMessage", args, shown, deadline_s, causation_id)

    async def _take_down(self, command_id: uuid.UUID, message_id: str, deadline_s: float | None,
                         causation_id: uuid.UUID | None) -> CommandAcknowledged:
        return await self._command(command_id, "Blank", [ua.Variant(message_id, ua.VariantType.String)],
                                   lambda snap: snap.message_id != message_id, deadline_s, causation_id)

    async def _command(self, command_id: uuid.UUID, method: str, args: list[ua.Variant], confirms: Callable[[Snapshot], bool],
                       deadline_s: float | None, causation_id: uuid.UUID | None) -> CommandAcknowledged:
        deadline = deadline_s if deadline_s is not None else self.command_timeout_s
        key = str(command_id)
        waiter = self._waiters[key] = _Waiter(confirms, asyncio.get_running_loop().create_future())
        outcome, detail = CommandOutcome.TIMED_OUT, ""
        try:
            async with asyncio.timeout(deadline):
                refused, result = await self._call(method, args)
                if refused is not None:
                    outcome, detail = CommandOutcome.REJECTED, refused
                else:
                    if not confirms(self.snapshot):
                        await waiter.done
                    outcome, detail = CommandOutcome.ACKNOWLEDGED, f"board result {result}; read back"
        except TimeoutError:
            detail = f"no confirmation within {deadline:g} s; {self._picture()}"
        except asyncio.CancelledError:
            await asyncio.shield(self._acknowledge(command_id, CommandOutcome.TIMED_OUT, "driver stopped before "
                                                   f"confirmation; {self._picture()}", causation_id))
            raise
        finally:
            self._waiters.pop(key, None)
        return await self._acknowledge(command_id, outcome, detail, causation_id)

    def _picture(self) -> str:
        snap = self.snapshot
        link = "connected" if self.connected else "not connected"
        return f"{link}; board {snap.status}, message {snap.message_id or 'none'}"

    async def _acknowledge(self, command_id: uuid.UUID, outcome: CommandOutcome, detail: str,
                           causation_id: uuid.UUID | None) -> CommandAcknowledged:
        ack = CommandAcknowledged(command_id=command_id, target=self.spec.id, outcome=outcome, detail=_short(detail))
        await self._emit(ack, causation_id)
        return ack

    async def _call(self, method: str, args: list[ua.Variant]) -> tuple[str | None, str]:
        """Call ``method`` once. (refusal text, "") when the board refused; (None, result) when it took
        the call or its fate is unknown (the caller waits for the read-back)."""
        client = self._client
        if client is None:
            return None, "not started"
        request = ua.CallMethodRequest(ObjectId=node_id(self.model.board_object, self._ns),
                                       MethodId=node_id(self.model.method_node_id(method), self._ns), InputArguments=args)
        try:
            results = await client.uaclient.call([request])
        except UaStatusCodeError as err:
            if err.code == StatusCodes.BadUserAccessDenied:
                return f"{status_name(err.code)}: user {self.credentials.username!r} may not call {method}", ""
            if err.code in DEFINITE_REFUSALS:
                return f"{status_name(err.code)}: the board refused the {method} call", ""
            return None, f"unknown ({status_name(err.code)})"
        except (UaError, OSError, TimeoutError) as err:
            return None, f"unknown ({_describe(err)})"
        result = results[0]
        outputs = [v.Value for v in result.OutputArguments or []]
        if result.StatusCode.is_good():
            return None, str(outputs[0]) if outputs else "Good"
        reason = str(outputs[1]) if len(outputs) > 1 and outputs[1] else "no reason given"
        return f"{status_name(result.StatusCode.value)}: {reason}", ""


async def make_client(url: str, credentials: ClientCredentials, *, board_id: str, model: VmsModel | None = None,
                      policy: str = "Aes256Sha256RsaPss", request_timeout_s: float = 4.0, reconnect_max_delay_s: float = 2.0,
                      reconnect_request_timeout_s: float = 10.0, watchdog_interval_s: float = 1.0,
                      auto_reconnect: bool = True) -> Client:
    """An asyncua Client for board ``board_id`` at ``url``, set up but not connected: SignAndEncrypt with
    ``policy``, the credentials' certificate, user and password, and the board's certificate checked
    against the trusted CAs and the board's application URI (asyncua checks nothing by default).

    Fetches the server's endpoints (an unsecured GetEndpoints, as OPC UA discovery does). Times in seconds.
    """
    model = model or load_model()
    client = Client(url, timeout=request_timeout_s, watchdog_intervall=watchdog_interval_s, auto_reconnect=auto_reconnect,
                    reconnect_max_delay=reconnect_max_delay_s, reconnect_request_timeout=reconnect_request_timeout_s)
    client.application_uri = credentials.application_uri
    client.session_timeout = SESSION_TIMEOUT_MS  # what a board grants at most: asking more only earns a warning
    client.name = f"lalin central ({board_id})"
    client.set_user(credentials.username)
    client.set_password(credentials.password)
    options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER
    validator = CertificateValidator(options, await site_trust_store(credentials.trust_dir))
    expected_uri = model.application_uri(board_id)

    async def validate_board(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        await validator(cert, app)
        if app.ApplicationUri != expected_uri:  # a genuine certificate of ANOTHER board
            raise ServiceError(StatusCodes.BadCertificateUriInvalid)

    client.certificate_validator = validate_board
    await client.set_security(CLIENT_POLICIES[policy], str(credentials.certificate), str(credentials.private_key),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    return client


def _describe(err: BaseException) -> str:
    if isinstance(err, UaStatusCodeError):
        return f"{status_name(err.code)}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
