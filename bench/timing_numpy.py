"""NumPy-vectorised timing design for a batch of intersections that share one plan layout: the
comparison point of ``bench/timing.py``. Same algorithm as ``cext.timing_py.design_timings``
(critical path, Webster, 16 equisaturation refinements of an exact water-filling split, HCM
delay and back of queue), vectorised over the rows; results agree with the kernel to ~1e-9,
not bit for bit (NumPy's reductions sum in another order).
"""

from __future__ import annotations

import itertools

import numpy as np

ITERATIONS, DRIVE_CAP, LEFTOVER_S = 16, 1000.0, 1e-9


class Layout:
    """The structure shared by every row: stages, bounds, interstages and movement masks."""

    def __init__(self, low: list[float], high: list[float], inter: list[float], masks: list[int],
                 cycle_min: float, cycle_max: float) -> None:
        self.n, self.m = len(low), len(masks)
        self.low, self.high, self.inter = np.array(low), np.array(high), np.array(inter)
        self.member = np.array([[(mask >> k) & 1 for k in range(self.n)] for mask in masks], dtype=bool)  # (m, n)
        full = (1 << self.n) - 1
        self.full = np.array([mask == full for mask in masks])
        self.credit = np.array([sum(inter[k] for k in range(self.n) if (mask >> k) & 1 and (mask >> ((k + 1) % self.n)) & 1)
                                for mask in masks])
        self.cycle_min, self.cycle_max = cycle_min, cycle_max
        self.lost_total = float(sum(inter))
        self.paths = self._paths(masks)

    def _paths(self, masks: list[int]) -> list[tuple[list[list[int]], float]]:
        """Every cover of the stage cycle by runs: (per segment the movements serving it exactly, lost time)."""
        out = []
        n = self.n
        for cuts in itertools.product([False, True], repeat=n):
            if not any(cuts):
                continue
            first = cuts.index(True) + 1  # a segment starts after each cut (cut k = after stage k)
            segments, current = [], []
            for step in range(n):
                k = (first + step) % n
                current.append(k)
                if cuts[k]:
                    segments.append(current)
                    current = []
            serving, ok = [], True
            for seg in segments:
                mask = sum(1 << k for k in seg)
                movers = [i for i, m in enumerate(masks) if m == mask]
                if len(seg) > 1 and not movers:
                    ok = False
                    break
                serving.append(movers)
            if ok:
                out.append((serving, float(sum(self.inter[k] for k in range(n) if cuts[k]))))
        return out


def _fill(u: np.ndarray, low: np.ndarray, high: np.ndarray, rest: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Vectorised water filling (see cext.timing_py._fill); updates g where u > 0, returns the leftover."""
    active = u > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(active, low / u, np.inf)
        b = np.where(active, high / u, np.inf)
    points = np.sort(np.concatenate([a, b], axis=1), axis=1)  # (N, 2n), inf last
    finite = np.isfinite(points)
    lam = np.where(finite, points, 0.0)
    extra = np.where(active[:, None, :], np.clip(lam[:, :, None] * u[:, None, :], low, high) - low, 0.0).sum(axis=2)
    reached = finite & (extra >= rest[:, None])
    idx = np.where(reached.any(axis=1), reached.argmax(axis=1), finite.sum(axis=1))
    rows = np.arange(len(rest))
    prev_idx = idx - 1
    previous = np.where(prev_idx >= 0, lam[rows, np.maximum(prev_idx, 0)], 0.0)
    f_previous = np.where(prev_idx >= 0, extra[rows, np.maximum(prev_idx, 0)], 0.0)
    point = np.where(idx < points.shape[1], points[rows, np.minimum(idx, points.shape[1] - 1)], np.inf)
    inside = active & (a <= previous[:, None]) & (b >= point[:, None])
    slope = np.where(inside, u, 0.0).sum(axis=1)
    ok = slope > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        share = previous[:, None] * u + (rest - f_previous)[:, None] * (u / np.where(ok, slope, 1.0)[:, None])
    filled = np.clip(share, low, high)
    fallback = np.where(b <= previous[:, None], high, g)
    new = np.where(active, np.where(ok[:, None], filled, fallback), g)
    leftover = rest - np.where(active, new - low, 0.0).sum(axis=1)
    g[:] = new
    return leftover


def split(w: np.ndarray, low: np.ndarray, high: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Bounded proportional split of ``available`` (s) per row."""
    g = np.broadcast_to(low, w.shape).copy()
    total = w.sum(axis=1)
    rest = available - low.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(total[:, None] > 0, np.where(w > 0, w / total[:, None], 0.0), 1.0)
    todo = rest > 0
    leftover = np.where(todo, _fill(np.where(todo[:, None], u, 0.0), low, high, rest, g), 0.0)
    again = (leftover > LEFTOVER_S) & (total > 0)
    if again.any():
        u2 = np.where(again[:, None] & (g < high), 1.0, 0.0)
        _fill(u2, low, high, np.where(again, leftover, 0.0), g)
    return g


def design(layout: Layout, flow: np.ndarray, sat: np.ndarray, lanes: np.ndarray, pf: np.ndarray,
           period_h: float = 0.25) -> dict[str, np.ndarray]:
    """Cycle, greens, X, delay and queue for every row (flows (N, m) in pcu/h)."""
    y = flow / sat
    best_y = np.full(len(flow), -1.0)
    best_l = np.zeros(len(flow))
    for serving, lost in layout.paths:
        total = np.zeros(len(flow))
        for movers in serving:
            total = total + (y[:, movers].max(axis=1) if movers else 0.0)
        better = (total > best_y) | ((total == best_y) & (lost > best_l))
        best_y, best_l = np.where(better, total, best_y), np.where(better, lost, best_l)
    with np.errstate(divide="ignore"):
        webster = np.where(best_y >= 1.0, np.inf, (1.5 * best_l + 5.0) / (1.0 - best_y))
    asked = np.where(best_y >= 1.0, layout.cycle_max, webster)
    needed = layout.lost_total + layout.low.sum()
    cycle = np.minimum(np.maximum(np.maximum(asked, layout.cycle_min), needed), layout.cycle_max)
    r = layout.member.sum(axis=1)
    w = np.where(layout.member[None, :, :] & ~layout.full[None, :, None], (y / r)[:, :, None], 0.0).max(axis=1)
    movable = layout.member & ~layout.full[:, None]
    for it in range(ITERATIONS):
        g = split(w, layout.low, layout.high, cycle - layout.lost_total)
        geff = layout.credit + g @ layout.member.T.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(geff > 0, y * cycle[:, None] / geff, np.where(y > 0, np.inf, 0.0))
        if it == ITERATIONS - 1:
            break
        drive = np.minimum(np.where(movable[None, :, :], x[:, :, None], 0.0).max(axis=1), DRIVE_CAP)
        top = drive.max(axis=1)
        w = np.where(top[:, None] > 0, w * (drive / np.where(top > 0, top, 1.0)[:, None]), w)
    actual = layout.lost_total + g.sum(axis=1)
    geff = np.where(layout.full, actual[:, None], layout.credit + g @ layout.member.T.astype(float))
    ratio = geff / actual[:, None]
    cap = sat * ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = np.where(cap > 0, flow / cap, np.where(flow > 0, np.inf, 0.0))
        capped = np.minimum(xm, 1.0)
        d1 = np.where(ratio >= 1, 0.0, 0.5 * actual[:, None] * (1 - ratio) ** 2 / (1 - capped * ratio))
        q1 = np.where(ratio >= 1, 0.0, (flow / lanes) * actual[:, None] / 3600 * (1 - ratio) / (1 - capped * ratio))
        d2 = 900 * period_h * ((xm - 1) + np.sqrt((xm - 1) ** 2 + 8 * 0.5 * xm / (cap * period_h)))
        cap_lane = cap / lanes
        k_b = 0.12 * (sat / lanes * geff / 3600) ** 0.7
        q2 = 0.25 * cap_lane * period_h * ((xm - 1) + np.sqrt((xm - 1) ** 2 + 8 * k_b * xm / (cap_lane * period_h)))
    delay = d1 * pf + d2
    weighted = np.where(flow > 0, flow * delay, 0.0).sum(axis=1)
    total_flow = flow.sum(axis=1)
    return {"cycle": actual, "greens": g, "x": xm, "delay": delay, "queue": q1 + q2,
            "intersection_delay": np.where(total_flow > 0, weighted / np.where(total_flow > 0, total_flow, 1), 0.0)}
