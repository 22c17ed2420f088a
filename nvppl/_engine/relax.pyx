# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled linear recursion of the density relaxation and its adjoint.

The exact-mean density of :mod:`nvppl.density` reduces, for geometric lifetimes
with budgets 1 or infinite and content-independent kernels, to a linear
recursion over steps ``t``, channels ``c`` (the mass, then one per content
dimension), nodes and types ``k`` (innermost, so that the types of one move are
processed together)::

    pre[t]     = S[t-1] * a[t-1] + src[t]            (a[-1] = 0)
    a[t, j, k] = sum over moves (i, m) with cand[i, m] = j of  P[i, m, k] * pre[t, i, k]

``a`` is the expected mass arriving by migration in step ``t``. :func:`forward`
runs it over each node's incoming moves (contiguous weights, a gather of the
sources) and :func:`backward` runs its adjoint along the outgoing candidate
lists, accumulating the cotangents of ``P``, ``src`` and ``S`` without any
scatter. ``P``, ``src`` and ``S`` have a leading time axis of length ``T`` or 1
(shared by every step; its cotangent is then summed over steps). Arrays are
allocated in Python and reached through typed memoryviews; the loops run
without the GIL on one thread, in a fixed order.
"""

import numpy as np

DEF KB = 8  # types processed together (local accumulators)


def incoming(const long[:, ::1] cand, const long[::1] n_cand):
    """Incoming-move lists of a candidate table ``cand (n, M)`` (``-1`` padded).

    Returns ``(ptr, src, slot)``: the moves into node ``j`` are
    ``ptr[j] <= e < ptr[j + 1]``, from node ``src[e]`` through flat slot
    ``slot[e] = src[e] * M + m``, in increasing order of ``slot``.
    """
    cdef Py_ssize_t n = cand.shape[0], M = cand.shape[1], i, m, j, e
    counts = np.zeros(n + 1, dtype=np.int64)
    cdef long[::1] cnt = counts
    for i in range(n):
        for m in range(n_cand[i]):
            j = cand[i, m]
            cnt[j + 1] += 1
    ptr_arr = np.cumsum(counts)
    fill_arr = ptr_arr[:-1].copy()
    cdef long[::1] fill = fill_arr
    E = int(ptr_arr[n])
    src_arr = np.empty(E, dtype=np.int64)
    slot_arr = np.empty(E, dtype=np.int64)
    cdef long[::1] src = src_arr, slot = slot_arr
    for i in range(n):
        for m in range(n_cand[i]):
            j = cand[i, m]
            e = fill[j]
            src[e] = i
            slot[e] = i * M + m
            fill[j] += 1
    return ptr_arr, src_arr, slot_arr


cdef void _weights(const double* P, const long* slot, Py_ssize_t E, Py_ssize_t K, double* Pin) noexcept nogil:
    """Reorder ``P (n·M, K)`` into incoming order ``Pin (E, K)``."""
    cdef Py_ssize_t e, k
    for e in range(E):
        for k in range(K):
            Pin[e * K + k] = P[slot[e] * K + k]


cdef inline void _fwd1(double* a_t, const double* Pin, const double* pre, const long* pp, const long* es,
                       Py_ssize_t n, Py_ssize_t K, Py_ssize_t k0) noexcept nogil:
    cdef Py_ssize_t j, e
    cdef double s0
    for j in range(n):
        s0 = 0.0
        for e in range(pp[j], pp[j + 1]):
            s0 += Pin[e * K + k0] * pre[es[e] * K + k0]
        a_t[j * K + k0] = s0


cdef inline void _fwd2(double* a_t, const double* Pin, const double* pre, const long* pp, const long* es,
                       Py_ssize_t n, Py_ssize_t K, Py_ssize_t k0) noexcept nogil:
    cdef Py_ssize_t j, e, q
    cdef double s0, s1
    for j in range(n):
        s0 = 0.0
        s1 = 0.0
        for e in range(pp[j], pp[j + 1]):
            q = es[e] * K + k0
            s0 += Pin[e * K + k0] * pre[q]
            s1 += Pin[e * K + k0 + 1] * pre[q + 1]
        a_t[j * K + k0] = s0
        a_t[j * K + k0 + 1] = s1


cdef inline void _bwd2(const double* Pt, double* Pb, const double* mu, const double* pre_i, double* acc,
                       const long* cand_i, Py_ssize_t nc, Py_ssize_t base, Py_ssize_t K, Py_ssize_t k0) noexcept nogil:
    cdef Py_ssize_t m, off, q
    cdef double a0 = 0.0, a1 = 0.0, p0 = pre_i[0], p1 = pre_i[1], m0, m1
    for m in range(nc):
        q = cand_i[m] * K + k0
        m0 = mu[q]
        m1 = mu[q + 1]
        off = base + m * K
        a0 += Pt[off] * m0
        a1 += Pt[off + 1] * m1
        Pb[off] += p0 * m0
        Pb[off + 1] += p1 * m1
    acc[0] = a0
    acc[1] = a1


def forward(const double[:, :, :, ::1] P, const double[:, :, :, ::1] src, const double[:, :, ::1] S,
            const long[::1] ptr, const long[::1] esrc, const long[::1] slot, Py_ssize_t T):
    """Arrivals ``a (T, Ch, n, K)`` of the recursion.

    Parameters
    ----------
    P : (T or 1, n, M, K)
        Migration probabilities per source node and candidate slot.
    src : (T or 1, Ch, n, K)
        Sources added before migration (births; births times their mean content).
    S : (T or 1, n, K)
        Factor applied to the arrivals of step ``t`` before they move again.
    ptr, esrc, slot
        Incoming-move lists from :func:`incoming`.
    T : int
        Number of steps.
    """
    cdef Py_ssize_t Ch = src.shape[1], n = src.shape[2], K = src.shape[3], E = esrc.shape[0]
    cdef Py_ssize_t nK = n * K, nMK = P.shape[1] * P.shape[2] * K
    cdef bint tP = P.shape[0] > 1, tsrc = src.shape[0] > 1, tS = S.shape[0] > 1
    out = np.zeros((T, Ch, n, K))
    pre_arr = np.zeros(nK)
    pin_arr = np.empty(max(E * K, 1))
    cdef double[:, :, :, ::1] a = out
    cdef double[::1] pre_v = pre_arr, pin_v = pin_arr
    cdef double* pre = &pre_v[0]
    cdef double* Pin = &pin_v[0]
    cdef const double* s_t
    cdef const double* S_t
    cdef const double* a_prev
    cdef double* a_t
    cdef const double* w
    cdef const double* x
    cdef Py_ssize_t t, c, q, j, e, k, k0, kk
    cdef double acc[KB]
    cdef const long* pp = &ptr[0]
    cdef const long* es = &esrc[0] if E else NULL
    with nogil:
        _weights(&P[0, 0, 0, 0], &slot[0] if E else NULL, E, K, Pin)
        for t in range(T):
            if tP and t > 0:
                _weights(&P[t, 0, 0, 0], &slot[0], E, K, Pin)
            for c in range(Ch):
                s_t = &src[t if tsrc else 0, c, 0, 0]
                if t == 0:
                    for q in range(nK):
                        pre[q] = s_t[q]
                else:
                    S_t = &S[(t - 1) if tS else 0, 0, 0]
                    a_prev = &a[t - 1, c, 0, 0]
                    for q in range(nK):
                        pre[q] = S_t[q] * a_prev[q] + s_t[q]
                a_t = &a[t, c, 0, 0]
                for k0 in range(0, K, KB):
                    kk = min(KB, K - k0)
                    if kk == 2:
                        _fwd2(a_t, Pin, pre, pp, es, n, K, k0)
                    elif kk == 1:
                        _fwd1(a_t, Pin, pre, pp, es, n, K, k0)
                    else:
                        for j in range(n):
                            for k in range(kk):
                                acc[k] = 0.0
                            for e in range(pp[j], pp[j + 1]):
                                w = &Pin[e * K + k0]
                                x = &pre[es[e] * K + k0]
                                for k in range(kk):
                                    acc[k] += w[k] * x[k]
                            for k in range(kk):
                                a_t[j * K + k0 + k] = acc[k]
    return out


def backward(const double[:, :, :, ::1] P, const double[:, :, :, ::1] src, const double[:, :, ::1] S,
             const double[:, :, :, ::1] a, const double[:, :, :, ::1] a_bar, const long[:, ::1] cand,
             const long[::1] n_cand):
    """Cotangents ``(P̄, src̄, S̄)`` (shaped like ``P``, ``src``, ``S``) given the
    cotangent ``ā`` of the output ``a`` of :func:`forward`.

    With ``μ[t] = ā[t] + S[t] · p̄re[t + 1]`` the total cotangent of ``a[t]``:
    ``p̄re[t, i] = Σ_m P[i, m] μ[t, cand[i, m]]``, ``src̄[t] = p̄re[t]``,
    ``S̄[t − 1] = Σ_c a[t − 1] p̄re[t]`` and ``P̄[i, m] = Σ_c pre[t, i] μ[t, cand[i, m]]``
    (summed over the steps that share an entry).
    """
    cdef Py_ssize_t T = a.shape[0], Ch = a.shape[1], n = a.shape[2], K = a.shape[3], M = cand.shape[1]
    cdef Py_ssize_t nK = n * K
    cdef bint tP = P.shape[0] > 1, tsrc = src.shape[0] > 1, tS = S.shape[0] > 1
    P_bar_arr = np.zeros((P.shape[0], n, M, K))
    src_bar_arr = np.zeros((src.shape[0], Ch, n, K))
    S_bar_arr = np.zeros((S.shape[0], n, K))
    mu_arr = np.zeros((Ch, nK))
    pb_arr = np.zeros((Ch, nK))  # p̄re[t + 1]
    cdef double[:, :, :, ::1] P_bar = P_bar_arr
    cdef double[:, :, :, ::1] src_bar = src_bar_arr
    cdef double[:, :, ::1] S_bar = S_bar_arr
    cdef double[:, ::1] mu_v = mu_arr, pb_v = pb_arr
    cdef double pre_i[KB]
    cdef double acc[KB]
    cdef double* mu
    cdef double* pb
    cdef const double* Pt
    cdef double* Pb
    cdef const double* s_t
    cdef const double* S_prev
    cdef const double* S_t
    cdef const double* a_prev
    cdef const double* ab_t
    cdef const double* mj
    cdef double* sb
    cdef double* Sb
    cdef Py_ssize_t t, c, q, i, m, k, iK, off, k0, kk
    with nogil:
        for t in range(T - 1, -1, -1):
            Pt = &P[t if tP else 0, 0, 0, 0]
            Pb = &P_bar[t if tP else 0, 0, 0, 0]
            S_t = &S[t if tS else 0, 0, 0]
            for c in range(Ch):
                mu = &mu_v[c, 0]
                pb = &pb_v[c, 0]
                ab_t = &a_bar[t, c, 0, 0]
                if t == T - 1:
                    for q in range(nK):
                        mu[q] = ab_t[q]
                else:
                    for q in range(nK):
                        mu[q] = ab_t[q] + S_t[q] * pb[q]
                s_t = &src[t if tsrc else 0, c, 0, 0]
                sb = &src_bar[t if tsrc else 0, c, 0, 0]
                if t > 0:
                    S_prev = &S[(t - 1) if tS else 0, 0, 0]
                    a_prev = &a[t - 1, c, 0, 0]
                for k0 in range(0, K, KB):
                    kk = min(KB, K - k0)
                    for i in range(n):
                        iK = i * K + k0
                        for k in range(kk):
                            acc[k] = 0.0
                            if t > 0:
                                pre_i[k] = S_prev[iK + k] * a_prev[iK + k] + s_t[iK + k]
                            else:
                                pre_i[k] = s_t[iK + k]
                        if kk == 2:
                            _bwd2(Pt, Pb, mu, pre_i, acc, &cand[i, 0], n_cand[i], i * M * K + k0, K, k0)
                        else:
                            for m in range(n_cand[i]):
                                mj = &mu[cand[i, m] * K + k0]
                                off = (i * M + m) * K + k0
                                for k in range(kk):
                                    acc[k] += Pt[off + k] * mj[k]
                                    Pb[off + k] += pre_i[k] * mj[k]
                        for k in range(kk):
                            pb[iK + k] = acc[k]
                            sb[iK + k] += acc[k]
                if t > 0:
                    Sb = &S_bar[(t - 1) if tS else 0, 0, 0]
                    for q in range(nK):
                        Sb[q] += a_prev[q] * pb[q]
    return P_bar_arr, src_bar_arr, S_bar_arr
