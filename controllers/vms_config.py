"""The automatic-VMS policy as validated data: priorities, display rules, rules with their thresholds,
the calendar, place names and the message templates (Indonesian and English).

The policy file (``infra/catalogue/vms_policy.yaml``) is loaded by the shell into
:class:`VmsPolicyConfig`; the pure policy (:mod:`controllers.vms_policy`) reads nothing else.
The boards reach the core as :class:`BoardSite` (built by the shell from the board catalogue).
Units: seconds (``_s``), metres (``_m``), km/h (``_kmh``), minutes (``_min``); degree of
saturation is a ratio; confidence a fraction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from controllers.payloads import ControlMode, FaultKind, IncidentKind, VmsFaultKind

Category = Literal["operator", "safety", "incident", "closure", "congestion", "travel_time", "default"]
#: The order of precedence, highest first (the issue's "safety > incident > closure > congestion > travel time > default";
#: an operator's message outranks every automatic one).
CATEGORIES: tuple[Category, ...] = ("operator", "safety", "incident", "closure", "congestion", "travel_time", "default")
Language = Literal["id", "en"]
Facing = Literal["outbound", "inbound"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Priorities(_Strict):
    """The board priority (1 = highest) each category is sent with; strictly increasing in CATEGORIES order."""

    operator: int = Field(1, ge=1, le=10)
    safety: int = Field(2, ge=1, le=10)
    incident: int = Field(3, ge=1, le=10)
    closure: int = Field(4, ge=1, le=10)
    congestion: int = Field(5, ge=1, le=10)
    travel_time: int = Field(6, ge=1, le=10)
    default: int = Field(7, ge=1, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> Priorities:
        numbers = [getattr(self, c) for c in CATEGORIES]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise ValueError(f"priorities must rise strictly in the order {CATEGORIES}: {numbers}")
        return self

    def of(self, category: Category) -> int:
        """The board priority of ``category``."""
        return int(getattr(self, category))


class DisplayRules(_Strict):
    """How long messages stay and how delivery is retried (seconds)."""

    min_display_s: float = Field(180.0, ge=0, le=3600, description="an automatic message stays at least this long, "
                                 "unless a message of higher priority preempts it")
    hold_s: float = Field(900.0, gt=0, le=86_400, description="duration sent with an automatic message: the board blanks "
                          "it by itself if lalin stops refreshing it")
    refresh_before_s: float = Field(300.0, ge=0, le=86_400, description="re-sent when less than this remains of the hold")
    retry_after_s: float = Field(30.0, gt=0, le=3600, description="a message not confirmed on the board is re-sent after this")
    max_attempts: int = Field(3, ge=1, le=10, description="sends of one message to one board before it moves to the next board")
    page_time_s: float = Field(3.0, gt=0, le=60, description="time per page of a two-language message")
    unavailable_faults: list[VmsFaultKind] = Field(
        default_factory=lambda: [VmsFaultKind.COMMS_LOST, VmsFaultKind.POWER_FAILURE, VmsFaultKind.DISPLAY_FAULT,
                                 VmsFaultKind.PIXEL_FAILURE],
        description="an active fault of these kinds takes a board out of use (its messages move to the next board)")

    @model_validator(mode="after")
    def _consistent(self) -> DisplayRules:
        if self.refresh_before_s >= self.hold_s:
            raise ValueError(f"refresh_before_s {self.refresh_before_s:g} s must be below hold_s {self.hold_s:g} s")
        return self


class Placement(_Strict):
    """Which boards a located cause reaches: boards facing its traffic, upstream within ``max_distance_m``, the nearest
    ``max_boards`` of them that are in use (a board out of use passes the message to the next one)."""

    max_boards: int = Field(1, ge=1, le=20)
    max_distance_m: float = Field(5000.0, gt=0, le=100_000)


class IncidentRule(Placement):
    """Camera incidents of ``kinds`` seen with at least ``min_confidence``; the cause ends ``clear_after_s`` after the
    last window that reported it."""

    id: str = Field(pattern=r"^[a-z0-9_]{1,40}$")
    category: Literal["safety", "incident"]
    kinds: list[IncidentKind] = Field(min_length=1)
    min_confidence: float = Field(0.6, ge=0, le=1)
    clear_after_s: float = Field(180.0, ge=0, le=86_400)
    template: str


class SignalsOutRule(Placement):
    """A downstream controller dark or flashing (``modes``), unreachable, or with one of ``faults`` active: warn its
    approaching traffic; the cause ends ``clear_after_s`` after the controller is back to normal."""

    id: str = Field("signals_out", pattern=r"^[a-z0-9_]{1,40}$")
    category: Literal["safety"] = "safety"
    modes: list[ControlMode] = Field(default_factory=lambda: [ControlMode.FLASH, ControlMode.OFF])
    faults: list[FaultKind] = Field(default_factory=lambda: [FaultKind.CONFLICT, FaultKind.POWER])
    unreachable: bool = True
    clear_after_s: float = Field(120.0, ge=0, le=86_400)
    template: str = "signals_out"


class Thresholds(_Strict):
    """Congestion measures of one direction at a junction (None: the measure is not used)."""

    degree_of_saturation: float | None = Field(None, gt=0, le=10)
    queue_m: float | None = Field(None, gt=0, le=10_000)
    speed_kmh: float | None = Field(None, gt=0, le=200)
    control_delay_s: float | None = Field(None, gt=0, le=3600, description="HCM control delay of the direction (s/veh): "
                                          "the junction's share of the travel time")


class CongestionRule(Placement):
    """Congestion of a direction at a junction: ON when any ``switch_on`` threshold is passed (X, queue or delay at or
    above, speed at or below) continuously for ``on_after_s``; OFF when every ``switch_off`` measure has been back
    (below / above) for
    ``off_after_s``. X and speed come from loop detectors and are used only when every detector of the movement is
    healthy; the queue comes from the camera."""

    id: str = Field("congestion", pattern=r"^[a-z0-9_]{1,40}$")
    category: Literal["congestion"] = "congestion"
    switch_on: Thresholds
    switch_off: Thresholds
    on_after_s: float = Field(120.0, ge=0, le=3600)
    off_after_s: float = Field(300.0, ge=0, le=3600)
    template: str = "congestion"

    @model_validator(mode="after")
    def _hysteresis(self) -> CongestionRule:
        for name in ("degree_of_saturation", "queue_m", "control_delay_s"):
            on, off = getattr(self.switch_on, name), getattr(self.switch_off, name)
            if (on is None) != (off is None) or (on is not None and off is not None and off >= on):
                raise ValueError(f"congestion {name}: the off threshold must be set with the on one and lie below it")
        on_v, off_v = self.switch_on.speed_kmh, self.switch_off.speed_kmh
        if (on_v is None) != (off_v is None) or (on_v is not None and off_v is not None and off_v <= on_v):
            raise ValueError("congestion speed_kmh: the off threshold must be set with the on one and lie above it")
        return self


class TravelTimeRule(_Strict):
    """Travel time from a board to its destination junction: cruise at each link's progression speed plus the HCM
    control delay of the direction's movement at every junction passed. Shown only when every movement on the way is
    measured by healthy detectors; a shown time changes only by ``min_change_min`` or more."""

    id: str = Field("travel_time", pattern=r"^[a-z0-9_]{1,40}$")
    category: Literal["travel_time"] = "travel_time"
    min_change_min: int = Field(2, ge=1, le=60)
    max_minutes: int = Field(90, ge=1, le=600)
    template: str = "travel_time"


class CalendarEntry(_Strict):
    """A planned closure, ceremony or Nyepi: announced on ``boards`` (or every board on ``roads``) from ``announce_from``
    to ``end``."""

    id: str = Field(pattern=r"^[a-z0-9_-]{1,48}$")
    kind: Literal["closure", "ceremony", "nyepi"]
    start: AwareDatetime
    end: AwareDatetime
    announce_from: AwareDatetime
    boards: list[str] = Field(default_factory=list)
    roads: list[str] = Field(default_factory=list)
    template: str
    params: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> CalendarEntry:
        if not self.announce_from <= self.start < self.end:
            raise ValueError(f"calendar {self.id}: needs announce_from <= start < end")
        if not self.boards and not self.roads:
            raise ValueError(f"calendar {self.id}: name the boards or the roads it is announced on")
        return self


class PlaceName(_Strict):
    """A junction's name as boards show it (upper case, short), per language."""

    id: str = Field(min_length=1, max_length=40)
    en: str = Field(min_length=1, max_length=40)


class TemplateVariant(_Strict):
    """One wording of a message: lines per language with ``{placeholders}``; the Indonesian page comes first."""

    id: list[str] = Field(min_length=1, max_length=8)
    en: list[str] = Field(min_length=1, max_length=8)


class Template(_Strict):
    """Wordings from the longest to the shortest: the first that fits a board is shown on it."""

    variants: list[TemplateVariant] = Field(min_length=1)


class VmsPolicyConfig(_Strict):
    """The whole automatic-VMS policy."""

    version: int = Field(ge=1)
    priorities: Priorities = Priorities()
    display: DisplayRules = DisplayRules()
    incidents: list[IncidentRule] = Field(default_factory=list)
    signals_out: SignalsOutRule | None = None
    congestion: CongestionRule | None = None
    travel_time: TravelTimeRule | None = None
    calendar: list[CalendarEntry] = Field(default_factory=list)
    default_template: str | None = None
    places: dict[str, PlaceName] = Field(default_factory=dict)
    words: dict[str, PlaceName] = Field(default_factory=dict, description="incident kinds and calendar kinds in words")
    templates: dict[str, Template]

    @model_validator(mode="after")
    def _references(self) -> VmsPolicyConfig:
        used = [r.template for r in self.incidents] + [e.template for e in self.calendar]
        used += [r.template for r in (self.signals_out, self.congestion, self.travel_time) if r is not None]
        used += [self.default_template] if self.default_template else []
        missing = sorted({t for t in used if t not in self.templates})
        if missing:
            raise ValueError(f"templates used but not declared: {missing}")
        kinds = [k for r in self.incidents for k in r.kinds]
        if len(kinds) != len(set(kinds)):
            raise ValueError("an incident kind is named by two incident rules")
        ids = [r.id for r in self.incidents] + [e.id for e in self.calendar]
        if len(ids) != len(set(ids)):
            raise ValueError("a rule or calendar id is used twice")
        return self

    def checksum(self) -> str:
        """SHA-256 (hex) of the policy's canonical JSON: part of the configuration every VMS command cites."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class BoardSite(msgspec.Struct, frozen=True):
    """What the policy knows of a board: capabilities (lines, characters, pages, character set, seconds) and placement
    (corridor, chainage m, which way its readers travel, the junctions ahead nearest first, its road)."""

    id: str
    lines: int
    characters_per_line: int
    max_pages: int
    charset: frozenset[str]
    min_page_time_s: float
    max_duration_s: float
    road: str | None = None
    corridor: str | None = None
    chainage_m: float | None = None
    facing: Facing | None = None
    downstream: tuple[str, ...] = ()


def calendar_active(entry: CalendarEntry, at: datetime) -> bool:
    """True while ``entry`` is announced (from ``announce_from`` until ``end``)."""
    return entry.announce_from <= at < entry.end
