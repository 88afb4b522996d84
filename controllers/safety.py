"""Safety validation of plans and timings (pure): ``validate(plan, timing) -> list[Violation]``.

No plan or command may give conflicting greens, cut a clearance (amber + all-red, or the
pedestrian clearance) or a minimum green. This module is the controller-side check; the
device drivers check again before anything is written to a controller. An empty list means
safe. Every violation names the groups or stages, the offending value, the limit and the unit.

Plan checks: references resolve (also movements, coordination, named timings and the
schedule: see :func:`validate_all`); no stage holds two conflicting groups; every group is green
in some stage; every conflicting pair has an intergreen in both directions, at least the
losing group's clearance and amber; declared ambers meet the kinematic minimum.
Timing checks: a conflicting group never starts green sooner than the intergreen after the
end of the other's green, also when stages lie between them (``intergreen_cut``); a green for
every stage in the sequence and none for unknown stages; greens
not negative; each group's green (across consecutive stages it spans) within its minimum and
maximum; the cycle equals greens plus interstages, within the plan's bounds; the offset lies
inside the cycle.
"""

from __future__ import annotations

import msgspec

from controllers.clearance import amber_required_s, clearance_required_s, intergreen_s, interstage_s
from controllers.plan import DEFAULT, FLASH, Id, Plan, Timing
from controllers.plan_memo import per_plan

#: Timings are compared to their limits with this tolerance (seconds): float sums, not rounding.
TOLERANCE_S = 1e-6


class Violation(msgspec.Struct, frozen=True):
    """One broken rule: a code, a sentence, what it concerns, the value, the limit and the unit."""

    code: str
    message: str
    subjects: tuple[str, ...] = ()
    value: float | None = None
    limit: float | None = None
    unit: str = ""


def validate(plan: Plan, timing: Timing | None = None) -> list[Violation]:
    """All violations of ``plan`` and, when given, of ``timing`` run on it (empty: safe)."""
    found = _references(plan)
    if found:  # the other checks need every reference to resolve
        return found
    found += _stage_conflicts(plan) + _coverage(plan) + _intergreens(plan) + _ambers(plan)
    if timing is not None and not found:
        found += _timing(plan, timing)
    return found


def _references(plan: Plan) -> list[Violation]:
    out: list[Violation] = []
    groups, stages = [g.id for g in plan.signal_groups], [s.id for s in plan.stages]
    for kind, ids in (("signal group", groups), ("stage", stages)):
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            out.append(Violation("duplicate_id", f"{kind} id {dup!r} is declared twice", (dup,)))
    known_groups, known_stages = set(groups), set(stages)
    refs = [(f"stage {s.id}", g) for s in plan.stages for g in s.green]
    refs += [("conflicts", g) for pair in plan.conflicts for g in pair]
    refs += [("intergreens_s", g) for i, row in plan.intergreens_s.items() for g in (i, *row)]
    out += [Violation("dangling_reference", f"{where} names unknown signal group {g!r}", (g,))
            for where, g in refs if g not in known_groups]
    out += [Violation("dangling_reference", f"sequence names unknown stage {s!r}", (s,))
            for s in plan.sequence if s not in known_stages]
    return out + _design_references(plan, known_groups)


def _design_references(plan: Plan, known_groups: set[Id]) -> list[Violation]:
    """Approaches, movements, coordination, named timings and the schedule name only what exists."""
    out: list[Violation] = []
    for kind, ids in (("approach", [a.id for a in plan.approaches]), ("movement", [m.id for m in plan.movements])):
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            out.append(Violation("duplicate_id", f"{kind} id {dup!r} is declared twice", (dup,)))
    out += [Violation("reserved_name", f"timing name {name!r} is reserved ({FLASH}: flashing amber, {DEFAULT}: "
                      f"the default timing)", (name,)) for name in plan.timings if name in (FLASH, DEFAULT)]
    approaches = {a.id for a in plan.approaches}
    refs = [(f"movement {m.id}", "approach", m.approach, approaches) for m in plan.movements]
    refs += [(f"movement {m.id}", "signal group", m.signal_group, known_groups) for m in plan.movements
             if m.signal_group is not None]
    if plan.coordination is not None:
        refs += [("coordination", "signal group", g, known_groups)
                 for g in (plan.coordination.outbound_group, plan.coordination.inbound_group)]
    if plan.schedule is not None:
        timings = {*plan.timings, FLASH} | ({DEFAULT} if plan.default_timing is not None else set())
        day_plans = set(plan.schedule.day_plans)
        refs += [(f"day plan {name}", "timing", sw.timing, timings)
                 for name, switches in plan.schedule.day_plans.items() for sw in switches]
        refs += [(f"week {day}", "day plan", name, day_plans) for day, name in plan.schedule.week.items()]
        refs += [(f"exception {e.date} ({e.name})", "day plan", e.day_plan, day_plans) for e in plan.schedule.exceptions]
    out += [Violation("dangling_reference", f"{where} names unknown {kind} {ref!r}", (ref,))
            for where, kind, ref, known in refs if ref not in known]
    return out


def validate_all(plan: Plan) -> list[Violation]:
    """Violations of the plan, its default timing and every named timing (subjects start with the timing's name)."""
    found = validate(plan, plan.default_timing)
    if found:
        return found
    for name, timing in plan.timings.items():
        found += [msgspec.structs.replace(v, message=f"timing {name}: {v.message}", subjects=(name, *v.subjects))
                  for v in validate(plan, timing)]
    return found


def _stage_conflicts(plan: Plan) -> list[Violation]:
    return [Violation("conflicting_green", f"stage {s.id} shows conflicting groups {a} and {b} green together",
                      (s.id, a, b))
            for s in plan.stages for k, a in enumerate(s.green) for b in s.green[k + 1:] if plan.conflict(a, b)]


def _coverage(plan: Plan) -> list[Violation]:
    served = {g for stage_id in plan.sequence if (s := plan.stage(stage_id)) for g in s.green}
    return [Violation("group_never_green", f"signal group {g.id} is green in no stage of the sequence", (g.id,))
            for g in plan.signal_groups if g.id not in served]


def _intergreens(plan: Plan) -> list[Violation]:
    out: list[Violation] = []
    for a, b in plan.conflicts:
        for losing, gaining in ((a, b), (b, a)):
            group = plan.group(losing)
            assert group is not None
            required = clearance_required_s(group, plan)
            if group.kind == "vehicle":
                required = max(required, group.amber_s)
            declared = intergreen_s(plan, losing, gaining)
            if declared is None:
                out.append(Violation("missing_intergreen", f"no intergreen from {losing} to conflicting {gaining}",
                                     (losing, gaining), None, required, "s"))
            elif declared + TOLERANCE_S < required:
                out.append(Violation("intergreen_below_clearance",
                                     f"intergreen {losing} -> {gaining} is {declared:.2f} s, its clearance needs "
                                     f"{required:.2f} s", (losing, gaining), declared, required, "s"))
    return out


def _ambers(plan: Plan) -> list[Violation]:
    out: list[Violation] = []
    for g in plan.signal_groups:
        if g.kind == "vehicle" and g.amber_s + TOLERANCE_S < (needed := amber_required_s(g, plan)):
            out.append(Violation("amber_below_minimum", f"amber of {g.id} is {g.amber_s:.2f} s, at "
                                 f"{g.approach_speed_kmh:g} km/h it needs {needed:.2f} s", (g.id,), g.amber_s, needed, "s"))
    return out


def green_intervals_s(plan: Plan, timing: Timing) -> dict[Id, list[float]]:
    """Each group's green periods over one cycle (s); a group green in consecutive stages stays green
    through the interstages between them. Needs a green for every stage of the sequence."""
    seq, greens = plan.sequence, timing.stage_greens_s
    out: dict[Id, list[float]] = {}
    for group in plan.signal_groups:
        flags = [group.id in _greens_of(plan, s) for s in seq]
        if all(flags):
            out[group.id] = [timing.cycle_s]
            continue
        runs: list[float] = []
        current: float | None = None
        start = flags.index(False)
        for step in range(1, len(seq) + 1):
            k = (start + step) % len(seq)
            if flags[k]:
                current = greens[seq[k]] if current is None else (
                    current + interstage_s(plan, seq[k - 1], seq[k]) + greens[seq[k]])
            elif current is not None:
                runs.append(current)
                current = None
        if current is not None:
            runs.append(current)
        out[group.id] = runs
    return out


def _greens_of(plan: Plan, stage_id: Id) -> list[Id]:
    stage = plan.stage(stage_id)
    return stage.green if stage is not None else []


def cycle_of_s(plan: Plan, stage_greens_s: dict[Id, float]) -> float:
    """The cycle (s) that these stage greens make with the plan's interstages."""
    seq = plan.sequence
    return sum(stage_greens_s[s] + interstage_s(plan, s, seq[(k + 1) % len(seq)]) for k, s in enumerate(seq))


def _timing(plan: Plan, timing: Timing) -> list[Violation]:
    greens = timing.stage_greens_s
    out = [Violation("missing_stage_green", f"the timing has no green for stage {s}", (s,))
           for s in plan.sequence if s not in greens]
    out += [Violation("dangling_reference", f"the timing gives a green to unknown stage {s!r}", (s,))
            for s in greens if s not in plan.sequence]
    out += [Violation("negative_green", f"stage {s} green is {g:.2f} s", (s,), g, 0.0, "s")
            for s, g in greens.items() if g < 0]
    if out:
        return out
    out += _group_greens(plan, timing) + _intergreens_across_stages(plan, timing)
    cycle = cycle_of_s(plan, greens)
    if abs(cycle - timing.cycle_s) > TOLERANCE_S * len(greens):
        out.append(Violation("cycle_mismatch", f"greens and interstages add up to {cycle:.3f} s, the cycle is "
                             f"{timing.cycle_s:.3f} s", (), timing.cycle_s, cycle, "s"))
    if not plan.cycle.min_s - TOLERANCE_S <= timing.cycle_s <= plan.cycle.max_s + TOLERANCE_S:
        out.append(Violation("cycle_out_of_bounds", f"cycle {timing.cycle_s:.2f} s is outside "
                             f"{plan.cycle.min_s:g}..{plan.cycle.max_s:g} s", (), timing.cycle_s,
                             plan.cycle.min_s if timing.cycle_s < plan.cycle.min_s else plan.cycle.max_s, "s"))
    if timing.offset_s >= timing.cycle_s:
        out.append(Violation("offset_outside_cycle", f"offset {timing.offset_s:.2f} s is not below the cycle "
                             f"{timing.cycle_s:.2f} s", (), timing.offset_s, timing.cycle_s, "s"))
    return out


@per_plan
def intergreen_paths(plan: Plan) -> tuple[tuple[Id, Id, float, tuple[int, ...], float], ...]:
    """Every place a group's green ends and a conflicting group's next green starts more than one
    stage later: (losing, gaining, required intergreen s, indices of the stages in between,
    interstage seconds along the way). The greens of the stages in between must make up the rest."""
    seq, n = plan.sequence, len(plan.sequence)
    greens = {s.id: set(s.green) for s in plan.stages}
    out: list[tuple[Id, Id, float, tuple[int, ...], float]] = []
    for a, b in plan.conflicts:
        for losing, gaining in ((a, b), (b, a)):
            group = plan.group(losing)
            assert group is not None
            required = intergreen_s(plan, losing, gaining)
            if required is None:
                required = clearance_required_s(group, plan)
            for k in range(n):
                if losing not in greens[seq[k]] or losing in greens[seq[(k + 1) % n]]:
                    continue
                between, inter, m = [], interstage_s(plan, seq[k], seq[(k + 1) % n]), (k + 1) % n
                for _ in range(n):
                    if gaining in greens[seq[m]]:
                        break
                    between.append(m)
                    inter += interstage_s(plan, seq[m], seq[(m + 1) % n])
                    m = (m + 1) % n
                if between and gaining in greens[seq[m]]:
                    out.append((losing, gaining, required, tuple(between), inter))
    return tuple(out)


def _intergreens_across_stages(plan: Plan, timing: Timing) -> list[Violation]:
    out = []
    seq = plan.sequence
    for losing, gaining, required, between, inter in intergreen_paths(plan):
        gap = inter + sum(timing.stage_greens_s[seq[m]] for m in between)
        if gap + TOLERANCE_S < required:
            out.append(Violation("intergreen_cut", f"only {gap:.2f} s pass between the end of {losing}'s green and the "
                                 f"start of conflicting {gaining}'s (through stage(s) "
                                 f"{', '.join(seq[m] for m in between)}); the intergreen is {required:.2f} s",
                                 (losing, gaining), gap, required, "s"))
    return out


def _group_greens(plan: Plan, timing: Timing) -> list[Violation]:
    out: list[Violation] = []
    for group_id, periods in green_intervals_s(plan, timing).items():
        group = plan.group(group_id)
        assert group is not None
        if all(group_id in _greens_of(plan, s) for s in plan.sequence):
            continue  # green in every stage: never ends, so neither its minimum nor its maximum can bind
        for green in periods:
            if green + TOLERANCE_S < group.min_green_s:
                out.append(Violation("green_below_minimum", f"{group_id} is green {green:.2f} s, its minimum is "
                                     f"{group.min_green_s:g} s", (group_id,), green, group.min_green_s, "s"))
            if group.max_green_s is not None and green > group.max_green_s + TOLERANCE_S:
                out.append(Violation("green_above_maximum", f"{group_id} is green {green:.2f} s, its maximum is "
                                     f"{group.max_green_s:g} s", (group_id,), green, group.max_green_s, "s"))
    return out
