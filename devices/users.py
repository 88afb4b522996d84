"""Device-protocol users as data: names, roles and salted scrypt hashes (never plaintext).

A board (OPC UA server) authenticates the central with a user name and password over a
SignAndEncrypt channel and gives the session a role:

* ``read_only``: may browse, read and subscribe;
* ``operator``: may also call the board's methods (show and blank messages).

The users file (YAML, mode 0600) holds one record per user: role, the scrypt parameters, the
salt and the derived key, in hex. :func:`devices.pki.init_pki` creates it with a generated
password for the central (``operator``) and one for monitoring (``read_only``), each password
in its own 0600 file beside the keys.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import ConfigurationError

SCRYPT_N = 2**14  # CPU/memory cost: ~35 ms and 16 MiB per check on the reference machine
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
USER_NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"


class Role(enum.StrEnum):
    """What a device-protocol user may do (the services are declared in vms_model.yaml's roles)."""

    READ_ONLY = "read_only"
    OPERATOR = "operator"


class UserRecord(BaseModel):
    """One user: role and the scrypt-derived key of the password (hex), with its salt and parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=USER_NAME_PATTERN)
    role: Role
    n: int = Field(ge=2**10, le=2**20)
    r: int = Field(ge=1, le=32)
    p: int = Field(ge=1, le=16)
    salt: str = Field(pattern=r"^[0-9a-f]{32,128}$")
    key: str = Field(pattern=r"^[0-9a-f]{64}$")


class UsersFile(BaseModel):
    """The users file."""

    model_config = ConfigDict(extra="forbid")

    users: list[UserRecord] = []


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=64 * 1024 * 1024)


def hash_password(name: str, role: Role, password: str) -> UserRecord:
    """A record for ``name`` with a fresh random salt; ValueError when the password is shorter than 12 characters."""
    if len(password) < 12:
        raise ValueError(f"the password of user {name!r} has {len(password)} characters; at least 12 are required")
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return UserRecord(name=name, role=role, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, salt=salt.hex(), key=key.hex())


def generate_password() -> str:
    """A random password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


class UserStore:
    """The users of a device, by name; :meth:`verify` checks a password in constant time."""

    _DUMMY = UserRecord(name="nobody", role=Role.READ_ONLY, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                        salt="00" * SALT_BYTES, key="00" * KEY_BYTES)

    def __init__(self, records: list[UserRecord] | None = None) -> None:
        self._users: dict[str, UserRecord] = {}
        for record in records or []:
            self.put(record)

    def put(self, record: UserRecord) -> None:
        """Add or replace a user."""
        self._users[record.name] = record

    def add(self, name: str, role: Role, password: str) -> UserRecord:
        """Add or replace ``name`` with ``role`` and a hash of ``password``; returns the record."""
        record = hash_password(name, role, password)
        self.put(record)
        return record

    def names(self) -> list[str]:
        """User names, sorted."""
        return sorted(self._users)

    def role_of(self, name: str) -> Role:
        """The role of ``name``; KeyError naming the user when unknown."""
        if name not in self._users:
            raise KeyError(f"no user {name!r}")
        return self._users[name].role

    def verify(self, name: str, password: str) -> Role | None:
        """The role of ``name`` when ``password`` is right, else None (an unknown name costs the same time)."""
        record = self._users.get(name, self._DUMMY)
        key = _derive(password, bytes.fromhex(record.salt), record.n, record.r, record.p)
        ok = hmac.compare_digest(key, bytes.fromhex(record.key)) and name in self._users
        return record.role if ok else None

    def to_file(self) -> UsersFile:
        """The store as file data."""
        return UsersFile(users=[self._users[n] for n in self.names()])

    def save(self, path: Path) -> None:
        """Write the users file with mode 0600 (hashes only)."""
        text = yaml.safe_dump(self.to_file().model_dump(mode="json"), sort_keys=False)
        write_private(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> UserStore:
        """The users in ``path``; ConfigurationError naming the file when it cannot be used."""
        try:
            data = UsersFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, ValueError) as err:
            raise ConfigurationError(f"users file {path}: {err}") from err
        return cls(data.users)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), replacing any old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
