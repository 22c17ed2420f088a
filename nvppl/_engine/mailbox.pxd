# cython: language_level=3
"""Declarations of the chip's vesicle mailboxes (``mailbox.pyx``).

The engine runs the vesicle mailboxes of the node cores of a deployed model
(``docs/guide/emulator.rst``, "Vesicles on the chip"). Every array is allocated
from Python (``nvppl/backend/vesicle_engine.py``) and reached through the
pointers of a :c:type:`Tables` (read only) and a :c:type:`Mailboxes`
(mutable). Graph nodes are numbered 0..n-1 in substrate order, node cores
0..C-1 in placement order.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t


cdef struct Tables:
    # ---- sizes
    int64_t n_nodes         # n
    int64_t n_types         # K
    int64_t n_slots         # M, candidate slots per node
    int64_t table_len       # L, entries of an emission table
    int64_t n_cores         # C, node cores
    int64_t mailbox_words   # vesicles a node core's mailbox holds
    int64_t max_id          # vesicle ids must stay below this (24-bit id field)
    # ---- quantised kernels (thresholds out of 2**16, see nvppl/backend/vesicles.py)
    const int64_t* emission     # (K, L) cumulative emission-count thresholds
    const int64_t* migration    # (K, n, M) cumulative migration thresholds
    const int64_t* cand         # (n, M) candidate nodes, -1 padded
    const int64_t* ncand        # (n,) candidates per node, 0 on a sink
    const int64_t* dock         # (K,) docking thresholds
    const int64_t* absorb       # (n,) absorption thresholds
    const int64_t* decay        # (K,) decay (survival) thresholds
    const int64_t* budget       # (K,) releases per vesicle, 15 = unlimited
    # ---- placement
    const int32_t* node_core    # (n,) node core of every node
    const int32_t* hops         # (C, C) tile hops between node cores
    # ---- emission from the on-chip spike rate (nvppl/backend/vesicle_rates.py); rate_window 0: none
    int64_t rate_window         # W, ticks of the rate window
    int64_t rate_shift          # s: a window count c reads the table of bucket c >> s
    const int64_t* rate_emission  # (R, K, L) cumulative emission-count thresholds per bucket row and type
    const int64_t* rate_base    # (n,) first bucket row of every node
    const int64_t* rate_buckets # (n,) buckets of every node


cdef struct Mailboxes:
    # ---- the vesicles resident on the chip, in id order (struct of arrays, capacity C * mailbox_words)
    int64_t n_live
    int64_t next_id             # id of the next vesicle born in this run
    int64_t* vid
    int32_t* vtype
    int32_t* node
    int32_t* left               # releases left, 15 = unlimited
    int64_t* occupancy          # (C,) vesicles per node core
    int64_t* born               # (n * K,) births per (node, type) unit this tick
    # ---- the rate window: spikes per node in each of the last W ticks (a ring) and their sum
    int64_t* ring               # (W, n)
    int64_t* wsum               # (n,)
    int64_t ring_pos            # the ring row the next tick's counts replace
    # ---- generator keys of this run: mix(mix(seed) ^ domain)
    uint64_t emission_key
    uint64_t vesicle_key
    # ---- the event log of the run, appended to tick by tick (Python grows the arrays between ticks so
    #      that C * mailbox_words more events of each kind always fit)
    int64_t n_births
    int32_t* b_type
    int32_t* b_node
    int64_t n_steps
    int64_t* s_vid
    int32_t* s_from
    int32_t* s_to
    uint8_t* s_docked
    int64_t n_deaths
    int64_t* d_vid
    int32_t* d_cause            # 1 sink, 2 depleted, 3 absorbed, 4 expired
    # ---- counters of the run (see COUNTERS in mailbox.pyx)
    int64_t* counters
