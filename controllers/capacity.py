"""Cycle optimisation and delay formulas (pure scalar references; the compiled batch kernels
of the timing work are tested against these).

* Webster (1958), optimal cycle: ``C0 = (1.5 L + 5) / (1 - Y)`` with ``L`` the lost time per
  cycle (s) and ``Y`` the sum of the critical flow ratios (flow / saturation flow) of the stages.
* HCM (Highway Capacity Manual, 6th ed., ch. 19) control delay per vehicle ``d = d1·PF + d2 + d3``:

  - uniform delay ``d1 = 0.5 C (1 - g/C)² / (1 - min(1, X) g/C)``,
  - incremental delay ``d2 = 900 T [(X - 1) + √((X - 1)² + 8 k I X / (c T))]``
    (``T`` analysis period in hours, ``k`` 0.5 for pretimed control, ``I`` 1.0 for an isolated
    intersection, ``c`` capacity in veh/h),
  - ``PF`` progression factor (1.0 for random arrivals), ``d3`` initial-queue delay (0 here);
  - degree of saturation ``X = v / c`` with ``c = s · g / C``.
* Level of service for signalised intersections (HCM exhibit 19-8): A ≤ 10, B ≤ 20, C ≤ 35,
  D ≤ 55, E ≤ 80 s/veh, F above, or whenever ``X > 1``.
"""

from __future__ import annotations

import math

LOS_LIMITS_S = (("A", 10.0), ("B", 20.0), ("C", 35.0), ("D", 55.0), ("E", 80.0))


def webster_cycle_s(lost_time_s: float, critical_flow_ratio_sum: float) -> float:
    """Webster's optimal cycle (s); ``math.inf`` when ``Y ≥ 1`` (oversaturated: no cycle suffices)."""
    if lost_time_s < 0 or critical_flow_ratio_sum < 0:
        raise ValueError(f"lost time {lost_time_s} s and Y {critical_flow_ratio_sum} must be >= 0")
    if critical_flow_ratio_sum >= 1.0:
        return math.inf
    return (1.5 * lost_time_s + 5.0) / (1.0 - critical_flow_ratio_sum)


def capacity_veh_h(saturation_flow_veh_h: float, green_s: float, cycle_s: float) -> float:
    """Capacity ``c = s g / C`` (veh/h)."""
    return saturation_flow_veh_h * green_s / cycle_s


def uniform_delay_s(cycle_s: float, green_s: float, degree_of_saturation: float) -> float:
    """HCM uniform delay d1 (s/veh)."""
    ratio = green_s / cycle_s
    return 0.5 * cycle_s * (1.0 - ratio) ** 2 / (1.0 - min(1.0, degree_of_saturation) * ratio)


def incremental_delay_s(degree_of_saturation: float, capacity: float, period_h: float = 0.25,
                        k: float = 0.5, upstream_filtering: float = 1.0) -> float:
    """HCM incremental (random and oversaturation) delay d2 (s/veh); ``capacity`` in veh/h."""
    x = degree_of_saturation
    if capacity <= 0:
        raise ValueError(f"capacity {capacity} veh/h must be > 0")
    return 900.0 * period_h * ((x - 1.0) + math.sqrt((x - 1.0) ** 2 + 8.0 * k * upstream_filtering * x
                                                     / (capacity * period_h)))


def control_delay_s(cycle_s: float, green_s: float, flow_veh_h: float, saturation_flow_veh_h: float,
                    progression_factor: float = 1.0, period_h: float = 0.25) -> tuple[float, float]:
    """HCM control delay (s/veh) and degree of saturation of a lane group (flows in veh/h)."""
    capacity = capacity_veh_h(saturation_flow_veh_h, green_s, cycle_s)
    x = flow_veh_h / capacity
    delay = uniform_delay_s(cycle_s, green_s, x) * progression_factor + incremental_delay_s(x, capacity, period_h)
    return delay, x


def level_of_service(delay_s: float, degree_of_saturation: float = 0.0) -> str:
    """HCM level of service letter for a control delay (s/veh); F whenever X > 1."""
    if degree_of_saturation > 1.0:
        return "F"
    return next((letter for letter, limit in LOS_LIMITS_S if delay_s <= limit), "F")
