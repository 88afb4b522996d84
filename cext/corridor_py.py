"""Pure-Python twin of ``cext._corridor`` (the test oracle and the fallback): green-wave offsets.

For a corridor of ``n`` intersections with a common cycle ``C`` (s), each intersection has an
outbound and an inbound arterial green window ``[start, start + length)`` (s after its own
offset reference) and the travel time (s) of the green wave to it from the first intersection
(outbound) or from the last one (inbound). With offsets ``phi`` (s), the outbound *bandwidth*
is the longest interval ``[t, t + b]`` such that a platoon leaving the first intersection at
``t`` meets green at every intersection: the longest common sub-arc of the arcs
``[phi_i + start_i - travel_i, ... + length_i)`` modulo ``C``; likewise inbound.

The objective is ``b_out + b_in + min(b_out, b_in)``, the two bandwidths with the narrower
counted twice, so that a green wave both ways beats a slightly wider one-way wave (ties: the
first found), over offsets on a grid of ``step_s`` seconds. Corridors whose grid has at most
``exact_limit`` offset combinations are searched exhaustively (exact on the grid); otherwise,
with the first intersection fixed at 0, a local search runs from 32 starts (the perfect outbound wave, the perfect
inbound wave, all offsets 0, and 29 fixed pseudo-random ones) with two moves per intersection
k, each tried at every grid position - move k alone, or shift k and every intersection after
it together (which changes only the link into k) - sweeping until a sweep improves nothing
(at most 50 sweeps). A heuristic for a MAXBAND-type problem: against exhaustive search it
was optimal on 896 of 900 random corridors of 3-4 intersections, the worst at 77 % of the
optimum score (tests/unit/test_corridor.py keeps measuring it).
"""

from __future__ import annotations

import math
from collections.abc import MutableSequence, Sequence

MAX_INTERSECTIONS = 16
MAX_SWEEPS = 50
STARTS = 32


def corridor_offsets(n_int: Sequence[int], cycle_s: Sequence[float], step_s: Sequence[float],
                     exact_limit: Sequence[int], start_out: Sequence[float], length_out: Sequence[float],
                     travel_out: Sequence[float], start_in: Sequence[float], length_in: Sequence[float],
                     travel_in: Sequence[float], offsets_out: MutableSequence[float], bands_out: MutableSequence[float],
                     width: int) -> None:
    """Per row (corridor): offsets (s, ``width`` per row) and the bands achieved (outbound, inbound: 2 per row).

    A row whose grid has at most ``exact_limit`` offset combinations is searched exhaustively.
    """
    rows = len(n_int)
    if width < 1:
        raise ValueError(f"width {width} must be >= 1")
    for name, arr, size in (("cycle_s", cycle_s, rows), ("step_s", step_s, rows), ("exact_limit", exact_limit, rows),
                            ("start_out", start_out, rows * width),
                            ("length_out", length_out, rows * width), ("travel_out", travel_out, rows * width),
                            ("start_in", start_in, rows * width), ("length_in", length_in, rows * width),
                            ("travel_in", travel_in, rows * width), ("offsets_out", offsets_out, rows * width),
                            ("bands_out", bands_out, rows * 2)):
        if len(arr) != size:
            raise ValueError(f"{name} holds {len(arr)} values, expected {size}")
    for i in range(rows):
        _check_row(i, n_int, cycle_s, step_s, start_out, length_out, travel_out, start_in, length_in, travel_in, width)
    for i in range(rows):
        _optimise(n_int[i], cycle_s[i], step_s[i], exact_limit[i], start_out, length_out, travel_out, start_in,
                  length_in, travel_in, offsets_out, bands_out, i * width, i)


def _check_row(i: int, n_int: Sequence[int], cycle_s: Sequence[float], step_s: Sequence[float],
               start_out: Sequence[float], length_out: Sequence[float], travel_out: Sequence[float],
               start_in: Sequence[float], length_in: Sequence[float], travel_in: Sequence[float], width: int) -> None:
    n, cycle, step = n_int[i], cycle_s[i], step_s[i]
    if n < 1 or n > MAX_INTERSECTIONS or n > width:
        raise ValueError(f"row {i}: {n} intersections is outside 1..{min(MAX_INTERSECTIONS, width)}")
    if not (0.0 < cycle <= 600.0 and 0.0 < step <= cycle):
        raise ValueError(f"row {i}: cycle {cycle} s and step {step} s need 0 < step <= cycle <= 600 s")
    for k in range(i * width, i * width + n):
        values = (start_out[k], length_out[k], travel_out[k], start_in[k], length_in[k], travel_in[k])
        if not all(0.0 <= v < 1e6 for v in values):
            raise ValueError(f"row {i} intersection {k - i * width}: window starts, lengths and travel times "
                             f"{values} s must be finite and >= 0")


def _wrap(value: float, cycle: float) -> float:
    value = math.fmod(value, cycle)
    if value < 0.0:
        value = value + cycle
    return value


def _band(n: int, cycle: float, phi: Sequence[float], start: Sequence[float], length: Sequence[float],
          travel: Sequence[float], base: int) -> float:
    """Longest common sub-arc (s) of the arcs ``[phi + start - travel, + length)`` modulo the cycle."""
    arc = [_wrap(phi[k] + start[base + k] - travel[base + k], cycle) for k in range(n)]
    best = 0.0
    for j in range(n):
        t = arc[j]
        band = cycle
        for k in range(n):
            if length[base + k] >= cycle:
                continue
            d = _unwrap_difference(t - arc[k], cycle)
            left = length[base + k] - d if d < length[base + k] else 0.0
            band = min(band, left)
        best = max(best, band)
    return best


def _unwrap_difference(d: float, cycle: float) -> float:
    """``_wrap`` of the difference of two wrapped values (``|d| <= cycle``) without fmod: the same value."""
    if d < 0.0:
        return d + cycle
    if d >= cycle:
        return d - cycle
    return d


def _score(n: int, cycle: float, phi: Sequence[float], start_out: Sequence[float], length_out: Sequence[float],
           travel_out: Sequence[float], start_in: Sequence[float], length_in: Sequence[float],
           travel_in: Sequence[float], base: int) -> tuple[float, float]:
    b_out = _band(n, cycle, phi, start_out, length_out, travel_out, base)
    b_in = _band(n, cycle, phi, start_in, length_in, travel_in, base)
    return b_out, b_in


def _better(a_out: float, a_in: float, b_out: float, b_in: float) -> bool:
    """Is (a_out, a_in) strictly better than (b_out, b_in)? Score: both bands, the narrower counted twice."""
    a_min = a_out if a_out < a_in else a_in
    b_min = b_out if b_out < b_in else b_in
    return a_out + a_in + a_min > b_out + b_in + b_min


def _optimise(n: int, cycle: float, step: float, limit: int, start_out: Sequence[float],  # noqa: PLR0912, PLR0915
              length_out: Sequence[float], travel_out: Sequence[float], start_in: Sequence[float],
              length_in: Sequence[float], travel_in: Sequence[float], offsets: MutableSequence[float],
              bands: MutableSequence[float], base: int, row: int) -> None:
    phi = [0.0] * MAX_INTERSECTIONS
    best_phi = [0.0] * MAX_INTERSECTIONS
    saved = [0.0] * MAX_INTERSECTIONS
    digit = [0] * MAX_INTERSECTIONS
    slots = math.floor(cycle / step)
    best_out, best_in = -1.0, -1.0
    combinations = 1
    for _ in range(1, n):
        combinations = combinations * slots
        if combinations > limit:
            break
    if combinations <= limit:  # small grid: every combination, in odometer order
        for k in range(n):
            digit[k] = 0
            phi[k] = 0.0
        for _ in range(combinations):
            b_out, b_in = _score(n, cycle, phi, start_out, length_out, travel_out, start_in, length_in, travel_in, base)
            if _better(b_out, b_in, best_out, best_in):
                best_out, best_in = b_out, b_in
                for k in range(n):
                    best_phi[k] = phi[k]
            k = 1
            while k < n:
                digit[k] = digit[k] + 1
                if digit[k] < slots:
                    phi[k] = digit[k] * step
                    break
                digit[k] = 0
                phi[k] = 0.0
                k = k + 1
        for k in range(n):
            offsets[base + k] = best_phi[k]
        bands[2 * row], bands[2 * row + 1] = best_out, best_in
        return
    seed = 12345
    for start in range(STARTS):
        for k in range(n):
            if start == 0:  # outbound arcs aligned with the first intersection's
                target = start_out[base] + travel_out[base + k] - start_out[base + k] - travel_out[base]
            elif start == 1:  # inbound arcs aligned with the first intersection's
                target = start_in[base] - travel_in[base] + travel_in[base + k] - start_in[base + k]
            elif start == 2:
                target = 0.0
            else:  # pseudo-random grid positions (a fixed linear congruential sequence: reproducible)
                seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                target = (seed % slots) * step
            phi[k] = _grid(_wrap(target, cycle), step, slots) if k > 0 else 0.0
        cur_out, cur_in = _score(n, cycle, phi, start_out, length_out, travel_out, start_in, length_in, travel_in, base)
        for _ in range(MAX_SWEEPS):
            improved = False
            for k in range(1, n):
                keep = phi[k]  # move intersection k alone
                for s in range(slots):
                    phi[k] = s * step
                    b_out, b_in = _score(n, cycle, phi, start_out, length_out, travel_out, start_in, length_in,
                                         travel_in, base)
                    if _better(b_out, b_in, cur_out, cur_in):
                        cur_out, cur_in, keep, improved = b_out, b_in, phi[k], True
                phi[k] = keep
                for j in range(k, n):  # shift intersections k..n-1 together (changes only the link into k)
                    saved[j] = phi[j]
                shift = 0
                for s in range(1, slots):
                    for j in range(k, n):
                        phi[j] = _wrap(saved[j] + s * step, cycle)
                    b_out, b_in = _score(n, cycle, phi, start_out, length_out, travel_out, start_in, length_in,
                                         travel_in, base)
                    if _better(b_out, b_in, cur_out, cur_in):
                        cur_out, cur_in, shift, improved = b_out, b_in, s, True
                for j in range(k, n):
                    phi[j] = _wrap(saved[j] + shift * step, cycle) if shift > 0 else saved[j]
            if not improved:
                break
        if _better(cur_out, cur_in, best_out, best_in):
            best_out, best_in = cur_out, cur_in
            for k in range(n):
                best_phi[k] = phi[k]
    for k in range(n):
        offsets[base + k] = best_phi[k]
    bands[2 * row], bands[2 * row + 1] = best_out, best_in


def _grid(value: float, step: float, slots: int) -> float:
    """``value`` (s) rounded to the grid of ``step`` seconds within ``slots`` slots."""
    s = math.floor(value / step + 0.5)
    if s >= slots:
        s = 0
    return s * step
