"""Benchmark: the bounded green-split kernel, compiled (Cython) vs its pure-Python twin.

For N = 1, 100, 10,000 and 1,000,000 intersections of 4 stages each (random weights and
bounds), prints ns per intersection for both and their ratio, measured in the same run.
(The NumPy-vectorised comparison of the timing issue needs NumPy, not yet a dependency.)

Usage: python bench/timing.py [--sizes 1,100,10000,1000000]
"""

from __future__ import annotations

import argparse
import array
import random
import time

from cext import _timing, timing_py

WIDTH = 4


def inputs(n: int, seed: int = 11) -> list[array.array]:
    rng = random.Random(seed)
    lows = [rng.uniform(5, 15) for _ in range(n * WIDTH)]
    return [array.array("d", [rng.random() for _ in range(n * WIDTH)]), array.array("d", lows),
            array.array("d", [lo + rng.uniform(10, 60) for lo in lows]), array.array("i", [WIDTH] * n),
            array.array("d", [rng.uniform(60, 160) for _ in range(n)])]


def ns_per_row(kernel, args: list[array.array], n: int, min_time_s: float = 0.2) -> float:
    out = array.array("d", [0.0] * (n * WIDTH))
    repeats, elapsed = 0, 0.0
    started = time.perf_counter()
    while elapsed < min_time_s or repeats < 1:
        kernel(*args, out, WIDTH)
        repeats += 1
        elapsed = time.perf_counter() - started
    return elapsed / repeats / n * 1e9


def main(sizes: list[int]) -> None:
    print(f"bounded split, {WIDTH} stages per intersection; ns per intersection (lower is better)")
    print(f"{'N':>10} {'cython':>10} {'python twin':>12} {'twin / cython':>14}")
    for n in sizes:
        args = inputs(n)
        compiled = ns_per_row(_timing.split_greens, args, n)
        twin = ns_per_row(timing_py.split_greens, args, n, min_time_s=0.0 if n >= 100_000 else 0.2)
        print(f"{n:>10,} {compiled:>10.1f} {twin:>12.1f} {twin / compiled:>13.0f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,10000,1000000")
    main([int(s) for s in parser.parse_args().sizes.split(",")])
