"""The NumPy comparison of bench/timing.py computes the same designs as the kernel (so the
benchmark compares like with like)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from timing import Batch
from timing_numpy import design

from cext import timing


def test_numpy_design_matches_the_kernel() -> None:
    batch = Batch(300, seed=9)
    out = batch.outputs(300)
    timing.design_timings(*batch.inputs, *out, batch.width, batch.mwidth)
    result = design(batch.layout, batch.flow, batch.sat, batch.lanes, batch.pf)
    for name, index in (("cycle", 0), ("greens", 6), ("x", 9), ("delay", 10), ("queue", 11)):
        assert np.allclose(np.asarray(result[name]).ravel(), np.array(out[index]), rtol=1e-9, atol=1e-9), name
    assert np.allclose(result["intersection_delay"], np.array(out[4]), rtol=1e-9)
    assert (np.array(out[5]) & 1).any()  # some rows are oversaturated: that branch is compared too
