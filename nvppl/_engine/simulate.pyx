# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Explicit-vesicle simulation: independent runs of the life cycle.

One task per (run, birth step) cohort: the vesicles born in that step are
emitted and followed to their removal or the last step. Tasks run in parallel
(OpenMP); each draws from its own random stream (``DOM_SIM``, run, step), so the
result does not depend on the number of threads.
"""

import time

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from ._life cimport birth, vstep
from ._rng cimport Rng, poisson_draw, rng_seed
from ._state cimport DOM_SIM, SINK, SURVIVES, Buf, Model, StepRec, VesRec, Vesicle, buf_free, buf_init, buf_push, tab
from .model cimport CoreModel

cnp.import_array()

cdef enum:
    LANES = 8           # vesicles followed at once by a simulation task


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
            if cause != SINK:
                st = &lane_steps[l * T + lns[l]]
                st.node_to = lv[l].node
                st.slot = <int16_t>slot
                st.docked = <uint8_t>docked
                lns[l] += 1
            if cause == SURVIVES and lstep[l] < T - 1:
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
