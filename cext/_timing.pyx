# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of ``cext.timing_py``: bounded proportional (equisaturation) green splits.

Same operations in the same order as the twin; built with ``-ffp-contract=off`` so results are
equal bit for bit.
"""

DEF MAX_STAGES = 16


def split_greens(const double[::1] weights, const double[::1] min_s, const double[::1] max_s,
                 const int[::1] n_stages, const double[::1] available_s, double[::1] out, Py_ssize_t width):
    """Per row: share ``available_s`` (s) between ``n_stages`` stages by weight within [min_s, max_s] (s).

    Stage arrays are row-major, ``width`` values per row (element (i, j) at ``i * width + j``).
    """
    cdef Py_ssize_t rows = available_s.shape[0], i
    cdef Py_ssize_t cells = rows * width
    if (width < 1 or weights.shape[0] != cells or min_s.shape[0] != cells or max_s.shape[0] != cells
            or out.shape[0] != cells or n_stages.shape[0] != rows):
        raise ValueError(f"arrays must hold {rows} rows of width {width}")
    for i in range(rows):
        if n_stages[i] < 1 or n_stages[i] > MAX_STAGES or n_stages[i] > width:
            raise ValueError(f"n_stages[{i}] = {n_stages[i]} is outside 1..{min(MAX_STAGES, width)}")
    with nogil:
        for i in range(rows):
            _split_row(&weights[i * width], &min_s[i * width], &max_s[i * width], n_stages[i], available_s[i],
                       &out[i * width])


cdef void _split_row(const double* w, const double* low, const double* high, int n,
                     double available, double* g) noexcept nogil:
    cdef unsigned char free[MAX_STAGES]
    cdef int j, side, n_free, hit
    cdef double rest, total, share, bound
    for j in range(n):
        free[j] = 1
        g[j] = 0.0
    n_free = n
    for side in range(2):
        while n_free > 0:
            rest = available
            total = 0.0
            for j in range(n):
                if free[j]:
                    total = total + w[j]
                else:
                    rest = rest - g[j]
            hit = 0
            for j in range(n):
                if free[j]:
                    share = rest * (w[j] / total) if total > 0.0 else rest / n_free
                    bound = low[j] if side == 0 else high[j]
                    if (side == 0 and share < bound) or (side == 1 and share > bound):
                        g[j] = bound
                        free[j] = 0
                        hit = 1
            if hit:
                n_free = 0
                for j in range(n):
                    n_free = n_free + free[j]
                continue
            if side == 1:
                for j in range(n):
                    if free[j]:
                        g[j] = rest * (w[j] / total) if total > 0.0 else rest / n_free
                n_free = 0
            break
