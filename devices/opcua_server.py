"""A secure asyncua server as lalin's boards run it: the model's security profile, enforced.

asyncua 2.1.0 needs more than its settings to be secure (verified on the installed version):

* without a ``CertificateValidator`` it accepts any client certificate;
* with one, it validates only the certificate the client puts in CreateSession — **not** the
  certificate of the secure channel. A client could open a channel with a rogue key and present
  someone's genuine (public) certificate in CreateSession;
* it accepts CreateSession and ActivateSession over a ``SecurityPolicy#None`` channel (the one
  discovery uses) even when no None endpoint is offered — the password then travels in clear.

:class:`SecureInternalServer` closes both holes: a session must present a client certificate in
CreateSession (validated against the site CA) and be activated over a secure channel whose
certificate is that same certificate; otherwise ``BadSecurityChecksFailed``. Users come from
the users file (:class:`BoardUserManager`) and the model's roles are enforced per OPC UA
service (:class:`RoleRuleset`).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from devices.opcua_common import SERVER_POLICIES, SERVICE_REQUESTS, numeric_node_id, site_trust_store
from devices.pki import Issued, PkiPaths
from devices.users import Role, UserStore
from devices.vms_model import VmsModel


@dataclass
class BoardUser(User):
    """An authenticated session's user, with its lalin role."""

    lalin_role: Role = Role.READ_ONLY


class BoardUserManager:
    """asyncua user manager: user name and password checked against the users file (scrypt);
    anything else (anonymous, certificate tokens) gets no user, and the session is refused."""

    def __init__(self, users: UserStore) -> None:
        self._users = users

    def get_user(self, iserver: InternalServer, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        """The session's user, or None (the session is refused with BadUserAccessDenied)."""
        if username is None or password is None:
            return None
        role = self._users.verify(username, password)
        return None if role is None else BoardUser(role=UserRole.User, name=username, lalin_role=role)


class RoleRuleset(SimpleRoleRuleset):
    """Allows a request only when the user's role may use its service set (the model's ``roles``)."""

    def __init__(self, model: VmsModel) -> None:  # the parent's table is not used: no super().__init__()
        self._allowed = {Role(name): {numeric_node_id(i) for s in spec.services for i in SERVICE_REQUESTS[s]}
                         for name, spec in model.roles.items()}

    def check_validity(self, user: User | None, action_type_id: ua.NodeId, body: Any) -> bool:
        """True when ``user``'s role may send a request of type ``action_type_id``."""
        role = getattr(user, "lalin_role", None)
        return role is not None and action_type_id in self._allowed.get(role, set())


def _first_certificate(der: bytes) -> bytes:
    length = int.from_bytes(der[2:4], "big") + 4  # a DER SEQUENCE with a two-byte length
    return der[:length]


class SecureSession(InternalSession):
    """A session that must prove its certificate: the CreateSession certificate (validated by the
    server's validator) must be the secure channel's certificate."""

    _client_certificate: bytes | None = None

    async def create_session(self, params: ua.CreateSessionParameters,
                             sockname: tuple[str, int] | None = None) -> ua.CreateSessionResult:
        """Refuse a CreateSession without a client certificate, then let asyncua validate it."""
        if not params.ClientCertificate:
            raise ServiceError(StatusCodes.BadSecurityChecksFailed)
        result = await super().create_session(params, sockname)
        self._client_certificate = _first_certificate(params.ClientCertificate)
        return result

    def activate_session(self, params: ua.ActivateSessionParameters, peer_certificate: bytes | None) -> ua.ActivateSessionResult:
        """Refuse activation over an unsecured channel or a channel of another certificate."""
        if peer_certificate is None or self._client_certificate != _first_certificate(peer_certificate):
            raise ServiceError(StatusCodes.BadSecurityChecksFailed)
        return super().activate_session(params, peer_certificate)


class SecureInternalServer(InternalServer):
    """asyncua's internal server making :class:`SecureSession` sessions, and closing them all on demand
    (asyncua's ``Server.stop`` leaves the sessions of connected clients, and their tasks, running)."""

    def __init__(self, user_manager: BoardUserManager) -> None:
        super().__init__(user_manager=user_manager)  # type: ignore[arg-type]
        self.sessions: weakref.WeakSet[SecureSession] = weakref.WeakSet()

    def create_session(self, name: str, user: User | None = None, external: bool = False) -> InternalSession:
        """A new session (see :class:`SecureSession`)."""
        session = SecureSession(self, self.aspace, self.subscription_service, name,
                                user=user or User(role=UserRole.Anonymous), external=external)
        self.sessions.add(session)
        return session

    async def close_sessions(self) -> None:
        """Close every session and its subscriptions (as a power cut would), then let their tasks end."""
        for session in list(self.sessions):
            await session.close_session(True)
        for _ in range(3):  # cancelled watchdog tasks finish on the next turns of the loop
            await asyncio.sleep(0)


async def prepare_address_space_cache(directory: Path) -> Path:
    """A read-only cache of OPC UA's standard address space under ``directory`` (made once, about
    1.7 s), for :func:`secure_server`: a server then starts in about 0.05 s instead of 1 s.

    asyncua loads the cache lazily from a ``shelve`` file, but only when the path it is given is a
    file (or ``<path>.db`` is): Python's fallback ``dbm.dumb`` writes ``<path>.dat`` and
    ``<path>.dir`` instead, so an empty marker file is made at the path itself. The file name
    carries asyncua's version: a cache is never read by another version.
    """
    path = directory / f"asyncua-{version('asyncua')}-standard-address-space"
    if not path.exists() and not path.with_suffix(".db").exists():
        directory.mkdir(parents=True, exist_ok=True)
        builder = InternalServer()
        await builder.load_standard_address_space(path)  # fills, then writes the shelf
        if not path.exists() and not path.with_suffix(".db").exists():
            path.touch()
    return path


async def secure_server(model: VmsModel, pki: PkiPaths, certificate: Issued, users: UserStore, *, endpoint_url: str,
                        application_uri: str, name: str, address_space_cache: Path | None = None) -> Server:
    """An initialised (not started) asyncua Server with the model's security profile: SignAndEncrypt
    endpoints of the model's policies only, user name tokens only, client certificates validated
    against the site CA and bound to the channel, and the model's roles. Takes about 1 s (asyncua
    fills the standard address space), 0.05 s with ``address_space_cache`` from
    :func:`prepare_address_space_cache`."""
    server = Server(iserver=SecureInternalServer(BoardUserManager(users)))
    await server.init(address_space_cache)
    server.set_endpoint(endpoint_url)
    server.set_server_name(name)
    await server.set_application_uri(application_uri)
    server.set_security_policy([SERVER_POLICIES[p] for p in model.security.policies], permission_ruleset=RoleRuleset(model))
    server.set_identity_tokens([ua.UserNameIdentityToken])
    await server.load_certificate(str(certificate.certificate))
    await server.load_private_key(str(certificate.private_key))
    options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
    server.set_certificate_validator(CertificateValidator(options, await site_trust_store(pki.trust_dir)))
    return server
