# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The tables of one (model, parameters, covariates) as the engines read them.

:class:`CoreModel` keeps every array alive and fills the pointers of a
:c:type:`Model`; :func:`draw` exposes the engines' samplers for tests.
"""

import numpy as np

cimport numpy as cnp
from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t, uint64_t

from ._rng cimport Rng, gamma_draw, normal, poisson_draw, rng_seed, uniform
from ._state cimport DOM_TEST, Model, Slot

cnp.import_array()


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

    Built by :func:`nvppl._engine.bridge.core_model`; every array is kept alive
    here and reached by the kernels through the pointers of a ``Model``.
    """

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


def _dtype_slot():
    return np.dtype({"names": ["prob", "dest", "alias"], "formats": [np.float64, np.int32, np.int32],
                     "offsets": [0, 8, 12], "itemsize": sizeof(Slot)})


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
