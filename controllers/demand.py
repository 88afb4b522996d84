"""Traffic demand: class counts per movement, checked against a plan and turned into PCU flows.

A count row gives one movement's vehicles by class (motorcycle, car, heavy) over a period named
by its unit: ``veh/h``, ``veh/15min``, ``veh/5min`` or ``veh/min``. Flows are converted to
passenger-car units per hour with the plan's PCU factors by the compiled flow kernel
(``cext.flow``, MKJI 1997 factors by default). Every signalised movement of the plan needs
exactly one row; rows for unknown movements, negative or non-finite counts and unknown units
are refused with :class:`InvalidDemand` naming the row, the field and the unit.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence

import msgspec

from cext import flow
from controllers.errors import InvalidDemand
from controllers.plan import Id, Plan

CLASSES = ("motorcycle", "car", "heavy")
#: Count period of each accepted unit (seconds).
UNIT_PERIOD_S = {"veh/h": 3600.0, "veh/15min": 900.0, "veh/5min": 300.0, "veh/min": 60.0}


class MovementDemand(msgspec.Struct, frozen=True):
    """One movement's demand: vehicles per hour by class and the PCU flow (pcu/h)."""

    movement: Id
    motorcycle_veh_h: float
    car_veh_h: float
    heavy_veh_h: float
    pcu_h: float


def demand_from_rows(plan: Plan, rows: Sequence[Mapping[str, str]], source: str = "counts") -> dict[Id, MovementDemand]:
    """The demand of every signalised movement of ``plan`` from count rows (see the module docstring).

    ``rows`` are mappings with the columns ``movement``, ``motorcycle``, ``car``, ``heavy`` and
    ``unit``; row numbers in messages count the header as row 1, as a spreadsheet shows them
    (a row's own ``_row`` value, when it has one, is its number in the file).
    """
    counts: dict[Id, tuple[list[float], float]] = {}
    for number, row in enumerate(rows, start=2):
        where = f"{source} row {row.get('_row', number)}"
        movement = (row.get("movement") or "").strip()
        if plan.movement(movement) is None:
            known = ", ".join(m.id for m in plan.movements) or "none"
            raise InvalidDemand(f"{where}: movement {movement!r} is not in plan {plan.id} (movements: {known})")
        if movement in counts:
            raise InvalidDemand(f"{where}: movement {movement!r} is counted twice")
        unit = (row.get("unit") or "").strip()
        if unit not in UNIT_PERIOD_S:
            raise InvalidDemand(f"{where}: unit {unit!r} is unknown; use one of {', '.join(UNIT_PERIOD_S)}")
        values = [_count(row, cls, where, unit) for cls in CLASSES]
        counts[movement] = (values, UNIT_PERIOD_S[unit])
    missing = [m.id for m in plan.movements if not m.free_flow and m.id not in counts]
    if missing:
        raise InvalidDemand(f"{source}: no counts for signalised movement(s) {', '.join(missing)} of plan {plan.id}")
    return _to_pcu(plan, counts)


def _count(row: Mapping[str, str], column: str, where: str, unit: str) -> float:
    text = (row.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise InvalidDemand(f"{where}: {column} {text!r} is not a number ({unit})") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidDemand(f"{where}: {column} {value:g} {unit} must be a finite count >= 0")
    return value


def _to_pcu(plan: Plan, counts: dict[Id, tuple[list[float], float]]) -> dict[Id, MovementDemand]:
    ids = list(counts)
    out = array("d", [0.0] * len(ids))
    columns = [array("d", [counts[m][0][k] for m in ids]) for k in range(len(CLASSES))]
    factors = plan.pcu_factors
    flow.pcu_flow_veh_h(*columns, array("d", [counts[m][1] for m in ids]), factors.motorcycle, factors.car,
                        factors.heavy, out)
    result = {}
    for k, m in enumerate(ids):
        motorcycle, car, heavy = (v * 3600.0 / counts[m][1] for v in counts[m][0])
        result[m] = MovementDemand(m, motorcycle_veh_h=motorcycle, car_veh_h=car, heavy_veh_h=heavy, pcu_h=out[k])
    return result
