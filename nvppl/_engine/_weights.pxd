# cython: language_level=3
"""Particle weights, shared by the particle filters (``filter.pyx``, ``guided.pyx``).

:c:func:`advance` adds a step's log-weight increments and returns the log-sum
of the weights before them; :c:func:`normalise` gives the normalised weights,
their log-sum and the effective sample size; :c:func:`systematic` draws the
ancestors by systematic resampling. All run serially, so a filter's result
does not depend on its thread count.
"""

from libc.math cimport INFINITY, exp, log
from libc.stdint cimport int32_t


cdef inline double advance(double* lw, const double* incr, Py_ssize_t N, double* prev_lse) noexcept nogil:
    """``lw += incr``; ``prev_lse`` = log Σ exp(lw) before; returns the new maximum."""
    cdef Py_ssize_t j
    cdef double mx = -INFINITY, tot = 0.0
    for j in range(N):
        if lw[j] > mx:
            mx = lw[j]
    for j in range(N):
        tot += exp(lw[j] - mx)
    prev_lse[0] = mx + log(tot)
    mx = -INFINITY
    for j in range(N):
        lw[j] += incr[j]
        if lw[j] > mx:
            mx = lw[j]
    return mx


cdef inline double normalise(const double* lw, double mx, double* W, Py_ssize_t N, double* ess) noexcept nogil:
    """Normalised weights ``W`` ∝ exp(lw) (``mx`` = max lw, finite); returns
    log Σ exp(lw) and sets ``ess`` = 1 / Σ W²."""
    cdef Py_ssize_t j
    cdef double tot = 0.0, tot2 = 0.0
    for j in range(N):
        W[j] = exp(lw[j] - mx)
        tot += W[j]
    for j in range(N):
        W[j] /= tot
        tot2 += W[j] * W[j]
    ess[0] = 1.0 / tot2
    return mx + log(tot)


cdef inline void systematic(const double* W, Py_ssize_t N, double u, int32_t* anc) noexcept nogil:
    """Ancestors ``anc`` of ``N`` particles by systematic resampling of ``W``
    (``u`` uniform on [0, 1))."""
    cdef Py_ssize_t j, pj = 0
    cdef double acc = W[0]
    u /= N
    for j in range(N):
        while u > acc and pj < N - 1:
            pj += 1
            acc += W[pj]
        anc[j] = <int32_t>pj
        u += 1.0 / N
