"""The site PKI: a site CA and the certificates it signs, for OPC UA and Modbus/TCP Security.

``lalin pki init`` (:func:`init_pki`) writes, under one directory::

    ca/ca.pem                          the site CA certificate (the only file here: a trust store)
    certs/opcua-central.pem            lalin central's OPC UA client (URI SAN urn:lalin:central)
    certs/opcua-board-<id>.pem         one OPC UA server certificate per catalogued VMS board
                                       (URI SAN urn:lalin:vms:<id>, DNS localhost and this host, IP 127.0.0.1)
    certs/modbus-server.pem            Modbus/TCP Security (TLS) server (IP 127.0.0.1, DNS localhost)
    certs/modbus-client.pem            Modbus/TCP Security client, role extension "operator"
    private/*.key.pem                  their RSA keys (mode 0600, directory 0700)
    private/<user>.password            generated passwords of the central and monitor users (0600)
    users.yaml                         device users: role and salted scrypt hash (0600)

Keys are RSA (3072 bits for the CA, 2048 for the rest: Basic256Sha256 accepts 2048..4096),
signatures SHA-256. OPC UA certificates carry the key usages asyncua's validator demands
(digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment) and the extended key
usage of their side. Test helpers issue a **rogue** certificate (from another CA) and an
**expired** one (from the site CA).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from controllers.errors import ConfigurationError
from devices.users import Role, UserStore, generate_password, write_private
from devices.vms_model import load_boards, load_model

CA_KEY_BITS = 3072
LEAF_KEY_BITS = 2048
CA_DAYS = 3650
LEAF_DAYS = 825
ORGANISATION = "lalin"
#: Modbus/TCP Security role extension (MODBUS/TCP Security protocol specification, 2018): a UTF8String.
MODBUS_ROLE_OID = ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
CENTRAL_USER = "central"
MONITOR_USER = "monitor"


class PkiError(ConfigurationError):
    """The PKI directory cannot be used or written as asked (names the file)."""


class Profile(enum.StrEnum):
    """What a certificate is for: decides its key usages and extended key usage."""

    OPCUA_SERVER = "opcua_server"
    OPCUA_CLIENT = "opcua_client"
    MODBUS_SERVER = "modbus_server"
    MODBUS_CLIENT = "modbus_client"


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files."""

    certificate: Path
    private_key: Path


@dataclass(frozen=True)
class PkiPaths:
    """Where everything lives under a PKI directory."""

    root: Path

    @property
    def trust_dir(self) -> Path:
        """Directory holding only the site CA certificate (an asyncua TrustStore location)."""
        return self.root / "ca"

    @property
    def ca_certificate(self) -> Path:
        """The site CA certificate (PEM)."""
        return self.trust_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The site CA key (PEM, 0600)."""
        return self.key("ca")

    @property
    def users_file(self) -> Path:
        """Device users with hashed passwords (YAML, 0600)."""
        return self.root / "users.yaml"

    def certificate(self, name: str) -> Path:
        """A certificate by name (PEM)."""
        return self.root / "certs" / f"{name}.pem"

    def key(self, name: str) -> Path:
        """A private key by name (PEM, 0600; asyncua wants the .pem suffix)."""
        return self.root / "private" / f"{name}.key.pem"

    def issued(self, name: str) -> Issued:
        """Certificate and key of ``name``."""
        return Issued(self.certificate(name), self.key(name))

    def password_file(self, user: str) -> Path:
        """The generated password of ``user`` (0600)."""
        return self.root / "private" / f"{user}.password"

    def board(self, board_id: str) -> Issued:
        """The OPC UA server certificate and key of VMS board ``board_id``."""
        return self.issued(f"opcua-board-{board_id}")

    @property
    def central(self) -> Issued:
        """The central's OPC UA client certificate and key."""
        return self.issued("opcua-central")

    @property
    def modbus_server(self) -> Issued:
        """The Modbus/TCP Security server certificate and key."""
        return self.issued("modbus-server")

    @property
    def modbus_client(self) -> Issued:
        """The Modbus/TCP Security client certificate and key."""
        return self.issued("modbus-client")


def new_key(bits: int = LEAF_KEY_BITS) -> rsa.RSAPrivateKey:
    """A new RSA key of ``bits`` bits."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "lalin site CA", *, days: int = CA_DAYS, now: datetime | None = None,
            key: rsa.RSAPrivateKey | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed CA valid ``days`` days from ``now`` (path length 0: it signs leaf certificates only)."""
    key = key or new_key(CA_KEY_BITS)
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _usages(profile: Profile) -> tuple[x509.KeyUsage, list[ObjectIdentifier]]:
    opcua = profile in (Profile.OPCUA_SERVER, Profile.OPCUA_CLIENT)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=opcua, key_encipherment=True,
                          data_encipherment=opcua, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    server = profile in (Profile.OPCUA_SERVER, Profile.MODBUS_SERVER)
    # an OPC UA server is a ClientAndServer application: it may open connections too
    eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if profile is Profile.OPCUA_SERVER else \
        [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
    return usage, eku


def _utf8_string_der(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > 127:
        raise ValueError(f"role {text!r} is {len(data)} bytes; at most 127 are supported")
    return bytes([0x0C, len(data)]) + data


def issue(ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, profile: Profile, common_name: str, *,
          uris: Sequence[str] = (), dns: Sequence[str] = (), ips: Sequence[str] = (), modbus_role: str | None = None,
          not_before: datetime | None = None, not_after: datetime | None = None,
          key: rsa.RSAPrivateKey | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A leaf certificate for ``profile`` signed by the CA (validity: now - 5 min .. now + 825 days unless given)."""
    key = key or new_key()
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    end = not_after or start + timedelta(days=LEAF_DAYS)
    usage, eku = _usages(profile)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(usage, critical=True)
               .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if modbus_role is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(MODBUS_ROLE_OID, _utf8_string_der(modbus_role)),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write_pair(issued: Issued, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> list[Path]:
    issued.certificate.parent.mkdir(parents=True, exist_ok=True)
    issued.certificate.write_bytes(_cert_pem(cert))
    write_private(issued.private_key, _key_pem(key))
    return [issued.certificate, issued.private_key]


def load_ca(pki_dir: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """The site CA certificate and key; PkiError naming the file when missing or not an RSA key."""
    paths = PkiPaths(pki_dir)
    try:
        cert = x509.load_pem_x509_certificate(paths.ca_certificate.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise PkiError(f"site CA in {pki_dir}: {err} (run `lalin pki init --dir {pki_dir}`)") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"{paths.ca_key}: the site CA key is not an RSA key")
    return cert, key


# this machine's name too: asyncua warns when a certificate lacks it
LOCAL_DNS = sorted({"localhost", socket.gethostname()})
LOCAL_IPS = ["127.0.0.1"]


def issue_board_certificate(pki_dir: Path, board_id: str) -> Issued:
    """Issue (or re-issue) the OPC UA server certificate of board ``board_id`` with the site CA; returns its files.

    Boards outside the catalogue (a bench of 20 simulated boards) get theirs this way.
    """
    ca_cert, ca_key = load_ca(pki_dir)
    uri = load_model().application_uri(board_id)
    cert, key = issue(ca_cert, ca_key, Profile.OPCUA_SERVER, f"lalin VMS board {board_id}", uris=[uri], dns=LOCAL_DNS,
                      ips=LOCAL_IPS)
    issued = PkiPaths(pki_dir).board(board_id)
    _write_pair(issued, cert, key)
    return issued


@dataclass(frozen=True)
class PkiReport:
    """What :func:`init_pki` wrote."""

    directory: Path
    written: list[Path]
    users: dict[str, Role]


def _planned(paths: PkiPaths, board_ids: Sequence[str]) -> list[Path]:
    pairs = [paths.central, paths.modbus_server, paths.modbus_client, *(paths.board(b) for b in board_ids)]
    return [paths.ca_certificate, paths.ca_key, *(p for i in pairs for p in (i.certificate, i.private_key)),
            paths.users_file, paths.password_file(CENTRAL_USER), paths.password_file(MONITOR_USER)]


def init_pki(directory: Path, board_ids: Sequence[str] | None = None, *, force: bool = False) -> PkiReport:
    """Create the site CA, every certificate and the users file under ``directory``.

    ``board_ids`` defaults to the board catalogue. Refuses (PkiError naming the files) when
    any of them exists, unless ``force``, which replaces them all.
    """
    paths = PkiPaths(directory)
    boards = list(board_ids) if board_ids is not None else [b.id for b in load_boards().boards]
    planned = _planned(paths, boards)
    existing = [p for p in planned if p.exists()]
    if existing and not force:
        raise PkiError(f"{len(existing)} file(s) already exist, e.g. {existing[0]}; use --force to replace them")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "private").mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory / "private", 0o700)
    model = load_model()
    ca_cert, ca_key = make_ca()
    written = _write_pair(Issued(paths.ca_certificate, paths.ca_key), ca_cert, ca_key)
    # (files, profile, common name, URI SANs, Modbus role)
    leaves: list[tuple[Issued, Profile, str, list[str], str | None]] = [
        (paths.central, Profile.OPCUA_CLIENT, "lalin central", [model.central_application_uri], None),
        (paths.modbus_server, Profile.MODBUS_SERVER, "lalin Modbus TLS server", [], None),
        (paths.modbus_client, Profile.MODBUS_CLIENT, "lalin Modbus TLS client", [], "operator"),
        *((paths.board(b), Profile.OPCUA_SERVER, f"lalin VMS board {b}", [model.application_uri(b)], None) for b in boards)]
    for issued, profile, cn, uris, role in leaves:
        cert, key = issue(ca_cert, ca_key, profile, cn, uris=uris, dns=LOCAL_DNS, ips=LOCAL_IPS, modbus_role=role)
        written += _write_pair(issued, cert, key)
    store = UserStore()
    for user, role in ((CENTRAL_USER, Role.OPERATOR), (MONITOR_USER, Role.READ_ONLY)):
        password = generate_password()
        store.add(user, role, password)
        write_private(paths.password_file(user), password.encode("utf-8"))
        written.append(paths.password_file(user))
    store.save(paths.users_file)
    written.append(paths.users_file)
    return PkiReport(directory=directory, written=written, users={u: store.role_of(u) for u in store.names()})


def read_password(pki_dir: Path, user: str = CENTRAL_USER) -> str:
    """The generated password of ``user``; PkiError naming the file when it is missing."""
    path = PkiPaths(pki_dir).password_file(user)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise PkiError(f"password of user {user!r}: {err}") from err


def server_ssl_context(pki_dir: Path, issued: Issued | None = None) -> ssl.SSLContext:
    """TLS context of a Modbus/TCP Security server: its certificate, TLS >= 1.2, client certificates
    REQUIRED and verified against the site CA."""
    paths = PkiPaths(pki_dir)
    own = issued or paths.modbus_server
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(paths.ca_certificate))
    context.load_cert_chain(str(own.certificate), str(own.private_key))
    return context


def client_ssl_context(pki_dir: Path, issued: Issued | None = None) -> ssl.SSLContext:
    """TLS context of a Modbus/TCP Security client: its certificate (default the site's client
    certificate), TLS >= 1.2, the server verified against the site CA and its host name or IP checked."""
    paths = PkiPaths(pki_dir)
    own = issued or paths.modbus_client
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=str(paths.ca_certificate))
    context.load_cert_chain(str(own.certificate), str(own.private_key))
    return context


def issue_rogue_certificate(out_dir: Path, profile: Profile, application_uri: str | None = None,
                            name: str = "rogue") -> Issued:
    """A certificate shaped like a genuine one for ``profile`` (same URI and names) but signed by
    ANOTHER CA: every lalin peer must refuse it. Written to ``out_dir`` as ``<name>.pem`` and ``<name>.key.pem``."""
    rogue_ca, rogue_key = make_ca("rogue CA")
    uris = [application_uri] if application_uri else []
    cert, key = issue(rogue_ca, rogue_key, profile, f"{name} {profile.value}", uris=uris, dns=LOCAL_DNS, ips=LOCAL_IPS)
    issued = Issued(out_dir / f"{name}.pem", out_dir / f"{name}.key.pem")
    _write_pair(issued, cert, key)
    return issued


def issue_expired_certificate(pki_dir: Path, out_dir: Path, profile: Profile, application_uri: str | None = None,
                              name: str = "expired") -> Issued:
    """A certificate for ``profile`` signed by the site CA that expired a day ago (valid from 30 days ago):
    every lalin peer must refuse it. Written to ``out_dir`` as ``<name>.pem`` and ``<name>.key.pem``."""
    ca_cert, ca_key = load_ca(pki_dir)
    now = datetime.now(UTC)
    uris = [application_uri] if application_uri else []
    cert, key = issue(ca_cert, ca_key, profile, f"{name} {profile.value}", uris=uris, dns=LOCAL_DNS, ips=LOCAL_IPS,
                      not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    issued = Issued(out_dir / f"{name}.pem", out_dir / f"{name}.key.pem")
    _write_pair(issued, cert, key)
    return issued
