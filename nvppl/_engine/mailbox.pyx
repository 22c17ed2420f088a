# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The vesicle mailboxes of the chip's node cores: emission, migration, docking, absorption, decay for one tick.

Implements "Vesicles on the chip" of ``docs/guide/emulator.rst`` exactly; the
NumPy reference (``nvppl/backend/vesicle_reference.py``) implements it
independently and the tests compare the two event for event. Draws are keyed
by the run and the vesicle id (not by the core), so the process does not
depend on placement; the cores only decide which moves are packets and how
many hops they take.

With a rate window (``rate_window`` > 0) each tick first takes the spike
counts per node of the previous tick into the ring of the last W ticks, and
emission at node ℓ reads the cumulative table of bucket ``wsum[ℓ] >> s``
instead of the type's one table.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from ._rng cimport splitmix

import numpy as np

cdef enum:
    C_BIRTHS = 0
    C_STEPS = 1
    C_PACKETS = 2
    C_FLITS = 3
    C_HOPS = 4
    C_DOCKS = 5
    C_DRAWS = 6
    N_COUNTERS = 7

LOG = (("b_type", np.int32), ("b_node", np.int32), ("s_vid", np.int64), ("s_from", np.int32),
       ("s_to", np.int32), ("s_docked", np.uint8), ("d_vid", np.int64), ("d_cause", np.int32))

COUNTERS = ("births", "steps", "packets", "flits", "hops", "docks", "draws")
CAUSES = ("censored", "sink", "depleted", "absorbed", "expired")

cdef enum:
    ONE = 65536
    UNLIMITED = 15
    WRITE_FLITS = 4
    E_MAILBOX = 1
    E_IDS = 2
    E_TABLE = 3
    E_RATE = 4


cdef inline int64_t u16(uint64_t h, uint64_t k) noexcept nogil:
    """Draw k of a unit with key h: splitmix(h + k) >> 48."""
    return <int64_t>(splitmix(h + k) >> 48)


cdef void push_counts(const Tables* T, Mailboxes* S, const int64_t* counts) noexcept nogil:
    """Take a tick's spike counts per node into the window: the oldest of the W ticks leaves."""
    cdef int64_t l, n = T.n_nodes
    cdef int64_t* old = S.ring + S.ring_pos * n
    for l in range(n):
        S.wsum[l] += counts[l] - old[l]
        old[l] = counts[l]
    S.ring_pos = (S.ring_pos + 1) % T.rate_window


cdef int tick_nogil(const Tables* T, Mailboxes* S, int64_t t, int64_t* err) noexcept nogil:
    cdef int64_t K = T.n_types, n = T.n_nodes, M = T.n_slots, L = T.table_len
    cdef int64_t unit, k, j, c, i, w, m = 0, total
    cdef int64_t kappa, l, to, slot, d, nc, b
    cdef uint64_t h
    cdef int docked, dead, cause, finite
    cdef const int64_t* row
    cdef int64_t* cnt = S.counters

    # 1. emission: inversion of the cumulative count table with draw 0 of unit l * K + kappa; with a rate
    #    window, the table of the node's count bucket
    for unit in range(n * K):
        h = splitmix(S.emission_key ^ ((<uint64_t>unit << 32) + <uint64_t>t))
        d = u16(h, 0)
        if T.rate_window > 0:
            l = unit // K
            b = S.wsum[l] >> T.rate_shift
            if b < 0 or b >= T.rate_buckets[l]:
                err[0] = l
                return -E_RATE
            row = T.rate_emission + ((T.rate_base[l] + b) * K + unit % K) * L
        else:
            row = T.emission + (unit % K) * L
        c = 0
        while c < L and row[c] <= d:
            c += 1
        S.born[unit] = c
        S.occupancy[T.node_core[unit // K]] += c
        m += c
    cnt[C_DRAWS] += n * K
    for c in range(T.n_cores):
        if S.occupancy[c] > T.mailbox_words:
            err[0] = c
            return -E_MAILBOX
    if S.next_id + m > T.max_id:
        err[0] = S.next_id + m
        return -E_IDS
    w = S.n_live
    j = S.n_births
    for unit in range(n * K):
        for c in range(S.born[unit]):
            S.vid[w] = S.next_id
            S.next_id += 1
            S.vtype[w] = <int32_t>(unit % K)
            S.node[w] = <int32_t>(unit // K)
            S.left[w] = <int32_t>T.budget[unit % K]
            S.b_type[j] = S.vtype[w]
            S.b_node[j] = S.node[w]
            w += 1
            j += 1
    S.n_births = j
    total = w
    cnt[C_BIRTHS] += m

    # 2.-5. every resident vesicle: migrate, dock, be absorbed, decay
    for c in range(T.n_cores):
        S.occupancy[c] = 0
    w = 0
    for i in range(total):
        kappa = S.vtype[i]
        l = S.node[i]
        h = splitmix(S.vesicle_key ^ ((<uint64_t>S.vid[i] << 32) + <uint64_t>t))
        if T.ncand[l] == 0:                     # a sink removes the vesicle: no step row
            S.d_vid[S.n_deaths] = S.vid[i]
            S.d_cause[S.n_deaths] = 1
            S.n_deaths += 1
            continue
        d = u16(h, 0)
        row = T.migration + (kappa * n + l) * M
        slot = 0
        nc = T.ncand[l]
        while slot < nc and row[slot] <= d:
            slot += 1
        if slot == nc:                          # no entry above the draw: the row does not end at 2**16
            err[0] = l * K + kappa
            return -E_TABLE
        to = T.cand[l * M + slot]
        docked = u16(h, 1) < T.dock[kappa]
        cnt[C_DRAWS] += 2
        finite = S.left[i] != UNLIMITED
        cause = 0
        if docked:
            cnt[C_DOCKS] += 1
            if finite:
                S.left[i] -= 1
                if S.left[i] == 0:
                    cause = 2
        if cause == 0:
            cnt[C_DRAWS] += 1
            if u16(h, 2) < T.absorb[to]:
                cause = 3
            else:
                cnt[C_DRAWS] += 1
                if u16(h, 3) < T.decay[kappa]:
                    cause = 4
        j = S.n_steps
        S.s_vid[j] = S.vid[i]
        S.s_from[j] = <int32_t>l
        S.s_to[j] = <int32_t>to
        S.s_docked[j] = <uint8_t>docked
        S.n_steps += 1
        cnt[C_STEPS] += 1
        if T.node_core[to] != T.node_core[l]:
            cnt[C_PACKETS] += 1
            cnt[C_FLITS] += WRITE_FLITS
            cnt[C_HOPS] += T.hops[T.node_core[l] * T.n_cores + T.node_core[to]]
        if cause:
            S.d_vid[S.n_deaths] = S.vid[i]
            S.d_cause[S.n_deaths] = cause
            S.n_deaths += 1
            continue
        S.vid[w] = S.vid[i]
        S.vtype[w] = <int32_t>kappa
        S.node[w] = <int32_t>to
        S.left[w] = S.left[i]
        S.occupancy[T.node_core[to]] += 1
        w += 1
    S.n_live = w
    return 0


cdef class Engine:
    """The node cores of one deployed model, run by run and tick by tick.

    Parameters
    ----------
    arrays : dict
        The tables and placement of :c:type:`Tables` (int64, node_core and hops int32).
    sizes : dict
        ``mailbox_words`` and ``max_id``.
    """

    cdef Tables T
    cdef Mailboxes S
    cdef dict _keep
    cdef readonly object counters
    cdef readonly dict log
    cdef int64_t cap

    def __init__(self, dict arrays, dict sizes):
        cdef int64_t K, n, M, C, cap, W
        self._keep = {}
        em = self._arr(arrays, "emission", np.int64)
        mig = self._arr(arrays, "migration", np.int64)
        K, n, M = mig.shape[0], mig.shape[1], mig.shape[2]
        C = int(np.asarray(arrays["hops"]).shape[0])
        self.T.n_nodes, self.T.n_types, self.T.n_slots = n, K, M
        self.T.table_len = em.shape[1]
        self.T.n_cores = C
        self.T.mailbox_words = int(sizes["mailbox_words"])
        self.T.max_id = int(sizes["max_id"])
        W = int(sizes.get("rate_window", 0))
        self.T.rate_window, self.T.rate_shift = W, int(sizes.get("rate_shift", 0))
        if W > 0:
            rem = self._arr(arrays, "rate_emission", np.int64)
            if rem.ndim != 3 or rem.shape[1] != K or rem.shape[0] == 0:
                raise ValueError(f"rate_emission must have shape (rows, {K}, table length), got {rem.shape}")
            self.T.table_len = rem.shape[2]
            self.T.rate_emission = self._p64(rem)
            self.T.rate_base = self._p64(self._arr(arrays, "rate_base", np.int64))
            self.T.rate_buckets = self._p64(self._arr(arrays, "rate_buckets", np.int64))
            if em.size == 0:
                em = self._arr({"emission": np.zeros(1)}, "emission", np.int64)
        self.T.emission = self._p64(em)
        self.T.migration = self._p64(mig)
        self.T.cand = self._p64(self._arr(arrays, "cand", np.int64))
        self.T.ncand = self._p64(self._arr(arrays, "ncand", np.int64))
        self.T.dock = self._p64(self._arr(arrays, "dock", np.int64))
        self.T.absorb = self._p64(self._arr(arrays, "absorb", np.int64))
        self.T.decay = self._p64(self._arr(arrays, "decay", np.int64))
        self.T.budget = self._p64(self._arr(arrays, "budget", np.int64))
        self.T.node_core = self._p32(self._arr(arrays, "node_core", np.int32))
        self.T.hops = self._p32(self._arr(arrays, "hops", np.int32))
        cap = C * self.T.mailbox_words
        self.cap = max(cap, 1)
        for name, dt, size in (("vid", np.int64, cap), ("vtype", np.int32, cap), ("node", np.int32, cap),
                               ("left", np.int32, cap), ("occupancy", np.int64, C), ("born", np.int64, n * K),
                               ("counters", np.int64, N_COUNTERS), ("ring", np.int64, W * n),
                               ("wsum", np.int64, n)):
            self._keep[name] = np.zeros(max(size, 1), dtype=dt)
        k = self._keep
        self.S.ring, self.S.wsum = self._p64(k["ring"]), self._p64(k["wsum"])
        self.S.vid = self._p64(k["vid"])
        self.S.occupancy, self.S.born = self._p64(k["occupancy"]), self._p64(k["born"])
        self.S.counters = self._p64(k["counters"])
        self.S.vtype, self.S.node, self.S.left = self._p32(k["vtype"]), self._p32(k["node"]), self._p32(k["left"])
        self.counters = k["counters"]
        self.log = {}
        self._grow(4 * self.cap)

    def _grow(self, size):
        """Make room for ``size`` events of each kind in the log (keeping those logged)."""
        for name, dt in LOG:
            old = self.log.get(name)
            new = np.zeros(size, dtype=dt)
            if old is not None:
                new[:len(old)] = old
            self.log[name] = new
        g = self.log
        self.S.b_type, self.S.b_node = self._p32(g["b_type"]), self._p32(g["b_node"])
        self.S.s_vid, self.S.d_vid = self._p64(g["s_vid"]), self._p64(g["d_vid"])
        self.S.s_from, self.S.s_to = self._p32(g["s_from"]), self._p32(g["s_to"])
        self.S.d_cause = self._p32(g["d_cause"])
        cdef uint8_t[::1] dk = g["s_docked"]
        self.S.s_docked = &dk[0]

    def _arr(self, arrays, name, dt):
        a = np.array(arrays[name], dtype=dt, order="C", copy=True)
        self._keep["in_" + name] = a
        return a

    cdef int64_t* _p64(self, a) except NULL:
        cdef int64_t[::1] v = a.reshape(-1)
        return &v[0]

    cdef int32_t* _p32(self, a) except NULL:
        cdef int32_t[::1] v = a.reshape(-1)
        return &v[0]

    def start(self, uint64_t emission_key, uint64_t vesicle_key):
        """Empty the mailboxes and the log for a new run.

        The generator keys are splitmix(splitmix(seed) ^ domain) of the emission
        and the vesicle domains of the run.
        """
        self.S.n_live = 0
        self.S.next_id = 0
        self.S.n_births = self.S.n_steps = self.S.n_deaths = 0
        self.S.emission_key = emission_key
        self.S.vesicle_key = vesicle_key
        self.S.ring_pos = 0
        for name in ("occupancy", "ring", "wsum"):
            self._keep[name][:] = 0

    def tick(self, int64_t t, counts=None):
        """Advance one tick, appending its events to the log.

        ``counts`` (n,) are the spikes per node of the previous tick (zeros at
        tick 0); they enter the rate window before emission. Needed exactly when
        the engine has a rate window.

        Returns the numbers of births, steps and deaths logged so far in the run,
        or ("error", code, where): code 1, a node core's mailbox overflows (where:
        the node core); 2, the run's vesicle ids run out (where: the ids needed);
        3, a migration row has no entry above a draw (where: node * K + type);
        4, a window count beyond the node's rate tables (where: the node).
        Births are logged as (type, node), their ids consecutive from 0; steps as
        (vesicle, node_from, node_to, docked); deaths as (vesicle, cause code).
        """
        cdef int64_t err = 0, room
        cdef int res
        cdef int64_t[::1] cv
        if self.T.rate_window > 0:
            if counts is None:
                raise ValueError("the engine has a rate window: tick(t, counts) needs the spike counts per node")
            c = np.ascontiguousarray(counts, dtype=np.int64)
            if c.shape != (self.T.n_nodes,) or (c < 0).any():
                raise ValueError(f"counts must hold {self.T.n_nodes} non-negative spike counts, got shape {c.shape}")
            cv = c
            with nogil:
                push_counts(&self.T, &self.S, &cv[0])
        elif counts is not None:
            raise ValueError("the engine has no rate window: tick(t) takes no counts")
        room = len(self.log["b_type"]) - max(self.S.n_births, self.S.n_steps, self.S.n_deaths)
        if room < self.cap:
            self._grow(2 * len(self.log["b_type"]) + self.cap)
        with nogil:
            res = tick_nogil(&self.T, &self.S, t, &err)
        if res < 0:
            return ("error", -res, int(err))
        return (self.S.n_births, self.S.n_steps, self.S.n_deaths)

    def live(self):
        """(ids, types, nodes, releases left) of the resident vesicles, in id order."""
        k, n = self._keep, self.S.n_live
        return k["vid"][:n].copy(), k["vtype"][:n].copy(), k["node"][:n].copy(), k["left"][:n].copy()

    def occupancy(self):
        """Vesicles per node core after the last tick."""
        return self._keep["occupancy"].copy()

    def window_counts(self):
        """Spikes per node in the rate window after the last tick (zeros without a window)."""
        return self._keep["wsum"][:self.T.n_nodes].copy()
