"""Accounts and sessions of the web surfaces, in PostgreSQL (``web_users``, ``web_sessions``).

Passwords are stored as scrypt hashes (``scrypt$N$r$p$salt$hash``, base64, a random 16-byte salt each; the
standard library's :func:`hashlib.scrypt`, N = 2^14, r = 8, p = 1) and compared in constant time. A session
is a random 32-byte token in an HttpOnly cookie; the table keeps only its SHA-256. A session ends after
``idle_timeout_s`` without a request, at ``absolute_timeout_s`` after the login, at logout, or when the
account is disabled. ``max_failed_logins`` wrong passwords in a row lock the account for ``lockout_s``.
Times here are wall-clock times (a demo's simulated clock must not expire a login in minutes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from controllers.access import ROLES, AccessPolicy
from controllers.errors import LalinError
from infra.yaml_data import load_yaml_model

ROLES_FILE = Path(__file__).parent / "catalogue" / "roles.yaml"
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_BYTES = 2**14, 8, 1, 32


class AccountError(LalinError):
    """An account operation that cannot be done (unknown user, weak password, bad role...)."""


class LoginFailed(LalinError):
    """Wrong user or password, a disabled or a locked account; the message never says which of user or password."""


@cache
def load_access(path: Path = ROLES_FILE) -> AccessPolicy:
    """The roles and session rules in ``path`` (cached)."""
    return load_yaml_model(AccessPolicy, path, "access policy")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The scrypt hash of ``password`` as stored (see the module docstring)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_BYTES,
                            maxmem=64 * 1024 * 1024)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=64 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    """A signed-in person: name, role and the session's expiry (wall clock)."""

    username: str
    role: str
    full_name: str = ""


def check_new_account(username: str, role: str, password: str, policy: AccessPolicy) -> None:
    """AccountError naming what is wrong with a new account's name, role or password."""
    if not USERNAME.match(username):
        raise AccountError(f"user name {username!r}: 2 to 64 letters, digits or _.@-")
    if role not in ROLES:
        raise AccountError(f"role {role!r} is unknown; the roles are {', '.join(ROLES)}")
    if len(password) < policy.sessions.min_password_length:
        raise AccountError(f"the password has {len(password)} characters; at least "
                           f"{policy.sessions.min_password_length} are required")


class Accounts:
    """Accounts and sessions at ``database_url`` (synchronous psycopg: call from a thread in async code)."""

    def __init__(self, database_url: str, policy: AccessPolicy | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.database_url, self.policy = database_url, policy or load_access()
        self.clock = clock or (lambda: datetime.now(UTC))

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True)

    def add(self, username: str, role: str, password: str, full_name: str = "") -> None:
        """Create an account; AccountError when the name is taken or the name, role or password is unfit."""
        check_new_account(username, role, password, self.policy)
        now = self.clock()
        with self._connect() as conn:
            try:
                conn.execute("""INSERT INTO web_users (username, role, password_hash, full_name, created_at, password_set_at)
                                VALUES (%s, %s, %s, %s, %s, %s)""",
                             (username, role, hash_password(password), full_name, now, now))
            except psycopg.errors.UniqueViolation as err:
                raise AccountError(f"user {username!r} exists already") from err

    def set_role(self, username: str, role: str) -> None:
        """Give ``username`` another role (its sessions end: the next request logs in again)."""
        if role not in ROLES:
            raise AccountError(f"role {role!r} is unknown; the roles are {', '.join(ROLES)}")
        self._update(username, "role = %s", (role,))

    def set_password(self, username: str, password: str) -> None:
        """A new password for ``username`` (its sessions end; the lock is lifted)."""
        if len(password) < self.policy.sessions.min_password_length:
            raise AccountError(f"the password has {len(password)} characters; at least "
                               f"{self.policy.sessions.min_password_length} are required")
        self._update(username, "password_hash = %s, password_set_at = %s, failed_logins = 0, locked_until = NULL",
                     (hash_password(password), self.clock()))

    def disable(self, username: str, disabled: bool = True) -> None:
        """Disable (or enable again) an account; its sessions end."""
        self._update(username, "disabled = %s", (disabled,))

    def _update(self, username: str, assignments: str, values: tuple[Any, ...]) -> None:
        with self._connect() as conn, conn.transaction():
            cur = conn.execute(f"UPDATE web_users SET {assignments} WHERE username = %s", (*values, username))
            if cur.rowcount != 1:
                raise AccountError(f"no user {username!r}")
            conn.execute("UPDATE web_sessions SET ended_at = %s WHERE username = %s AND ended_at IS NULL",
                         (self.clock(), username))

    def list(self) -> list[dict[str, Any]]:
        """Every account (never its hash)."""
        with self._connect() as conn:
            cur = conn.execute("""SELECT username, role, full_name, disabled, failed_logins, locked_until, created_at
                                  FROM web_users ORDER BY username""")
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def count(self) -> int:
        """How many accounts exist."""
        with self._connect() as conn:
            row = conn.execute("SELECT count(*) FROM web_users").fetchone()
            return int(row[0]) if row else 0

    def login(self, username: str, password: str) -> tuple[str, User]:
        """A new session's token and its user; LoginFailed (counting the failure, locking after too many)."""
        now, rules = self.clock(), self.policy.sessions
        with self._connect() as conn:
            with conn.transaction():
                row = conn.execute("""SELECT role, password_hash, full_name, disabled, failed_logins, locked_until
                                      FROM web_users WHERE username = %s FOR UPDATE""", (username,)).fetchone()
                problem = self._refusal(conn, username, password, row)
            if problem is not None:  # raised after the failure count is committed
                raise LoginFailed(problem)
            assert row is not None
            role, full_name = row[0], row[2]
            conn.execute("UPDATE web_users SET failed_logins = 0, locked_until = NULL WHERE username = %s", (username,))
            token = secrets.token_urlsafe(32)
            conn.execute("""INSERT INTO web_sessions (token_sha256, username, created_at, last_seen_at, expires_at)
                            VALUES (%s, %s, %s, %s, %s)""",
                         (_token_key(token), username, now, now, now + timedelta(seconds=rules.absolute_timeout_s)))
        return token, User(username, role, full_name)

    def _refusal(self, conn: psycopg.Connection[Any], username: str, password: str, row: tuple[Any, ...] | None) -> str | None:
        """Why a login is refused (a wrong password counted, the account locked after too many), or None."""
        now, rules = self.clock(), self.policy.sessions
        if row is None:
            password_matches(password, hash_password("timing-equaliser"))  # the same work as for a real user
            return "wrong user name or password"
        _, stored, _, disabled, failed, locked_until = row
        if disabled:
            return f"account {username} is disabled"
        if locked_until is not None and locked_until > now:
            return f"account {username} is locked until {locked_until.isoformat()} after {rules.max_failed_logins} failed logins"
        if password_matches(password, stored):
            return None
        failed += 1
        lock = now + timedelta(seconds=rules.lockout_s) if failed >= rules.max_failed_logins else None
        conn.execute("UPDATE web_users SET failed_logins = %s, locked_until = %s WHERE username = %s",
                     (0 if lock else failed, lock, username))
        return "wrong user name or password" + (" (account now locked)" if lock else "")

    def session(self, token: str) -> User | None:
        """The user of a live session (its idle timer restarted), or None: unknown, expired, ended or disabled."""
        now, rules = self.clock(), self.policy.sessions
        with self._connect() as conn:
            row = conn.execute(
                """UPDATE web_sessions s SET last_seen_at = %s FROM web_users u
                    WHERE s.token_sha256 = %s AND u.username = s.username AND s.ended_at IS NULL AND NOT u.disabled
                      AND s.expires_at > %s AND s.last_seen_at > %s
                   RETURNING u.username, u.role, u.full_name""",
                (now, _token_key(token), now, now - timedelta(seconds=rules.idle_timeout_s))).fetchone()
        return User(*row) if row is not None else None

    def logout(self, token: str) -> None:
        """End the session of ``token``."""
        with self._connect() as conn:
            conn.execute("UPDATE web_sessions SET ended_at = %s WHERE token_sha256 = %s AND ended_at IS NULL",
                         (self.clock(), _token_key(token)))


def first_account(accounts: Accounts, data_dir: Path) -> Path | None:
    """With no account at all, create ``admin`` (role admin) with a generated password written to
    ``data_dir/admin.password`` (mode 0600); the file's path, or None when accounts exist."""
    if accounts.count() > 0:
        return None
    password = secrets.token_urlsafe(18)
    path = data_dir / "admin.password"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    accounts.add("admin", "admin", password, "first administrator")
    return path
