"""Suite-wide checks: the compiled kernels really loaded (unless LALIN_NO_EXTENSIONS=1), and no
test leaks an asyncio task or a thread.

A task still pending when the coroutine given to ``asyncio.run`` returns is a leak (asyncio.run
would cancel it silently): a driver or simulator that forgot to stop a loop. A thread still
alive two seconds after the test is a leak too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

THREAD_GRACE_S = 2.0


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the whole run if a compiled kernel silently fell back to Python."""
    from cext import corridor, flow, timing

    for kernel in (corridor, flow, timing):
        if os.environ.get("LALIN_NO_EXTENSIONS") != "1" and kernel.IMPLEMENTATION != "cython":
            raise pytest.UsageError(f"{kernel.__name__} loaded {kernel.IMPLEMENTATION!r}, not the compiled kernel")


class _LeakTrackingLoop(asyncio.SelectorEventLoop):
    """Records the tasks still pending whenever ``run_until_complete`` returns."""

    leaked: list[str]

    def run_until_complete(self, future: Any) -> Any:
        try:
            return super().run_until_complete(future)
        finally:
            pending = [t for t in asyncio.all_tasks(self) if not t.done()]
            self.leaked.extend(f"{t.get_name()}: {t.get_coro()!r}" for t in pending)


class _LeakTrackingPolicy(asyncio.DefaultEventLoopPolicy):
    def __init__(self, leaked: list[str]) -> None:
        super().__init__()
        self.leaked = leaked

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = _LeakTrackingLoop()
        loop.leaked = self.leaked
        return loop


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves an asyncio task pending or a thread running."""
    before = set(threading.enumerate())
    leaked_tasks: list[str] = []
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_LeakTrackingPolicy(leaked_tasks))
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)
    deadline = time.monotonic() + THREAD_GRACE_S
    extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    while extra and time.monotonic() < deadline:
        time.sleep(0.05)
        extra = [t for t in extra if t.is_alive()]
    problems = [f"task left pending: {t}" for t in leaked_tasks] + [f"thread left running: {t.name}" for t in extra]
    if problems:
        pytest.fail("the test leaked:\n  " + "\n  ".join(problems), pytrace=False)
