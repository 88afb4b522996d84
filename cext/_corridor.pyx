# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of ``cext.corridor_py``: green-wave offsets for corridors with a common cycle.

Same operations in the same order as the twin (its docstring describes the method); built with
``-ffp-contract=off`` so results are equal bit for bit.
"""

from libc.math cimport floor, fmod

DEF MAX_INTERSECTIONS = 16
DEF MAX_SWEEPS = 50
DEF STARTS = 32


def corridor_offsets(const int[::1] n_int, const double[::1] cycle_s, const double[::1] step_s,
                     const long long[::1] exact_limit, const double[::1] start_out, const double[::1] length_out, const double[::1] travel_out,
                     const double[::1] start_in, const double[::1] length_in, const double[::1] travel_in,
                     double[::1] offsets_out, double[::1] bands_out, Py_ssize_t width):
    """Per row (corridor): offsets (s, ``width`` per row) and the bands achieved (outbound, inbound: 2 per row)."""
    from cext import corridor_py
    cdef Py_ssize_t rows = n_int.shape[0], i
    if width < 1:
        raise ValueError(f"width {width} must be >= 1")
    sizes = (("cycle_s", cycle_s.shape[0], rows), ("step_s", step_s.shape[0], rows),
             ("exact_limit", exact_limit.shape[0], rows),
             ("start_out", start_out.shape[0], rows * width), ("length_out", length_out.shape[0], rows * width),
             ("travel_out", travel_out.shape[0], rows * width), ("start_in", start_in.shape[0], rows * width),
             ("length_in", length_in.shape[0], rows * width), ("travel_in", travel_in.shape[0], rows * width),
             ("offsets_out", offsets_out.shape[0], rows * width), ("bands_out", bands_out.shape[0], rows * 2))
    for name, size, expected in sizes:
        if size != expected:
            raise ValueError(f"{name} holds {size} values, expected {expected}")
    for i in range(rows):  # few rows (corridors): the twin's checks and messages
        corridor_py._check_row(i, n_int, cycle_s, step_s, start_out, length_out, travel_out, start_in, length_in,
                               travel_in, width)
    with nogil:
        for i in range(rows):
            _optimise(n_int[i], cycle_s[i], step_s[i], exact_limit[i], &start_out[i * width], &length_out[i * width],
                      &travel_out[i * width], &start_in[i * width], &length_in[i * width], &travel_in[i * width],
                      &offsets_out[i * width], &bands_out[2 * i])


cdef inline double _wrap(double value, double cycle) noexcept nogil:
    value = fmod(value, cycle)
    if value < 0.0:
        value = value + cycle
    return value


cdef double _band(int n, double cycle, const double* phi, const double* start, const double* length,
                  const double* travel) noexcept nogil:
    cdef double arc[MAX_INTERSECTIONS]
    cdef double best = 0.0, t, band, d, left
    cdef int j, k
    for k in range(n):  # each arc's start once; the twin computes the same values
        arc[k] = _wrap(phi[k] + start[k] - travel[k], cycle)
    for j in range(n):
        t = arc[j]
        band = cycle
        for k in range(n):
            if length[k] >= cycle:
                continue
            d = _unwrap_difference(t - arc[k], cycle)
            left = length[k] - d if d < length[k] else 0.0
            if left < band:
                band = left
        if band > best:
            best = band
    return best


cdef inline double _unwrap_difference(double d, double cycle) noexcept nogil:
    # ``_wrap`` of the difference of two wrapped values (|d| <= cycle), without fmod: the same value
    if d < 0.0:
        return d + cycle
    if d >= cycle:
        return d - cycle
    return d


cdef inline bint _better(double a_out, double a_in, double b_out, double b_in) noexcept nogil:
    cdef double a_min = a_out if a_out < a_in else a_in
    cdef double b_min = b_out if b_out < b_in else b_in
    return a_out + a_in + a_min > b_out + b_in + b_min


cdef inline double _grid(double value, double step, int slots) noexcept nogil:
    cdef int s = <int> floor(value / step + 0.5)
    if s >= slots:
        s = 0
    return s * step


cdef void _optimise(int n, double cycle, double step, long long limit, const double* start_out, const double* length_out,
                    const double* travel_out, const double* start_in, const double* length_in,
                    const double* travel_in, double* offsets, double* bands) noexcept nogil:
    cdef double phi[MAX_INTERSECTIONS]
    cdef double best_phi[MAX_INTERSECTIONS]
    cdef double saved[MAX_INTERSECTIONS]
    cdef int slots = <int> floor(cycle / step)
    cdef double best_out = -1.0, best_in = -1.0, target, cur_out, cur_in, keep, b_out, b_in
    cdef int start, k, s, sweep, j, shift
    cdef bint improved
    cdef long long seed = 12345, combinations = 1, c
    cdef int digit[MAX_INTERSECTIONS]
    for k in range(1, n):
        combinations = combinations * slots
        if combinations > limit:
            break
    if combinations <= limit:
        for k in range(n):
            digit[k] = 0
            phi[k] = 0.0
        for c in range(combinations):
            b_out = _band(n, cycle, phi, start_out, length_out, travel_out)
            b_in = _band(n, cycle, phi, start_in, length_in, travel_in)
            if _better(b_out, b_in, best_out, best_in):
                best_out = b_out
                best_in = b_in
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
            offsets[k] = best_phi[k]
        bands[0] = best_out
        bands[1] = best_in
        return
    for start in range(STARTS):
        for k in range(n):
            if start == 0:
                target = start_out[0] + travel_out[k] - start_out[k] - travel_out[0]
            elif start == 1:
                target = start_in[0] - travel_in[0] + travel_in[k] - start_in[k]
            elif start == 2:
                target = 0.0
            else:
                seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
                target = (seed % slots) * step
            phi[k] = _grid(_wrap(target, cycle), step, slots) if k > 0 else 0.0
        cur_out = _band(n, cycle, phi, start_out, length_out, travel_out)
        cur_in = _band(n, cycle, phi, start_in, length_in, travel_in)
        for sweep in range(MAX_SWEEPS):
            improved = False
            for k in range(1, n):
                keep = phi[k]
                for s in range(slots):
                    phi[k] = s * step
                    b_out = _band(n, cycle, phi, start_out, length_out, travel_out)
                    b_in = _band(n, cycle, phi, start_in, length_in, travel_in)
                    if _better(b_out, b_in, cur_out, cur_in):
                        cur_out = b_out
                        cur_in = b_in
                        keep = phi[k]
                        improved = True
                phi[k] = keep
                for j in range(k, n):
                    saved[j] = phi[j]
                shift = 0
                for s in range(1, slots):
                    for j in range(k, n):
                        phi[j] = _wrap(saved[j] + s * step, cycle)
                    b_out = _band(n, cycle, phi, start_out, length_out, travel_out)
                    b_in = _band(n, cycle, phi, start_in, length_in, travel_in)
                    if _better(b_out, b_in, cur_out, cur_in):
                        cur_out = b_out
                        cur_in = b_in
                        shift = s
                        improved = True
                for j in range(k, n):
                    phi[j] = _wrap(saved[j] + shift * step, cycle) if shift > 0 else saved[j]
            if not improved:
                break
        if _better(cur_out, cur_in, best_out, best_in):
            best_out = cur_out
            best_in = cur_in
            for k in range(n):
                best_phi[k] = phi[k]
    for k in range(n):
        offsets[k] = best_phi[k]
    bands[0] = best_out
    bands[1] = best_in
