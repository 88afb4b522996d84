"""Splitting a cycle into stage greens within minimum and maximum greens (pure reference).

:func:`split_cycle` shares the effective green ``C - L`` (cycle minus the interstages) between
the stages in proportion to their weights — flow ratios give Webster's equisaturation splits
``g_i = (y_i / Y)(C - L)`` — within the stage bounds: every stage gets
``clamp(lam * w_i, min_i, max_i)`` with the one ``lam`` that uses up ``C - L`` exactly (water
filling). Stages of zero weight keep their minimum until every weighted stage is at its maximum.

The sharing itself is the batch kernel ``cext.timing.split_greens`` (Cython, with its
pure-Python twin ``cext.timing_py`` as oracle), here run on one intersection.

Stage bounds come from the groups: a stage's minimum is the largest minimum green of its
groups, raised where a group's green ends and a conflicting group's starts more than one stage
later (the stages between share what the interstages leave of the intergreen); its maximum
is the smallest budget of a group whose maximum green applies, a group green over a run of
``r`` consecutive stages getting ``(max_green - interstages in the run) / r`` per stage.
These bounds are conservative: any greens within them satisfy every group's minimum and
maximum and every intergreen. When the cycle cannot hold the minima it is lengthened; when every stage
sits at its maximum it is shortened; both are reported, never hidden. No timing this module
returns violates :func:`controllers.safety.validate` for a plan that passes it.
"""

from __future__ import annotations

import math
from array import array

import msgspec

from cext import timing as timing_kernel
from controllers.clearance import interstage_s, lost_time_s
from controllers.errors import TimingInfeasible
from controllers.plan import Id, Plan, Timing
from controllers.plan_memo import per_plan
from controllers.safety import cycle_of_s, intergreen_paths


class Split(msgspec.Struct, frozen=True):
    """A timing and how it was reached: ``cycle_adjusted`` says the asked cycle could not be kept, and why."""

    timing: Timing
    asked_cycle_s: float
    cycle_adjusted: bool = False
    reason: str = ""


#: Stage bounds by plan object (plans are frozen): the decision loop asks for the same plans' bounds
#: every round. Keyed by identity and holding the plan, so an id is never reused for another plan.
def stage_bounds_s(plan: Plan) -> dict[Id, tuple[float, float]]:
    """(minimum, maximum) green of each stage of the sequence (s); see the module docstring."""
    return dict(_stage_bounds_s(plan))


@per_plan
def _stage_bounds_s(plan: Plan) -> dict[Id, tuple[float, float]]:
    seq = plan.sequence
    bounds = {s: (0.0, math.inf) for s in seq}
    for group in plan.signal_groups:
        flags = [group.id in _stage_green(plan, s) for s in seq]
        for run in cyclic_runs(flags):
            for k in run:
                low, high = bounds[seq[k]]
                low = max(low, group.min_green_s)
                if group.max_green_s is not None and len(run) < len(seq):
                    inside = sum(interstage_s(plan, seq[run[i]], seq[run[i + 1]]) for i in range(len(run) - 1))
                    high = min(high, (group.max_green_s - inside) / len(run))
                bounds[seq[k]] = (low, high)
    for _losing, _gaining, required, between, inter in intergreen_paths(plan):
        # the stages between a group's end of green and a conflicting group's next start make up the intergreen
        share = (required - inter) / len(between)
        for m in between:
            low, high = bounds[seq[m]]
            bounds[seq[m]] = (max(low, share), high)
    for stage, (low, high) in bounds.items():
        if high < low:
            raise TimingInfeasible(f"stage {stage}: minimum green {low:.2f} s exceeds its maximum {high:.2f} s")
    return bounds


def _stage_green(plan: Plan, stage_id: Id) -> list[Id]:
    stage = plan.stage(stage_id)
    if stage is None:
        raise TimingInfeasible(f"the sequence names unknown stage {stage_id!r}")
    return stage.green


def cyclic_runs(flags: list[bool]) -> list[list[int]]:
    """Cyclic runs of consecutive True positions (indices), e.g. [T, F, T, T] -> [[2, 3, 0]]."""
    n = len(flags)
    if all(flags):
        return [list(range(n))]
    start = flags.index(False)
    runs: list[list[int]] = []
    for step in range(1, n + 1):
        k = (start + step) % n
        if flags[k]:
            if runs and runs[-1][-1] == (k - 1) % n and flags[(k - 1) % n]:
                runs[-1].append(k)
            else:
                runs.append([k])
    return runs


def _share(available_s: float, weights: dict[Id, float], bounds: dict[Id, tuple[float, float]]) -> dict[Id, float]:
    """The bounded proportional split of ``available_s`` (s), by the compiled kernel (or its twin)."""
    stages = list(weights)
    width = len(stages)
    out = array("d", [0.0] * width)
    timing_kernel.split_greens(array("d", [weights[s] for s in stages]), array("d", [bounds[s][0] for s in stages]),
                               array("d", [bounds[s][1] for s in stages]), array("i", [width]),
                               array("d", [available_s]), out, width)
    return dict(zip(stages, out, strict=True))


def split_cycle(plan: Plan, cycle_s: float, weights: dict[Id, float], offset_s: float = 0.0) -> Split:
    """Stage greens for a cycle of about ``cycle_s`` seconds in proportion to ``weights`` (≥ 0).

    The cycle is first brought within the plan's bounds and lengthened to hold every minimum;
    raises :class:`TimingInfeasible` when even the longest allowed cycle cannot.
    """
    if set(weights) != set(plan.sequence) or any(not (w >= 0 and math.isfinite(w)) for w in weights.values()):
        raise ValueError(f"weights must be finite and >= 0 for exactly the stages {plan.sequence}, got {weights}")
    bounds = stage_bounds_s(plan)
    lost = lost_time_s(plan)
    needed = lost + sum(low for low, _ in bounds.values())
    if needed > plan.cycle.max_s:
        raise TimingInfeasible(f"minimum greens and interstages need {needed:.2f} s, the plan allows at most "
                               f"{plan.cycle.max_s:g} s")
    cycle = min(max(cycle_s, plan.cycle.min_s, needed), plan.cycle.max_s)
    greens = _share(cycle - lost, weights, bounds)
    actual = cycle_of_s(plan, greens)
    if actual + 1e-9 < plan.cycle.min_s:
        raise TimingInfeasible(f"every stage at its maximum green gives a {actual:.2f} s cycle, below the plan's "
                               f"minimum {plan.cycle.min_s:g} s")
    reasons = []
    if cycle != cycle_s:
        reasons.append(f"cycle {cycle_s:.2f} s brought to {cycle:.2f} s (plan bounds and minimum greens)")
    if abs(actual - cycle) > 1e-9:
        reasons.append(f"every stage at its maximum green: cycle {actual:.2f} s")
    timing = Timing(cycle_s=actual, offset_s=offset_s % actual, stage_greens_s=greens)
    return Split(timing=timing, asked_cycle_s=cycle_s, cycle_adjusted=bool(reasons), reason="; ".join(reasons))
