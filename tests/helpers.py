"""Test helpers: event factories and small async utilities (no mocks of real components)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from controllers.envelope import Envelope, make_event
from controllers.payloads import DetectorCounted, VolumeByClass

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def detector_payload(motorcycles: int = 12, occupancy: float = 0.25) -> DetectorCounted:
    """A plausible 60-second detector count."""
    return DetectorCounted(detector_id="K01-N-1", interval_s=60.0,
                           volume=VolumeByClass(motorcycle=motorcycles, car=4, heavy=1),
                           occupancy=occupancy, mean_speed_kmh=32.5, lane="N1")


def detector_event(seq: int, key: str = "K01", source: str = "det:K01-N", at: datetime = T0) -> Envelope:
    """A DetectorCounted envelope with sequence number ``seq``."""
    return make_event(detector_payload(), event_id=uuid.uuid4(), event_time=at + timedelta(seconds=seq),
                      ingest_time=at + timedelta(seconds=seq), source=source, key=key, seq=seq)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    """Poll ``predicate`` until true or fail after ``timeout_s`` seconds naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
