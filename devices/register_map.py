"""The ATCS controller register map as validated data, and its pure codec.

The map (``devices/catalogue/atcs_modbus_map.yaml``) declares every field of the holding
(command) and input (status) blocks, and the high-resolution event log (a header and a ring
of entries, also input registers): address, type, count, unit and meaning. This module
loads it, checks it (no overlaps, within the limits) and turns values into registers and back.
No I/O happens here except :func:`load_register_map` reading the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.yaml_data import load_yaml_model

MAP_FILE = Path(__file__).parent / "catalogue" / "atcs_modbus_map.yaml"
UINT16_MAX = 0xFFFF
UINT32_MAX = 0xFFFF_FFFF
#: The most registers one Modbus read (function 3 or 4) returns.
MAX_READ_REGISTERS = 125

Block = Literal["holding", "input", "log_header", "log_entry"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterField(_Strict):
    """One field: ``count`` values of ``type`` from ``address`` on (32-bit types take two registers each)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    address: int = Field(ge=0, le=UINT16_MAX)
    type: Literal["uint16", "uint32", "enum", "bits"]
    count: int = Field(1, ge=1, le=64)
    unit: str = ""
    enum: str | None = None
    bits: str | None = None
    description: str

    @property
    def width(self) -> int:
        """Registers per value."""
        return 2 if self.type == "uint32" else 1

    @property
    def size(self) -> int:
        """Registers of the whole field."""
        return self.width * self.count


def _check_fields(block_name: str, block: list[RegisterField], enums: dict[str, dict[int, str]],
                  bits: dict[str, dict[int, str]]) -> None:
    names = [f.name for f in block]
    if len(names) != len(set(names)):
        raise ValueError(f"{block_name}: a field name is declared twice")
    used: dict[int, str] = {}
    for f in block:
        if f.type == "enum" and f.enum not in enums:
            raise ValueError(f"{block_name}.{f.name}: unknown enum {f.enum!r}")
        if f.type == "bits" and (f.bits not in bits or any(b > 15 for b in bits[f.bits])):
            raise ValueError(f"{block_name}.{f.name}: unknown bit set {f.bits!r} or a bit above 15")
        for address in range(f.address, f.address + f.size):
            if address in used:
                raise ValueError(f"{block_name}: register {address} belongs to {used[address]} and {f.name}")
            used[address] = f.name


class EventLog(_Strict):
    """The high-resolution event log in the input registers: a header at ``header_address`` and a ring of
    ``capacity`` entries from ``entries_address`` (field addresses relative to the header's or the entry's start)."""

    header_address: int = Field(ge=0, le=UINT16_MAX)
    entries_address: int = Field(ge=0, le=UINT16_MAX)
    capacity: int = Field(ge=1, le=10_000)
    header: list[RegisterField]
    entry: list[RegisterField]

    @property
    def header_size(self) -> int:
        """Registers of the header."""
        return max(f.address + f.size for f in self.header)

    @property
    def entry_size(self) -> int:
        """Registers of one entry."""
        return max(f.address + f.size for f in self.entry)

    @property
    def end(self) -> int:
        """The register after the ring's last."""
        return self.entries_address + self.capacity * self.entry_size

    @property
    def entries_per_read(self) -> int:
        """Whole entries one read request returns."""
        return MAX_READ_REGISTERS // self.entry_size

    def slot(self, seq: int) -> int:
        """The ring slot (0-based) of the entry numbered ``seq`` (>= 1)."""
        return (seq - 1) % self.capacity

    def slot_address(self, slot: int) -> int:
        """The first register of ring slot ``slot``."""
        return self.entries_address + slot * self.entry_size


class RegisterMap(_Strict):
    """The whole map: enums, bit sets, the two blocks and the event log."""

    name: str
    version: int = Field(ge=1, le=UINT16_MAX)
    time_unit_s: float = Field(gt=0)
    unit_id: int = Field(ge=0, le=247)
    limits: dict[str, int]
    enums: dict[str, dict[int, str]]
    bits: dict[str, dict[int, str]]
    holding: list[RegisterField]
    input: list[RegisterField]
    event_log: EventLog

    @model_validator(mode="after")
    def _consistent(self) -> RegisterMap:
        for block_name in ("holding", "input", "log_header", "log_entry"):
            _check_fields(block_name, self.block(block_name), self.enums, self.bits)
        log = self.event_log
        if log.header_address < self.span("input") or log.entries_address < log.header_address + log.header_size:
            raise ValueError(f"event_log: the header ({log.header_address}) must follow the status block (ends at "
                             f"{self.span('input')}) and the entries ({log.entries_address}) the header")
        if log.end > UINT16_MAX + 1 or log.header_size > MAX_READ_REGISTERS or log.entries_per_read < 1:
            raise ValueError(f"event_log: {log.capacity} entries end at register {log.end}, beyond 65535, "
                             "or the header or an entry does not fit one read")
        return self

    def block(self, name: Block) -> list[RegisterField]:
        """The fields of a block (``log_header``, ``log_entry``: the event log's, relative addresses)."""
        blocks = {"holding": self.holding, "input": self.input, "log_header": self.event_log.header,
                  "log_entry": self.event_log.entry}
        return blocks[name]

    def field(self, block: Block, name: str) -> RegisterField:
        """A field by name; KeyError naming the block when absent."""
        for f in self.block(block):
            if f.name == name:
                return f
        raise KeyError(f"{block} has no field {name!r}")

    def span(self, block: Block) -> int:
        """Registers from address 0 to the end of the block's last field."""
        return max(f.address + f.size for f in self.block(block))


@cache
def load_register_map(path: Path = MAP_FILE) -> RegisterMap:
    """The register map in ``path`` (cached); ConfigurationError naming the file when invalid."""
    return load_yaml_model(RegisterMap, path, "register map")


Value = int | str | list[int] | list[str] | frozenset[str]


def encode(regmap: RegisterMap, block: Block, values: Mapping[str, Value],
           registers: list[int] | None = None) -> list[int]:
    """Registers of ``block`` (from address 0) holding ``values``; fields not given keep ``registers``' (or 0).

    Enums are given by name, bit sets as sets of names, arrays as lists of at most ``count``
    values (the rest 0). Raises ValueError naming the field and the value out of range.
    """
    out = list(registers) if registers is not None else [0] * regmap.span(block)
    for name, value in values.items():
        f = regmap.field(block, name)
        items = value if isinstance(value, list) else [value]
        if len(items) > f.count:
            raise ValueError(f"{block}.{name}: {len(items)} values, the field holds {f.count}")
        if len(items) < f.count:
            filler = regmap.enums[f.enum or ""][0] if f.type == "enum" else 0  # the rest: code 0
            items = [*items, *([filler] * (f.count - len(items)))]
        for k, item in enumerate(items):
            word = _to_int(regmap, f, item)
            at = f.address + k * f.width
            if f.width == 2:
                out[at], out[at + 1] = word >> 16, word & UINT16_MAX
            else:
                out[at] = word
    return out


def _to_int(regmap: RegisterMap, f: RegisterField, item: object) -> int:
    if f.type == "enum":
        table = regmap.enums[f.enum or ""]
        codes = {label: code for code, label in table.items()}
        if item not in codes:
            raise ValueError(f"{f.name}: {item!r} is not one of {sorted(codes)}")
        return codes[str(item)]
    if f.type == "bits":
        table = regmap.bits[f.bits or ""]
        positions = {label: bit for bit, label in table.items()}
        names = item if isinstance(item, frozenset | set) else frozenset()
        unknown = set(names) - set(positions)
        if unknown:
            raise ValueError(f"{f.name}: unknown bits {sorted(unknown)}")
        return sum(1 << positions[n] for n in names)
    limit = UINT32_MAX if f.type == "uint32" else UINT16_MAX
    if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= limit:
        unit = f" {f.unit}" if f.unit else ""
        raise ValueError(f"{f.name}: {item!r}{unit} is outside 0..{limit}")
    return item


def decode(regmap: RegisterMap, block: Block, registers: Sequence[int]) -> dict[str, Value]:
    """Values of every field of ``block`` from its registers (from address 0).

    An enum code the map does not know decodes as ``"unknown_<code>"`` (a device fault to
    report, never a crash); bit sets decode as frozensets of names (unknown bits as ``bit<n>``).
    """
    if len(registers) < regmap.span(block):
        raise ValueError(f"{block}: {len(registers)} registers, the map needs {regmap.span(block)}")
    out: dict[str, Value] = {}
    for f in regmap.block(block):
        items: list[int] = []
        for k in range(f.count):
            at = f.address + k * f.width
            items.append((registers[at] << 16) | registers[at + 1] if f.width == 2 else registers[at])
        if f.type == "enum":
            table = regmap.enums[f.enum or ""]
            labels = [table.get(i, f"unknown_{i}") for i in items]
            out[f.name] = labels if f.count > 1 else labels[0]
        elif f.type == "bits":
            table = regmap.bits[f.bits or ""]
            out[f.name] = frozenset(table.get(b, f"bit{b}") for b in range(16) if items[0] >> b & 1)
        else:
            out[f.name] = items if f.count > 1 else items[0]
    return out


def markdown_tables(regmap: RegisterMap) -> str:
    """The map's blocks, enums and bit sets as Markdown tables (docs/modbus-map.md embeds them)."""
    lines: list[str] = []
    for block, title in (("holding", "Holding registers (function 3 read, function 16 write)"),
                         ("input", "Input registers (function 4 read)")):
        lines += [f"### {title}", "", "| address | field | type | count | unit | meaning |", "|---:|---|---|---:|---|---|"]
        for f in regmap.block(block):  # type: ignore[arg-type]
            kind = f"enum `{f.enum}`" if f.type == "enum" else f"bits `{f.bits}`" if f.type == "bits" else f.type
            end = f.address + f.size - 1
            where = str(f.address) if end == f.address else f"{f.address}-{end}"
            lines.append(f"| {where} | `{f.name}` | {kind} | {f.count} | {f.unit} | {f.description} |")
        lines.append("")
    lines += _event_log_tables(regmap.event_log)
    for kind, tables in (("enum", regmap.enums), ("bits", regmap.bits)):
        for name, table in tables.items():
            lines += [f"### {kind} `{name}`", "", "| code | meaning |" if kind == "enum" else "| bit | meaning |",
                      "|---:|---|"]
            lines += [f"| {code} | `{label}` |" for code, label in table.items()]
            lines.append("")
    return "\n".join(lines)


def _event_log_tables(log: EventLog) -> list[str]:
    per_read = log.entries_per_read
    lines = [f"### Event log (input registers, function 4): header at {log.header_address}, "
             f"{log.capacity} entries of {log.entry_size} registers from {log.entries_address}", "",
             f"The entry numbered *s* starts at register {log.entries_address} + {log.entry_size} x ((*s* - 1) mod "
             f"{log.capacity}); one read returns at most {per_read} whole entries.", "",
             "| address | field | type | count | unit | meaning |", "|---:|---|---|---:|---|---|"]
    for f in log.header:
        kind = f"enum `{f.enum}`" if f.type == "enum" else f.type
        start = log.header_address + f.address
        end = start + f.size - 1
        lines.append(f"| {start if end == start else f'{start}-{end}'} | `{f.name}` | {kind} | {f.count} | {f.unit} | "
                     f"{f.description} |")
    lines += ["", "| offset in entry | field | type | count | unit | meaning |", "|---:|---|---|---:|---|---|"]
    for f in log.entry:
        kind = f"enum `{f.enum}`" if f.type == "enum" else f.type
        end = f.address + f.size - 1
        lines.append(f"| {f.address if end == f.address else f'{f.address}-{end}'} | `{f.name}` | {kind} | {f.count} | "
                     f"{f.unit} | {f.description} |")
    lines.append("")
    return lines
