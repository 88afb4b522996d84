"""The compiled split kernel equals its pure-Python twin bit for bit, and stays within bounds."""

from __future__ import annotations

import array
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cext import timing, timing_py


def test_the_compiled_kernel_is_the_one_loaded() -> None:
    expected = "python" if os.environ.get("LALIN_NO_EXTENSIONS") == "1" else "cython"
    assert expected == timing.IMPLEMENTATION


@st.composite
def batches(draw):
    width = draw(st.integers(2, 8))
    rows = draw(st.integers(1, 20))
    weights, lows, highs, counts, available = [], [], [], [], []
    for _ in range(rows):
        n = draw(st.integers(1, width))
        low = [draw(st.floats(0, 20)) for _ in range(width)]
        high = [lo + draw(st.floats(0, 80)) for lo in low]
        weights += [draw(st.floats(0, 1)) for _ in range(width)]
        lows += low
        highs += high
        counts.append(n)
        available.append(sum(low[:n]) + draw(st.floats(0, 200)))
    return width, [array.array("d", weights), array.array("d", lows), array.array("d", highs),
                   array.array("i", counts), array.array("d", available)]


@settings(max_examples=300)
@given(batches())
def test_parity_with_the_twin_and_bounds_hold(batch) -> None:
    width, inputs = batch
    compiled, twin = array.array("d", [0.0] * len(inputs[0])), array.array("d", [0.0] * len(inputs[0]))
    timing.split_greens(*inputs, compiled, width)
    timing_py.split_greens(*inputs, twin, width)
    assert compiled.tobytes() == twin.tobytes()  # bit for bit
    _, lows, highs, counts, available = inputs
    for i, n in enumerate(counts):
        row = compiled[i * width:i * width + n]
        assert all(lows[i * width + j] - 1e-9 <= g <= highs[i * width + j] + 1e-9 for j, g in enumerate(row))
        assert sum(row) <= available[i] + 1e-6  # never more than the effective green
        most = sum(highs[i * width:i * width + n])
        assert sum(row) == pytest.approx(min(available[i], most), rel=1e-9, abs=1e-6)  # and all of it when bounds allow


def test_a_stage_at_its_minimum_takes_up_what_the_others_cannot() -> None:
    out = array.array("d", [0.0] * 3)
    timing.split_greens(array.array("d", [1.0, 1.0, 1e-9]), array.array("d", [5.0, 5.0, 7.0]),
                        array.array("d", [35.0, 30.0, 45.0]), array.array("i", [3]), array.array("d", [93.0]), out, 3)
    assert list(out) == pytest.approx([35.0, 30.0, 28.0])


@pytest.mark.parametrize("kernel", [timing.split_greens, timing_py.split_greens])
def test_bad_shapes_are_refused(kernel) -> None:
    one = array.array("d", [1.0, 1.0])
    with pytest.raises(ValueError, match="2 rows of width 1"):
        kernel(one, one, one, array.array("i", [1, 1]), array.array("d", [1.0, 1.0]), array.array("d", [0.0]), 1)
    with pytest.raises(ValueError, match=r"n_stages\[0\] = 3 is outside 1..2"):
        kernel(one, one, one, array.array("i", [3]), array.array("d", [1.0]), array.array("d", [0.0, 0.0]), 2)
