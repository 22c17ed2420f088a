# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The particle filter over explicit vesicle populations.

- :func:`pf_run` — a bootstrap particle filter for one run: each particle is a
  whole vesicle population, advanced by the life cycle in parallel (OpenMP over
  particles, one random stream per run, step and particle) and weighted by the
  detection model of the observations;
- :func:`pf_replay` — re-runs one particle's ancestral line step by step with
  the same streams and records every event (genealogy tracing).
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport INFINITY, exp, isinf, log, log1p
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

from ._life cimport birth, vstep
from ._weights cimport advance, normalise, systematic
from ._rng cimport Rng, poisson_draw, rng_make, rng_seed, uniform
from ._state cimport (DOM_LINEAGE, DOM_PF, DOM_RESAMPLE, SINK, SURVIVES, BirthRec, DeathRec, Model, MoveRec, Pop,
                      Recorder, Vesicle, buf_free, buf_init, buf_push, tab)
from .model cimport CoreModel

cnp.import_array()


cdef inline int finish(const Model* m, Vesicle* v, int cause, int slot, int docked, int node_from,
                       Py_ssize_t t, int64_t vid, Pop* dst, int32_t* counts, int32_t* docks,
                       Recorder* rec) noexcept nogil:
    """Book one vesicle's step: dock counts, the survivor into ``dst``, events into ``rec``."""
    cdef Py_ssize_t q, cell = v.node * m.K + v.vtype
    cdef MoveRec* mv
    cdef DeathRec* de
    cdef int d
    if cause != SINK:
        if docked:
            docks[cell] += 1
        if rec != NULL:
            mv = <MoveRec*>buf_push(&rec.steps, 1)
            if mv == NULL:
                return -2
            mv.vid, mv.step, mv.node_from, mv.node_to = vid, <int32_t>t, node_from, v.node
            mv.slot, mv.docked = slot, docked
    if cause == SURVIVES:
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
    """Advance one population by step t (docs/design.rst, "The model") from ``src`` into ``dst``.

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
    """log p(observed y | true N) of the detection model (:class:`nvppl.Observations`)."""
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
            mx = advance(&lw[0], &incr[0], N, &prev_lse)
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
            log_inc[t] = normalise(&lw[0], mx, &W[0], N, &ess[t]) - prev_lse
            for j in range(N):
                w = W[j]
                if w > 0.0:
                    for c in range(nK):
                        filt[t, c] += w * cnt[j, c]
            if t + 1 < T:
                if ess[t] < ess_frac * N:
                    res[t] = 1
                    rng_seed(&g, key, DOM_RESAMPLE, <uint64_t>run, <uint64_t>t, 0)
                    systematic(&W[0], N, uniform(&g), &anc[t + 1, 0])
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
