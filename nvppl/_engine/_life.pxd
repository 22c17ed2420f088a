# cython: language_level=3
"""One vesicle's life cycle, shared by the simulation and the particle filter.

The order of one step is that of ``docs/design.rst`` ("The model"): emission
(:c:func:`birth`, eq. 9-13 and 37), then migration (eq. 15-17), docking
(eq. 18-19) with its release budget, absorption and decay (eq. 37-38), in
:c:func:`vstep`. The functions are inline: each engine compiles them into its
own loops.
"""

from libc.math cimport INFINITY, ceil, exp, log, log1p

from ._rng cimport Rng, gamma_draw, normal, uniform, uniform_open
from ._state cimport ABSORBED, DEPLETED, EXPIRED, SINK, SURVIVES, Model, Slot, Vesicle, tab


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

    Returns the cause of removal (``SURVIVES``, ``EXPIRED``, ``ABSORBED``,
    ``DEPLETED`` or ``SINK``: 0 to 4). ``v.node`` becomes the destination
    (unchanged at a sink).
    ``predraw``: geometric decay counts down the trials drawn at birth (see birth).
    """
    cdef int i = v.node, k = v.vtype, nc = m.ncand[i], s, dest, d, docked
    cdef Py_ssize_t base = (<Py_ssize_t>k * m.n + i) * m.M
    cdef Py_ssize_t tb = tab(m, r, t)
    cdef double u, mx, z, tot, acc, p, a
    cdef const Slot* sl
    if nc == 0:
        return SINK
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
            return DEPLETED
    if m.any_absorb:
        a = m.absorb[dest]
        if a > 0.0 and uniform(g) < a:
            return ABSORBED
    if m.lifetime == 0 and not predraw:
        if uniform(g) < m.delta[k]:
            return EXPIRED
    else:
        v.tau -= 1.0
        if m.sigma_tau > 0.0:
            v.tau += m.sigma_tau * normal(g)
        if v.tau <= 0.0:
            return EXPIRED
    return SURVIVES
