# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled explicit-vesicle core of nvppl.

Runs the life cycle of DESIGN §1.3 (eq. 9-19, 37-38) on explicit vesicles:

- :func:`simulate` — independent runs, one task per (run, birth step) cohort:
  the vesicles born in that step are emitted and followed to their removal or
  the last step. Tasks run in parallel (OpenMP); each draws from its own
  random stream, so the result does not depend on the number of threads.
- :func:`pf_run` — a bootstrap particle filter over whole vesicle populations
  (one population per particle), OpenMP over particles, one random stream per
  (run, step, particle).
- :func:`pf_replay` — re-runs one particle's ancestral line step by step with
  the same streams and records every event (genealogy tracing).

All arrays are allocated from Python; the inner loops run without the GIL.
Random numbers come from xoshiro256** streams seeded by SplitMix64 from
(key, domain, a, b, c).
"""

import time

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport INFINITY, M_PI, ceil, cos, exp, fabs, floor, isinf, lgamma, log, log1p, sin, sqrt
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

cnp.import_array()

cdef enum:
    LANES = 8           # vesicles followed at once by a simulation task
    # random-stream domains
    DOM_SIM = 1
    DOM_PF = 2
    DOM_RESAMPLE = 3
    DOM_LINEAGE = 4
    DOM_TEST = 9



# --------------------------------------------------------------------------- random numbers
cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef inline void rng_seed(Rng* g, uint64_t key, uint64_t d, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    """Seed the stream (d, a, b, c) of ``key``: SplitMix64 over a hash of the five words."""
    cdef uint64_t x = mix64(key + 0x9e3779b97f4a7c15ULL)
    x = mix64(x ^ mix64(d + 0x3c6ef372fe94f82aULL))
    x = mix64(x ^ mix64(a + 0xdaa66d2c7ddf743fULL))
    x = mix64(x ^ mix64(b + 0x78dde6e5fd29f054ULL))
    x = mix64(x ^ mix64(c + 0x1715609d7c73f469ULL))
    x += 0x9e3779b97f4a7c15ULL
    g.s0 = mix64(x)
    x += 0x9e3779b97f4a7c15ULL
    g.s1 = mix64(x)
    x += 0x9e3779b97f4a7c15ULL
    g.s2 = mix64(x)
    x += 0x9e3779b97f4a7c15ULL
    g.s3 = mix64(x)
    g.has_spare = 0
    g.spare = 0.0


cdef inline uint64_t rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline uint64_t next64(Rng* g) noexcept nogil:
    cdef uint64_t result = rotl(g.s1 * 5, 7) * 9
    cdef uint64_t t = g.s1 << 17
    g.s2 ^= g.s0
    g.s3 ^= g.s1
    g.s1 ^= g.s2
    g.s0 ^= g.s3
    g.s2 ^= t
    g.s3 = rotl(g.s3, 45)
    return result


cdef inline double uniform(Rng* g) noexcept nogil:
    """U[0, 1) with 53 random bits."""
    return <double>(next64(g) >> 11) * 1.1102230246251565e-16


cdef inline double uniform_open(Rng* g) noexcept nogil:
    """U(0, 1): never 0, so its logarithm is finite."""
    return (<double>(next64(g) >> 11) + 0.5) * 1.1102230246251565e-16


cdef inline double normal(Rng* g) noexcept nogil:
    """Standard normal by the Box-Muller transform (pairs; the second is kept)."""
    cdef double r, th
    if g.has_spare:
        g.has_spare = 0
        return g.spare
    r = sqrt(-2.0 * log(uniform_open(g)))
    th = 2.0 * M_PI * uniform(g)
    g.spare = r * sin(th)
    g.has_spare = 1
    return r * cos(th)


cdef inline double gamma_draw(Rng* g, double shape, double rate) noexcept nogil:
    """Gamma(shape, rate) by Marsaglia and Tsang (2000); shape < 1 by the U^(1/a) boost."""
    cdef double boost = 1.0, d, c, x, v, u
    if shape < 1.0:
        boost = exp(log(uniform_open(g)) / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / sqrt(9.0 * d)
    while True:
        x = normal(g)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform_open(g)
        if u < 1.0 - 0.0331 * x * x * x * x:
            return boost * d * v / rate
        if log(u) < 0.5 * x * x + d * (1.0 - v + log(v)):
            return boost * d * v / rate


cdef inline int64_t poisson_draw(Rng* g, double lam, double elam) noexcept nogil:
    """Poisson(lam): inversion for lam < 10 (``elam`` = exp(-lam)), otherwise the
    transformed rejection PTRS of Hörmann (1993)."""
    cdef int64_t k
    cdef double u, p, F, slam, loglam, b, a, invalpha, vr, us, U, V
    if lam <= 0.0:
        return 0
    if lam < 10.0:
        u = uniform(g)
        k = 0
        p = elam
        F = p
        while u > F and k < 200:
            k += 1
            p *= lam / k
            F += p
        return k
    slam = sqrt(lam)
    loglam = log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        U = uniform(g) - 0.5
        V = uniform_open(g)
        us = 0.5 - fabs(U)
        k = <int64_t>floor((2.0 * a / us + b) * U + lam + 0.43)
        if us >= 0.07 and V <= vr:
            return k
        if k < 0 or (us < 0.013 and V > us):
            continue
        if log(V) + log(invalpha) - log(a / (us * us) + b) <= -lam + k * loglam - lgamma(k + 1.0):
            return k


# --------------------------------------------------------------------------- growable buffers
cdef inline void buf_init(Buf* b, Py_ssize_t item) noexcept nogil:
    b.data = NULL
    b.size = 0
    b.cap = 0
    b.item = item


cdef inline void buf_free(Buf* b) noexcept nogil:
    free(b.data)
    b.data = NULL
    b.size = 0
    b.cap = 0


cdef inline char* buf_push(Buf* b, Py_ssize_t count) noexcept nogil:
    """Room for ``count`` more items at the end (NULL when memory ran out)."""
    cdef Py_ssize_t cap
    cdef char* p
    if b.size + count > b.cap:
        cap = 2 * b.cap
        if cap < b.size + count:
            cap = b.size + count
        if cap < 256:
            cap = 256
        p = <char*>realloc(b.data, cap * b.item)
        if p == NULL:
            return NULL
        b.data = p
        b.cap = cap
    p = b.data + b.size * b.item
    b.size += count
    return p


# --------------------------------------------------------------------------- the model
def _alias_tables(const double[:, :, ::1] T, const int32_t[::1] ncand, double[:, :, ::1] prob, int32_t[:, :, ::1] alias):
    """Walker's alias tables (Vose's construction) of every row ``T[κ, i, :ncand[i]]``:
    slot ``s`` drawn uniformly is kept with probability ``prob[κ, i, s]``, else
    replaced by ``alias[κ, i, s]`` — an O(1) draw from the row (eq. 15)."""
    cdef Py_ssize_t K = T.shape[0], n = T.shape[1], M = T.shape[2], k, i, s, ns, nl, a, b
    cdef int nc
    cdef double tot
    small_arr = np.empty(M, np.int64)
    large_arr = np.empty(M, np.int64)
    scaled_arr = np.empty(M, np.float64)
    cdef int64_t[::1] small = small_arr, large = large_arr
    cdef double[::1] q = scaled_arr
    for k in range(K):
        for i in range(n):
            nc = ncand[i]
            if nc == 0:
                continue
            tot = 0.0
            for s in range(nc):
                tot += T[k, i, s]
            ns = 0
            nl = 0
            for s in range(nc):
                q[s] = T[k, i, s] * nc / tot
                alias[k, i, s] = <int32_t>s
                if q[s] < 1.0:
                    small[ns] = s
                    ns += 1
                else:
                    large[nl] = s
                    nl += 1
            while ns and nl:
                ns -= 1
                a = small[ns]
                b = large[nl - 1]
                prob[k, i, a] = q[a]
                alias[k, i, a] = <int32_t>b
                q[b] = (q[b] + q[a]) - 1.0
                if q[b] < 1.0:
                    nl -= 1
                    small[ns] = b
                    ns += 1
            while nl:
                nl -= 1
                prob[k, i, large[nl]] = 1.0
            while ns:  # only rounding leaves entries here: their mass is 1 up to rounding
                ns -= 1
                prob[k, i, small[ns]] = 1.0


cdef class CoreModel:
    """Arrays of one (model, parameters, covariates) as the compiled core reads them.

    Built by :func:`nvppl.smc._compiled.core_model`; every array is kept alive
    here and reached by the kernels through the pointers of a ``Model``.
    """

    cdef Model m
    cdef readonly object arrays
    cdef readonly int n_runs_table, n_steps_table

    def __init__(self, dict a, int n, int K, int M, int dc, int lifetime, bint tilted, bint dock_content,
                 double sigma_tau):
        cdef int Rr, Tt
        self.arrays = {}
        Tm = np.ascontiguousarray(a["T"], dtype=np.float64)
        aprob = np.zeros((K, n, max(M, 1)), np.float64)
        alias = np.zeros((K, n, max(M, 1)), np.int32)
        if M:
            _alias_tables(Tm, np.ascontiguousarray(a["ncand"], dtype=np.int32), aprob, alias)
        slots = np.zeros((K, n, max(M, 1)), dtype=_dtype_slot())
        slots["prob"], slots["alias"] = aprob, alias
        if M:
            slots["dest"] = np.asarray(a["cand"], dtype=np.int32)[None]
        self.arrays["slots"] = slots
        specs = {
            "cand": np.int32, "ncand": np.int32, "logT": np.float64, "lam": np.float64,
            "elam": np.float64, "dock": np.float64, "score": np.float64, "cloc": np.float64,
            "delta": np.float64, "shape": np.float64, "rate": np.float64, "gamma": np.float64,
            "cscale": np.float64, "wc": np.float64, "budget": np.int32, "Q": np.float64, "absorb": np.float64,
        }
        for name, dtype in specs.items():
            arr = np.ascontiguousarray(a[name], dtype=dtype)
            if arr.size == 0:
                arr = np.zeros(1, dtype=dtype)  # a valid pointer for an empty field
            self.arrays[name] = arr
        lam = np.asarray(a["lam"])
        if lam.ndim != 4 or lam.shape[2:] != (n, K):
            raise ValueError(f"internal: lam must have shape (R, T, {n}, {K}), got {lam.shape}")
        Rr, Tt = lam.shape[0], lam.shape[1]
        self.n_runs_table, self.n_steps_table = Rr, Tt
        self.m.n, self.m.K, self.m.M, self.m.dc = n, K, M, dc
        self.m.lifetime, self.m.tilted, self.m.dock_content = lifetime, tilted, dock_content
        self.m.sigma_tau = sigma_tau
        self.m.tab_t = n * K if Tt > 1 else 0
        self.m.tab_r = Tt * n * K if Rr > 1 else 0
        self.m.cand = <const int32_t*>cnp.PyArray_DATA(self.arrays["cand"])
        self.m.ncand = <const int32_t*>cnp.PyArray_DATA(self.arrays["ncand"])
        self.m.slots = <const Slot*>cnp.PyArray_DATA(self.arrays["slots"])
        self.m.logT = <const double*>cnp.PyArray_DATA(self.arrays["logT"])
        self.m.lam = <const double*>cnp.PyArray_DATA(self.arrays["lam"])
        self.m.elam = <const double*>cnp.PyArray_DATA(self.arrays["elam"])
        self.m.dock = <const double*>cnp.PyArray_DATA(self.arrays["dock"])
        self.m.score = <const double*>cnp.PyArray_DATA(self.arrays["score"])
        self.m.cloc = <const double*>cnp.PyArray_DATA(self.arrays["cloc"])
        self.m.delta = <const double*>cnp.PyArray_DATA(self.arrays["delta"])
        self.m.shape = <const double*>cnp.PyArray_DATA(self.arrays["shape"])
        self.m.rate = <const double*>cnp.PyArray_DATA(self.arrays["rate"])
        self.m.gamma = <const double*>cnp.PyArray_DATA(self.arrays["gamma"])
        self.m.cscale = <const double*>cnp.PyArray_DATA(self.arrays["cscale"])
        self.m.wc = <const double*>cnp.PyArray_DATA(self.arrays["wc"])
        self.m.budget = <const int32_t*>cnp.PyArray_DATA(self.arrays["budget"])
        self.m.Q = <const double*>cnp.PyArray_DATA(self.arrays["Q"])
        self.m.absorb = <const double*>cnp.PyArray_DATA(self.arrays["absorb"])
        self.m.any_absorb = bool(np.any(self.arrays["absorb"] > 0))

    def table_covers(self, int n_runs, int n_steps):
        """True when the run and step axes of the tables cover ``n_runs`` × ``n_steps``."""
        return (self.n_runs_table in (1, n_runs)) and (self.n_steps_table in (1, n_steps))


cdef inline Py_ssize_t tab(const Model* m, Py_ssize_t r, Py_ssize_t t) noexcept nogil:
    return r * m.tab_r + t * m.tab_t


cdef inline void birth(const Model* m, Rng* g, Py_ssize_t r, Py_ssize_t t, int i, int k, Vesicle* v,
                       int predraw) noexcept nogil:
    """A new vesicle of type k at node i in step t: budget, content (eq. 13), lifetime (eq. 37).

    With ``predraw`` and geometric lifetimes, ``tau`` is set to the number of
    decay trials up to and including the fatal one, G ~ Geometric(δ_κ) (support
    1, 2, ...), and decay then counts down like a countdown lifetime: the same
    law as one Bernoulli(δ_κ) trial per step (eq. 38), with one draw per life.
    """
    cdef int d
    cdef Py_ssize_t c0
    cdef double dl
    v.node = i
    v.vtype = k
    v.left = m.budget[k]
    if m.dc:
        c0 = (tab(m, r, t) + i * m.K + k) * m.dc
        for d in range(m.dc):
            v.content[d] = m.cloc[c0 + d] + m.cscale[k * m.dc + d] * normal(g)
    if m.lifetime == 1:
        v.tau = gamma_draw(g, m.shape[k], m.rate[k])
    elif predraw:
        dl = m.delta[k]
        if dl >= 1.0:
            v.tau = 1.0
        elif dl <= 0.0:
            v.tau = INFINITY
        else:
            v.tau = ceil(log(uniform_open(g)) / log1p(-dl))
            if v.tau < 1.0:
                v.tau = 1.0
    else:
        v.tau = 0.0


cdef inline double tilt_logit(const Model* m, Py_ssize_t base, int s, int dest, Py_ssize_t tb, int k,
                              const double* c) noexcept nogil:
    """log T_κ[ℓ, ℓ'] + γ_κ q_t(ℓ', c) (eq. 16-17)."""
    cdef double q = m.score[tb + dest * m.K + k]
    cdef int d
    for d in range(m.dc):
        q += c[d] * m.Q[(k * m.n + dest) * m.dc + d]
    return m.logT[base + s] + m.gamma[k] * q


cdef inline int vstep(const Model* m, Rng* g, Py_ssize_t r, Py_ssize_t t, Vesicle* v,
                      int* slot_out, int* docked_out, int predraw) noexcept nogil:
    """One step of one vesicle after emission: migration (eq. 15-17), docking
    (eq. 18-19) with its budget, absorption and decay (eq. 37-38).

    Returns the cause of removal (0 = survives, 1 expired, 2 absorbed,
    3 depleted, 4 sink). ``v.node`` becomes the destination (unchanged at a sink).
    ``predraw``: geometric decay counts down the trials drawn at birth (see birth).
    """
    cdef int i = v.node, k = v.vtype, nc = m.ncand[i], s, dest, d, docked
    cdef Py_ssize_t base = (<Py_ssize_t>k * m.n + i) * m.M
    cdef Py_ssize_t tb = tab(m, r, t)
    cdef double u, mx, z, tot, acc, p, a
    cdef const Slot* sl
    if nc == 0:
        return 4
    s = nc - 1
    if not m.tilted:
        u = uniform(g) * nc
        s = <int>u
        if s >= nc:
            s = nc - 1
        sl = &m.slots[base + s]
        if u - s >= sl.prob:
            s = sl.alias
            sl = &m.slots[base + s]
        dest = sl.dest
    else:
        mx = -INFINITY
        for s in range(nc):
            z = tilt_logit(m, base, s, m.cand[i * m.M + s], tb, k, v.content)
            if z > mx:
                mx = z
        tot = 0.0
        for s in range(nc):
            tot += exp(tilt_logit(m, base, s, m.cand[i * m.M + s], tb, k, v.content) - mx)
        u = uniform(g) * tot
        acc = 0.0
        for s in range(nc):
            acc += exp(tilt_logit(m, base, s, m.cand[i * m.M + s], tb, k, v.content) - mx)
            if u < acc:
                break
        dest = m.cand[i * m.M + s]
    v.node = dest
    slot_out[0] = s
    p = m.dock[tb + dest * m.K + k]
    if m.dock_content:
        for d in range(m.dc):
            p += v.content[d] * m.wc[k * m.dc + d]
        p = 1.0 / (1.0 + exp(-p))
    docked = uniform(g) < p
    docked_out[0] = docked
    if v.left > 0 and docked:
        v.left -= 1
        if v.left == 0:
            return 3
    if m.any_absorb:
        a = m.absorb[dest]
        if a > 0.0 and uniform(g) < a:
            return 2
    if m.lifetime == 0 and not predraw:
        if uniform(g) < m.delta[k]:
            return 1
    else:
        v.tau -= 1.0
        if m.sigma_tau > 0.0:
            v.tau += m.sigma_tau * normal(g)
        if v.tau <= 0.0:
            return 1
    return 0


# --------------------------------------------------------------------------- simulation
cdef int simulate_cohort(const Model* m, uint64_t key, Py_ssize_t r, Py_ssize_t t, Py_ssize_t T,
                         Buf* ves, Buf* content, Buf* steps, StepRec* lane_steps) noexcept nogil:
    """Emit the vesicles of run r, step t and follow each to its end. 0, or -1 when out of memory.

    All births are drawn first (records in birth order). The lives are then
    followed in ``LANES`` interleaved lanes, one vesicle per lane, so that the
    memory accesses of independent vesicles overlap; a lane collects its
    vesicle's moves in ``lane_steps`` (``LANES × T`` records) and appends them
    to ``steps`` when the vesicle is removed or censored, recording where they
    start. The result does not depend on the lane count's timing, only on the
    stream.
    """
    cdef Rng g
    cdef Vesicle v
    cdef Vesicle lv[LANES]
    cdef Py_ssize_t lidx[LANES]
    cdef Py_ssize_t lstep[LANES]
    cdef int32_t lns[LANES]
    cdef int i, k, l, slot, docked, cause, active
    cdef int64_t nb, b
    cdef Py_ssize_t tb = tab(m, r, t), vi, nves, nxt
    cdef VesRec* rec
    cdef StepRec* st
    cdef char* out
    cdef double* c
    rng_seed(&g, key, DOM_SIM, <uint64_t>r, <uint64_t>t, 0)
    # 1. births (eq. 9-13, 37)
    for i in range(m.n):
        for k in range(m.K):
            nb = poisson_draw(&g, m.lam[tb + i * m.K + k], m.elam[tb + i * m.K + k])
            for b in range(nb):
                vi = ves.size
                if buf_push(ves, 1) == NULL:
                    return -1
                c = <double*>buf_push(content, m.dc)
                if m.dc and c == NULL:
                    return -1
                v.content = c
                birth(m, &g, r, t, i, k, &v, 1)
                rec = <VesRec*>ves.data + vi
                rec.vtype = k
                rec.node = i
                rec.tau_init = v.tau
                rec.tau0 = v.tau if m.lifetime == 1 else 0.0
    # 2. lives, interleaved over lanes (the content buffer no longer moves)
    nves = ves.size
    nxt = 0
    active = 0
    for l in range(LANES):
        lidx[l] = -1
        if nxt < nves:
            lane_load(m, ves, content, nxt, t, &lv[l], &lidx[l], &lstep[l], &lns[l])
            nxt += 1
            active += 1
    while active:
        for l in range(LANES):
            if lidx[l] < 0:
                continue
            cause = vstep(m, &g, r, lstep[l], &lv[l], &slot, &docked, 1)
            if cause != 4:
                st = &lane_steps[l * T + lns[l]]
                st.node_to = lv[l].node
                st.slot = <int16_t>slot
                st.docked = <uint8_t>docked
                lns[l] += 1
            if cause == 0 and lstep[l] < T - 1:
                lstep[l] += 1
                continue
            # removed (cause > 0) or censored after the last step: flush the lane
            rec = <VesRec*>ves.data + lidx[l]
            rec.cause = cause
            rec.death = <int32_t>(lstep[l] if cause else T - 1)
            rec.nsteps = lns[l]
            rec.start = steps.size
            if lns[l]:
                out = buf_push(steps, lns[l])
                if out == NULL:
                    return -1
                memcpy(out, &lane_steps[l * T], lns[l] * sizeof(StepRec))
            if nxt < nves:
                lane_load(m, ves, content, nxt, t, &lv[l], &lidx[l], &lstep[l], &lns[l])
                nxt += 1
            else:
                lidx[l] = -1
                active -= 1
    return 0


cdef inline void lane_load(const Model* m, Buf* ves, Buf* content, Py_ssize_t q, Py_ssize_t t, Vesicle* v,
                           Py_ssize_t* idx, Py_ssize_t* step, int32_t* ns) noexcept nogil:
    """Put vesicle q of the cohort (born in step t) into a lane."""
    cdef VesRec* rec = <VesRec*>ves.data + q
    v.node = rec.node
    v.vtype = rec.vtype
    v.left = m.budget[rec.vtype]
    v.tau = rec.tau_init
    v.content = <double*>content.data + q * m.dc
    idx[0] = q
    step[0] = t
    ns[0] = 0


cdef int run_cohort(const Model* m, uint64_t key, Py_ssize_t r, Py_ssize_t t, Py_ssize_t T, Buf* b) noexcept nogil:
    """simulate_cohort with its lane scratch (``LANES × T`` move records)."""
    cdef StepRec* lane_steps = <StepRec*>malloc(LANES * T * sizeof(StepRec))
    cdef int status
    if lane_steps == NULL:
        return -1
    status = simulate_cohort(m, key, r, t, T, &b[0], &b[1], &b[2], lane_steps)
    free(lane_steps)
    return status


def simulate(CoreModel cm, uint64_t key, int n_runs, int n_steps, int n_threads, dict timings=None):
    """Simulate ``n_runs`` runs of ``n_steps`` steps; returns the vesicle and
    step columns of :class:`~nvppl.traces.Traces` as arrays (grouped by vesicle,
    vesicles in birth order within each run). ``timings``, when given, receives
    the wall time of the two phases (``simulate``, ``assemble``) in seconds."""
    cdef const Model* m = &cm.m
    cdef Py_ssize_t R = n_runs, T = n_steps, ntask = R * T, task
    cdef Buf* bufs
    cdef int failed = 0, dc = m.dc
    if not cm.table_covers(n_runs, n_steps):
        raise ValueError("internal: the model's tables do not cover these runs and steps")
    bufs = <Buf*>malloc(3 * ntask * sizeof(Buf))
    if bufs == NULL:
        raise MemoryError()
    for task in range(ntask):
        buf_init(&bufs[3 * task], sizeof(VesRec))
        buf_init(&bufs[3 * task + 1], sizeof(double))
        buf_init(&bufs[3 * task + 2], sizeof(StepRec))
    t0 = time.perf_counter()
    try:
        for task in prange(ntask, nogil=True, num_threads=n_threads, schedule="dynamic"):
            if run_cohort(m, key, task // T, task % T, T, &bufs[3 * task]) != 0:
                failed = 1
        if failed:
            raise MemoryError("out of memory while simulating")
        t1 = time.perf_counter()
        vcount = np.empty(ntask + 1, np.int64)
        scount = np.empty(ntask + 1, np.int64)
        vcount[0] = 0
        scount[0] = 0
        for task in range(ntask):
            vcount[task + 1] = vcount[task] + bufs[3 * task].size
            scount[task + 1] = scount[task] + bufs[3 * task + 2].size
        NV, NS = int(vcount[ntask]), int(scount[ntask])
        out_v = {name: np.empty(NV, np.int64) for name in
                 ("run", "vesicle", "type", "birth_step", "birth_node", "death_step", "death_cause")}
        content = np.empty((NV, dc), np.float64)
        tau0 = np.empty(NV, np.float64)
        out_s = {name: np.empty(NS, np.int64) for name in ("vrow", "step", "node_from", "node_to", "slot")}
        docked = np.empty(NS, np.bool_)
        run_first = vcount[np.arange(R) * T]
        _assemble(bufs, ntask, T, dc, vcount, scount, run_first, out_v["run"], out_v["vesicle"], out_v["type"],
                  out_v["birth_step"], out_v["birth_node"], out_v["death_step"], out_v["death_cause"], content, tau0,
                  out_s["vrow"], out_s["step"], out_s["node_from"], out_s["node_to"], out_s["slot"],
                  docked, n_threads)
        if timings is not None:
            timings["simulate"] = t1 - t0
            timings["assemble"] = time.perf_counter() - t1
    finally:
        for task in range(ntask):
            buf_free(&bufs[3 * task])
            buf_free(&bufs[3 * task + 1])
            buf_free(&bufs[3 * task + 2])
        free(bufs)
    out_v["content"] = content
    out_v["tau0"] = tau0
    out_s["docked"] = docked
    return out_v, out_s


cdef void _assemble(Buf* bufs, Py_ssize_t ntask, Py_ssize_t T, int dc, int64_t[::1] vcount, int64_t[::1] scount,
                    int64_t[::1] run_first, int64_t[::1] run, int64_t[::1] vesicle, int64_t[::1] vtype,
                    int64_t[::1] birth_step, int64_t[::1] birth_node, int64_t[::1] death_step,
                    int64_t[::1] death_cause, double[:, ::1] content, double[::1] tau0, int64_t[::1] vrow,
                    int64_t[::1] step, int64_t[::1] node_from, int64_t[::1] node_to, int64_t[::1] slot,
                    cnp.npy_bool[::1] docked, int n_threads) noexcept:
    """Copy the per-cohort buffers into the output columns (in task order)."""
    cdef Py_ssize_t task, q, e, vo, so, r, t, nsv, row, prev
    cdef VesRec* vr
    cdef StepRec* sr
    cdef double* cs
    for task in prange(ntask, nogil=True, num_threads=n_threads, schedule="static"):
        r = task // T
        t = task % T
        vr = <VesRec*>bufs[3 * task].data
        cs = <double*>bufs[3 * task + 1].data
        sr = <StepRec*>bufs[3 * task + 2].data
        vo = vcount[task]
        so = scount[task]
        for q in range(bufs[3 * task].size):
            row = vo + q
            run[row] = r
            vesicle[row] = row - run_first[r]
            vtype[row] = vr[q].vtype
            birth_step[row] = t
            birth_node[row] = vr[q].node
            death_step[row] = vr[q].death
            death_cause[row] = vr[q].cause
            tau0[row] = vr[q].tau0
            for e in range(dc):
                content[row, e] = cs[q * dc + e]
            prev = vr[q].node
            for e in range(vr[q].nsteps):
                vrow[so] = row
                step[so] = t + e
                node_from[so] = prev
                node_to[so] = sr[vr[q].start + e].node_to
                slot[so] = sr[vr[q].start + e].slot
                docked[so] = sr[vr[q].start + e].docked
                prev = node_to[so]
                so = so + 1


# --------------------------------------------------------------------------- particle filter
cdef inline int finish(const Model* m, Vesicle* v, int cause, int slot, int docked, int node_from,
                       Py_ssize_t t, int64_t vid, Pop* dst, int32_t* counts, int32_t* docks,
                       Recorder* rec) noexcept nogil:
    """Book one vesicle's step: dock counts, the survivor into ``dst``, events into ``rec``."""
    cdef Py_ssize_t q, cell = v.node * m.K + v.vtype
    cdef MoveRec* mv
    cdef DeathRec* de
    cdef int d
    if cause != 4:
        if docked:
            docks[cell] += 1
        if rec != NULL:
            mv = <MoveRec*>buf_push(&rec.steps, 1)
            if mv == NULL:
                return -2
            mv.vid, mv.step, mv.node_from, mv.node_to = vid, <int32_t>t, node_from, v.node
            mv.slot, mv.docked = slot, docked
    if cause == 0:
        q = dst.size
        dst.node[q] = v.node
        dst.vtype[q] = v.vtype
        dst.left[q] = v.left
        if m.lifetime == 1:
            dst.tau[q] = v.tau
        if m.dc and v.content != dst.content + q * m.dc:
            for d in range(m.dc):
                dst.content[q * m.dc + d] = v.content[d]
        if dst.vid != NULL:
            dst.vid[q] = vid
        dst.size = q + 1
        counts[cell] += 1
    elif rec != NULL:
        de = <DeathRec*>buf_push(&rec.deaths, 1)
        if de == NULL:
            return -2
        de.vid, de.step, de.cause = vid, <int32_t>t, cause
    return 0


cdef int particle_step(const Model* m, Rng* g, Py_ssize_t r, Py_ssize_t t, const Pop* src, Pop* dst,
                       int32_t* counts, int32_t* docks, Recorder* rec, int64_t* work) noexcept nogil:
    """Advance one population by step t (DESIGN §1.3) from ``src`` into ``dst``.

    Fills ``counts`` (vesicles present after the step) and ``docks`` per
    (node, type) cell. Returns 0, -1 when more than ``dst.cap`` vesicles are
    alive during the step, -2 when out of memory.
    """
    cdef Py_ssize_t q, total = src.size, tb = tab(m, r, t)
    cdef Vesicle v
    cdef int i, k, slot, docked, cause, dc = m.dc, node_from
    cdef int64_t nb, b, vid = -1
    cdef BirthRec* br
    cdef double* cp
    memset(counts, 0, m.n * m.K * sizeof(int32_t))
    memset(docks, 0, m.n * m.K * sizeof(int32_t))
    dst.size = 0
    for q in range(src.size):
        v.node = src.node[q]
        v.vtype = src.vtype[q]
        v.left = src.left[q]
        v.tau = src.tau[q] if m.lifetime == 1 else 0.0
        v.content = src.content + q * dc
        if src.vid != NULL:
            vid = src.vid[q]
        node_from = v.node
        cause = vstep(m, g, r, t, &v, &slot, &docked, 0)
        if finish(m, &v, cause, slot, docked, node_from, t, vid, dst, counts, docks, rec) < 0:
            return -2
    for i in range(m.n):
        for k in range(m.K):
            nb = poisson_draw(g, m.lam[tb + i * m.K + k], m.elam[tb + i * m.K + k])
            for b in range(nb):
                total += 1
                if total > dst.cap:
                    work[0] = total
                    return -1
                v.content = dst.content + dst.size * dc  # written in place; kept if it survives
                birth(m, g, r, t, i, k, &v, 0)
                if rec != NULL:
                    vid = rec.next_id
                    rec.next_id += 1
                    br = <BirthRec*>buf_push(&rec.births, 1)
                    cp = <double*>buf_push(&rec.content, dc)
                    if br == NULL or (dc and cp == NULL):
                        return -2
                    br.vid, br.step, br.node, br.vtype, br.tau0 = vid, <int32_t>t, i, k, v.tau
                    if dc:
                        memcpy(cp, v.content, dc * sizeof(double))
                cause = vstep(m, g, r, t, &v, &slot, &docked, 0)
                if finish(m, &v, cause, slot, docked, i, t, vid, dst, counts, docks, rec) < 0:
                    return -2
    work[0] = total
    return 0


cdef inline double obs_logp(int det, int64_t y, int64_t N, const double* lf, double lp, double lq,
                            const double* lognf, double fl) noexcept nogil:
    """log p(observed y | true N) of the detection model (DESIGN §2.2)."""
    cdef double out
    if det == 0:
        return 0.0 if y == N else -INFINITY
    if det == 1:
        if y > N:
            return -INFINITY
        out = lf[N] - lf[y] - lf[N - y] + y * lp
        if N > y:
            out += (N - y) * lq
        return out
    return y * lognf[N] - (N + fl) - lf[y]


cdef inline Pop pop_view(int32_t[:, :, ::1] node, int32_t[:, :, ::1] vtype, int32_t[:, :, ::1] left,
                         double[:, :, ::1] tau, double[:, :, ::1] content, int64_t[:, ::1] size,
                         int b, Py_ssize_t j, Py_ssize_t cap, int countdown) noexcept nogil:
    """Particle j's population in buffer b (returned by value: private to the calling thread)."""
    cdef Pop p
    p.node = &node[b, j, 0]
    p.vtype = &vtype[b, j, 0]
    p.left = &left[b, j, 0]
    p.tau = &tau[b, j, 0] if countdown else NULL
    p.content = &content[b, j, 0]
    p.vid = NULL
    p.size = size[b, j]
    p.cap = cap
    return p


cdef inline Rng rng_make(uint64_t key, uint64_t d, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    """A seeded stream, returned by value (private to the calling thread)."""
    cdef Rng g
    rng_seed(&g, key, d, a, b, c)
    return g


def _touched(shape, dtype):
    """A zeroed array whose pages are written now, by this thread: first-touch page
    faults inside the parallel loops would serialise the threads on the kernel's
    memory lock."""
    out = np.empty(shape, dtype)
    out.fill(0)
    return out


def pf_run(CoreModel cm, uint64_t key, int run, int n_steps, counts, docks, int detection, double p_det,
           double floor_, int n_particles, int capacity, double ess_frac, int n_threads, bint lineage):
    """Bootstrap particle filter for one run (see :func:`nvppl.smc.particle_filter`).

    Returns a dict with ``log_inc (T)``, ``ess (T)``, ``resampled (T)``,
    ``filtered (T, n, K)``, ``work`` (particle-vesicle-steps), ``lineage (T)``
    (or None) — or, when the filter cannot go on, ``error`` with the details.
    """
    cdef const Model* m = &cm.m
    cdef Py_ssize_t N = n_particles, C = capacity, T = n_steps, nK = m.n * m.K, j, c, t, pj
    cdef int cur, dc = m.dc, countdown = m.lifetime == 1, st
    cdef int has_y = counts is not None, has_d = docks is not None
    cdef double lp = log(p_det) if detection == 1 else 0.0
    cdef double lq = (log1p(-p_det) if p_det < 1.0 else -INFINITY) if detection == 1 else 0.0
    cdef double mx, tot, tot2, prev_lse, u, acc, w
    cdef Rng g
    cdef Pop src, dst
    cdef int64_t obs_max = 0
    if not (cm.n_runs_table == 1 or run < cm.n_runs_table) or cm.n_steps_table not in (1, n_steps):
        raise ValueError("internal: the model's tables do not cover this run")
    cdef Py_ssize_t rt = run if cm.n_runs_table > 1 else 0
    y_arr = np.ascontiguousarray(counts if has_y else np.zeros((1, 1, 1)), dtype=np.int64)
    d_arr = np.ascontiguousarray(docks if has_d else np.zeros((1, 1, 1)), dtype=np.int64)
    obs_max = max(int(y_arr.max(initial=0)), int(d_arr.max(initial=0)))
    cdef const int64_t[:, :, ::1] y = y_arr
    cdef const int64_t[:, :, ::1] D = d_arr
    cdef double[::1] lf = np.asarray(
        [0.0] + list(np.cumsum(np.log(np.arange(1, max(C, obs_max) + 1, dtype=np.float64)))), np.float64)
    cdef double[::1] lognf = np.log(np.arange(C + 1, dtype=np.float64) + floor_)
    cdef int32_t[:, :, ::1] node = _touched((2, N, C), np.int32)
    cdef int32_t[:, :, ::1] vtype = _touched((2, N, C), np.int32)
    cdef int32_t[:, :, ::1] left = _touched((2, N, C), np.int32)
    cdef double[:, :, ::1] tau = _touched((2, N, C if countdown else 1), np.float64)
    cdef double[:, :, ::1] content = _touched((2, N, C * dc if dc else 1), np.float64)
    cdef int64_t[:, ::1] size = np.zeros((2, N), np.int64)
    cdef int32_t[:, ::1] cnt = _touched((N, nK), np.int32)
    cdef int32_t[:, ::1] dk = _touched((N, nK), np.int32)
    cdef double[::1] lw = np.zeros(N)
    cdef double[::1] incr = np.zeros(N)
    cdef double[::1] W = np.zeros(N)
    cdef int32_t[::1] status = np.zeros(N, np.int32)
    cdef int64_t[::1] bad = np.full(N, -1, np.int64)
    cdef int64_t[::1] work = np.zeros(N, np.int64)
    cdef int32_t[:, ::1] anc = np.empty((T, N), np.int32)
    out_log_inc = np.zeros(T)
    out_ess = np.zeros(T)
    out_res = np.zeros(T, np.bool_)
    out_filt = np.zeros((T, m.n, m.K))
    cdef double[::1] log_inc = out_log_inc
    cdef double[::1] ess = out_ess
    cdef cnp.npy_bool[::1] res = out_res
    cdef double[:, ::1] filt = out_filt.reshape(T, nK)
    cdef int64_t total_work = 0
    cdef double li
    for j in range(N):
        anc[0, j] = <int32_t>j
    for t in range(T):
        cur = t % 2
        with nogil:
            for j in prange(N, num_threads=n_threads, schedule="dynamic"):
                src = pop_view(node, vtype, left, tau, content, size, 1 - cur, anc[t, j], C, countdown)
                dst = pop_view(node, vtype, left, tau, content, size, cur, j, C, countdown)
                g = rng_make(key, DOM_PF, <uint64_t>run, <uint64_t>t, <uint64_t>j)
                st = particle_step(m, &g, rt, t, &src, &dst, &cnt[j, 0], &dk[j, 0], NULL, &work[j])
                size[cur, j] = dst.size
                status[j] = st
                li = 0.0
                bad[j] = -1
                if st == 0:
                    for c in range(nK):
                        if has_y:
                            li = li + obs_logp(detection, y[t, c // m.K, c % m.K], cnt[j, c], &lf[0], lp, lq,
                                               &lognf[0], floor_)
                            if isinf(li) and bad[j] < 0:
                                bad[j] = c
                        if has_d:
                            li = li + obs_logp(detection, D[t, c // m.K, c % m.K], dk[j, c], &lf[0], lp, lq,
                                               &lognf[0], floor_)
                            if isinf(li) and bad[j] < 0:
                                bad[j] = nK + c
                incr[j] = li
        for j in range(N):
            total_work += work[j]
            if status[j] == -2:
                raise MemoryError("out of memory in the particle filter")
            if status[j] == -1:
                return {"error": "capacity", "step": t, "particle": j, "needed": int(work[j])}
        with nogil:
            # log-evidence increment, weights, ESS (serial: same result for any thread count)
            mx = -INFINITY
            for j in range(N):
                if lw[j] > mx:
                    mx = lw[j]
            tot = 0.0
            for j in range(N):
                tot += exp(lw[j] - mx)
            prev_lse = mx + log(tot)
            mx = -INFINITY
            for j in range(N):
                lw[j] += incr[j]
                if lw[j] > mx:
                    mx = lw[j]
        if mx == -INFINITY:
            # name the observation that the most particles cannot explain
            true = np.concatenate([np.asarray(cnt), np.asarray(dk)], axis=1)  # (N, 2 nK)
            seen = np.concatenate([y_arr[t].ravel() if has_y else np.zeros(nK, np.int64),
                                   d_arr[t].ravel() if has_d else np.zeros(nK, np.int64)])
            impossible = (true != seen) if detection == 0 else (true < seen) if detection == 1 else true < 0
            impossible[:, :nK] &= bool(has_y)
            impossible[:, nK:] &= bool(has_d)
            per_cell = impossible.sum(0)
            c = int(per_cell.argmax())
            kind = "counts" if c < nK else "docks"
            cell = c % nK
            return {"error": "zero", "step": t, "node": int(cell // m.K), "type": int(cell % m.K), "kind": kind,
                    "observed": int(seen[c]), "true_min": int(true[:, c].min()), "true_max": int(true[:, c].max()),
                    "n_conflict": int(per_cell[c]), "n_particles": int(N)}
        with nogil:
            tot = 0.0
            tot2 = 0.0
            for j in range(N):
                W[j] = exp(lw[j] - mx)
                tot += W[j]
            for j in range(N):
                W[j] /= tot
                tot2 += W[j] * W[j]
            log_inc[t] = mx + log(tot) - prev_lse
            ess[t] = 1.0 / tot2
            for j in range(N):
                w = W[j]
                if w > 0.0:
                    for c in range(nK):
                        filt[t, c] += w * cnt[j, c]
            if t + 1 < T:
                if ess[t] < ess_frac * N:
                    res[t] = 1
                    rng_seed(&g, key, DOM_RESAMPLE, <uint64_t>run, <uint64_t>t, 0)
                    u = uniform(&g) / N
                    acc = W[0]
                    pj = 0
                    for j in range(N):
                        while u > acc and pj < N - 1:
                            pj += 1
                            acc += W[pj]
                        anc[t + 1, j] = <int32_t>pj
                        u += 1.0 / N
                    for j in range(N):
                        lw[j] = 0.0
                else:
                    for j in range(N):
                        anc[t + 1, j] = <int32_t>j
    out = {"log_inc": out_log_inc, "ess": out_ess, "resampled": out_res, "filtered": out_filt,
           "work": int(total_work), "lineage": None}
    if lineage:
        line = np.empty(T, np.int32)
        rng_seed(&g, key, DOM_LINEAGE, <uint64_t>run, 0, 0)
        u = uniform(&g)
        acc = 0.0
        pj = N - 1
        for j in range(N):
            acc += W[j]
            if u < acc:
                pj = j
                break
        for t in range(T - 1, -1, -1):
            line[t] = pj
            pj = anc[t, pj]
        out["lineage"] = line
    return out


def pf_replay(CoreModel cm, uint64_t key, int run, int n_steps, int32_t[::1] line, int capacity):
    """Re-run the ancestral line ``line`` (particle index per step) of a
    :func:`pf_run` with the same streams, recording every event.

    Returns births ``(vid, step, node, type, tau0)``, their content, moves
    ``(vid, step, node_from, node_to, slot, docked)`` and deaths
    ``(vid, step, cause)`` as arrays.
    """
    cdef const Model* m = &cm.m
    cdef Py_ssize_t C = capacity, T = n_steps, t, nK = m.n * m.K
    cdef Py_ssize_t rt = run if cm.n_runs_table > 1 else 0
    cdef int dc = m.dc, st = 0, b
    cdef Rng g
    cdef Pop pops[2]
    cdef Recorder rec
    cdef int64_t work = 0
    node = np.empty((2, C), np.int32)
    vtype = np.empty((2, C), np.int32)
    left = np.empty((2, C), np.int32)
    tau = np.empty((2, C), np.float64)
    content = np.empty((2, max(C * dc, 1)), np.float64)
    vid = np.empty((2, C), np.int64)
    cdef int32_t[:, ::1] nd = node, vt = vtype, lf = left
    cdef double[:, ::1] ta = tau, co = content
    cdef int64_t[:, ::1] vi = vid
    cdef int32_t[::1] cnt = np.zeros(nK, np.int32), dk = np.zeros(nK, np.int32)
    for b in range(2):
        pops[b].node, pops[b].vtype, pops[b].left = &nd[b, 0], &vt[b, 0], &lf[b, 0]
        pops[b].tau, pops[b].content, pops[b].vid = &ta[b, 0], &co[b, 0], &vi[b, 0]
        pops[b].size, pops[b].cap = 0, C
    buf_init(&rec.births, sizeof(BirthRec))
    buf_init(&rec.content, sizeof(double))
    buf_init(&rec.steps, sizeof(MoveRec))
    buf_init(&rec.deaths, sizeof(DeathRec))
    rec.next_id = 0
    try:
        with nogil:
            for t in range(T):
                rng_seed(&g, key, DOM_PF, <uint64_t>run, <uint64_t>t, <uint64_t>line[t])
                st = particle_step(m, &g, rt, t, &pops[(t + 1) % 2], &pops[t % 2], &cnt[0], &dk[0], &rec, &work)
                if st != 0:
                    break
        if st != 0:
            raise MemoryError("out of memory replaying a particle trajectory")
        births = np.frombuffer((<char*>rec.births.data)[:rec.births.size * sizeof(BirthRec)],
                               dtype=_dtype_birth()).copy() if rec.births.size else np.zeros(0, _dtype_birth())
        bcontent = (np.frombuffer((<char*>rec.content.data)[:rec.content.size * sizeof(double)], np.float64).copy()
                    if rec.content.size else np.zeros(0))
        moves = np.frombuffer((<char*>rec.steps.data)[:rec.steps.size * sizeof(MoveRec)],
                              dtype=_dtype_move()).copy() if rec.steps.size else np.zeros(0, _dtype_move())
        deaths = np.frombuffer((<char*>rec.deaths.data)[:rec.deaths.size * sizeof(DeathRec)],
                               dtype=_dtype_death()).copy() if rec.deaths.size else np.zeros(0, _dtype_death())
    finally:
        buf_free(&rec.births)
        buf_free(&rec.content)
        buf_free(&rec.steps)
        buf_free(&rec.deaths)
    return births, bcontent.reshape(len(births), dc), moves, deaths


def _dtype_slot():
    return np.dtype({"names": ["prob", "dest", "alias"], "formats": [np.float64, np.int32, np.int32],
                     "offsets": [0, 8, 12], "itemsize": sizeof(Slot)})


def _dtype_birth():
    return np.dtype({"names": ["vid", "step", "node", "type", "tau0"],
                     "formats": [np.int64, np.int32, np.int32, np.int32, np.float64],
                     "offsets": [0, 8, 12, 16, 24], "itemsize": sizeof(BirthRec)})


def _dtype_move():
    return np.dtype({"names": ["vid", "step", "node_from", "node_to", "slot", "docked"],
                     "formats": [np.int64] + [np.int32] * 5,
                     "offsets": [0, 8, 12, 16, 20, 24], "itemsize": sizeof(MoveRec)})


def _dtype_death():
    return np.dtype({"names": ["vid", "step", "cause"], "formats": [np.int64, np.int32, np.int32],
                     "offsets": [0, 8, 12], "itemsize": sizeof(DeathRec)})


# --------------------------------------------------------------------------- samplers, for tests
def draw(uint64_t key, int kind, Py_ssize_t size, double a=1.0, double b=1.0, uint64_t stream=0):
    """``size`` draws from one stream of the core's generators: kind 0 uniform,
    1 normal, 2 Poisson(a), 3 Gamma(a, b). For testing the samplers."""
    cdef Rng g
    cdef Py_ssize_t q
    out = np.empty(size, np.float64)
    cdef double[::1] o = out
    cdef double ea = exp(-a)
    rng_seed(&g, key, DOM_TEST, stream, 0, 0)
    with nogil:
        for q in range(size):
            if kind == 0:
                o[q] = uniform(&g)
            elif kind == 1:
                o[q] = normal(&g)
            elif kind == 2:
                o[q] = <double>poisson_draw(&g, a, ea)
            else:
                o[q] = gamma_draw(&g, a, b)
    return out
