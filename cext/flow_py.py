"""Pure-Python twin of ``cext._flow``: class counts -> passenger-car-unit flow rates.

This is the reference (test oracle) and the fallback under ``LALIN_NO_EXTENSIONS=1``.
Operations are performed in the same order as the compiled kernel so results match bit for bit.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence


def pcu_flow_veh_h(
    motorcycle: Sequence[float],
    car: Sequence[float],
    heavy: Sequence[float],
    interval_s: Sequence[float],
    emp_motorcycle: float,
    emp_car: float,
    emp_heavy: float,
    out: MutableSequence[float],
) -> None:
    """Write into ``out`` the PCU flow (pcu/h) of each row of counts (vehicles) over ``interval_s``.

    ``emp_*`` are the passenger-car equivalents per class (dimensionless). Raises
    ``ValueError`` on mismatched lengths or a non-positive interval (seconds).
    """
    n = len(motorcycle)
    if len(car) != n or len(heavy) != n or len(interval_s) != n or len(out) != n:
        raise ValueError(f"all arrays must have {n} rows")
    for i in range(n):
        if not interval_s[i] > 0.0:
            raise ValueError(f"interval_s[{i}] = {interval_s[i]} s must be > 0")
    for i in range(n):
        out[i] = (motorcycle[i] * emp_motorcycle + car[i] * emp_car + heavy[i] * emp_heavy) * 3600.0 / interval_s[i]
