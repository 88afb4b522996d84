# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of ``cext.flow_py``: class counts -> passenger-car-unit flow rates.

Built with ``-ffp-contract=off`` so results equal the pure-Python twin bit for bit.
"""


def pcu_flow_veh_h(const double[::1] motorcycle, const double[::1] car, const double[::1] heavy,
                   const double[::1] interval_s, double emp_motorcycle, double emp_car,
                   double emp_heavy, double[::1] out):
    """PCU flow (pcu/h) per row: (mc*emp_mc + car*emp_car + heavy*emp_heavy) * 3600 / interval_s."""
    cdef Py_ssize_t n = motorcycle.shape[0], i
    if car.shape[0] != n or heavy.shape[0] != n or interval_s.shape[0] != n or out.shape[0] != n:
        raise ValueError(f"all arrays must have {n} rows")
    for i in range(n):
        if not interval_s[i] > 0.0:
            raise ValueError(f"interval_s[{i}] = {interval_s[i]} s must be > 0")
    with nogil:
        for i in range(n):
            out[i] = (motorcycle[i] * emp_motorcycle + car[i] * emp_car + heavy[i] * emp_heavy) * 3600.0 / interval_s[i]
