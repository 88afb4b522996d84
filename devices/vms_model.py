"""The VMS board information model for OPC UA as validated data, the board catalogue, and the
pure capability check.

``devices/catalogue/vms_model.yaml`` declares the namespace, the board object's variables
(OPC UA type, unit, meaning), its methods and arguments, the roles, the refusal reasons and
the faults; ``devices/catalogue/vms_boards.yaml`` declares each board's capabilities (lines,
characters per line, pages, character set). This module loads both, checks them, checks a
message against a board's capabilities (:func:`check_message`) and renders the Markdown
tables of ``docs/opcua-model.md`` (:func:`markdown_tables`). No I/O beyond reading the files.

Wire format of a message: one string per page, the page's lines joined by LF
(:func:`encode_pages`, :func:`decode_pages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from controllers.errors import ConfigurationError
from controllers.payloads import Severity, VmsFaultKind
from infra.yaml_data import load_yaml_model

CATALOGUE = Path(__file__).parent / "catalogue"
MODEL_FILE = CATALOGUE / "vms_model.yaml"
BOARDS_FILE = CATALOGUE / "vms_boards.yaml"
LINE_SEPARATOR = "\n"
MESSAGE_ID_MAX = 64
# The event schema (controllers.payloads.VmsDisplayReported) bounds what a board may declare.
EVENT_MAX_PAGES, EVENT_MAX_LINES, EVENT_MAX_CHARACTERS = 8, 8, 64

OpcType = Literal["String", "String[]", "Byte", "UInt16", "UInt32", "Double", "DateTime", "Boolean"]
Service = Literal["session", "browse", "read", "subscribe", "call", "write"]
RefusalCode = Literal["malformed", "too_many_pages", "too_many_lines", "line_too_long", "forbidden_character",
                      "priority_out_of_range", "duration_out_of_range", "lower_priority", "board_off"]
REFUSAL_CODES: tuple[str, ...] = RefusalCode.__args__  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    """A variable of the board object, in ``folder``: OPC UA data type, unit and meaning. Read-only for every role."""

    folder: Literal["Identity", "Capabilities", "Request", "Display", "Health"]
    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    type: OpcType
    unit: str = ""
    description: str


class Argument(_Strict):
    """An input or output argument of a method."""

    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    type: OpcType
    unit: str = ""
    description: str


class Method(_Strict):
    """A method of the board object and the role needed to call it."""

    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    role: str
    description: str
    inputs: list[Argument]
    outputs: list[Argument]


class RoleSpec(_Strict):
    """The OPC UA service sets a role may use."""

    services: list[Service]
    description: str


class RefusalSpec(_Strict):
    """The OPC UA status code a refusal is answered with, and its meaning."""

    status: str = Field(pattern=r"^Bad[A-Za-z]+$")
    description: str


class FaultSpec(_Strict):
    """How severe a board fault is, and what raises it."""

    severity: Severity
    description: str


class SecuritySpec(_Strict):
    """The only endpoints a board offers."""

    policies: list[Literal["Basic256Sha256", "Aes256Sha256RsaPss"]] = Field(min_length=1)
    mode: Literal["SignAndEncrypt"]
    identity_tokens: list[Literal["UserName"]] = Field(min_length=1)


class PriorityRange(_Strict):
    """Priority numbers: 1 is the highest."""

    highest: Literal[1]
    lowest: int = Field(ge=1, le=10)


class VmsModel(_Strict):
    """The whole information model."""

    name: str
    version: int = Field(ge=1, le=65_535)
    namespace_uri: str = Field(pattern=r"^urn:[a-z0-9:.-]+$")
    board_object: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    application_uri_prefix: str = Field(pattern=r"^urn:[a-z0-9:.-]+:$")
    central_application_uri: str = Field(pattern=r"^urn:[a-z0-9:.-]+$")
    security: SecuritySpec
    roles: dict[str, RoleSpec]
    charsets: dict[str, str]
    priority: PriorityRange
    status_values: list[Literal["displaying", "blank", "fault", "off"]]
    variables: list[Variable]
    methods: list[Method]
    refusals: dict[RefusalCode, RefusalSpec]
    faults: dict[VmsFaultKind, FaultSpec]

    @model_validator(mode="after")
    def _consistent(self) -> VmsModel:
        seen = [(v.folder, v.name) for v in self.variables]
        if len(seen) != len(set(seen)):
            raise ValueError("a variable is declared twice in the same folder")
        for m in self.methods:
            if m.role not in self.roles:
                raise ValueError(f"method {m.name}: unknown role {m.role!r}")
        missing = set(REFUSAL_CODES) - set(self.refusals)
        if missing:
            raise ValueError(f"refusal reasons without a status code: {sorted(missing)}")
        if "read" not in self.roles.get("read_only", RoleSpec(services=[], description="")).services:
            raise ValueError("the read_only role must be allowed to read")
        return self

    def variable(self, folder: str, name: str) -> Variable:
        """A variable by folder and name; KeyError naming both when absent."""
        for v in self.variables:
            if v.folder == folder and v.name == name:
                return v
        raise KeyError(f"the model has no variable {folder}.{name}")

    def method(self, name: str) -> Method:
        """A method by name; KeyError naming it when absent."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"the model has no method {name!r}")

    def node_id(self, folder: str, name: str) -> str:
        """The string NodeId identifier of a variable (in the model's namespace)."""
        self.variable(folder, name)
        return f"{self.board_object}.{folder}.{name}"

    def method_node_id(self, name: str) -> str:
        """The string NodeId identifier of a method (in the model's namespace)."""
        self.method(name)
        return f"{self.board_object}.{name}"

    def application_uri(self, board_id: str) -> str:
        """The OPC UA application URI of board ``board_id`` (its certificate's URI SAN)."""
        return f"{self.application_uri_prefix}{board_id}"


Heading = Literal["N", "NE", "E", "SE", "S", "SW", "W", "NW"]


class BoardPlacement(_Strict):
    """Where a board stands and whom it addresses (metres, degrees WGS84).

    ``corridor`` and ``chainage_m`` use the signal plans' coordination reference (the same
    corridor name and chainage origin), so the board's place among the intersections is known;
    ``facing`` says which way its readers travel along it (``outbound``: toward increasing
    chainage); ``downstream`` lists the signalised intersections ahead of its readers, nearest
    first — what a message on it can be about. A board on a road without a modelled corridor
    has neither (``downstream`` empty).
    """

    road: str = Field(min_length=1, max_length=200)
    heading: Heading  # compass direction its readers travel
    corridor: str | None = None
    chainage_m: float | None = Field(None, ge=-100_000, le=100_000)
    facing: Literal["outbound", "inbound"] | None = None
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    downstream: list[str] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> BoardPlacement:
        on_corridor = (self.corridor is not None, self.chainage_m is not None, self.facing is not None)
        if any(on_corridor) and not all(on_corridor):
            raise ValueError("corridor, chainage_m and facing go together (a board on a corridor needs all three)")
        if self.downstream and self.corridor is None:
            raise ValueError(f"downstream intersections {self.downstream} need the board's corridor and chainage")
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        if len(set(self.downstream)) != len(self.downstream):
            raise ValueError(f"an intersection is listed twice downstream: {self.downstream}")
        return self


class BoardSpec(_Strict):
    """One board: identity and capabilities (lines, characters per line, pages, characters, times in seconds),
    and where it stands (``placement``; None: unknown, so no automatic message can target it)."""

    id: str = Field(min_length=1, max_length=48, pattern=r"^[a-z0-9][a-z0-9-]*$")
    site: str = Field(min_length=1, max_length=200)
    manufacturer: str
    model: str
    lines: int = Field(ge=1, le=EVENT_MAX_LINES)
    characters_per_line: int = Field(ge=1, le=EVENT_MAX_CHARACTERS)
    max_pages: int = Field(ge=1, le=EVENT_MAX_PAGES)
    charset: str
    min_page_time_s: float = Field(gt=0, le=60)
    max_duration_s: float = Field(gt=0, le=86_400)
    pixel_fault_threshold: int = Field(ge=1, le=10_000_000, description="pixels; at or above it lalin raises pixel_failure")
    placement: BoardPlacement | None = None


class BoardCatalogue(_Strict):
    """Every board lalin drives."""

    boards: list[BoardSpec]

    @model_validator(mode="after")
    def _unique(self) -> BoardCatalogue:
        ids = [b.id for b in self.boards]
        if len(ids) != len(set(ids)):
            raise ValueError("a board id is declared twice")
        return self

    def board(self, board_id: str) -> BoardSpec:
        """A board by id; KeyError naming it when absent."""
        for b in self.boards:
            if b.id == board_id:
                return b
        raise KeyError(f"no board {board_id!r} in the catalogue")


class Capabilities(msgspec.Struct, frozen=True):
    """What one board can show: its spec resolved against the model (charset text, priority range)."""

    lines: int
    characters_per_line: int
    max_pages: int
    charset: frozenset[str]
    lowest_priority: int
    min_page_time_s: float
    max_duration_s: float


class Refusal(msgspec.Struct, frozen=True):
    """Why a request is refused: a code of the model's ``refusals`` and a text naming the value and unit."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def capabilities(model: VmsModel, spec: BoardSpec) -> Capabilities:
    """The capabilities of ``spec``; ConfigurationError when its charset is not in the model."""
    if spec.charset not in model.charsets:
        raise ConfigurationError(f"board {spec.id}: charset {spec.charset!r} is not one of {sorted(model.charsets)}")
    return Capabilities(lines=spec.lines, characters_per_line=spec.characters_per_line, max_pages=spec.max_pages,
                        charset=frozenset(model.charsets[spec.charset]), lowest_priority=model.priority.lowest,
                        min_page_time_s=spec.min_page_time_s, max_duration_s=spec.max_duration_s)


def encode_pages(pages: Sequence[Sequence[str]]) -> list[str]:
    """Pages of lines -> the wire form: one string per page, lines joined by LF."""
    return [LINE_SEPARATOR.join(lines) for lines in pages]


def decode_pages(wire: Sequence[str]) -> list[list[str]]:
    """The wire form -> pages of lines."""
    return [page.split(LINE_SEPARATOR) for page in wire]


def check_message(caps: Capabilities, wire_pages: Sequence[str], priority: int, duration_s: float,
                  page_time_s: float) -> Refusal | None:
    """The first way a message breaks the board's capabilities, or None when it fits.

    ``wire_pages`` is the wire form (:func:`encode_pages`); durations are in seconds.
    """
    if not 1 <= len(wire_pages) <= caps.max_pages:
        return Refusal("too_many_pages", f"{len(wire_pages)} pages; the board shows 1 to {caps.max_pages} pages")
    for p, page in enumerate(decode_pages(wire_pages), start=1):
        if len(page) > caps.lines:
            return Refusal("too_many_lines", f"page {p} has {len(page)} lines; the board shows {caps.lines} lines")
        for n, line in enumerate(page, start=1):
            if len(line) > caps.characters_per_line:
                return Refusal("line_too_long", f"page {p} line {n} has {len(line)} characters; "
                                                f"the board shows {caps.characters_per_line} characters per line")
            bad = sorted(set(line) - caps.charset)
            if bad:
                return Refusal("forbidden_character", f"page {p} line {n} contains {', '.join(map(repr, bad))}, "
                                                      "outside the board's character set")
    if not 1 <= priority <= caps.lowest_priority:
        return Refusal("priority_out_of_range", f"priority {priority}; the board accepts 1 to {caps.lowest_priority}")
    if not 0 <= duration_s <= caps.max_duration_s:
        return Refusal("duration_out_of_range", f"duration {duration_s:g} s; the board accepts 0 to {caps.max_duration_s:g} s")
    if len(wire_pages) > 1 and page_time_s < caps.min_page_time_s:
        return Refusal("duration_out_of_range", f"page time {page_time_s:g} s; the board needs at least "
                                                f"{caps.min_page_time_s:g} s per page")
    return None


@cache
def load_model(path: Path = MODEL_FILE) -> VmsModel:
    """The information model in ``path`` (cached); ConfigurationError naming the file when invalid."""
    return load_yaml_model(VmsModel, path, "VMS model")


def check_placements(boards: BoardCatalogue, intersections: Mapping[str, tuple[str, float]]) -> None:
    """Check every board's downstream intersections against the network (``intersections``: id -> (corridor,
    chainage m), from the plans' coordination): each exists, lies on the board's corridor, ahead of its
    readers (beyond its chainage in the direction it faces), listed nearest first.
    ConfigurationError naming every problem."""
    problems = []
    for board in boards.boards:
        place = board.placement
        if place is None or place.corridor is None or place.chainage_m is None:
            continue
        sign = 1.0 if place.facing == "outbound" else -1.0
        ahead: list[float] = []
        for ident in place.downstream:
            found = intersections.get(ident)
            if found is None:
                problems.append(f"{board.id}: downstream intersection {ident!r} is not in the network")
            elif found[0] != place.corridor:
                problems.append(f"{board.id}: {ident} lies on {found[0]!r}, not on the board's {place.corridor!r}")
            elif sign * (found[1] - place.chainage_m) <= 0:
                problems.append(f"{board.id}: {ident} at {found[1]:g} m is not ahead of a board at "
                                f"{place.chainage_m:g} m facing {place.facing}")
            else:
                ahead.append(sign * (found[1] - place.chainage_m))
        if ahead != sorted(ahead):
            problems.append(f"{board.id}: downstream intersections must be listed nearest first: {place.downstream}")
    if problems:
        raise ConfigurationError("VMS board placements: " + "; ".join(problems))


@cache
def load_boards(path: Path = BOARDS_FILE) -> BoardCatalogue:
    """The board catalogue in ``path`` (cached); ConfigurationError naming the file when invalid."""
    catalogue = load_yaml_model(BoardCatalogue, path, "VMS board catalogue")
    model = load_model()
    for spec in catalogue.boards:
        capabilities(model, spec)
    return catalogue


def markdown_tables(model: VmsModel, boards: BoardCatalogue | None = None) -> str:
    """The model (and the board catalogue) as Markdown tables; docs/opcua-model.md embeds them."""
    lines = [f"### Variables of `{model.board_object}` (namespace `{model.namespace_uri}`, all read-only)", "",
             "| NodeId (string identifier) | type | unit | meaning |", "|---|---|---|---|"]
    lines += [f"| `{model.node_id(v.folder, v.name)}` | {v.type} | {v.unit} | {v.description} |" for v in model.variables]
    lines.append("")
    for m in model.methods:
        lines += [f"### Method `{model.method_node_id(m.name)}` (role `{m.role}`)", "", " ".join(m.description.split()), "",
                  "| direction | argument | type | unit | meaning |", "|---|---|---|---|---|"]
        lines += [f"| {d} | `{a.name}` | {a.type} | {a.unit} | {a.description} |"
                  for d, args in (("in", m.inputs), ("out", m.outputs)) for a in args]
        lines.append("")
    lines += ["### Roles", "", "| role | OPC UA services | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {', '.join(r.services)} | {r.description} |" for name, r in model.roles.items()]
    lines += ["", "### Refusal reasons", "", "| reason | status code | meaning |", "|---|---|---|"]
    lines += [f"| `{code}` | `{r.status}` | {r.description} |" for code, r in model.refusals.items()]
    lines += ["", "### Faults raised by the central", "", "| fault | severity | raised when |", "|---|---|---|"]
    lines += [f"| `{kind.value}` | {f.severity.value} | {f.description} |" for kind, f in model.faults.items()]
    lines += ["", "### Character sets", "", "| name | characters |", "|---|---|"]
    lines += [f"| `{name}` | `{chars}` |" for name, chars in model.charsets.items()]
    if boards is not None:
        lines += ["", "### Boards", "", "| board | site | model | lines x characters | pages | charset | pixel fault threshold |",
                  "|---|---|---|---|---:|---|---:|"]
        lines += [f"| `{b.id}` | {b.site} | {b.manufacturer} {b.model} | {b.lines} x {b.characters_per_line} | "
                  f"{b.max_pages} | `{b.charset}` | {b.pixel_fault_threshold} |" for b in boards.boards]
    lines.append("")
    return "\n".join(lines)
