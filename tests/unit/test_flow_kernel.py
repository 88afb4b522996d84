"""The compiled PCU-flow kernel equals its pure-Python twin bit for bit."""

from __future__ import annotations

import array
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cext import flow, flow_py

counts = st.floats(0, 10_000, allow_nan=False)


def test_the_compiled_kernel_is_the_one_loaded() -> None:
    expected = "python" if os.environ.get("LALIN_NO_EXTENSIONS") == "1" else "cython"
    assert expected == flow.IMPLEMENTATION


@given(st.lists(st.tuples(counts, counts, counts, st.floats(0.5, 3600)), min_size=1, max_size=50),
       st.floats(0.1, 1.0), st.floats(0.5, 1.5), st.floats(0.8, 3.0))
def test_parity_with_the_twin(rows, emp_mc, emp_car, emp_heavy) -> None:
    columns = [array.array("d", col) for col in zip(*rows, strict=True)]
    compiled, twin = array.array("d", [0.0] * len(rows)), [0.0] * len(rows)
    flow.pcu_flow_veh_h(*columns, emp_mc, emp_car, emp_heavy, compiled)
    flow_py.pcu_flow_veh_h(*columns, emp_mc, emp_car, emp_heavy, twin)
    assert list(compiled) == twin  # exact, not approximate


def test_a_worked_example() -> None:
    """60 s: 50 motorcycles x 0.2 + 20 cars x 1.0 + 2 heavy x 1.3 = 32.6 pcu -> 1956 pcu/h."""
    out = array.array("d", [0.0])
    flow.pcu_flow_veh_h(array.array("d", [50]), array.array("d", [20]), array.array("d", [2]), array.array("d", [60]),
                        0.2, 1.0, 1.3, out)
    assert out[0] == pytest.approx(1956.0)


@pytest.mark.parametrize("kernel", [flow.pcu_flow_veh_h, flow_py.pcu_flow_veh_h])
def test_bad_input_is_refused_with_the_value_and_unit(kernel) -> None:
    one, out = array.array("d", [1.0]), array.array("d", [0.0])
    with pytest.raises(ValueError, match=r"interval_s\[0\] = 0.0 s must be > 0"):
        kernel(one, one, one, array.array("d", [0.0]), 0.2, 1.0, 1.3, out)
    with pytest.raises(ValueError, match="must have 1 rows"):
        kernel(one, one, one, one, 0.2, 1.0, 1.3, array.array("d", [0.0, 0.0]))
