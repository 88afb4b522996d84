# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of ``cext.timing_py``: bounded proportional splits and timing design.

Same operations in the same order as the twin (read its docstrings for the algorithms); built
with ``-ffp-contract=off`` so results are equal bit for bit.
"""

from libc.math cimport INFINITY, NAN, pow, sqrt

DEF MAX_STAGES = 16
DEF LEFTOVER_S = 1e-9
DEF MIN_SHARE = 1e-12
DEF MAX_MOVEMENTS = 32
DEF ITERATIONS = 16
DEF OVERSATURATED = 1
DEF CYCLE_CLAMPED = 2
DEF AT_MAXIMA = 4
DEF INFEASIBLE = 8
DEF OVER_CAPACITY = 16
DEF DRIVE_CAP = 1000.0
DEF K_PRETIMED = 0.5
DEF I_ISOLATED = 1.0


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


cdef inline double _clamp(double value, double low, double high) noexcept nogil:
    if value < low:
        value = low
    if value > high:
        value = high
    return value


cdef void _split_row(const double* w, const double* low, const double* high, int n, double available,
                     double* g) noexcept nogil:
    cdef double u[MAX_STAGES]
    cdef double total = 0.0, rest = available
    cdef int j
    for j in range(n):
        total = total + w[j]
        g[j] = low[j]
        rest = rest - low[j]
    if rest <= 0.0:
        return
    for j in range(n):
        if total > 0.0:
            u[j] = w[j] / total if w[j] / total >= MIN_SHARE else 0.0
        else:
            u[j] = 1.0
    rest = _fill(u, low, high, n, rest, g)
    if rest > LEFTOVER_S and total > 0.0:
        for j in range(n):
            u[j] = 1.0 if g[j] < high[j] else 0.0
        _fill(u, low, high, n, rest, g)


cdef double _extra(const double* u, const double* low, const double* high, int n, double lam) noexcept nogil:
    cdef double f = 0.0
    cdef int j
    for j in range(n):
        if u[j] > 0.0:
            f = f + (_clamp(lam * u[j], low[j], high[j]) - low[j])
    return f


cdef double _fill(const double* u, const double* low, const double* high, int n, double rest,
                  double* g) noexcept nogil:
    cdef double points[2 * MAX_STAGES]
    cdef double bound, previous = 0.0, f_previous = 0.0, point, f, slope, assigned
    cdef int count = 0, j, k, p, side
    for j in range(n):
        if u[j] > 0.0:
            for side in range(2):
                bound = low[j] / u[j] if side == 0 else high[j] / u[j]
                if bound < INFINITY:
                    k = count
                    while k > 0 and points[k - 1] > bound:
                        points[k] = points[k - 1]
                        k = k - 1
                    points[k] = bound
                    count = count + 1
    for p in range(count + 1):
        point = INFINITY
        if p < count:
            point = points[p]
            f = _extra(u, low, high, n, point)
            if f < rest:
                previous = point
                f_previous = f
                continue
        slope = 0.0
        for j in range(n):
            if u[j] > 0.0 and low[j] / u[j] <= previous and high[j] / u[j] >= point:
                slope = slope + u[j]
        if slope <= 0.0:
            break
        assigned = 0.0
        for j in range(n):
            if u[j] > 0.0:
                g[j] = _clamp(previous * u[j] + (rest - f_previous) * (u[j] / slope), low[j], high[j])
                assigned = assigned + (g[j] - low[j])
        return rest - assigned
    for j in range(n):
        if u[j] > 0.0 and high[j] / u[j] <= previous:
            g[j] = high[j]
    return rest - f_previous


def design_timings(const int[::1] n_stages, const int[::1] n_mov, const double[::1] cycle_min_s,
                   const double[::1] cycle_max_s, const double[::1] cycle_fixed_s, const double[::1] period_h,
                   const double[::1] stage_min_s, const double[::1] stage_max_s, const double[::1] interstage_s,
                   const int[::1] mask, const double[::1] flow_pcu_h, const double[::1] saturation_pcu_h,
                   const double[::1] lanes, const double[::1] progression,
                   double[::1] cycle_out, double[::1] y_out, double[::1] lost_out, double[::1] webster_out,
                   double[::1] delay_out, int[::1] flags_out, double[::1] green_out, double[::1] stage_x_out,
                   double[::1] effective_green_out, double[::1] x_out, double[::1] movement_delay_out,
                   double[::1] queue_out, Py_ssize_t width, Py_ssize_t mwidth):
    """Per row (intersection): design a timing and evaluate it (see ``cext.timing_py.design_timings``)."""
    cdef Py_ssize_t rows = n_stages.shape[0], i
    if width < 1 or mwidth < 1:
        raise ValueError(f"width {width} and mwidth {mwidth} must be >= 1")
    sizes = (("n_mov", n_mov.shape[0], rows), ("cycle_min_s", cycle_min_s.shape[0], rows),
             ("cycle_max_s", cycle_max_s.shape[0], rows), ("cycle_fixed_s", cycle_fixed_s.shape[0], rows),
             ("period_h", period_h.shape[0], rows), ("stage_min_s", stage_min_s.shape[0], rows * width),
             ("stage_max_s", stage_max_s.shape[0], rows * width), ("interstage_s", interstage_s.shape[0], rows * width),
             ("mask", mask.shape[0], rows * mwidth), ("flow_pcu_h", flow_pcu_h.shape[0], rows * mwidth),
             ("saturation_pcu_h", saturation_pcu_h.shape[0], rows * mwidth), ("lanes", lanes.shape[0], rows * mwidth),
             ("progression", progression.shape[0], rows * mwidth), ("cycle_out", cycle_out.shape[0], rows),
             ("y_out", y_out.shape[0], rows), ("lost_out", lost_out.shape[0], rows),
             ("webster_out", webster_out.shape[0], rows), ("delay_out", delay_out.shape[0], rows),
             ("flags_out", flags_out.shape[0], rows), ("green_out", green_out.shape[0], rows * width),
             ("stage_x_out", stage_x_out.shape[0], rows * width),
             ("effective_green_out", effective_green_out.shape[0], rows * mwidth),
             ("x_out", x_out.shape[0], rows * mwidth), ("movement_delay_out", movement_delay_out.shape[0], rows * mwidth),
             ("queue_out", queue_out.shape[0], rows * mwidth))
    for name, size, expected in sizes:
        if size != expected:
            raise ValueError(f"{name} holds {size} values, expected {expected}")
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(rows):
            if not _row_ok(i, n_stages, n_mov, cycle_min_s, cycle_max_s, period_h, stage_min_s, stage_max_s,
                           interstage_s, mask, flow_pcu_h, saturation_pcu_h, lanes, progression, width, mwidth):
                bad = i
                break
    if bad >= 0:  # the twin words the message (same conditions)
        from cext import timing_py
        timing_py._check_row(bad, n_stages, n_mov, cycle_min_s, cycle_max_s, period_h, stage_min_s, stage_max_s,
                             interstage_s, mask, flow_pcu_h, saturation_pcu_h, lanes, progression, width, mwidth)
        raise ValueError(f"row {bad}: invalid input")
    with nogil:
        for i in range(rows):
            _design_row(i, n_stages[i], n_mov[i], cycle_min_s[i], cycle_max_s[i], cycle_fixed_s[i], period_h[i],
                        &stage_min_s[i * width], &stage_max_s[i * width], &interstage_s[i * width], &mask[i * mwidth],
                        &flow_pcu_h[i * mwidth], &saturation_pcu_h[i * mwidth], &lanes[i * mwidth],
                        &progression[i * mwidth], &cycle_out[0], &y_out[0], &lost_out[0], &webster_out[0],
                        &delay_out[0], &flags_out[0], &green_out[i * width], &stage_x_out[i * width],
                        &effective_green_out[i * mwidth], &x_out[i * mwidth], &movement_delay_out[i * mwidth],
                        &queue_out[i * mwidth])


cdef bint _row_ok(Py_ssize_t i, const int[::1] n_stages, const int[::1] n_mov, const double[::1] cycle_min_s,
                  const double[::1] cycle_max_s, const double[::1] period_h, const double[::1] stage_min_s,
                  const double[::1] stage_max_s, const double[::1] interstage_s, const int[::1] mask,
                  const double[::1] flow_pcu_h, const double[::1] saturation_pcu_h, const double[::1] lanes,
                  const double[::1] progression, Py_ssize_t width, Py_ssize_t mwidth) noexcept nogil:
    """The conditions of ``cext.timing_py._check_row``, without the messages."""
    cdef int n = n_stages[i], nm = n_mov[i]
    cdef Py_ssize_t k
    if n < 1 or n > MAX_STAGES or n > width or nm < 0 or nm > MAX_MOVEMENTS or nm > mwidth:
        return False
    if not (cycle_min_s[i] > 0.0 and cycle_max_s[i] >= cycle_min_s[i] and cycle_max_s[i] < INFINITY):
        return False
    if not (period_h[i] > 0.0 and period_h[i] < INFINITY):
        return False
    for k in range(i * width, i * width + n):
        if not (stage_min_s[k] >= 0.0 and stage_max_s[k] >= stage_min_s[k] and interstage_s[k] >= 0.0
                and interstage_s[k] < INFINITY and stage_min_s[k] < INFINITY):
            return False
    for k in range(i * mwidth, i * mwidth + nm):
        if not (0 < mask[k] < (1 << n)):
            return False
        if not (flow_pcu_h[k] >= 0.0 and flow_pcu_h[k] < INFINITY and saturation_pcu_h[k] > 0.0
                and saturation_pcu_h[k] < INFINITY and lanes[k] >= 1.0 and lanes[k] < INFINITY
                and progression[k] >= 0.0 and progression[k] < INFINITY):
            return False
    return True


cdef void _critical_path(int n, int nm, const int* mask, const double* y, const double* inter,
                         double* best_y_out, double* best_l_out) noexcept nogil:
    cdef double val_y[MAX_STAGES + 1]
    cdef double val_l[MAX_STAGES + 1]
    cdef double best_y = -1.0, best_l = 0.0, seg_y, cand_y, cand_l
    cdef int b, k, j, t, m, seg
    for b in range(n):
        val_y[0] = 0.0
        val_l[0] = 0.0
        for k in range(1, n + 1):
            val_y[k] = -1.0
            val_l[k] = 0.0
            for j in range(k):
                if val_y[j] < 0.0:
                    continue
                seg = 0
                for t in range(j, k):
                    seg = seg | (1 << ((b + t) % n))
                seg_y = 0.0 if k - j == 1 else -1.0
                for m in range(nm):
                    if mask[m] == seg and y[m] > seg_y:
                        seg_y = y[m]
                if seg_y < 0.0:
                    continue
                cand_y = val_y[j] + seg_y
                cand_l = val_l[j] + inter[(b + k - 1) % n]
                if cand_y > val_y[k] or (cand_y == val_y[k] and cand_l > val_l[k]):
                    val_y[k] = cand_y
                    val_l[k] = cand_l
        if val_y[n] > best_y or (val_y[n] == best_y and val_l[n] > best_l):
            best_y = val_y[n]
            best_l = val_l[n]
    best_y_out[0] = best_y
    best_l_out[0] = best_l


cdef void _fail(Py_ssize_t i, int n, int nm, int flags, double* cycle_out, double* delay_out, int* flags_out,
                double* green_out, double* stage_x_out, double* geff_out, double* x_out, double* dm_out,
                double* q_out) noexcept nogil:
    cdef int k, m
    cycle_out[i] = NAN
    delay_out[i] = NAN
    flags_out[i] = flags
    for k in range(n):
        green_out[k] = NAN
        stage_x_out[k] = NAN
    for m in range(nm):
        geff_out[m] = NAN
        x_out[m] = NAN
        dm_out[m] = NAN
        q_out[m] = NAN


cdef void _design_row(Py_ssize_t i, int n, int nm, double cycle_min, double cycle_max, double cycle_fixed,
                      double period, const double* low, const double* high, const double* inter, const int* mask,
                      const double* flow, const double* sat, const double* lanes, const double* pf,
                      double* cycle_out, double* y_out, double* lost_out, double* webster_out, double* delay_out,
                      int* flags_out, double* green_out, double* stage_x_out, double* geff_out, double* x_out,
                      double* dm_out, double* q_out) noexcept nogil:
    cdef int full = (1 << n) - 1
    cdef double y[MAX_MOVEMENTS]
    cdef double credit[MAX_MOVEMENTS]
    cdef double x[MAX_MOVEMENTS]
    cdef double w[MAX_STAGES]
    cdef double drive[MAX_STAGES]
    cdef double g[MAX_STAGES]
    cdef int flags = 0, k, m, r, it
    cdef double lost_total = 0.0, needed = 0.0, big_y, lost_path, webster, asked, cycle, geff, top, actual
    cdef double total_flow, weighted, ratio, cap, v, xm, capped, d1, q1, d2, q2, cap_lane, k_b, d
    for k in range(n):
        lost_total = lost_total + inter[k]
        needed = needed + low[k]
    needed = needed + lost_total
    for m in range(nm):
        y[m] = flow[m] / sat[m]
        credit[m] = 0.0
        for k in range(n):
            if (mask[m] >> k) & 1 and (mask[m] >> ((k + 1) % n)) & 1:
                credit[m] = credit[m] + inter[k]
    _critical_path(n, nm, mask, y, inter, &big_y, &lost_path)
    y_out[i] = big_y
    lost_out[i] = lost_path
    if big_y >= 1.0:
        webster = INFINITY
        flags = flags | OVERSATURATED
        asked = cycle_max
    else:
        webster = (1.5 * lost_path + 5.0) / (1.0 - big_y)
        asked = webster
    webster_out[i] = webster
    if cycle_fixed > 0.0:
        asked = cycle_fixed
    if needed > cycle_max:
        _fail(i, n, nm, flags | INFEASIBLE, cycle_out, delay_out, flags_out, green_out, stage_x_out, geff_out, x_out,
              dm_out, q_out)
        return
    cycle = asked
    if cycle < cycle_min:
        cycle = cycle_min
    if cycle < needed:
        cycle = needed
    if cycle > cycle_max:
        cycle = cycle_max
    if cycle != asked:
        flags = flags | CYCLE_CLAMPED
    for k in range(n):
        w[k] = 0.0
    for m in range(nm):
        if mask[m] == full:
            continue
        r = 0
        for k in range(n):
            r = r + ((mask[m] >> k) & 1)
        for k in range(n):
            if (mask[m] >> k) & 1 and y[m] / r > w[k]:
                w[k] = y[m] / r
    for it in range(ITERATIONS):
        _split_row(w, low, high, n, cycle - lost_total, g)
        for m in range(nm):
            geff = credit[m]
            for k in range(n):
                if (mask[m] >> k) & 1:
                    geff = geff + g[k]
            if geff > 0.0:
                x[m] = y[m] * cycle / geff
            else:
                x[m] = INFINITY if y[m] > 0.0 else 0.0
        if it == ITERATIONS - 1:
            break
        top = 0.0
        for k in range(n):
            drive[k] = 0.0
            for m in range(nm):
                if mask[m] != full and (mask[m] >> k) & 1 and x[m] > drive[k]:
                    drive[k] = x[m]
            if drive[k] > DRIVE_CAP:
                drive[k] = DRIVE_CAP
            if drive[k] > top:
                top = drive[k]
        if top <= 0.0:
            break
        for k in range(n):
            w[k] = w[k] * (drive[k] / top)
    actual = lost_total
    for k in range(n):
        actual = actual + g[k]
        green_out[k] = g[k]
    if actual < cycle_min - 1e-9:
        _fail(i, n, nm, flags | INFEASIBLE, cycle_out, delay_out, flags_out, green_out, stage_x_out, geff_out, x_out,
              dm_out, q_out)
        return
    if actual < cycle - 1e-9:
        flags = flags | AT_MAXIMA
    cycle_out[i] = actual
    total_flow = 0.0
    weighted = 0.0
    for m in range(nm):
        geff = credit[m]
        for k in range(n):
            if (mask[m] >> k) & 1:
                geff = geff + g[k]
        if mask[m] == full:
            geff = actual
        ratio = geff / actual
        cap = sat[m] * ratio
        v = flow[m]
        if cap > 0.0:
            xm = v / cap
        else:
            xm = INFINITY if v > 0.0 else 0.0
        capped = xm if xm < 1.0 else 1.0
        if ratio >= 1.0:
            d1 = 0.0
            q1 = 0.0
        else:
            d1 = 0.5 * actual * ((1.0 - ratio) * (1.0 - ratio)) / (1.0 - capped * ratio)
            q1 = (v / lanes[m]) * actual / 3600.0 * (1.0 - ratio) / (1.0 - capped * ratio)
        if cap > 0.0:
            d2 = 900.0 * period * ((xm - 1.0) + sqrt((xm - 1.0) * (xm - 1.0)
                                                     + 8.0 * K_PRETIMED * I_ISOLATED * xm / (cap * period)))
            cap_lane = cap / lanes[m]
            k_b = 0.12 * I_ISOLATED * pow(sat[m] / lanes[m] * geff / 3600.0, 0.7)
            q2 = 0.25 * cap_lane * period * ((xm - 1.0) + sqrt((xm - 1.0) * (xm - 1.0)
                                                              + 8.0 * k_b * xm / (cap_lane * period)))
        else:
            d2 = INFINITY if v > 0.0 else 0.0
            q2 = INFINITY if v > 0.0 else 0.0
        d = d1 * pf[m] + d2
        if xm > 1.0:
            flags = flags | OVER_CAPACITY
        geff_out[m] = geff
        x_out[m] = xm
        dm_out[m] = d
        q_out[m] = q1 + q2
        if v > 0.0:
            total_flow = total_flow + v
            weighted = weighted + v * d
    delay_out[i] = weighted / total_flow if total_flow > 0.0 else 0.0
    for k in range(n):
        stage_x_out[k] = 0.0
        for m in range(nm):
            if (mask[m] >> k) & 1 and x_out[m] > stage_x_out[k]:
                stage_x_out[k] = x_out[m]
    flags_out[i] = flags
