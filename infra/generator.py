"""A small demo event generator: detector counts and camera observations for the demo sites.

It stands in for field devices until the SUMO corridor and the device layer feed lalin. It
runs in the shell (it uses a seeded random generator and the wall clock), publishes through
:class:`~infra.publisher.EventPublisher`, and can mix in deliberately invalid records to show
dead-lettering.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from controllers.payloads import CameraObserved, DetectorCounted, Incident, IncidentKind, Payload, VolumeByClass
from infra.publisher import EventPublisher
from infra.yaml_data import load_yaml_model

log = logging.getLogger(__name__)
DEMO_NETWORK = Path(__file__).parent / "catalogue" / "demo_network.yaml"
GENERATOR_SOURCE_PREFIX = "demo"
EFFECTIVE_LENGTH_M = 4.0  # motorcycle-heavy mix (~2 m motorcycles, ~4.5 m cars) plus a 2 m loop, weighted


class DemoSite(BaseModel):
    """A demo intersection: id, name, approaches (compass letters) and peak flow (veh/h per approach)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Z0-9-]{1,16}$")
    name: str
    approaches: list[str] = Field(min_length=1, max_length=8)
    peak_veh_h: float = Field(gt=0, le=10_000)


class DemoNetwork(BaseModel):
    """The demo sites and the vehicle mix (shares of motorcycle, car, heavy; summing to 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mix: dict[str, float]
    sites: list[DemoSite] = Field(min_length=1)


def load_demo_network(path: Path = DEMO_NETWORK) -> DemoNetwork:
    """The demo network declared in YAML; ConfigurationError naming the file when invalid."""
    return load_yaml_model(DemoNetwork, path, "demo network")


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw with ``mean`` (Knuth's method; a normal approximation above 30)."""
    if mean <= 0:
        return 0
    if mean > 30:  # normal approximation
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


class DemoGenerator:
    """Publishes one detector and one camera reading per approach of every demo site each round."""

    def __init__(self, publisher: EventPublisher, network: DemoNetwork, clock: Callable[[], datetime],
                 interval_s: float = 1.0, invalid_fraction: float = 0.0, seed: int = 7) -> None:
        self.publisher, self.network, self.clock = publisher, network, clock
        self.interval_s, self.invalid_fraction = interval_s, invalid_fraction
        self.rng = random.Random(seed)  # noqa: S311 - demo data, not security
        self.sent = 0
        self.sent_invalid = 0
        self.failed = 0

    def _volume(self, site: DemoSite) -> VolumeByClass:
        mean_total = site.peak_veh_h * self.interval_s / 3600.0 * self.rng.uniform(0.6, 1.1)
        mix = self.network.mix
        return VolumeByClass(motorcycle=poisson(self.rng, mean_total * mix["motorcycle"]),
                             car=poisson(self.rng, mean_total * mix["car"]),
                             heavy=poisson(self.rng, mean_total * mix["heavy"]))

    def _readings(self, site: DemoSite, approach: str) -> list[tuple[str, Payload]]:
        volume = self._volume(site)
        speed = None if volume.total_veh == 0 else round(self.rng.uniform(18, 45), 1)
        # occupancy = flow (veh/s) x effective length (vehicle + loop, m) / speed (m/s)
        occupancy = 0.0 if speed is None else min(1.0, volume.total_veh / self.interval_s * EFFECTIVE_LENGTH_M / (speed / 3.6))
        detector = DetectorCounted(detector_id=f"{site.id}-{approach}-1", interval_s=self.interval_s, volume=volume,
                                   occupancy=round(occupancy, 4), mean_speed_kmh=speed, lane=f"{approach}1")
        incident = None
        if self.rng.random() < 0.002:
            incident = Incident(kind=self.rng.choice(list(IncidentKind)), confidence=round(self.rng.uniform(0.5, 0.99), 2))
        camera = CameraObserved(camera_id=f"cam-{site.id}-{approach}", approach=approach, interval_s=self.interval_s,
                                counts=volume, queue_length_m=round(self.rng.uniform(0, 120), 1), incident=incident)
        return [(f"{GENERATOR_SOURCE_PREFIX}:det:{site.id}-{approach}", detector),
                (f"{GENERATOR_SOURCE_PREFIX}:cam:{site.id}-{approach}", camera)]

    def _invalid_record(self, site: DemoSite) -> bytes:
        """One deliberately bad record: malformed JSON, an out-of-bounds value, or an unknown field."""
        choice = self.rng.randrange(3)
        if choice == 0:
            return b'{"event_id": "truncated'
        now = self.clock().isoformat()
        body: dict[str, Any] = {"event_id": str(uuid.uuid4()), "type": "DetectorCounted", "schema_version": 1,
                                "event_time": now, "ingest_time": now, "source": "demo:faulty", "key": site.id,
                                "seq": 1, "payload": {"detector_id": "x", "interval_s": 60, "occupancy": 0.2,
                                                      "volume": {"motorcycle": 1, "car": 0, "heavy": 0}}}
        if choice == 1:
            body["payload"]["occupancy"] = 1.7
        else:
            body["payload"]["colour"] = "red"
        return msgspec.json.encode(body)

    async def round(self) -> int:
        """Publish one round of readings; returns the number of records sent."""
        now = self.clock()
        futures = []
        for site in self.network.sites:
            for approach in site.approaches:
                for source, payload in self._readings(site, approach):
                    topic, event = self.publisher.build(payload, source=source, key=site.id, event_time=now,
                                                        ingest_time=now, event_id=uuid.uuid4())
                    futures.append(await self.publisher.send(topic, event))
            if self.rng.random() < self.invalid_fraction:
                futures.append(await self.publisher.send_raw("lalin.detector", site.id, self._invalid_record(site)))
                self.sent_invalid += 1
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # Not retried: a device that cannot deliver a reading moves on, and the archive's
            # per-stream sequence check names exactly which readings never arrived.
            self.failed += len(failed)
            log.warning("%d of %d demo records were not acknowledged: %r", len(failed), len(results), failed[0])
        self.sent += len(results) - len(failed)
        return len(results) - len(failed)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish a round every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.round()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                continue
