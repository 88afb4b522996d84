"""Reading traffic counts from CSV files (the rows the pure :mod:`controllers.demand` checks).

Columns: ``movement``, ``motorcycle``, ``car``, ``heavy``, ``unit`` and, for files that hold
several intersections, ``plan`` (the plan id; rows without one belong to every plan).
"""

from __future__ import annotations

import csv
from pathlib import Path

from controllers.demand import CLASSES
from controllers.errors import InvalidDemand

REQUIRED_COLUMNS = ("movement", *CLASSES, "unit")
ROW_KEY = "_row"  # the row's number in the file (header = 1), for messages


def read_counts(path: Path) -> list[dict[str, str]]:
    """The rows of a counts file; InvalidDemand naming the file and the missing columns."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [{**row, ROW_KEY: str(number)} for number, row in enumerate(reader, start=2)]
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InvalidDemand(f"counts {path}: {err}") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidDemand(f"counts {path}: missing column(s) {', '.join(missing)}; expected "
                            f"{', '.join(REQUIRED_COLUMNS)} [, plan]")
    return rows


def rows_for_plan(rows: list[dict[str, str]], plan_id: str) -> list[dict[str, str]]:
    """The rows of one plan (those naming it, and those naming no plan)."""
    return [r for r in rows if not (r.get("plan") or "").strip() or r["plan"].strip() == plan_id]
