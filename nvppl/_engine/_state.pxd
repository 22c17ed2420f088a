# cython: language_level=3
"""The state of nvppl's explicit-vesicle engines, as C structs.

Every array an engine reads is allocated from Python (NumPy) and reached
through the pointers of a :c:type:`Model` (built by
:class:`nvppl._engine.model.CoreModel`); the engines run without the GIL.
Per-task scratch that grows while vesicles are simulated (records whose number
is not known in advance) lives in :c:type:`Buf`.
"""

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t
from libc.stdlib cimport free, realloc


cdef enum:
    # random-stream domains (the ``d`` of ``rng_seed``): one per kind of task
    DOM_SIM = 1         # a simulation cohort (run, birth step)
    DOM_PF = 2          # a particle's step (run, step, particle)
    DOM_RESAMPLE = 3    # resampling after a step (run, step)
    DOM_LINEAGE = 4     # the drawn ancestral line of a run
    DOM_GUIDED = 5      # a particle's step in the guided filter (run, step, particle)
    DOM_TEST = 9        # the samplers' test streams
    # causes of removal returned by a vesicle step (0: the vesicle survives)
    SURVIVES = 0
    EXPIRED = 1
    ABSORBED = 2
    DEPLETED = 3
    SINK = 4


cdef struct Slot:
    # One entry of Walker's alias table of a row T_κ[i, ·], packed with the
    # destinations so that a move touches one cache line.
    double prob         # keep this slot with this probability ...
    int32_t dest        # (its node)
    int32_t alias       # ... else take this slot


cdef struct Model:
    # ---- sizes and options
    int n               # nodes
    int K               # vesicle types
    int M               # candidate slots per node (max out-degree, stay included)
    int dc              # content dimension d_c
    int lifetime        # 0 = geometric, 1 = countdown
    int tilted          # 1 when migration carries the score q_t (eq. 16-17)
    int dock_content    # 1 when the dock logit has a content term c·w_c (eq. 19)
    double sigma_tau    # countdown lifetime noise σ_τ (eq. 37)
    # ---- graph (Substrate.candidates)
    const int32_t* cand     # (n, M) candidate node per slot, -1 padded
    const int32_t* ncand    # (n,) number of candidates; 0 for a sink
    # ---- migration, per (type, node, slot)
    const Slot* slots       # (K, n, M) alias tables of the rows of T_κ (untilted sampling)
    const double* logT      # (K, n, M) log T_κ (tilted sampling; -inf off the graph)
    # ---- tables over (run, step, node, type); a shared axis has stride 0
    Py_ssize_t tab_r        # stride of the run axis (elements), 0 when shared by all runs
    Py_ssize_t tab_t        # stride of the step axis (elements), 0 when constant in time
    const double* lam       # emission rate λ[t, i, κ] (eq. 10-12)
    const double* elam      # exp(-λ), for Poisson inversion
    const double* dock      # P(dock) at the new node, or its logit X·w_κ when dock_content
    const double* score     # tilt score F[t, i]·v_κ of arriving at node i (eq. 16)
    const double* cloc      # (..., dc) content mean m_κ + F[t, i]·B_κ at birth (eq. 13)
    # ---- per type
    const double* delta     # (K,) geometric decay probability δ_κ (eq. 38)
    const double* shape     # (K,) countdown Gamma shape (eq. 37)
    const double* rate      # (K,) countdown Gamma rate
    const double* gamma     # (K,) tilt temperature γ_κ
    const double* cscale    # (K, dc) content standard deviation σ_c,κ
    const double* wc        # (K, dc) content weights of the dock logit w^c_κ
    const int32_t* budget   # (K,) release budget, -1 for infinite
    const double* Q         # (K, n, dc) content tilt Q_κ
    # ---- per node
    const double* absorb    # (n,) absorption probability a_i
    int any_absorb          # 0 when every a_i is 0 (skips the draw)


cdef struct Vesicle:
    # The state of one vesicle between steps (eq. 5).
    int32_t node        # location ℓ (node index)
    int32_t vtype       # type κ
    int32_t left        # releases left; -1 for an infinite budget
    double tau          # remaining lifetime τ (countdown)
    double* content     # pointer to its d_c content values


cdef struct Buf:
    # A growable array of fixed-size items (C heap; freed by buf_free).
    char* data
    Py_ssize_t size     # items held
    Py_ssize_t cap      # items allocated
    Py_ssize_t item     # bytes per item


cdef struct VesRec:
    # One simulated vesicle of a (run, birth step) cohort.
    int32_t vtype
    int32_t node        # birth node
    int32_t death       # step of removal (n_steps - 1 when censored)
    int32_t nsteps      # steps rows (moves made)
    int32_t cause       # 0 censored, 1 expired, 2 absorbed, 3 depleted, 4 sink
    double tau0         # initial lifetime (countdown)
    double tau_init     # lifetime state at birth (countdown τ0, or geometric decay trials)
    Py_ssize_t start    # first of its moves in the cohort's move buffer


cdef struct StepRec:
    # One move of a simulated vesicle; node_from is the previous move's node_to.
    # A vesicle's moves are contiguous in its cohort's buffer (VesRec.start).
    int32_t node_to
    int16_t slot        # candidate slot of the move
    uint8_t docked


cdef struct Pop:
    # One particle's vesicle population (structure of arrays, capacity ``cap``).
    int32_t* node
    int32_t* vtype
    int32_t* left
    double* tau
    double* content     # (cap, dc)
    int64_t* vid        # vesicle ids (trajectory replay only; NULL in the filter)
    Py_ssize_t size
    Py_ssize_t cap


cdef struct Recorder:
    # Events of one replayed particle trajectory (genealogy tracing).
    Buf births          # BirthRec
    Buf content         # double, d_c per birth
    Buf steps           # MoveRec
    Buf deaths          # DeathRec
    int64_t next_id


cdef struct BirthRec:
    int64_t vid
    int32_t step
    int32_t node
    int32_t vtype
    double tau0


cdef struct MoveRec:
    int64_t vid
    int32_t step
    int32_t node_from
    int32_t node_to
    int32_t slot
    int32_t docked


cdef struct DeathRec:
    int64_t vid
    int32_t step
    int32_t cause


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


cdef inline Py_ssize_t tab(const Model* m, Py_ssize_t r, Py_ssize_t t) noexcept nogil:
    """Offset of (run r, step t) in the (run, step, node, type) tables."""
    return r * m.tab_r + t * m.tab_t
