"""Timing design for intersections from their demand: Webster's cycle on the critical path,
equisaturation splits within the plan's bounds, and the HCM evaluation of the result.

For each intersection (the batch kernel ``cext.timing.design_timings`` runs many at once):

1. flow ratio of each movement ``y = q / S`` (q PCU flow, S saturation flow, pcu/h);
2. the *critical path*: the cover of the stage cycle by runs of consecutive stages, each run
   served by one movement, with the largest sum of flow ratios ``Y`` (Webster & Cobbe 1966;
   a movement green over consecutive stages keeps the interstages between them as green, so
   only the interstages between the path's runs are lost: ``L``). Ties go to the larger ``L``;
3. Webster's cycle ``C0 = (1.5 L + 5) / (1 - Y)``, brought within the plan's cycle bounds and
   lengthened to hold the minimum greens. ``Y >= 1`` (oversaturated) takes the longest allowed
   cycle and is flagged, never a crash; a fixed cycle (corridors) replaces ``C0``;
4. stage greens share ``C - sum of interstages`` in proportion to stage weights, within the
   stage bounds of :func:`controllers.splits.stage_bounds_s`. Weights start at the largest
   ``y / r`` of the movements green in a stage (``r`` stages per movement) and are refined
   16 times by the degree of saturation of the stage's most saturated movement, which
   equalises ``X`` over the critical movements (exact in one step without overlaps);
5. per movement: effective green (its stages' greens plus the interstages it stays green
   through), capacity ``c = S g / C``, ``X = q / c``, HCM control delay ``d = d1 PF + d2``
   (:mod:`controllers.capacity`, T = analysis period, k = 0.5, I = 1) and the HCM 2000
   (appendix G) back of queue per lane ``Q1 + Q2`` with ``k_B = 0.12 I (s_L g / 3600)^0.7``;
   intersection delay is flow-weighted. Delays and queues are per pcu.

Every returned timing passes :func:`controllers.safety.validate`; a failure raises
:class:`UnsafeTiming` (a defect; never returned).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

import msgspec

from cext import timing as kernel
from controllers.capacity import level_of_service
from controllers.clearance import interstage_s
from controllers.demand import MovementDemand
from controllers.errors import InvalidDemand, TimingInfeasible, UnsafeTiming
from controllers.plan import Id, Plan, Timing
from controllers.safety import validate
from controllers.splits import stage_bounds_s

#: Jam spacing of one passenger-car unit in a queue (metres), to turn a queue in pcu into metres.
QUEUE_SPACING_M_PER_PCU = 6.0


class MovementResult(msgspec.Struct, frozen=True):
    """A movement under the designed timing (pcu/h, seconds, pcu per lane, metres)."""

    movement: Id
    signal_group: Id
    flow_pcu_h: float
    saturation_pcu_h: float
    flow_ratio: float
    effective_green_s: float
    capacity_pcu_h: float
    degree_of_saturation: float
    delay_s: float
    los: str
    back_of_queue_pcu_per_lane: float
    back_of_queue_m: float


class StageResult(msgspec.Struct, frozen=True):
    """A stage's green (s) and its degree of saturation (its most saturated movement)."""

    stage: Id
    green_s: float
    degree_of_saturation: float


class TimingDesign(msgspec.Struct, frozen=True):
    """A designed timing, how it was reached, and its evaluation."""

    plan: Id
    plan_version: int
    plan_checksum: str
    cycle_s: float
    offset_s: float
    critical_flow_ratio: float
    critical_lost_time_s: float
    webster_cycle_s: float | None
    oversaturated: bool
    cycle_clamped: bool
    at_maxima: bool
    over_capacity: bool
    delay_s: float
    los: str
    stages: list[StageResult]
    movements: list[MovementResult]
    notes: list[str]

    def timing(self) -> Timing:
        """The timing to run (cycle, offset and stage greens in seconds)."""
        return Timing(cycle_s=self.cycle_s, offset_s=self.offset_s,
                      stage_greens_s={s.stage: s.green_s for s in self.stages})


class DesignRequest(msgspec.Struct, frozen=True):
    """One intersection to design: its plan, demand, a fixed cycle (s, or None for Webster's), offset (s), period (h)."""

    plan: Plan
    demand: dict[Id, MovementDemand]
    cycle_s: float | None = None
    offset_s: float = 0.0
    period_h: float = 0.25


def design_timing(plan: Plan, demand: dict[Id, MovementDemand], cycle_s: float | None = None,
                  offset_s: float = 0.0, period_h: float = 0.25) -> TimingDesign:
    """Design and evaluate one intersection's timing (see the module docstring)."""
    return design_timings([DesignRequest(plan, demand, cycle_s, offset_s, period_h)])[0]


def design_timings(requests: Sequence[DesignRequest]) -> list[TimingDesign]:
    """Design many intersections in one kernel call; raises TimingInfeasible naming the plan that cannot be timed."""
    if not requests:
        return []
    layouts = [_layout(r.plan) for r in requests]
    width = max(len(r.plan.sequence) for r in requests)
    mwidth = max(1, *(len(lay.movements) for lay in layouts))
    rows = len(requests)
    cols = _Columns(rows, width, mwidth)
    for i, (req, lay) in enumerate(zip(requests, layouts, strict=True)):
        cols.fill(i, req, lay)
    out = _Outputs(rows, width, mwidth)
    kernel.design_timings(*cols.arrays(), *out.arrays(), width, mwidth)
    return [_result(i, req, lay, out, width, mwidth) for i, (req, lay) in enumerate(zip(requests, layouts, strict=True))]


class _Layout(msgspec.Struct, frozen=True):
    bounds: list[tuple[float, float]]
    interstages: list[float]
    movements: list[tuple[Id, Id, int, float, float, float]]  # id, group, stage mask, saturation, lanes, PF


def _layout(plan: Plan) -> _Layout:
    violations = validate(plan)
    if violations:
        raise TimingInfeasible(f"plan {plan.id} is not safe to time: " + "; ".join(v.message for v in violations))
    bounds = stage_bounds_s(plan)
    seq = plan.sequence
    greens = {stage.id: stage.green for stage in plan.stages}
    movements = []
    for m in plan.movements:
        if m.signal_group is None:
            continue
        mask = sum(1 << k for k, s in enumerate(seq) if m.signal_group in greens[s])
        movements.append((m.id, m.signal_group, mask, m.saturation_pcu_h(), float(m.lanes), m.progression_factor))
    if len(movements) > kernel.MAX_MOVEMENTS:
        raise TimingInfeasible(f"plan {plan.id}: {len(movements)} signalised movements, at most {kernel.MAX_MOVEMENTS}")
    return _Layout(bounds=[bounds[s] for s in seq],
                   interstages=[interstage_s(plan, s, seq[(k + 1) % len(seq)]) for k, s in enumerate(seq)],
                   movements=movements)


class _Columns:
    def __init__(self, rows: int, width: int, mwidth: int) -> None:
        self.row_i = {k: array("i", [0] * rows) for k in ("n_stages", "n_mov")}
        self.row_d = {k: array("d", [0.0] * rows) for k in ("cycle_min", "cycle_max", "cycle_fixed", "period_h")}
        self.stage = {k: array("d", [0.0] * (rows * width)) for k in ("min", "max", "inter")}
        self.mask = array("i", [0] * (rows * mwidth))
        self.mov = {k: array("d", [1.0] * (rows * mwidth)) for k in ("flow", "sat", "lanes", "pf")}
        self.width, self.mwidth = width, mwidth

    def fill(self, i: int, req: DesignRequest, lay: _Layout) -> None:
        plan = req.plan
        self.row_i["n_stages"][i], self.row_i["n_mov"][i] = len(plan.sequence), len(lay.movements)
        self.row_d["cycle_min"][i], self.row_d["cycle_max"][i] = plan.cycle.min_s, plan.cycle.max_s
        self.row_d["cycle_fixed"][i] = req.cycle_s if req.cycle_s is not None else 0.0
        self.row_d["period_h"][i] = req.period_h
        for k, ((low, high), inter) in enumerate(zip(lay.bounds, lay.interstages, strict=True)):
            j = i * self.width + k
            self.stage["min"][j], self.stage["max"][j], self.stage["inter"][j] = low, high, inter
        for k, (movement, _group, mask, sat, lanes, pf) in enumerate(lay.movements):
            if movement not in req.demand:
                raise InvalidDemand(f"plan {plan.id}: no demand for signalised movement {movement}")
            j = i * self.mwidth + k
            self.mask[j] = mask
            self.mov["flow"][j], self.mov["sat"][j] = req.demand[movement].pcu_h, sat
            self.mov["lanes"][j], self.mov["pf"][j] = lanes, pf

    def arrays(self) -> list[array]:  # type: ignore[type-arg]
        return [self.row_i["n_stages"], self.row_i["n_mov"], *self.row_d.values(), *self.stage.values(), self.mask,
                *self.mov.values()]


class _Outputs:
    def __init__(self, rows: int, width: int, mwidth: int) -> None:
        self.row = {k: array("d", [0.0] * rows) for k in ("cycle", "y", "lost", "webster", "delay")}
        self.flags = array("i", [0] * rows)
        self.stage = {k: array("d", [0.0] * (rows * width)) for k in ("green", "x")}
        self.mov = {k: array("d", [0.0] * (rows * mwidth)) for k in ("geff", "x", "delay", "queue")}

    def arrays(self) -> list[array]:  # type: ignore[type-arg]
        return [*self.row.values(), self.flags, *self.stage.values(), *self.mov.values()]


def _result(i: int, req: DesignRequest, lay: _Layout, out: _Outputs, width: int, mwidth: int) -> TimingDesign:
    plan, flags = req.plan, out.flags[i]
    if flags & kernel.INFEASIBLE:
        raise TimingInfeasible(f"plan {plan.id}: minimum greens and interstages need more than the longest allowed "
                               f"cycle {plan.cycle.max_s:g} s, or every stage at its maximum is shorter than "
                               f"{plan.cycle.min_s:g} s")
    cycle = out.row["cycle"][i]
    stages = [StageResult(s, out.stage["green"][i * width + k], out.stage["x"][i * width + k])
              for k, s in enumerate(plan.sequence)]
    movements = []
    for k, (movement, group, _mask, sat, _lanes, _pf) in enumerate(lay.movements):
        j = i * mwidth + k
        flow, x, delay, queue = req.demand[movement].pcu_h, out.mov["x"][j], out.mov["delay"][j], out.mov["queue"][j]
        geff = out.mov["geff"][j]
        movements.append(MovementResult(movement, group, flow, sat, flow / sat, geff, sat * geff / cycle, x, delay,
                                        level_of_service(delay, x), queue, queue * QUEUE_SPACING_M_PER_PCU))
    webster = out.row["webster"][i]
    delay = out.row["delay"][i]
    design = TimingDesign(
        plan=plan.id, plan_version=plan.version, plan_checksum=plan.checksum(), cycle_s=cycle,
        offset_s=req.offset_s % cycle, critical_flow_ratio=out.row["y"][i], critical_lost_time_s=out.row["lost"][i],
        webster_cycle_s=webster if math.isfinite(webster) else None, oversaturated=bool(flags & kernel.OVERSATURATED),
        cycle_clamped=bool(flags & kernel.CYCLE_CLAMPED), at_maxima=bool(flags & kernel.AT_MAXIMA),
        over_capacity=bool(flags & kernel.OVER_CAPACITY), delay_s=delay, los=level_of_service(delay),
        stages=stages, movements=movements, notes=_notes(req, flags, webster, cycle, out.row["y"][i]))
    violations = validate(plan, design.timing())
    if violations:
        raise UnsafeTiming(f"plan {plan.id}: designed timing fails the safety check: "
                           + "; ".join(v.message for v in violations))
    return design


def _notes(req: DesignRequest, flags: int, webster: float, cycle: float, big_y: float) -> list[str]:
    notes = []
    if flags & kernel.OVERSATURATED:
        notes.append(f"oversaturated: critical flow ratio Y = {big_y:.3f} >= 1, no cycle can serve the demand; "
                     f"longest allowed cycle used")
    asked = req.cycle_s if req.cycle_s is not None else webster
    if flags & kernel.CYCLE_CLAMPED:
        notes.append(f"cycle {asked:.1f} s brought within the plan's bounds and minimum greens: {cycle:.1f} s")
    if flags & kernel.AT_MAXIMA:
        notes.append(f"every stage at its maximum green: cycle shortened to {cycle:.1f} s")
    if flags & kernel.OVER_CAPACITY:
        notes.append("some movements exceed capacity (X > 1): LOS F")
    return notes
