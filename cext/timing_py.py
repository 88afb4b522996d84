"""Pure-Python twin of ``cext._timing`` (the test oracle and the fallback): bounded splits.

Operations run in the same order as the compiled kernel, so results match bit for bit.
The algorithm, per row (intersection): every stage gets ``g_j = clamp(lam * w_j, min_j, max_j)``
with the one ``lam`` that makes the greens add up to ``available_s`` (found exactly by a scan
of the sorted breakpoints ``min_j / w_j`` and ``max_j / w_j`` of the piecewise-linear sum).
Weights below 1e-12 of their total count as zero. Stages of zero weight keep their minimum
unless every weighted stage is at its maximum; then they share the rest equally. All weights
zero: equal shares. When every stage is at its maximum the greens add up to less than
``available_s`` (the caller shortens the cycle).
"""

from __future__ import annotations

import math
from collections.abc import MutableSequence, Sequence

MAX_STAGES = 16
LEFTOVER_S = 1e-9  # green left over after the weighted stages (s) that goes to the others
MIN_SHARE = 1e-12  # a stage weight below this fraction of the total counts as zero
_INF = float("inf")
_NAN = float("nan")


def split_greens(weights: Sequence[float], min_s: Sequence[float], max_s: Sequence[float], n_stages: Sequence[int],
                 available_s: Sequence[float], out: MutableSequence[float], width: int) -> None:
    """Per row: share ``available_s`` (s) between ``n_stages`` stages by weight within [min_s, max_s] (s).

    Stage arrays are row-major, ``width`` values per row (element (i, j) at ``i * width + j``).
    """
    rows = len(available_s)
    if width < 1 or any(len(a) != rows * width for a in (weights, min_s, max_s, out)) or len(n_stages) != rows:
        raise ValueError(f"arrays must hold {rows} rows of width {width}")
    for i in range(rows):
        if n_stages[i] < 1 or n_stages[i] > MAX_STAGES or n_stages[i] > width:
            raise ValueError(f"n_stages[{i}] = {n_stages[i]} is outside 1..{min(MAX_STAGES, width)}")
    for i in range(rows):
        _split_row(weights, min_s, max_s, n_stages[i], available_s[i], out, i * width)


def _split_row(w: Sequence[float], low: Sequence[float], high: Sequence[float], n: int, available: float,
               g: MutableSequence[float], base: int) -> None:
    u = [0.0] * MAX_STAGES
    total = 0.0
    rest = available
    for j in range(n):
        total = total + w[base + j]
        g[base + j] = low[base + j]
        rest = rest - low[base + j]
    if rest <= 0.0:
        return
    for j in range(n):  # shares of the total; shares below MIN_SHARE count as zero (no overflowing bounds)
        u[j] = (w[base + j] / total if w[base + j] / total >= MIN_SHARE else 0.0) if total > 0.0 else 1.0
    rest = _fill(u, low, high, n, rest, g, base)
    if rest > LEFTOVER_S and total > 0.0:  # every weighted stage that can grow is at its maximum
        for j in range(n):
            u[j] = 1.0 if g[base + j] < high[base + j] else 0.0
        _fill(u, low, high, n, rest, g, base)


def _fill(u: Sequence[float], low: Sequence[float], high: Sequence[float], n: int, rest: float,  # noqa: PLR0912
          g: MutableSequence[float], base: int) -> float:
    """Give ``rest`` (s) above the minima to the stages with ``u > 0`` as ``clamp(lam * u, min, max)``; the leftover.

    ``lam * u`` is computed as ``previous * u + (rest - f(previous)) * (u / slope)`` so that a tiny
    slope cannot overflow ``lam``.
    """
    points = [0.0] * (2 * MAX_STAGES)
    count = 0
    for j in range(n):
        if u[j] > 0.0:
            for bound in (low[base + j] / u[j], high[base + j] / u[j]):
                if bound < _INF:
                    k = count
                    while k > 0 and points[k - 1] > bound:
                        points[k] = points[k - 1]
                        k = k - 1
                    points[k] = bound
                    count = count + 1
    previous, f_previous = 0.0, 0.0
    for p in range(count + 1):
        point = _INF
        if p < count:
            point = points[p]
            f = _extra(u, low, high, n, point, base)
            if f < rest:
                previous, f_previous = point, f
                continue
        slope = 0.0
        for j in range(n):
            if u[j] > 0.0 and low[base + j] / u[j] <= previous and high[base + j] / u[j] >= point:
                slope = slope + u[j]
        if slope <= 0.0:
            break
        assigned = 0.0
        for j in range(n):
            if u[j] > 0.0:
                g[base + j] = _clamp(previous * u[j] + (rest - f_previous) * (u[j] / slope), low[base + j],
                                     high[base + j])
                assigned = assigned + (g[base + j] - low[base + j])
        return rest - assigned  # not 0 when a bound overflowed (a subnormal weight) and clamped
    for j in range(n):
        if u[j] > 0.0 and high[base + j] / u[j] <= previous:
            g[base + j] = high[base + j]
    return rest - f_previous


def _extra(u: Sequence[float], low: Sequence[float], high: Sequence[float], n: int, lam: float, base: int) -> float:
    f = 0.0
    for j in range(n):
        if u[j] > 0.0:
            f = f + (_clamp(lam * u[j], low[base + j], high[base + j]) - low[base + j])
    return f


def _clamp(value: float, low: float, high: float) -> float:
    value = max(value, low)
    value = min(value, high)
    return value


# --- timing design: critical path, Webster cycle, equisaturation splits, HCM delay and queue ---------
MAX_MOVEMENTS = 32
ITERATIONS = 16
#: Result flags (bits of ``flags``).
OVERSATURATED, CYCLE_CLAMPED, AT_MAXIMA, INFEASIBLE, OVER_CAPACITY = 1, 2, 4, 8, 16
_DRIVE_CAP = 1000.0
_K_PRETIMED, _I_ISOLATED = 0.5, 1.0


def design_timings(n_stages: Sequence[int], n_mov: Sequence[int], cycle_min_s: Sequence[float],
                   cycle_max_s: Sequence[float], cycle_fixed_s: Sequence[float], period_h: Sequence[float],
                   stage_min_s: Sequence[float], stage_max_s: Sequence[float], interstage_s: Sequence[float],
                   mask: Sequence[int], flow_pcu_h: Sequence[float], saturation_pcu_h: Sequence[float],
                   lanes: Sequence[float], progression: Sequence[float],
                   cycle_out: MutableSequence[float], y_out: MutableSequence[float], lost_out: MutableSequence[float],
                   webster_out: MutableSequence[float], delay_out: MutableSequence[float], flags_out: MutableSequence[int],
                   green_out: MutableSequence[float], stage_x_out: MutableSequence[float],
                   effective_green_out: MutableSequence[float], x_out: MutableSequence[float],
                   movement_delay_out: MutableSequence[float], queue_out: MutableSequence[float],
                   width: int, mwidth: int) -> None:
    """Per row (intersection): design a timing and evaluate it.

    Stage arrays hold ``width`` values per row (``interstage_s[k]``: after stage k, before
    k + 1), movement arrays ``mwidth`` per row (``mask``: bit k set when the movement is green
    in stage k). Seconds, pcu/h, hours (``period_h``, the HCM analysis period); a
    ``cycle_fixed_s`` > 0 asks for that cycle instead of Webster's. Outputs: cycle (s), critical
    path Y and lost time (s), Webster's cycle (s, inf when Y >= 1), flow-weighted delay
    (s/pcu), flags; stage greens (s) and degree of saturation; per movement effective green (s),
    X, control delay (s/pcu) and back of queue (pcu per lane). NaN when ``INFEASIBLE``.
    """
    rows = len(n_stages)
    if width < 1 or mwidth < 1:
        raise ValueError(f"width {width} and mwidth {mwidth} must be >= 1")
    for name, arr, size in (("n_mov", n_mov, rows), ("cycle_min_s", cycle_min_s, rows), ("cycle_max_s", cycle_max_s, rows),
                            ("cycle_fixed_s", cycle_fixed_s, rows), ("period_h", period_h, rows),
                            ("stage_min_s", stage_min_s, rows * width), ("stage_max_s", stage_max_s, rows * width),
                            ("interstage_s", interstage_s, rows * width), ("mask", mask, rows * mwidth),
                            ("flow_pcu_h", flow_pcu_h, rows * mwidth), ("saturation_pcu_h", saturation_pcu_h, rows * mwidth),
                            ("lanes", lanes, rows * mwidth), ("progression", progression, rows * mwidth),
                            ("cycle_out", cycle_out, rows), ("y_out", y_out, rows), ("lost_out", lost_out, rows),
                            ("webster_out", webster_out, rows), ("delay_out", delay_out, rows), ("flags_out", flags_out, rows),
                            ("green_out", green_out, rows * width), ("stage_x_out", stage_x_out, rows * width),
                            ("effective_green_out", effective_green_out, rows * mwidth), ("x_out", x_out, rows * mwidth),
                            ("movement_delay_out", movement_delay_out, rows * mwidth), ("queue_out", queue_out, rows * mwidth)):
        if len(arr) != size:
            raise ValueError(f"{name} holds {len(arr)} values, expected {size}")
    for i in range(rows):
        _check_row(i, n_stages, n_mov, cycle_min_s, cycle_max_s, period_h, stage_min_s, stage_max_s, interstage_s, mask,
                   flow_pcu_h, saturation_pcu_h, lanes, progression, width, mwidth)
    for i in range(rows):
        _design_row(i, n_stages[i], n_mov[i], cycle_min_s[i], cycle_max_s[i], cycle_fixed_s[i], period_h[i],
                    stage_min_s, stage_max_s, interstage_s, mask, flow_pcu_h, saturation_pcu_h, lanes, progression,
                    cycle_out, y_out, lost_out, webster_out, delay_out, flags_out, green_out, stage_x_out,
                    effective_green_out, x_out, movement_delay_out, queue_out, i * width, i * mwidth)


def _check_row(i: int, n_stages: Sequence[int], n_mov: Sequence[int], cycle_min_s: Sequence[float],
               cycle_max_s: Sequence[float], period_h: Sequence[float], stage_min_s: Sequence[float],
               stage_max_s: Sequence[float], interstage_s: Sequence[float], mask: Sequence[int],
               flow_pcu_h: Sequence[float], saturation_pcu_h: Sequence[float], lanes: Sequence[float],
               progression: Sequence[float], width: int, mwidth: int) -> None:
    n, nm = n_stages[i], n_mov[i]
    if n < 1 or n > MAX_STAGES or n > width:
        raise ValueError(f"row {i}: n_stages {n} is outside 1..{min(MAX_STAGES, width)}")
    if nm < 0 or nm > MAX_MOVEMENTS or nm > mwidth:
        raise ValueError(f"row {i}: n_mov {nm} is outside 0..{min(MAX_MOVEMENTS, mwidth)}")
    if not (cycle_min_s[i] > 0.0 and cycle_max_s[i] >= cycle_min_s[i] and cycle_max_s[i] < _INF):
        raise ValueError(f"row {i}: cycle bounds {cycle_min_s[i]}..{cycle_max_s[i]} s are not 0 < min <= max < inf")
    if not (period_h[i] > 0.0 and period_h[i] < _INF):
        raise ValueError(f"row {i}: period_h {period_h[i]} h must be > 0")
    for k in range(i * width, i * width + n):
        if not (stage_min_s[k] >= 0.0 and stage_max_s[k] >= stage_min_s[k] and interstage_s[k] >= 0.0
                and interstage_s[k] < _INF and stage_min_s[k] < _INF):
            raise ValueError(f"row {i} stage {k - i * width}: min {stage_min_s[k]} s, max {stage_max_s[k]} s, "
                             f"interstage {interstage_s[k]} s are not 0 <= min <= max, 0 <= interstage < inf")
    for k in range(i * mwidth, i * mwidth + nm):
        if not 0 < mask[k] < (1 << n):
            raise ValueError(f"row {i} movement {k - i * mwidth}: stage mask {mask[k]} is outside 1..{(1 << n) - 1}")
        if not (flow_pcu_h[k] >= 0.0 and flow_pcu_h[k] < _INF and saturation_pcu_h[k] > 0.0
                and saturation_pcu_h[k] < _INF and lanes[k] >= 1.0 and lanes[k] < _INF
                and progression[k] >= 0.0 and progression[k] < _INF):
            raise ValueError(f"row {i} movement {k - i * mwidth}: flow {flow_pcu_h[k]} pcu/h, saturation "
                             f"{saturation_pcu_h[k]} pcu/h, lanes {lanes[k]}, PF {progression[k]} out of range")


def _critical_path(n: int, nm: int, mask: Sequence[int], y: list[float], inter: Sequence[float], sb: int,
                   mb: int) -> tuple[float, float]:
    """The path of stage runs with the largest total flow ratio (ties: the larger lost time): (Y, L in s)."""
    best_y, best_l = -1.0, 0.0
    val_y = [0.0] * (MAX_STAGES + 1)
    val_l = [0.0] * (MAX_STAGES + 1)
    for b in range(n):
        val_y[0], val_l[0] = 0.0, 0.0
        for k in range(1, n + 1):
            val_y[k], val_l[k] = -1.0, 0.0
            for j in range(k):
                if val_y[j] < 0.0:
                    continue
                seg = 0
                for t in range(j, k):
                    seg = seg | (1 << ((b + t) % n))
                seg_y = 0.0 if k - j == 1 else -1.0
                for m in range(nm):
                    if mask[mb + m] == seg and y[m] > seg_y:
                        seg_y = y[m]
                if seg_y < 0.0:
                    continue
                cand_y = val_y[j] + seg_y
                cand_l = val_l[j] + inter[sb + (b + k - 1) % n]
                if cand_y > val_y[k] or (cand_y == val_y[k] and cand_l > val_l[k]):
                    val_y[k], val_l[k] = cand_y, cand_l
        if val_y[n] > best_y or (val_y[n] == best_y and val_l[n] > best_l):
            best_y, best_l = val_y[n], val_l[n]
    return best_y, best_l


def _design_row(i: int, n: int, nm: int, cycle_min: float, cycle_max: float, cycle_fixed: float,  # noqa: PLR0912, PLR0915
                period: float, low: Sequence[float], high: Sequence[float], inter: Sequence[float], mask: Sequence[int],
                flow: Sequence[float], sat: Sequence[float], lanes: Sequence[float], pf: Sequence[float],
                cycle_out: MutableSequence[float], y_out: MutableSequence[float], lost_out: MutableSequence[float],
                webster_out: MutableSequence[float], delay_out: MutableSequence[float], flags_out: MutableSequence[int],
                green_out: MutableSequence[float], stage_x_out: MutableSequence[float],
                geff_out: MutableSequence[float], x_out: MutableSequence[float], dm_out: MutableSequence[float],
                q_out: MutableSequence[float], sb: int, mb: int) -> None:
    full = (1 << n) - 1
    y = [0.0] * MAX_MOVEMENTS
    credit = [0.0] * MAX_MOVEMENTS
    w = [0.0] * MAX_STAGES
    drive = [0.0] * MAX_STAGES
    flags = 0
    lost_total, needed = 0.0, 0.0
    for k in range(n):
        lost_total = lost_total + inter[sb + k]
        needed = needed + low[sb + k]
    needed = needed + lost_total
    for m in range(nm):
        y[m] = flow[mb + m] / sat[mb + m]
        credit[m] = 0.0
        for k in range(n):
            if (mask[mb + m] >> k) & 1 and (mask[mb + m] >> ((k + 1) % n)) & 1:
                credit[m] = credit[m] + inter[sb + k]
    big_y, lost_path = _critical_path(n, nm, mask, y, inter, sb, mb)
    y_out[i], lost_out[i] = big_y, lost_path
    if big_y >= 1.0:
        webster = _INF
        flags = flags | OVERSATURATED
        asked = cycle_max
    else:
        webster = (1.5 * lost_path + 5.0) / (1.0 - big_y)
        asked = webster
    webster_out[i] = webster
    if cycle_fixed > 0.0:
        asked = cycle_fixed
    if needed > cycle_max:
        _fail(i, n, nm, flags | INFEASIBLE, cycle_out, delay_out, flags_out, green_out, stage_x_out, geff_out, x_out,
              dm_out, q_out, sb, mb)
        return
    cycle = asked
    cycle = max(cycle, cycle_min)
    cycle = max(cycle, needed)
    cycle = min(cycle, cycle_max)
    if cycle != asked:
        flags = flags | CYCLE_CLAMPED
    for k in range(n):
        w[k] = 0.0
    for m in range(nm):
        if mask[mb + m] == full:
            continue
        r = 0
        for k in range(n):
            r = r + ((mask[mb + m] >> k) & 1)
        for k in range(n):
            if (mask[mb + m] >> k) & 1 and y[m] / r > w[k]:
                w[k] = y[m] / r
    g = [0.0] * n
    x = [0.0] * MAX_MOVEMENTS
    for it in range(ITERATIONS):
        _split_offset(w, low, high, n, cycle - lost_total, g, sb)
        for m in range(nm):
            geff = credit[m]
            for k in range(n):
                if (mask[mb + m] >> k) & 1:
                    geff = geff + g[k]
            x[m] = y[m] * cycle / geff if geff > 0.0 else (_INF if y[m] > 0.0 else 0.0)
        if it == ITERATIONS - 1:
            break
        top = 0.0
        for k in range(n):
            drive[k] = 0.0
            for m in range(nm):
                if mask[mb + m] != full and (mask[mb + m] >> k) & 1 and x[m] > drive[k]:
                    drive[k] = x[m]
            drive[k] = min(drive[k], _DRIVE_CAP)
            top = max(top, drive[k])
        if top <= 0.0:
            break
        for k in range(n):
            w[k] = w[k] * (drive[k] / top)
    actual = lost_total
    for k in range(n):
        actual = actual + g[k]
        green_out[sb + k] = g[k]
    if actual < cycle_min - 1e-9:
        _fail(i, n, nm, flags | INFEASIBLE, cycle_out, delay_out, flags_out, green_out, stage_x_out, geff_out, x_out,
              dm_out, q_out, sb, mb)
        return
    if actual < cycle - 1e-9:
        flags = flags | AT_MAXIMA
    cycle_out[i] = actual
    total_flow, weighted = 0.0, 0.0
    for m in range(nm):
        geff = credit[m]
        for k in range(n):
            if (mask[mb + m] >> k) & 1:
                geff = geff + g[k]
        if mask[mb + m] == full:
            geff = actual
        ratio = geff / actual
        cap = sat[mb + m] * ratio
        v = flow[mb + m]
        xm = v / cap if cap > 0.0 else (_INF if v > 0.0 else 0.0)
        capped = xm if xm < 1.0 else 1.0
        if ratio >= 1.0:
            d1, q1 = 0.0, 0.0
        else:
            d1 = 0.5 * actual * ((1.0 - ratio) * (1.0 - ratio)) / (1.0 - capped * ratio)
            q1 = (v / lanes[mb + m]) * actual / 3600.0 * (1.0 - ratio) / (1.0 - capped * ratio)
        if cap > 0.0:
            d2 = 900.0 * period * ((xm - 1.0) + math.sqrt((xm - 1.0) * (xm - 1.0)
                                                          + 8.0 * _K_PRETIMED * _I_ISOLATED * xm / (cap * period)))
            cap_lane = cap / lanes[mb + m]
            k_b = 0.12 * _I_ISOLATED * (sat[mb + m] / lanes[mb + m] * geff / 3600.0) ** 0.7
            q2 = 0.25 * cap_lane * period * ((xm - 1.0) + math.sqrt((xm - 1.0) * (xm - 1.0)
                                                                   + 8.0 * k_b * xm / (cap_lane * period)))
        else:
            d2 = _INF if v > 0.0 else 0.0
            q2 = _INF if v > 0.0 else 0.0
        d = d1 * pf[mb + m] + d2
        if xm > 1.0:
            flags = flags | OVER_CAPACITY
        geff_out[mb + m], x_out[mb + m], dm_out[mb + m], q_out[mb + m] = geff, xm, d, q1 + q2
        if v > 0.0:
            total_flow = total_flow + v
            weighted = weighted + v * d
    delay_out[i] = weighted / total_flow if total_flow > 0.0 else 0.0
    for k in range(n):
        stage_x_out[sb + k] = 0.0
        for m in range(nm):
            if (mask[mb + m] >> k) & 1 and x_out[mb + m] > stage_x_out[sb + k]:
                stage_x_out[sb + k] = x_out[mb + m]
    flags_out[i] = flags


def _split_offset(w: list[float], low: Sequence[float], high: Sequence[float], n: int, available: float,
                  g: list[float], sb: int) -> None:
    """``_split_row`` on one row's weights ``w`` with the row's bounds at offset ``sb``."""
    _split_row(w, low[sb:sb + n], high[sb:sb + n], n, available, g, 0)


def _fail(i: int, n: int, nm: int, flags: int, cycle_out: MutableSequence[float], delay_out: MutableSequence[float],
          flags_out: MutableSequence[int], green_out: MutableSequence[float], stage_x_out: MutableSequence[float],
          geff_out: MutableSequence[float], x_out: MutableSequence[float], dm_out: MutableSequence[float],
          q_out: MutableSequence[float], sb: int, mb: int) -> None:
    cycle_out[i], delay_out[i], flags_out[i] = _NAN, _NAN, flags
    for k in range(n):
        green_out[sb + k], stage_x_out[sb + k] = _NAN, _NAN
    for m in range(nm):
        geff_out[mb + m], x_out[mb + m], dm_out[mb + m], q_out[mb + m] = _NAN, _NAN, _NAN, _NAN
