# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The guided particle filter over seen vesicles (docs/design.rst, "Inference on partial observations").

For geometric lifetimes, content that does not act and a release budget of 1
or infinity, vesicles of one type at one node are exchangeable, so a
particle's state is the number of *seen* vesicles (seen at least once, in a
count or a dock) per node and type. The never-seen vesicles form a Poisson
population whose rates are the same for every particle; they arrive here as
the per-step rates of the three ways of being seen for the first time at a node:
``A`` (dock and count seen), ``B`` (dock seen, count not) and ``C`` (count
seen, dock not).

One step of one particle (:c:func:`gstep`):

1. each seen vesicle draws its outcome (destination, docked, alive) from a
   proposal that looks at the step's observation: the prior of the outcome
   times the ratio of the predictive probability of the observation at its
   destination with and without it, the vesicles not yet drawn standing in as
   Poisson counts of their expected arrivals (:c:func:`ell`); the weight
   collects ``p / q``;
2. the observation's exact probability given the drawn seen vesicles
   (binomial detection of them, Poisson detection of the never-seen) multiplies
   the weight, and the split of the observation into re-seen and newly seen
   vesicles is drawn from its exact conditional; the newly seen join the state.

The weight is exact, so ``Ẑ`` is unbiased whatever the quality of the proposal.
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport INFINITY, exp, isinf, lgamma, log, log1p
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memset

from ._weights cimport advance, normalise, systematic
from ._rng cimport Rng, rng_make, rng_seed, uniform
from ._state cimport DOM_GUIDED, DOM_RESAMPLE

cnp.import_array()

#: log-factorials tabulated below this count (lgamma above)
DEF LF_SIZE = 4096


cdef struct Det:
    # a detection probability and its logarithms
    double p
    double lp       # log p
    double lq       # log(1 - p)
    double odds     # p / (1 - p)


cdef struct GModel:
    # ---- sizes
    int n               # nodes
    int K               # types
    int M               # candidate slots per node
    int Tt              # steps of the move and dock tables (1 when constant in time)
    # ---- graph
    const int32_t* cand     # (n, M) candidate nodes, -1 padded
    const int32_t* ncand    # (n,) candidates; 0 for a sink
    # ---- life cycle of one vesicle
    const double* P         # (Tt, K, n, M) move probability per slot (tilted where the model tilts)
    const double* pd        # (Tt, n, K) dock probability at the new node
    const double* sv        # (n, K) survival (1 - a_j)(1 - δ_κ) after docking
    const int32_t* b1       # (K,) 1 when the budget is one release (a dock removes the vesicle)
    # ---- the never-seen population, per step (T, n, K)
    const double* nuA       # rate of first sightings in a dock and a count
    const double* nuB       # ... in a dock only
    const double* nuC       # ... in a count only
    const double* fB        # share of the B sightings that are still alive
    # ---- observations (T, n, K) and detection
    const int64_t* y
    const int64_t* D
    int has_y
    int has_d
    Det dc              # count detection (p = 0 when counts are not observed)
    Det dd              # dock detection (p = 0 when docks are not observed)
    const double* lf    # (LF_SIZE,) log k!


cdef inline double lfact(const GModel* g, int64_t k) noexcept nogil:
    if k < LF_SIZE:
        return g.lf[k]
    return lgamma(k + 1.0)


cdef inline double lpois(const GModel* g, int64_t k, double lam) noexcept nogil:
    """log Poisson(k; lam)."""
    if k < 0:
        return -INFINITY
    if lam <= 0.0:
        return 0.0 if k == 0 else -INFINITY
    return k * log(lam) - lam - lfact(g, k)


cdef inline double lbinom(const GModel* g, int64_t x, int64_t N, const Det* d) noexcept nogil:
    """log Binomial(x; N, p)."""
    if x < 0 or x > N:
        return -INFINITY
    if d.p >= 1.0:
        return 0.0 if x == N else -INFINITY
    if d.p <= 0.0:
        return 0.0 if x == 0 else -INFINITY
    return lfact(g, N) - lfact(g, x) - lfact(g, N - x) + x * d.lp + (N - x) * d.lq


cdef inline double lconv(const GModel* g, int64_t m, int64_t N, const Det* d, double lam) noexcept nogil:
    """log Σ_x Binomial(x; N, p) Poisson(m − x; lam): ``m`` seen of ``N`` known
    vesicles detected with probability ``p`` plus a Poisson(lam) number of others.

    The terms are summed relative to the first, each from the one before by
    the ratio ``(N − x)(m − x) p / ((x + 1)(1 − p) lam)``, rescaled when large."""
    cdef int64_t x, hi
    cdef double base, tot = 1.0, term = 1.0, rho
    if m < 0:
        return -INFINITY
    if d.p >= 1.0:
        return lpois(g, m - N, lam)
    if d.p <= 0.0:
        return lpois(g, m, lam)
    if lam <= 0.0:
        return lbinom(g, m, N, d)
    hi = m if m < N else N
    base = N * d.lq + m * log(lam) - lam - lfact(g, m)
    rho = d.odds / lam
    for x in range(hi):
        term *= (N - x) * (m - x) * rho / (x + 1)
        tot += term
        if tot > 1e250:
            base += log(tot)
            term /= tot
            tot = 1.0
    return base + log(tot)


cdef inline void conv_pair(int64_t m, int64_t N, const Det* d, double lam, double* t0, double* t1) noexcept nogil:
    """L(N) and L(N + 1), for L(N) = Σ_x Binomial(x; N, p) Poisson(m − x; lam), both
    relative to (1 − p)^N Poisson(m; lam); needs 0 < p < 1 and lam > 0 (no
    logarithm is taken: each term follows from the one before by the ratio
    ``(N − x)(m − x) p / ((x + 1)(1 − p) lam)``)."""
    cdef int64_t x, hi = m if m < N + 1 else N + 1
    cdef double s0 = 1.0, s1 = 1.0, a0 = 1.0, a1 = 1.0, rho = d.odds / lam
    for x in range(hi):
        a0 *= (N - x) * (m - x) * rho / (x + 1)
        a1 *= (N + 1 - x) * (m - x) * rho / (x + 1)
        s0 += a0
        s1 += a1
    t0[0] = s0
    t1[0] = (1.0 - d.p) * s1


cdef inline int fast_ratios(const GModel* g, Py_ssize_t tc, int64_t PA, int64_t PD, double RA, double RD,
                            double* ra, double* rd, double* rad) noexcept nogil:
    """The lookahead ratios of :c:func:`ell` without logarithms: one more seen
    vesicle alive at ``tc`` (``ra``), one more seen dock (``rd``), both (``rad``).
    Returns 0 when the general path is needed (a detection probability of 0 or 1,
    no Poisson part, or values too large for linear space)."""
    cdef double cr = g.nuC[tc] + g.dc.p * RA, br = g.nuB[tc] + g.dd.p * RD, ar = g.nuA[tc]
    cdef double y0, y1, d0, d1, wa = 1.0, L00 = 0.0, L10 = 0.0, L01 = 0.0, L11 = 0.0
    cdef int64_t y, D, a, hi
    ra[0] = 1.0
    rd[0] = 1.0
    rad[0] = 1.0
    if g.has_y and not (0.0 < g.dc.p < 1.0 and cr > 0.0):
        return 0
    if g.has_d and not (0.0 < g.dd.p < 1.0 and br > 0.0):
        return 0
    if g.has_y and g.has_d:
        y = g.y[tc]
        D = g.D[tc]
        hi = y if y < D else D
        if ar <= 0.0:
            hi = 0
        for a in range(hi + 1):
            conv_pair(y - a, PA, &g.dc, cr, &y0, &y1)
            conv_pair(D - a, PD, &g.dd, br, &d0, &d1)
            L00 += wa * y0 * d0
            L10 += wa * y1 * d0
            L01 += wa * y0 * d1
            L11 += wa * y1 * d1
            wa *= ar * (y - a) * (D - a) / ((a + 1) * cr * br)
        if not (L00 > 0.0 and L00 < 1e250 and L10 < 1e250 and L01 < 1e250 and L11 < 1e250):
            return 0
        ra[0] = L10 / L00
        rd[0] = L01 / L00
        rad[0] = L11 / L00
        return 1
    if g.has_y:
        conv_pair(g.y[tc], PA, &g.dc, cr, &y0, &y1)
        if not (y0 < 1e250 and y1 < 1e250):
            return 0
        ra[0] = y1 / y0
        rad[0] = ra[0]
        return 1
    conv_pair(g.D[tc], PD, &g.dd, br, &d0, &d1)
    if not (d0 < 1e250 and d1 < 1e250):
        return 0
    rd[0] = d1 / d0
    rad[0] = rd[0]
    return 1


cdef inline double ell(const GModel* g, Py_ssize_t tc, int64_t PA, int64_t PD, double RA, double RD) noexcept nogil:
    """log p(observation at cell ``tc`` = (t, j, κ)) given ``PA`` seen vesicles
    alive there and ``PD`` seen docks, the never-seen population, and ``RA``/``RD``
    further expected seen arrivals and docks taken as Poisson."""
    cdef double cr = g.nuC[tc] + g.dc.p * RA, br = g.nuB[tc] + g.dd.p * RD, ar = g.nuA[tc]
    cdef double mx = -INFINITY, tot = 0.0, q
    cdef int64_t a, hi, y, D
    if g.has_y and g.has_d:
        y = g.y[tc]
        D = g.D[tc]
        hi = y if y < D else D
        if ar <= 0.0:
            hi = 0
        for a in range(hi + 1):
            q = lpois(g, a, ar) + lconv(g, y - a, PA, &g.dc, cr) + lconv(g, D - a, PD, &g.dd, br)
            if q > mx:
                tot = tot * exp(mx - q) + 1.0 if mx > -INFINITY else 1.0
                mx = q
            elif q > -INFINITY:
                tot += exp(q - mx)
        if mx == -INFINITY:
            return -INFINITY
        return mx + log(tot)
    if g.has_y:
        return lconv(g, g.y[tc], PA, &g.dc, cr)
    return lconv(g, g.D[tc], PD, &g.dd, br)


cdef inline int64_t draw_index(double* lw, int64_t size, double u) noexcept nogil:
    """Index drawn with probabilities ∝ exp(lw[0:size]) (``u`` uniform on [0, 1))."""
    cdef int64_t x
    cdef double mx = -INFINITY, tot = 0.0, acc = 0.0
    for x in range(size):
        if lw[x] > mx:
            mx = lw[x]
    for x in range(size):
        lw[x] = exp(lw[x] - mx)
        tot += lw[x]
    u *= tot
    for x in range(size):
        acc += lw[x]
        if u < acc:
            return x
    x = size - 1
    while x > 0 and lw[x] == 0.0:
        x -= 1
    return x


cdef inline Py_ssize_t slot(const GModel* g, Py_ssize_t pbase, Py_ssize_t tt, int i, int k, int s, double* pm,
                             double* pdk, double* svj) noexcept nogil:
    """Slot ``s`` of a type-``k`` vesicle at node ``i``: its move probability
    ``pm``, the dock probability ``pdk`` and survival ``svj`` at the
    destination; returns the destination cell ``j·K + k``."""
    cdef int j = g.cand[i * g.M + s]
    pm[0] = g.P[pbase + s]
    pdk[0] = g.pd[(tt * g.n + j) * g.K + k]
    svj[0] = g.sv[j * g.K + k]
    return j * g.K + k


cdef double gstep(const GModel* g, Rng* rng, Py_ssize_t t, const int32_t* Eold, int32_t* Enew, int32_t* PA,
                  int32_t* PD, double* RA, double* RD, double* q, int64_t* work) noexcept nogil:
    """Advance one particle by step t; returns its log weight (−inf: impossible)."""
    cdef int n = g.n, K = g.K, M = g.M, i, k, s, j, o, nc, chosen, a, d
    cdef Py_ssize_t c, nK = n * K, tt = t if g.Tt > 1 else 0, tc0 = t * nK, pbase
    cdef int64_t e, v, x, hi, yv, Dv
    cdef double lw = 0.0, pm, pdk, svj, al, base, tot, u, acc, r, ln, z, ry, rdk, rboth
    memset(Enew, 0, nK * sizeof(int32_t))
    memset(PA, 0, nK * sizeof(int32_t))
    memset(PD, 0, nK * sizeof(int32_t))
    for c in range(nK):
        RA[c] = 0.0
        RD[c] = 0.0
    # expected arrivals of the seen vesicles
    for i in range(n):
        nc = g.ncand[i]
        for k in range(K):
            e = Eold[i * K + k]
            if e == 0 or nc == 0:
                continue
            pbase = ((tt * K + k) * n + i) * M
            for s in range(nc):
                c = slot(g, pbase, tt, i, k, s, &pm, &pdk, &svj)
                RA[c] += e * pm * svj * (1.0 - pdk if g.b1[k] else 1.0)
                RD[c] += e * pm * pdk
    # each seen vesicle's outcome, proposed with the observation in view
    for i in range(n):
        nc = g.ncand[i]
        for k in range(K):
            e = Eold[i * K + k]
            if e == 0 or nc == 0:
                continue   # on a sink: removed without a dock
            pbase = ((tt * K + k) * n + i) * M
            work[0] += e
            for v in range(e):
                tot = 0.0
                for s in range(nc):
                    c = slot(g, pbase, tt, i, k, s, &pm, &pdk, &svj)
                    al = svj * (1.0 - pdk if g.b1[k] else 1.0)
                    RA[c] -= pm * al
                    RD[c] -= pm * pdk
                    if RA[c] < 0.0:
                        RA[c] = 0.0
                    if RD[c] < 0.0:
                        RD[c] = 0.0
                for s in range(nc):
                    c = slot(g, pbase, tt, i, k, s, &pm, &pdk, &svj)
                    # (docked, alive) = (0, 0), (0, 1), (1, 0), (1, 1)
                    q[4 * s] = pm * (1.0 - pdk) * (1.0 - svj)
                    q[4 * s + 1] = pm * (1.0 - pdk) * svj
                    q[4 * s + 2] = pm * pdk * (1.0 if g.b1[k] else 1.0 - svj)
                    q[4 * s + 3] = 0.0 if g.b1[k] else pm * pdk * svj
                    if fast_ratios(g, tc0 + c, PA[c], PD[c], RA[c], RD[c], &ry, &rdk, &rboth):
                        q[4 * s + 1] *= ry
                        q[4 * s + 2] *= rdk
                        q[4 * s + 3] *= rboth
                        base = -INFINITY
                    else:
                        base = ell(g, tc0 + c, PA[c], PD[c], RA[c], RD[c])
                    if base > -INFINITY:
                        if q[4 * s + 1] > 0.0 and g.has_y:
                            q[4 * s + 1] *= exp(ell(g, tc0 + c, PA[c] + 1, PD[c], RA[c], RD[c]) - base)
                        if q[4 * s + 2] > 0.0 and g.has_d:
                            q[4 * s + 2] *= exp(ell(g, tc0 + c, PA[c], PD[c] + 1, RA[c], RD[c]) - base)
                        if q[4 * s + 3] > 0.0 and (g.has_y or g.has_d):
                            q[4 * s + 3] *= exp(ell(g, tc0 + c, PA[c] + 1, PD[c] + 1, RA[c], RD[c]) - base)
                    for o in range(4):
                        tot += q[4 * s + o]
                if not tot > 0.0:
                    return -INFINITY
                u = uniform(rng) * tot
                acc = 0.0
                chosen = 4 * nc - 1
                for o in range(4 * nc):
                    acc += q[o]
                    if u < acc and q[o] > 0.0:
                        chosen = o
                        break
                while q[chosen] <= 0.0:
                    chosen -= 1
                s = chosen // 4
                d = (chosen % 4) // 2
                a = chosen % 2
                c = slot(g, pbase, tt, i, k, s, &pm, &pdk, &svj)
                # p / q = tot / (q_o / p_o)
                if d == 0:
                    ln = pm * (1.0 - pdk) * (svj if a else 1.0 - svj)
                else:
                    ln = pm * pdk * (svj if a else (1.0 if g.b1[k] else 1.0 - svj))
                lw += log(tot) - log(q[chosen]) + log(ln)
                PA[c] += a
                PD[c] += d
                Enew[c] += a
    # the observation given the seen vesicles; the newly seen join them
    for c in range(nK):
        z = ell(g, tc0 + c, PA[c], PD[c], 0.0, 0.0)
        if z == -INFINITY:
            return -INFINITY
        lw += z
        yv = g.y[tc0 + c] if g.has_y else 0
        Dv = g.D[tc0 + c] if g.has_d else 0
        a = 0
        if g.has_y and g.has_d and g.nuA[tc0 + c] > 0.0:
            hi = yv if yv < Dv else Dv
            for x in range(hi + 1):
                q[x] = lpois(g, x, g.nuA[tc0 + c]) + lconv(g, yv - x, PA[c], &g.dc, g.nuC[tc0 + c]) \
                    + lconv(g, Dv - x, PD[c], &g.dd, g.nuB[tc0 + c])
            a = <int>draw_index(q, hi + 1, uniform(rng))
        if g.has_y:
            # re-seen x of PA, newly seen (y − a − x) from the never-seen count-only sightings
            hi = yv - a if yv - a < PA[c] else PA[c]
            for x in range(hi + 1):
                q[x] = lbinom(g, x, PA[c], &g.dc) + lpois(g, yv - a - x, g.nuC[tc0 + c])
            x = draw_index(q, hi + 1, uniform(rng))
            Enew[c] += <int32_t>(yv - a - x)
        if g.has_d:
            hi = Dv - a if Dv - a < PD[c] else PD[c]
            for x in range(hi + 1):
                q[x] = lbinom(g, x, PD[c], &g.dd) + lpois(g, Dv - a - x, g.nuB[tc0 + c])
            x = draw_index(q, hi + 1, uniform(rng))
            # the newly seen in a dock only: alive (unseen in the count) with probability fB
            r = g.fB[tc0 + c]
            for v in range(Dv - a - x):
                if uniform(rng) < r:
                    Enew[c] += 1
        Enew[c] += a
    return lw


def guided_run(dict tabs, uint64_t key, int run, int n_steps, counts, docks, double p_count, double p_dock,
               int n_particles, double ess_frac, int n_threads, seen_init=None):
    """The guided filter over one run (see the module docstring).

    ``tabs`` holds ``cand, ncand, P, pd, sv, b1, nuA, nuB, nuC, fB`` (contiguous
    arrays of the shapes of :c:type:`GModel`). ``p_count``/``p_dock``: detection
    probabilities (0 for what is not observed). Returns a dict with ``log_inc``,
    ``ess``, ``resampled``, ``seen`` (filtered mean of the seen vesicles,
    ``(T, n, K)``), ``work``; or ``{"error": "zero", "step": t}``.
    """
    cdef GModel g
    cdef Py_ssize_t N = n_particles, T = n_steps, j, c, t, pj
    cdef int cur
    cdef double mx, tot, tot2, prev_lse, u, acc, w
    cdef Rng rg
    cand = np.ascontiguousarray(tabs["cand"], np.int32)
    ncand = np.ascontiguousarray(tabs["ncand"], np.int32)
    P = np.ascontiguousarray(tabs["P"], np.float64)
    pd = np.ascontiguousarray(tabs["pd"], np.float64)
    sv = np.ascontiguousarray(tabs["sv"], np.float64)
    b1 = np.ascontiguousarray(tabs["b1"], np.int32)
    nuA = np.ascontiguousarray(tabs["nuA"], np.float64)
    nuB = np.ascontiguousarray(tabs["nuB"], np.float64)
    nuC = np.ascontiguousarray(tabs["nuC"], np.float64)
    fB = np.ascontiguousarray(tabs["fB"], np.float64)
    cdef Py_ssize_t n = sv.shape[0], K = sv.shape[1]
    cdef Py_ssize_t nK = n * K
    y_arr = np.ascontiguousarray(counts if counts is not None else np.zeros((T, n, K)), np.int64)
    d_arr = np.ascontiguousarray(docks if docks is not None else np.zeros((T, n, K)), np.int64)
    lf = np.asarray([lgamma(k + 1.0) for k in range(LF_SIZE)], np.float64)
    obs_max = int(max(y_arr.max(initial=0), d_arr.max(initial=0)))
    g.n, g.K, g.M, g.Tt = n, K, cand.shape[1], P.shape[0]
    g.cand = <const int32_t*>cnp.PyArray_DATA(cand)
    g.ncand = <const int32_t*>cnp.PyArray_DATA(ncand)
    g.P = <const double*>cnp.PyArray_DATA(P)
    g.pd = <const double*>cnp.PyArray_DATA(pd)
    g.sv = <const double*>cnp.PyArray_DATA(sv)
    g.b1 = <const int32_t*>cnp.PyArray_DATA(b1)
    g.nuA = <const double*>cnp.PyArray_DATA(nuA)
    g.nuB = <const double*>cnp.PyArray_DATA(nuB)
    g.nuC = <const double*>cnp.PyArray_DATA(nuC)
    g.fB = <const double*>cnp.PyArray_DATA(fB)
    g.y = <const int64_t*>cnp.PyArray_DATA(y_arr)
    g.D = <const int64_t*>cnp.PyArray_DATA(d_arr)
    g.has_y, g.has_d = counts is not None, docks is not None
    g.dc.p = p_count
    g.dc.lp = log(p_count) if p_count > 0.0 else -INFINITY
    g.dc.lq = log1p(-p_count) if p_count < 1.0 else -INFINITY
    g.dc.odds = p_count / (1.0 - p_count) if p_count < 1.0 else INFINITY
    g.dd.p = p_dock
    g.dd.lp = log(p_dock) if p_dock > 0.0 else -INFINITY
    g.dd.lq = log1p(-p_dock) if p_dock < 1.0 else -INFINITY
    g.dd.odds = p_dock / (1.0 - p_dock) if p_dock < 1.0 else INFINITY
    g.lf = <const double*>cnp.PyArray_DATA(lf)
    cdef int32_t[:, :, ::1] E = np.zeros((2, N, nK), np.int32)
    if seen_init is not None:
        E[1, :, :] = np.asarray(seen_init, np.int32).reshape(1, nK)
    cdef int32_t[:, ::1] PA = np.zeros((N, nK), np.int32)
    cdef int32_t[:, ::1] PDk = np.zeros((N, nK), np.int32)
    cdef double[:, ::1] RA = np.zeros((N, nK), np.float64)
    cdef double[:, ::1] RD = np.zeros((N, nK), np.float64)
    cdef double[:, ::1] q = np.zeros((N, max(4 * g.M, obs_max + 1, 1)), np.float64)
    cdef double[::1] lw = np.zeros(N)
    cdef double[::1] incr = np.zeros(N)
    cdef double[::1] W = np.zeros(N)
    cdef int64_t[::1] work = np.zeros(N, np.int64)
    cdef int32_t[:, ::1] anc = np.empty((T, N), np.int32)
    out_log_inc = np.zeros(T)
    out_ess = np.zeros(T)
    out_res = np.zeros(T, dtype=bool)
    out_seen = np.zeros((T, n, K))
    cdef double[::1] log_inc = out_log_inc
    cdef double[::1] ess = out_ess
    cdef cnp.npy_bool[::1] res = out_res
    cdef double[:, ::1] seen = out_seen.reshape(T, nK)
    for j in range(N):
        anc[0, j] = <int32_t>j
    for t in range(T):
        cur = t % 2
        with nogil:
            for j in prange(N, num_threads=n_threads, schedule="dynamic"):
                rg = rng_make(key, DOM_GUIDED, <uint64_t>run, <uint64_t>t, <uint64_t>j)
                incr[j] = gstep(&g, &rg, t, &E[1 - cur, anc[t, j], 0], &E[cur, j, 0], &PA[j, 0], &PDk[j, 0],
                                &RA[j, 0], &RD[j, 0], &q[j, 0], &work[j])
            mx = advance(&lw[0], &incr[0], N, &prev_lse)
        if mx == -INFINITY:
            return {"error": "zero", "step": t}
        with nogil:
            log_inc[t] = normalise(&lw[0], mx, &W[0], N, &ess[t]) - prev_lse
            for j in range(N):
                w = W[j]
                if w > 0.0:
                    for c in range(nK):
                        seen[t, c] += w * E[cur, j, c]
            if t + 1 < T:
                if ess[t] < ess_frac * N:
                    res[t] = 1
                    rng_seed(&rg, key, DOM_RESAMPLE, <uint64_t>run, <uint64_t>t, 1)
                    systematic(&W[0], N, uniform(&rg), &anc[t + 1, 0])
                    for j in range(N):
                        lw[j] = 0.0
                else:
                    for j in range(N):
                        anc[t + 1, j] = <int32_t>j
    return {"log_inc": out_log_inc, "ess": out_ess, "resampled": out_res, "seen": out_seen,
            "work": int(np.asarray(work).sum())}
