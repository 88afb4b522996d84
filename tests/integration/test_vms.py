"""VMS boards over OPC UA, for real: the board simulator (asyncua server, security on) and the
board driver (asyncua client) on loopback, each test in its own event loop.

Every driver-level test ends by checking that each command got exactly ONE CommandAcknowledged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaStatusCodeError

from controllers.payloads import (
    CommandAcknowledged,
    CommandOutcome,
    VmsDisplayReported,
    VmsFaulted,
    VmsFaultKind,
    VmsMessageCommand,
    VmsStatus,
)
from devices.events import RecordingSink
from devices.opcua_common import MIN_DATETIME
from devices.pki import MONITOR_USER, PkiPaths, Profile, issue_expired_certificate, issue_rogue_certificate, read_password
from devices.vms_driver import BoardConnectionError, ClientCredentials, VmsDriver, make_client
from devices.vms_model import load_boards, load_model
from devices.vms_sim import VmsBoardSimulator

pytestmark = pytest.mark.integration

MODEL = load_model()
SPEC = load_boards().board("vms-sunset-01")  # 3 lines x 18 characters, 2 pages


def message(*pages: list[str], priority: int = 5, duration_s: float = 600.0) -> VmsMessageCommand:
    return VmsMessageCommand(pages=[list(p) for p in pages], priority=priority, duration_s=duration_s)


def assert_one_ack_per_command(sink: RecordingSink, commands: list[uuid.UUID]) -> None:
    counts = Counter(a.command_id for a in sink.payloads(CommandAcknowledged))
    assert {c: counts[c] for c in commands} == {c: 1 for c in commands}
    assert set(counts) == set(commands)


@asynccontextmanager
async def board_and_driver(pki: Path, cache: Path, *, render_delay_s: float = 0.05, credentials: ClientCredentials | None = None,
                           **driver_options: object) -> AsyncIterator[tuple[VmsBoardSimulator, VmsDriver, RecordingSink]]:
    board = VmsBoardSimulator(SPEC, pki, render_delay_s=render_delay_s, address_space_cache=cache)
    await board.start()
    sink = RecordingSink()
    driver = VmsDriver(SPEC, board.url, sink, credentials or ClientCredentials.central(pki), **driver_options)  # type: ignore[arg-type]
    try:
        await driver.start()
        yield board, driver, sink
    finally:
        await driver.stop()
        await board.stop()


async def raw_client(board: VmsBoardSimulator, credentials: ClientCredentials) -> tuple[Client, int]:
    client = await make_client(board.url, credentials, board_id=SPEC.id, auto_reconnect=False)
    await client.connect()
    return client, await client.get_namespace_index(MODEL.namespace_uri)


async def call(client: Client, ns: int, method: str, *args: ua.Variant) -> tuple[str, list[str]]:
    request = ua.CallMethodRequest(ObjectId=ua.NodeId(MODEL.board_object, ns),
                                   MethodId=ua.NodeId(MODEL.method_node_id(method), ns), InputArguments=list(args))
    result = (await client.uaclient.call([request]))[0]
    return result.StatusCode.name, [v.Value for v in result.OutputArguments]


def show_args(message_id: str, pages: list[str], priority: int = 5, activation: datetime = MIN_DATETIME,
              duration_s: float = 0.0) -> list[ua.Variant]:
    return [ua.Variant(message_id, ua.VariantType.String), ua.Variant(pages, ua.VariantType.String),
            ua.Variant(priority, ua.VariantType.Byte), ua.Variant(activation, ua.VariantType.DateTime),
            ua.Variant(duration_s, ua.VariantType.Double), ua.Variant(2.0, ua.VariantType.Double)]


async def read(client: Client, ns: int, folder: str, name: str) -> object:
    return await client.get_node(ua.NodeId(MODEL.node_id(folder, name), ns)).read_value()


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256Sha256RsaPss"])
def test_a_message_is_shown_read_back_and_acknowledged(vms_pki: Path, opcua_address_space: Path, policy: str) -> None:
    async def scenario() -> None:
        async with board_and_driver(vms_pki, opcua_address_space, policy=policy) as (board, driver, sink):
            first = await sink.wait_for(VmsDisplayReported)
            assert first.status is VmsStatus.BLANK and first.board_id == SPEC.id
            command_id = uuid.uuid4()
            command = message(["JALAN DITUTUP", "GUNAKAN", "JL. BY PASS"], ["MACET 2 KM"], priority=3)
            assert await driver.send(command_id, command) is CommandOutcome.ACKNOWLEDGED
            shown = await sink.wait_for(VmsDisplayReported, lambda p: p.message_id == str(command_id), timeout_s=1)
            assert (shown.status, shown.pages, shown.priority) == (VmsStatus.DISPLAYING, command.pages, 3)
            kinds = [type(e.payload) for e in sink.events]
            assert kinds.index(CommandAcknowledged) > next(i for i, e in enumerate(sink.events)
                                                           if e.payload == shown)  # acknowledged after the read-back
            assert board.state.shown is not None and board.state.shown.message_id == str(command_id)
            assert {e.source for e in sink.events} == {f"opcua:{SPEC.id}"} and {e.key for e in sink.events} == {SPEC.id}

            blank_id = uuid.uuid4()
            assert await driver.blank(blank_id, str(command_id)) is CommandOutcome.ACKNOWLEDGED
            blank = await sink.wait_for(VmsDisplayReported, lambda p: p.status is VmsStatus.BLANK, after=len(sink.events) - 3)
            assert blank.pages == [] and blank.message_id is None
            assert_one_ack_per_command(sink, [command_id, blank_id])

    asyncio.run(scenario())


def test_messages_beyond_the_board_are_refused_with_the_reason_and_change_nothing(vms_pki: Path,
                                                                                  opcua_address_space: Path) -> None:
    async def scenario() -> None:
        async with board_and_driver(vms_pki, opcua_address_space) as (board, driver, sink):
            shown_id = uuid.uuid4()
            assert await driver.send(shown_id, message(["HATI HATI"], priority=2)) is CommandOutcome.ACKNOWLEDGED
            refused = {
                "line_too_long": message(["X" * 19]),
                "too_many_lines": message(["A", "B", "C", "D"]),
                "too_many_pages": message(["A"], ["B"], ["C"]),
                "forbidden_character": message(["jalan ditutup"]),
                "lower_priority": message(["UPACARA ADAT"], priority=3),
            }
            ids = {reason: uuid.uuid4() for reason in refused}
            reported_before = len(sink.payloads(VmsDisplayReported))
            for reason, command in refused.items():
                assert await driver.send(ids[reason], command) is CommandOutcome.REJECTED, reason
            details = {a.command_id: a.detail for a in sink.payloads(CommandAcknowledged)}
            assert "BadOutOfRange: line_too_long: page 1 line 1 has 19 characters; the board shows 18" in \
                details[ids["line_too_long"]]
            assert "BadOutOfRange: too_many_lines: page 1 has 4 lines" in details[ids["too_many_lines"]]
            assert "BadOutOfRange: too_many_pages: 3 pages" in details[ids["too_many_pages"]]
            assert "BadInvalidArgument: forbidden_character:" in details[ids["forbidden_character"]]
            assert "BadInvalidState: lower_priority: priority 3 is below the shown message" in details[ids["lower_priority"]]
            await asyncio.sleep(0.3)  # a render delay and more: nothing may change
            assert board.state.shown is not None and board.state.shown.message_id == str(shown_id)
            assert len(sink.payloads(VmsDisplayReported)) == reported_before
            assert driver.snapshot.message_id == str(shown_id)

            higher = uuid.uuid4()  # a higher priority replaces it
            assert await driver.send(higher, message(["BANJIR"], priority=1)) is CommandOutcome.ACKNOWLEDGED
            assert_one_ack_per_command(sink, [shown_id, higher, *ids.values()])

    asyncio.run(scenario())


def test_a_read_only_user_may_watch_but_not_show_and_nobody_may_write(vms_pki: Path, opcua_address_space: Path) -> None:
    async def scenario() -> None:
        monitor = replace(ClientCredentials.central(vms_pki), username=MONITOR_USER,
                          password=read_password(vms_pki, MONITOR_USER))
        async with board_and_driver(vms_pki, opcua_address_space, credentials=monitor) as (board, driver, sink):
            assert (await sink.wait_for(VmsDisplayReported)).status is VmsStatus.BLANK  # read and subscribe work
            command_id = uuid.uuid4()
            assert await driver.send(command_id, message(["AWAS"])) is CommandOutcome.REJECTED
            [ack] = sink.payloads(CommandAcknowledged)
            assert ack.detail == "BadUserAccessDenied: user 'monitor' may not call ShowMessage"
            assert board.state.shown is None
            await board.set_door_open(True)  # the read-only session still follows the board
            await sink.wait_for(VmsDisplayReported, lambda p: p.door_open)

            operator, ns = await raw_client(board, ClientCredentials.central(vms_pki))
            try:  # the display is read-only for every role: only the methods change it
                node = operator.get_node(ua.NodeId(MODEL.node_id("Display", "MessageId"), ns))
                with pytest.raises(UaStatusCodeError, match="BadUserAccessDenied"):
                    await node.write_value(ua.Variant("forged", ua.VariantType.String))
            finally:
                await operator.disconnect()
            assert_one_ack_per_command(sink, [command_id])

    asyncio.run(scenario())


def test_rogue_expired_wrong_password_anonymous_and_unsecured_clients_are_refused(vms_pki: Path, tmp_path: Path) -> None:
    central = ClientCredentials.central(vms_pki)
    rogue = issue_rogue_certificate(tmp_path, Profile.OPCUA_CLIENT, MODEL.central_application_uri)
    expired = issue_expired_certificate(vms_pki, tmp_path, Profile.OPCUA_CLIENT, MODEL.central_application_uri)
    cases = {
        "BadCertificateUntrusted": replace(central, certificate=rogue.certificate, private_key=rogue.private_key),
        "BadCertificateTimeInvalid": replace(central, certificate=expired.certificate, private_key=expired.private_key),
        "BadUserAccessDenied": replace(central, password="not-the-password"),
    }

    async def refused(board: VmsBoardSimulator, credentials: ClientCredentials) -> str:
        driver = VmsDriver(SPEC, board.url, RecordingSink(), credentials)
        with pytest.raises(BoardConnectionError) as err:
            await driver.start()
        await driver.stop()
        return str(err.value)

    async def bare_client(board: VmsBoardSimulator, certificate: Path | None, user: bool) -> Client:
        client = Client(board.url)
        client.application_uri = MODEL.central_application_uri
        if certificate is not None:
            await client.set_security(SecurityPolicyBasic256Sha256, str(certificate), str(central.private_key))
        if user:
            client.set_user(central.username)
            client.set_password(central.password)
        return client

    async def scenario() -> None:
        async with VmsBoardSimulator(SPEC, vms_pki) as board:
            endpoints = await Client(board.url).connect_and_get_server_endpoints()
            assert {(e.SecurityMode, e.SecurityPolicyUri.split("#")[1]) for e in endpoints} == {
                (ua.MessageSecurityMode.SignAndEncrypt, "Basic256Sha256"),
                (ua.MessageSecurityMode.SignAndEncrypt, "Aes256_Sha256_RsaPss")}
            assert {t.TokenType for e in endpoints for t in e.UserIdentityTokens} == {ua.UserTokenType.UserName}
            for status, credentials in cases.items():
                assert status in await refused(board, credentials)
            anonymous = await bare_client(board, central.certificate, user=False)
            with pytest.raises(UaStatusCodeError, match="BadIdentityTokenRejected"):
                await anonymous.connect()
            unsecured = await bare_client(board, None, user=True)  # asyncua accepts this unless hardened
            with pytest.raises(UaStatusCodeError, match="BadSecurityChecksFailed"):
                await unsecured.connect()
            assert await channel_of_rogue_with_genuine_certificate(board, vms_pki, tmp_path) == "BadSecurityChecksFailed"
            for client in (anonymous, unsecured):
                client.disconnect_socket()
            assert board.state.shown is None

    asyncio.run(scenario())


async def channel_of_rogue_with_genuine_certificate(board: VmsBoardSimulator, pki: Path, tmp_path: Path) -> str:
    """A client opens the secure channel with a rogue key but shows the central's genuine (public)
    certificate in CreateSession: asyncua alone lets it in; the board must not."""
    rogue = issue_rogue_certificate(tmp_path, Profile.OPCUA_CLIENT, MODEL.central_application_uri, name="rogue-channel")
    client = Client(board.url)
    await client.set_security(SecurityPolicyBasic256Sha256, str(rogue.certificate), str(rogue.private_key))
    await client.connect_socket()
    try:
        await client.send_hello()
        await client.open_secure_channel()
        genuine = uacrypto.der_from_x509(await uacrypto.load_certificate(str(PkiPaths(pki).central.certificate)))
        params = ua.CreateSessionParameters(ClientNonce=b"n" * 32, ClientCertificate=genuine, EndpointUrl=board.url,
                                            SessionName="rogue", RequestedSessionTimeout=10_000)
        params.ClientDescription = ua.ApplicationDescription(ApplicationUri=MODEL.central_application_uri,
                                                             ApplicationType=ua.ApplicationType.Client)
        session = await client.uaclient.create_session(params)
        activate = ua.ActivateSessionParameters(LocaleIds=["en"])
        assert client.security_policy.peer_certificate is not None
        activate.ClientSignature.Signature = client.security_policy.asymmetric_cryptography.signature(
            client.security_policy.peer_certificate + session.ServerNonce)
        activate.ClientSignature.Algorithm = client.security_policy.AsymmetricSignatureURI
        activate.UserIdentityToken = ua.UserNameIdentityToken(UserName="central", PolicyId="username",
                                                              Password=read_password(pki).encode())
        try:
            await client.uaclient.activate_session(activate)
        except UaStatusCodeError as err:
            return ua.StatusCode(err.code).name
        return "activated"
    finally:
        client.disconnect_socket()


def test_the_driver_refuses_a_board_with_a_rogue_certificate(vms_pki: Path, opcua_address_space: Path, tmp_path: Path) -> None:
    fake = issue_rogue_certificate(tmp_path, Profile.OPCUA_SERVER, MODEL.application_uri(SPEC.id), name="fake-board")

    async def scenario() -> None:
        async with VmsBoardSimulator(SPEC, vms_pki, certificate=fake, address_space_cache=opcua_address_space) as board:
            driver = VmsDriver(SPEC, board.url, RecordingSink(), ClientCredentials.central(vms_pki))
            with pytest.raises(BoardConnectionError, match="BadCertificateUntrusted"):
                await driver.start()
            await driver.stop()

    asyncio.run(scenario())


def test_pixel_door_power_and_display_faults_are_raised_and_cleared(vms_pki: Path, opcua_address_space: Path) -> None:
    async def toggle(sink: RecordingSink, kind: VmsFaultKind, on: object, off: object) -> tuple[VmsFaulted, VmsFaulted]:
        mark = len(sink.events)
        await on  # type: ignore[misc]
        raised = await sink.wait_for(VmsFaulted, lambda f: f.fault is kind and f.active, after=mark, timeout_s=2)
        await off  # type: ignore[misc]
        cleared = await sink.wait_for(VmsFaulted, lambda f: f.fault is kind and not f.active, after=mark, timeout_s=2)
        return raised, cleared

    async def scenario() -> None:
        async with board_and_driver(vms_pki, opcua_address_space) as (board, driver, sink):
            await board.set_pixel_faults(10)  # below the board's threshold of 50: reported, no fault
            assert (await sink.wait_for(VmsDisplayReported, lambda p: p.pixel_faults == 10)).status is VmsStatus.BLANK
            raised, _ = await toggle(sink, VmsFaultKind.PIXEL_FAILURE, board.set_pixel_faults(60), board.set_pixel_faults(0))
            assert raised.detail == "60 pixels dead (threshold 50 pixels)" and raised.severity.value == "warning"
            raised, _ = await toggle(sink, VmsFaultKind.DOOR_OPEN, board.set_door_open(True), board.set_door_open(False))
            assert raised.detail == "cabinet door open"

            command_id = uuid.uuid4()
            assert await driver.send(command_id, message(["NYEPI"])) is CommandOutcome.ACKNOWLEDGED
            mark = len(sink.events)
            await board.set_power_failure(True)
            power = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.POWER_FAILURE, after=mark)
            assert power.active and power.severity.value == "critical"
            off = await sink.wait_for(VmsDisplayReported, lambda p: p.status is VmsStatus.OFF, after=mark)
            assert not off.power_ok and off.pages == []
            refused_id = uuid.uuid4()
            assert await driver.send(refused_id, message(["NYEPI"])) is CommandOutcome.REJECTED
            await board.set_power_failure(False)
            await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.POWER_FAILURE and not f.active, after=mark)
            assert (await sink.wait_for(VmsDisplayReported, lambda p: p.power_ok, after=mark)).status is VmsStatus.BLANK

            faulted, repaired = board.set_display_fault(True), board.set_display_fault(False)
            raised, _ = await toggle(sink, VmsFaultKind.DISPLAY_FAULT, faulted, repaired)
            assert raised.detail == "board status fault"
            assert_one_ack_per_command(sink, [command_id, refused_id])
            details = {a.command_id: a.detail for a in sink.payloads(CommandAcknowledged)}
            assert details[refused_id] == "BadDeviceFailure: board_off: the board has no power"

    asyncio.run(scenario())


def test_a_message_expires_and_the_board_reports_itself_blank(vms_pki: Path, opcua_address_space: Path) -> None:
    async def scenario() -> None:
        async with board_and_driver(vms_pki, opcua_address_space) as (_board, driver, sink):
            command_id = uuid.uuid4()
            started = time.monotonic()
            assert await driver.send(command_id, message(["KECELAKAAN", "LAJUR KIRI"], duration_s=1.0)) \
                is CommandOutcome.ACKNOWLEDGED
            shown = await sink.wait_for(VmsDisplayReported, lambda p: p.message_id == str(command_id))
            assert shown.status is VmsStatus.DISPLAYING
            blank = await sink.wait_for(VmsDisplayReported, lambda p: p.status is VmsStatus.BLANK,
                                        after=len(sink.events) - 2, timeout_s=3)
            assert blank.message_id is None and 1.0 <= time.monotonic() - started < 2.5
            assert_one_ack_per_command(sink, [command_id])

    asyncio.run(scenario())


def test_a_board_showing_something_else_raises_readback_mismatch_and_is_never_acknowledged(
        vms_pki: Path, opcua_address_space: Path) -> None:
    async def scenario() -> None:
        async with board_and_driver(vms_pki, opcua_address_space) as (board, driver, sink):
            await board.set_faulty_display(True)
            command_id = uuid.uuid4()
            assert await driver.send(command_id, message(["JALAN DITUTUP"], ["PUTAR BALIK"]), deadline_s=1.5) \
                is CommandOutcome.TIMED_OUT
            mismatch = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.READBACK_MISMATCH)
            assert mismatch.active and str(command_id) in mismatch.detail and "JALAN DITUTUP" in mismatch.detail
            [ack] = sink.payloads(CommandAcknowledged)
            assert "no confirmation within 1.5 s" in ack.detail
            await board.set_faulty_display(False)  # repaired: the board shows what was sent
            cleared = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.READBACK_MISMATCH and not f.active)
            assert cleared.severity.value == "critical"
            assert_one_ack_per_command(sink, [command_id])

    asyncio.run(scenario())


def test_a_board_restarting_mid_command_times_out_the_command_and_the_driver_recovers(
        vms_pki: Path, opcua_address_space: Path) -> None:
    async def scenario() -> None:
        async with board_and_driver(vms_pki, opcua_address_space, render_delay_s=1.0) as (board, driver, sink):
            port = board.port
            first = uuid.uuid4()
            sending = asyncio.create_task(driver.send(first, message(["ANTRIAN PANJANG"]), deadline_s=4.0))
            while board.state.shown is None:  # the board accepted it and is rendering
                await asyncio.sleep(0.02)
            await board.stop()
            lost = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.COMMS_LOST, timeout_s=3)
            assert lost.active and lost.severity.value == "critical"
            await board.start()
            assert board.port == port
            assert await sending is CommandOutcome.TIMED_OUT
            back = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.COMMS_LOST and not f.active, timeout_s=8)
            assert back.detail.startswith("reconnected")
            mark = len(sink.events)
            await board.set_door_open(True)  # reported only if the subscription was re-created
            assert (await sink.wait_for(VmsDisplayReported, lambda p: p.door_open, after=mark, timeout_s=3)).status \
                is VmsStatus.BLANK
            later = uuid.uuid4()
            assert await driver.send(later, message(["LANCAR"])) is CommandOutcome.ACKNOWLEDGED
            outcomes = {a.command_id: a.outcome for a in sink.payloads(CommandAcknowledged)}
            assert outcomes == {first: CommandOutcome.TIMED_OUT, later: CommandOutcome.ACKNOWLEDGED}
            assert_one_ack_per_command(sink, [first, later])

    asyncio.run(scenario())


def test_show_message_is_idempotent_and_honours_activation_time(vms_pki: Path, opcua_address_space: Path) -> None:
    async def scenario() -> None:
        async with VmsBoardSimulator(SPEC, vms_pki, render_delay_s=0.05, address_space_cache=opcua_address_space) as board:
            client, ns = await raw_client(board, ClientCredentials.central(vms_pki))
            try:
                assert await call(client, ns, "ShowMessage", *show_args("m-1", ["SATU"])) == ("Good", ["accepted", ""])
                assert await call(client, ns, "ShowMessage", *show_args("m-1", ["SATU"])) == ("Good", ["repeated", ""])
                assert await read(client, ns, "Request", "LastResult") == "repeated"
                refused = await call(client, ns, "ShowMessage", *show_args("m-bad", ["satu"]))
                assert refused[0] == "BadInvalidArgument" and refused[1][1].startswith("forbidden_character:")
                assert await call(client, ns, "ShowMessage", *show_args("m-bad", ["SATU"])) == refused  # same answer again
                assert await read(client, ns, "Request", "LastRefusalReason") == refused[1][1]

                due = datetime.now(UTC) + timedelta(seconds=0.6)
                assert await call(client, ns, "ShowMessage", *show_args("m-2", ["DUA"], activation=due)) == \
                    ("Good", ["pending", ""])
                assert await read(client, ns, "Request", "PendingMessageId") == "m-2"
                await asyncio.sleep(0.1)  # the render delay
                assert await read(client, ns, "Display", "MessageId") == "m-1"
                await asyncio.sleep(0.9)
                assert await read(client, ns, "Display", "MessageId") == "m-2"
                assert await read(client, ns, "Display", "Pages") == ["DUA"]
                assert await read(client, ns, "Request", "PendingMessageId") == ""

                assert await call(client, ns, "Blank", ua.Variant("m-2", ua.VariantType.String)) == ("Good", ["accepted", ""])
                assert await call(client, ns, "Blank", ua.Variant("m-2", ua.VariantType.String)) == \
                    ("Good", ["not_displayed", ""])
                assert await call(client, ns, "ShowMessage", *show_args("m-1", ["SATU"])) == ("Good", ["repeated", ""])
                await asyncio.sleep(0.2)
                assert await read(client, ns, "Display", "Status") == "blank"  # a repeated id is not shown again
                malformed = await call(client, ns, "ShowMessage", ua.Variant("m-3", ua.VariantType.String))
                assert malformed[0] == "BadInvalidArgument" and malformed[1][1].startswith("malformed:")
            finally:
                await client.disconnect()

    asyncio.run(scenario())


def test_the_board_exposes_the_whole_model_with_its_capabilities(vms_pki: Path) -> None:
    async def scenario() -> None:
        async with VmsBoardSimulator(SPEC, vms_pki) as board:
            client, ns = await raw_client(board, ClientCredentials.central(vms_pki))
            try:
                for v in MODEL.variables:
                    node = client.get_node(ua.NodeId(MODEL.node_id(v.folder, v.name), ns))
                    assert (await node.read_browse_name()).Name == v.name
                    assert (await node.read_data_type_as_variant_type()).name == v.type.removesuffix("[]")
                assert await read(client, ns, "Capabilities", "LineCount") == 3
                assert await read(client, ns, "Capabilities", "CharactersPerLine") == 18
                assert await read(client, ns, "Capabilities", "MaxPages") == 2
                assert await read(client, ns, "Identity", "Site") == SPEC.site
                arguments = await client.get_node(ua.NodeId(MODEL.method_node_id("ShowMessage"), ns)).get_child(
                    "0:InputArguments")
                assert [a.Name for a in await arguments.read_value()] == [a.name for a in MODEL.method("ShowMessage").inputs]
            finally:
                await client.disconnect()

    asyncio.run(scenario())


def test_a_board_down_when_lalin_starts_is_an_alarm_and_is_followed_once_it_answers(vms_pki: Path,
                                                                                     opcua_address_space: Path) -> None:
    """start(retry=True), as `lalin up` uses it: no crash, a comms_lost alarm, background reconnection."""

    async def scenario() -> None:
        board = VmsBoardSimulator(SPEC, vms_pki, render_delay_s=0.05, address_space_cache=opcua_address_space)
        await board.start()
        await board.stop()  # the board is down, its address known
        sink = RecordingSink()
        driver = VmsDriver(SPEC, board.url, sink, ClientCredentials.central(vms_pki), reconnect_max_delay_s=0.5)
        try:
            await driver.start(retry=True)
            lost = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.COMMS_LOST)
            assert lost.active and SPEC.id in lost.detail
            command = uuid.uuid4()
            assert await driver.send(command, message(["JALAN DITUTUP"]), deadline_s=0.5) is CommandOutcome.TIMED_OUT
            await board.start()
            back = await sink.wait_for(VmsFaulted, lambda f: f.fault is VmsFaultKind.COMMS_LOST and not f.active,
                                       timeout_s=8)
            assert back.detail.startswith("connected")
            await sink.wait_for(VmsDisplayReported, lambda p: p.status is VmsStatus.BLANK)
            later = uuid.uuid4()
            assert await driver.send(later, message(["LANCAR"])) is CommandOutcome.ACKNOWLEDGED
            assert_one_ack_per_command(sink, [command, later])
            assert board.state.shown is not None and board.state.shown.message_id == str(later)
        finally:
            await driver.stop()
            await board.stop()

    asyncio.run(scenario())
