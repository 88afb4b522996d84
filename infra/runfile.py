"""The data directory's ownership: one ``lalin up`` per data directory.

``lalin up`` holds an exclusive ``flock`` on ``<data_dir>/runtime.lock`` for as long as it
runs and describes itself in ``<data_dir>/runtime.json`` (pids and addresses). A second
``lalin up`` on the same directory finds the lock taken and reports the running one; the
lock dies with its process, so a crash never leaves the directory owned.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

import psutil

from controllers.errors import RuntimeConflict


class RunFile:
    """Lock and description of the runtime that owns a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lock_path = data_dir / "runtime.lock"
        self.info_path = data_dir / "runtime.json"
        self._lock: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise RuntimeConflict describing the runtime that holds it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            info = read_info(self.data_dir)
            where = json.dumps(info, indent=2) if info else "(no description yet: it is starting)"
            raise RuntimeConflict(f"lalin is already running on {self.data_dir.resolve()}:\n{where}") from None
        self._lock = handle

    def publish(self, info: dict[str, Any]) -> None:
        """Write the runtime's description atomically."""
        tmp = self.info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**info, "pid": os.getpid()}, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.info_path)

    def release(self) -> None:
        """Remove the description and drop the lock."""
        self.info_path.unlink(missing_ok=True)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def read_info(data_dir: Path) -> dict[str, Any] | None:
    """The description of the runtime owning ``data_dir`` if its process is alive, else None."""
    path = data_dir / "runtime.json"
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not psutil.pid_exists(int(info.get("pid", -1))):
        return None
    return info
