"""Pure-Python twin of ``cext._timing`` (the test oracle and the fallback): bounded splits.

Operations run in the same order as the compiled kernel, so results match bit for bit.
The algorithm, per row (intersection): share ``available_s`` between the stages in proportion
to their weights; fix every stage whose share falls below its minimum at the minimum and
share again (phase 0); then fix every stage above its maximum at the maximum and share again
(phase 1); the remaining stages get their shares. Equal shares when all weights are zero.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence

MAX_STAGES = 16


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


def _split_row(w: Sequence[float], low: Sequence[float], high: Sequence[float], n: int, available: float,  # noqa: PLR0912 (mirrors the kernel)
               g: MutableSequence[float], base: int) -> None:
    free = [True] * n
    for j in range(n):
        g[base + j] = 0.0
    n_free = n
    for side in range(2):
        while n_free > 0:
            rest, total = available, 0.0
            for j in range(n):
                if free[j]:
                    total = total + w[base + j]
                else:
                    rest = rest - g[base + j]
            hit = False
            for j in range(n):
                if free[j]:
                    share = rest * (w[base + j] / total) if total > 0.0 else rest / n_free
                    bound = low[base + j] if side == 0 else high[base + j]
                    if (side == 0 and share < bound) or (side == 1 and share > bound):
                        g[base + j], free[j], hit = bound, False, True
            if hit:
                n_free = sum(free)
                continue
            if side == 1:
                for j in range(n):
                    if free[j]:
                        g[base + j] = rest * (w[base + j] / total) if total > 0.0 else rest / n_free
                n_free = 0
            break
