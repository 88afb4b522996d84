"""Benchmark: timing design for N intersections — compiled kernel vs its pure-Python twin vs NumPy.

For N = 1, 100, 10,000 and 1,000,000 intersections with the K01 plan's layout (3 stages, 5
signalised movements, one of them green over two stages) and random demand (35-190 % of the
demo counts), each implementation computes the whole design: critical path, Webster's cycle,
16 equisaturation refinements of the bounded split, HCM delay and back of queue. Prints ns per
intersection and the ratios, measured in this run. The twin is timed on at most 2,000 rows
(its cost per row does not depend on N). Then: the bounded split alone, and the corridor offset
search (10 intersections).

Usage: python bench/timing.py [--sizes 1,100,10000,1000000] [--min-time 0.3]
"""

from __future__ import annotations

import argparse
import array
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing_numpy import Layout, design

from cext import _corridor, _timing, corridor_py, timing_py
from controllers.timing_design import _layout
from infra.plans import PLANS_DIR, load_plan

BASE_PCU_H = {"N_T": 1498.0, "N_R": 286.5, "S_TR": 972.0, "E_A": 493.0, "W_A": 495.6}  # K01 AM peak
TWIN_ROWS = 2000


class Batch:
    """N rows of the K01 layout with random demand, as the kernel's flat arrays and as NumPy arrays."""

    def __init__(self, n: int, seed: int = 3) -> None:
        plan = load_plan(PLANS_DIR / "K01.yaml")
        lay = _layout(plan)
        rng = np.random.default_rng(seed)
        self.n, self.width, self.mwidth = n, len(plan.sequence), len(lay.movements)
        base = np.array([BASE_PCU_H[m[0]] for m in lay.movements])
        self.flow = base * rng.uniform(0.35, 1.9, size=(n, self.mwidth))
        self.sat = np.tile([m[3] for m in lay.movements], (n, 1))
        self.lanes = np.tile([m[4] for m in lay.movements], (n, 1))
        self.pf = np.ones((n, self.mwidth))
        masks = [m[2] for m in lay.movements]
        self.layout = Layout([b[0] for b in lay.bounds], [b[1] for b in lay.bounds], lay.interstages, masks,
                             plan.cycle.min_s, plan.cycle.max_s)
        d = lambda values: array.array("d", np.asarray(values, dtype=float).ravel().tolist())  # noqa: E731
        self.inputs = [array.array("i", [self.width] * n), array.array("i", [self.mwidth] * n),
                       d([plan.cycle.min_s] * n), d([plan.cycle.max_s] * n), d([0.0] * n), d([0.25] * n),
                       d([b[0] for b in lay.bounds] * n), d([b[1] for b in lay.bounds] * n), d(lay.interstages * n),
                       array.array("i", masks * n), d(self.flow), d(self.sat), d(self.lanes), d(self.pf)]

    def outputs(self, rows: int) -> list[array.array]:
        return ([array.array("d", bytes(8 * rows)) for _ in range(5)] + [array.array("i", bytes(4 * rows))]
                + [array.array("d", bytes(8 * rows * self.width)) for _ in range(2)]
                + [array.array("d", bytes(8 * rows * self.mwidth)) for _ in range(4)])

    def head(self, rows: int) -> list[array.array]:
        """The first ``rows`` rows of the inputs."""
        per_row = [1, 1, 1, 1, 1, 1, self.width, self.width, self.width, self.mwidth, self.mwidth, self.mwidth,
                   self.mwidth, self.mwidth]
        return [a[:rows * k] for a, k in zip(self.inputs, per_row, strict=True)]


def seconds(run, min_time_s: float) -> float:
    """Mean seconds per call of ``run``, repeated for at least ``min_time_s``."""
    repeats, started = 0, time.perf_counter()
    while True:
        run()
        repeats += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_time_s:
            return elapsed / repeats


def bench_design(sizes: list[int], min_time_s: float) -> None:
    print("timing design (K01 layout: 3 stages, 5 movements), ns per intersection")
    print(f"{'N':>10} {'cython':>10} {'python twin':>12} {'numpy':>10} {'twin/cython':>12} {'numpy/cython':>13}"
          f" {'max |numpy-cython| (cycle s, delay s)':>38}")
    for n in sizes:
        batch = Batch(n)
        out = batch.outputs(n)
        compiled = seconds(lambda b=batch, o=out, n=n: _timing.design_timings(*b.inputs, *o, b.width, b.mwidth),
                           min_time_s) / n
        rows = min(n, TWIN_ROWS)
        head, twin_out = batch.head(rows), batch.outputs(rows)
        twin = seconds(lambda b=batch, h=head, o=twin_out: timing_py.design_timings(*h, *o, b.width, b.mwidth),
                       min_time_s if rows < TWIN_ROWS else 0.0) / rows
        vectorised = seconds(lambda b=batch: design(b.layout, b.flow, b.sat, b.lanes, b.pf), min_time_s) / n
        result = design(batch.layout, batch.flow, batch.sat, batch.lanes, batch.pf)
        cycle_diff = float(np.max(np.abs(result["cycle"] - np.array(out[0]))))
        delay_diff = float(np.max(np.abs(result["delay"].ravel() - np.array(out[10]))))
        print(f"{n:>10,} {compiled * 1e9:>10.0f} {twin * 1e9:>12.0f} {vectorised * 1e9:>10.0f} {twin / compiled:>11.0f}x"
              f" {vectorised / compiled:>12.1f}x {cycle_diff:>19.1e} {delay_diff:>18.1e}")


def bench_split(sizes: list[int], min_time_s: float, width: int = 4) -> None:
    print(f"\nbounded split alone ({width} stages), ns per intersection")
    print(f"{'N':>10} {'cython':>10} {'python twin':>12} {'twin/cython':>12}")
    rng = random.Random(11)
    for n in sizes:
        lows = [rng.uniform(5, 15) for _ in range(n * width)]
        args = [array.array("d", [rng.random() for _ in range(n * width)]), array.array("d", lows),
                array.array("d", [lo + rng.uniform(10, 60) for lo in lows]), array.array("i", [width] * n),
                array.array("d", [rng.uniform(60, 160) for _ in range(n)])]
        out = array.array("d", bytes(8 * n * width))
        compiled = seconds(lambda a=args, o=out: _timing.split_greens(*a, o, width), min_time_s) / n
        rows = min(n, 20_000)
        head = [a[:rows * width] for a in args[:3]] + [args[3][:rows], args[4][:rows]]
        twin_out = array.array("d", bytes(8 * rows * width))
        twin = seconds(lambda h=head, o=twin_out: timing_py.split_greens(*h, o, width), min_time_s) / rows
        print(f"{n:>10,} {compiled * 1e9:>10.0f} {twin * 1e9:>12.0f} {twin / compiled:>11.0f}x")


def bench_corridor(min_time_s: float, n: int = 10, cycle: float = 120.0) -> None:
    rng = random.Random(5)
    chain = sorted(rng.uniform(0, 5000) for _ in range(n))
    windows = [[rng.uniform(0, cycle) for _ in range(n)], [rng.uniform(30, 70) for _ in range(n)],
               [(x - chain[0]) / 11.1 for x in chain], [rng.uniform(0, cycle) for _ in range(n)],
               [rng.uniform(30, 70) for _ in range(n)], [(chain[-1] - x) / 11.1 for x in chain]]
    args = [array.array("i", [n]), array.array("d", [cycle]), array.array("d", [1.0]), array.array("q", [0]),
            *(array.array("d", w) for w in windows)]
    outs = (array.array("d", bytes(8 * n)), array.array("d", bytes(16)))
    compiled = seconds(lambda: _corridor.corridor_offsets(*args, *outs, n), min_time_s)
    twin = seconds(lambda: corridor_py.corridor_offsets(*args, *outs, n), 0.0)
    print(f"\ncorridor offsets ({n} intersections, {cycle:g} s cycle, 1 s grid, local search): cython {compiled * 1e3:.1f} ms, "
          f"python twin {twin * 1e3:.0f} ms, twin/cython {twin / compiled:.0f}x; bands {outs[1][0]:.1f} s / {outs[1][1]:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,10000,1000000")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds to repeat each measurement for")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    bench_design(sizes, options.min_time)
    bench_split(sizes, options.min_time)
    bench_corridor(options.min_time)
