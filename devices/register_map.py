"""The ATCS controller register map as validated data, and its pure codec.

The map (``devices/catalogue/atcs_modbus_map.yaml``) declares every field of the holding
(command) and input (status) blocks: address, type, count, unit and meaning. This module
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


class RegisterMap(_Strict):
    """The whole map: enums, bit sets and the two blocks."""

    name: str
    version: int = Field(ge=1, le=UINT16_MAX)
    time_unit_s: float = Field(gt=0)
    unit_id: int = Field(ge=0, le=247)
    limits: dict[str, int]
    enums: dict[str, dict[int, str]]
    bits: dict[str, dict[int, str]]
    holding: list[RegisterField]
    input: list[RegisterField]

    @model_validator(mode="after")
    def _consistent(self) -> RegisterMap:
        for block_name in ("holding", "input"):
            block: list[RegisterField] = getattr(self, block_name)
            names = [f.name for f in block]
            if len(names) != len(set(names)):
                raise ValueError(f"{block_name}: a field name is declared twice")
            used: dict[int, str] = {}
            for f in block:
                if f.type == "enum" and f.enum not in self.enums:
                    raise ValueError(f"{block_name}.{f.name}: unknown enum {f.enum!r}")
                if f.type == "bits" and (f.bits not in self.bits or any(b > 15 for b in self.bits[f.bits])):
                    raise ValueError(f"{block_name}.{f.name}: unknown bit set {f.bits!r} or a bit above 15")
                for address in range(f.address, f.address + f.size):
                    if address in used:
                        raise ValueError(f"{block_name}: register {address} belongs to {used[address]} and {f.name}")
                    used[address] = f.name
        return self

    def block(self, name: Literal["holding", "input"]) -> list[RegisterField]:
        """The fields of a block."""
        return self.holding if name == "holding" else self.input

    def field(self, block: Literal["holding", "input"], name: str) -> RegisterField:
        """A field by name; KeyError naming the block when absent."""
        for f in self.block(block):
            if f.name == name:
                return f
        raise KeyError(f"{block} has no field {name!r}")

    def span(self, block: Literal["holding", "input"]) -> int:
        """Registers from address 0 to the end of the block's last field."""
        return max(f.address + f.size for f in self.block(block))


@cache
def load_register_map(path: Path = MAP_FILE) -> RegisterMap:
    """The register map in ``path`` (cached); ConfigurationError naming the file when invalid."""
    return load_yaml_model(RegisterMap, path, "register map")


Value = int | str | list[int] | list[str] | frozenset[str]


def encode(regmap: RegisterMap, block: Literal["holding", "input"], values: Mapping[str, Value],
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


def decode(regmap: RegisterMap, block: Literal["holding", "input"], registers: Sequence[int]) -> dict[str, Value]:
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
    for kind, tables in (("enum", regmap.enums), ("bits", regmap.bits)):
        for name, table in tables.items():
            lines += [f"### {kind} `{name}`", "", "| code | meaning |" if kind == "enum" else "| bit | meaning |",
                      "|---:|---|"]
            lines += [f"| {code} | `{label}` |" for code, label in table.items()]
            lines.append("")
    return "\n".join(lines)
