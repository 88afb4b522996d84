"""lalin's settings: one pydantic-settings model, read from ``LALIN_*`` environment variables.

Nested sections use a double underscore: ``LALIN_KAFKA__BOOTSTRAP=host:9092``,
``LALIN_DATABASE__URL=postgresql://...``, ``LALIN_RUNTIME__DATA_DIR=/var/lib/lalin``. When
``kafka.bootstrap`` or ``database.url`` is unset, ``lalin up`` starts the embedded service.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from controllers.envelope import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_FUTURE_S, DEFAULT_MAX_PAST_S
from controllers.inbound import Limits


class KafkaSettings(BaseModel):
    """The Kafka-protocol broker and client tuning (milliseconds unless named otherwise)."""

    bootstrap: str | None = Field(None, description="host:port list; unset = embedded Tansu broker")
    client_id: str = "lalin"
    idempotence: Literal["auto", "on", "off"] = Field(
        "auto", description="idempotent producer: 'auto' tries it and falls back when the broker refuses it")
    request_timeout_ms: int = Field(10_000, ge=1000, description="above half the session timeout (Tansu joins take half)")
    session_timeout_ms: int = Field(6_000, ge=1000)
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    fetch_max_wait_ms: int = Field(50, ge=1, description="consumer latency vs CPU: 10-100 keeps p99 under ~75 ms")
    linger_ms: int = Field(5, ge=0)
    max_batch_records: int = Field(5_000, ge=1, description="records per archive transaction at most")
    broker_check_interval_s: float = Field(2.0, gt=0, description="how often the broker epoch marker is checked (s)")
    archiver_group: str = Field("lalin-archiver", min_length=1, max_length=200,
                                description="consumer group of the archivers; one group per archive database")


class DatabaseSettings(BaseModel):
    """The archive database."""

    url: str | None = Field(None, description="libpq URI; unset = embedded PostgreSQL in the data directory")
    embedded_database: str = "lalin"


class ValidationSettings(BaseModel):
    """Limits applied to every inbound event."""

    max_event_bytes: int = Field(DEFAULT_MAX_EVENT_BYTES, ge=256, description="bytes; larger records are dead-lettered")
    max_future_s: float = Field(DEFAULT_MAX_FUTURE_S, ge=0, description="seconds an event or ingest time may lead the clock")
    max_past_s: float = Field(DEFAULT_MAX_PAST_S, gt=0, le=10 * 365 * 86_400.0,
                              description="seconds an event or ingest time may lag the clock (older: dead-lettered)")

    def limits(self, topic_of_type: Mapping[str, str]) -> Limits:
        """The limits every consumer applies, with the catalogue's topic of each event type."""
        return Limits(self.max_event_bytes, self.max_future_s, self.max_past_s, dict(topic_of_type))


class GeneratorSettings(BaseModel):
    """The demo event generator run by ``lalin up`` until the control loop exists."""

    enabled: bool = True
    interval_s: float = Field(1.0, gt=0, description="seconds between rounds of readings")
    invalid_fraction: float = Field(0.0, ge=0, le=1, description="share of deliberately invalid records (demo of dead letters)")


class DeviceSettings(BaseModel):
    """The field devices ``lalin up`` simulates and drives (the fleet of devices/catalogue/controllers.yaml)."""

    enabled: bool = Field(True, description="start the controller simulators and lalin's Modbus drivers")
    boards: bool = Field(True, description="also the VMS board simulators and lalin's OPC UA drivers")
    count_interval_s: float = Field(60.0, gt=0, le=3600, description="seconds of detector counts per DetectorCounted event")


class WebSettings(BaseModel):
    """The live dashboard ``lalin up`` serves (read-only map, state and alarms; docs/dashboard.md)."""

    enabled: bool = Field(True, description="serve the dashboard")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(0, ge=0, le=65_535, description="port; 0: a free one (printed, and in runtime.json)")
    interval_s: float = Field(1.0, gt=0, le=60, description="wall seconds between live updates")
    audit_interval_s: float = Field(600.0, gt=0, description="wall seconds between the dashboard's archive verifications "
                                    "(each from the checkpoints before the previous one; a failure is an alarm)")


class LoopSettings(BaseModel):
    """The closed loop of ``lalin up``: the SUMO twin of Jl. Sunset Road, the stream workers, the decisions."""

    enabled: bool = Field(True, description="run the twin, the stream workers and the command executor")
    speed: float = Field(1.0, gt=0, le=100, description="simulated seconds per wall second")
    start: AwareDatetime | None = Field(None, description="simulated start; default 06:00 WITA today (next weekday)")
    workers: int = Field(1, ge=0, le=8, description="stream worker processes (one consumer group)")
    seed: int = Field(42, ge=0, description="the twin's random seed (demand and driver behaviour)")
    camera_interval_s: float = Field(60.0, gt=0, le=3600, description="simulated seconds between camera reports")
    command_ttl_s: float = Field(300.0, gt=0, description="simulated seconds after which an unsent command expires")
    baseline: bool = Field(True, description="after a bounded run, the same demand under the fixed time-of-day plans")
    incident_at: str | None = Field("06:40", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                    description="local time (WITA) a vehicle stalls in the twin (a camera incident); null: none")
    incident_camera: str = Field("CAM-K03-S", description="the approach (camera) where it stalls")
    incident_duration_s: float = Field(600.0, gt=0, le=7200, description="simulated seconds it stays")


class RuntimeSettings(BaseModel):
    """Where the embedded runtime keeps its state."""

    data_dir: Path = Path(".lalin")
    summary_interval_s: float = Field(5.0, gt=0, description="seconds between live summary lines")


class Settings(BaseSettings):
    """All of lalin's settings."""

    model_config = SettingsConfigDict(env_prefix="LALIN_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    validation: ValidationSettings = ValidationSettings()
    generator: GeneratorSettings = GeneratorSettings()
    devices: DeviceSettings = DeviceSettings()
    web: WebSettings = WebSettings()
    loop: LoopSettings = LoopSettings()
    runtime: RuntimeSettings = RuntimeSettings()
