"""The site PKI: what `lalin pki init` writes (files, modes, certificate properties, hashed users),
its refusal to overwrite, the rogue and expired test certificates, and the Modbus/TCP Security
TLS contexts (a real mutual-TLS handshake on loopback)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from devices.pki import (
    CENTRAL_USER,
    MODBUS_ROLE_OID,
    MONITOR_USER,
    PkiError,
    PkiPaths,
    Profile,
    client_ssl_context,
    init_pki,
    issue_board_certificate,
    issue_expired_certificate,
    issue_rogue_certificate,
    read_password,
    server_ssl_context,
)
from devices.users import Role, UserStore
from devices.vms_model import load_boards
from infra.cli import cli

BOARD_IDS = [b.id for b in load_boards().boards]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    directory = tmp_path_factory.mktemp("pki") / "pki"
    init_pki(directory)
    return PkiPaths(directory)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_ca_every_certificate_and_the_users_with_private_modes(pki: PkiPaths) -> None:
    pairs = [pki.central, pki.modbus_server, pki.modbus_client, *(pki.board(b) for b in BOARD_IDS)]
    for pair in pairs:
        assert pair.certificate.is_file() and mode(pair.private_key) == 0o600
    assert mode(pki.ca_key) == 0o600 and mode(pki.root / "private") == 0o700
    assert mode(pki.users_file) == 0o600 and mode(pki.password_file(CENTRAL_USER)) == 0o600
    assert [p.name for p in pki.trust_dir.iterdir()] == ["ca.pem"]  # a trust store: nothing else in it


def test_the_ca_signs_every_certificate_with_sha256(pki: PkiPaths) -> None:
    ca = cert(pki.ca_certificate)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert isinstance(ca.public_key(), rsa.RSAPublicKey) and ca.public_key().key_size == 3072
    for pair in [pki.central, pki.modbus_server, pki.modbus_client, pki.board(BOARD_IDS[0])]:
        leaf = cert(pair.certificate)
        leaf.verify_directly_issued_by(ca)
        assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
        assert leaf.public_key().key_size == 2048  # type: ignore[union-attr]
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_opcua_certificates_carry_their_application_uri_and_the_usages_asyncua_demands(pki: PkiPaths) -> None:
    board = cert(pki.board("vms-sunset-01").certificate)
    san = board.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:lalin:vms:vms-sunset-01"]
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    usage = board.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and usage.key_encipherment and usage.data_encipherment
    assert ExtendedKeyUsageOID.SERVER_AUTH in board.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    central = cert(pki.central.certificate)
    assert central.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["urn:lalin:central"]
    assert list(central.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_modbus_certificates_name_the_loopback_and_the_client_its_role(pki: PkiPaths) -> None:
    server = cert(pki.modbus_server.certificate)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    client = cert(pki.modbus_client.certificate)
    role = client.extensions.get_extension_for_oid(MODBUS_ROLE_OID).value
    assert isinstance(role, x509.UnrecognizedExtension) and role.value == b"\x0c\x08operator"  # UTF8String "operator"


def test_users_are_hashed_with_scrypt_and_roles_come_from_the_file(pki: PkiPaths) -> None:
    central, monitor = read_password(pki.root, CENTRAL_USER), read_password(pki.root, MONITOR_USER)
    text = pki.users_file.read_text()
    assert central not in text and monitor not in text and len(central) >= 24
    users = UserStore.load(pki.users_file)
    assert users.verify(CENTRAL_USER, central) is Role.OPERATOR
    assert users.verify(MONITOR_USER, monitor) is Role.READ_ONLY
    assert users.verify(CENTRAL_USER, monitor) is None and users.verify("mallory", central) is None
    with pytest.raises(ValueError, match="at least 12 are required"):
        users.add("weak", Role.OPERATOR, "short")


def test_rogue_and_expired_certificates_look_genuine_but_are_not(pki: PkiPaths, tmp_path: Path) -> None:
    ca = cert(pki.ca_certificate)
    rogue = cert(issue_rogue_certificate(tmp_path, Profile.OPCUA_CLIENT, "urn:lalin:central").certificate)
    uris = rogue.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:lalin:central"]
    with pytest.raises(ValueError):
        rogue.verify_directly_issued_by(ca)
    expired = cert(issue_expired_certificate(pki.root, tmp_path, Profile.OPCUA_CLIENT, "urn:lalin:central").certificate)
    expired.verify_directly_issued_by(ca)
    assert expired.not_valid_after_utc < datetime.now(UTC)


def test_a_board_outside_the_catalogue_gets_a_certificate(pki: PkiPaths) -> None:
    issued = issue_board_certificate(pki.root, "bench-07")
    board = cert(issued.certificate)
    board.verify_directly_issued_by(cert(pki.ca_certificate))
    assert board.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == ["urn:lalin:vms:bench-07"]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    init_pki(directory, board_ids=["vms-sunset-01"])
    before = PkiPaths(directory).ca_certificate.read_bytes()
    with pytest.raises(PkiError, match="already exist.*use --force"):
        init_pki(directory, board_ids=["vms-sunset-01"])
    assert PkiPaths(directory).ca_certificate.read_bytes() == before
    init_pki(directory, board_ids=["vms-sunset-01"], force=True)
    assert PkiPaths(directory).ca_certificate.read_bytes() != before  # a new CA


def test_the_cli_writes_lists_and_refuses_to_overwrite(tmp_path: Path) -> None:
    directory = tmp_path / "site"
    runner = CliRunner()
    first = runner.invoke(cli, ["pki", "init", "--dir", str(directory)])
    assert first.exit_code == 0, first.output
    assert "private/ca.key.pem  (0600)" in first.output and "certs/opcua-board-vms-sunset-01.pem  (0644)" in first.output
    assert "user central (operator): password in private/central.password" in first.output
    assert read_password(directory) not in first.output  # passwords are never printed
    again = runner.invoke(cli, ["pki", "init", "--dir", str(directory)])
    assert again.exit_code == 1 and "already exist" in again.output
    forced = runner.invoke(cli, ["pki", "init", "--dir", str(directory), "--force"])
    assert forced.exit_code == 0, forced.output


async def tls_exchange(pki: PkiPaths, context: ssl.SSLContext, server_context: ssl.SSLContext | None = None,
                       ) -> tuple[bytes | None, int]:
    """Mutual TLS on loopback with the Modbus contexts: what the client reads back, and how many
    connections the server accepted."""
    accepted = 0

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.write(await reader.read(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context or server_ssl_context(pki.root))
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(b"ping")
            await writer.drain()
            data: bytes | None = await reader.read(4)
            writer.close()
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            data = None
        for _ in range(100):  # let the server side of a failed handshake finish
            if all(t.done() or t is asyncio.current_task() for t in asyncio.all_tasks()):
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    return data, accepted


def test_modbus_tls_contexts_authenticate_both_sides(pki: PkiPaths, tmp_path: Path) -> None:
    without_certificate = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    without_certificate.load_verify_locations(cafile=str(pki.ca_certificate))
    refused = {"rogue": client_ssl_context(pki.root, issue_rogue_certificate(tmp_path, Profile.MODBUS_CLIENT)),
               "expired": client_ssl_context(pki.root, issue_expired_certificate(pki.root, tmp_path, Profile.MODBUS_CLIENT)),
               "no certificate": without_certificate}

    async def scenario() -> None:
        assert await tls_exchange(pki, client_ssl_context(pki.root)) == (b"ping", 1)
        for name, context in refused.items():
            data, accepted = await tls_exchange(pki, context)
            assert (data or b"", accepted) == (b"", 0), name
        fake_server = server_ssl_context(pki.root, issue_rogue_certificate(tmp_path, Profile.MODBUS_SERVER, name="fake"))
        assert await tls_exchange(pki, client_ssl_context(pki.root), fake_server) == (None, 0)

    asyncio.run(scenario())


def test_the_client_context_checks_the_server_name(pki: PkiPaths) -> None:
    context = client_ssl_context(pki.root)
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    server = server_ssl_context(pki.root)
    assert server.verify_mode is ssl.CERT_REQUIRED and server.minimum_version is ssl.TLSVersion.TLSv1_2
