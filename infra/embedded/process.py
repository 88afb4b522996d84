"""Child-process helpers shared by the embedded services: free ports, readiness, stopping."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from collections.abc import Callable

from controllers.errors import ServiceStartError

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def parent_death_signal(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when its parent dies (Linux)."""

    def _set() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return _set


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout_s: float, name: str) -> None:
    """Wait until ``host:port`` accepts TCP connections, or raise ServiceStartError after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceStartError(f"{name} exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceStartError(f"{name} did not listen on {host}:{port} within {timeout_s} s")


def stop_process(proc: subprocess.Popen[bytes], first_signal: int = signal.SIGTERM, grace_s: float = 10.0) -> int:
    """Send ``first_signal``, wait ``grace_s`` seconds, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(first_signal)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
