# cython: language_level=3
"""Declarations of the compiled emulator (``_emulator.pyx``).

All arrays are allocated from Python (``nvppl/backend/layout.py``) and reached
through the pointers of a :c:type:`Chip`; one call of ``tick`` advances the chip
by one tick without the GIL. Neurons are numbered globally (cores in placement
order, neurons in core order); so are axons and synapses.
"""

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint64_t


cdef packed struct Out:
    # One axon-table entry of a neuron: the packet it sends and the synapses it reaches.
    int64_t syn         # first global synapse of the destination axon
    int32_t count       # synapses of that axon
    int16_t hops        # tile hops of the packet
    int16_t flits       # flits of the packet


cdef packed struct Syn:
    # One synapse word, decoded.
    int32_t target      # global target neuron
    int16_t weight      # weight (mutable: learning)
    uint8_t reward      # 1: adds to RWSUM instead of WGTSUM
    uint8_t plastic     # 1: runs the weight-update section


cdef struct Chip:
    # ---- sizes and word widths
    int64_t n_neurons       # N, all cores
    int64_t n_slots         # state words per neuron
    int64_t state_min       # saturation bounds of registers and state words
    int64_t state_max
    int64_t weight_min      # saturation bounds of weights
    int64_t weight_max
    int64_t trace_max       # traces are clamped to 0..trace_max
    int64_t trace_bits      # the products of UPTSYN divide by 2**trace_bits
    int64_t max_steps       # instructions a unit may execute before it is an error
    uint64_t seed_mix       # mix(seed) of the on-chip generator
    # ---- programs: decoded instructions of all programs, concatenated
    const int32_t* op
    const int32_t* rd
    const int32_t* rs
    const int32_t* imm
    # ---- per core (placement order)
    const int32_t* sec          # (cores, 3, 2): [start, end) of each section in the arrays above
    const int32_t* rounding     # 0 floor, 1 nearest, 2 stochastic
    const uint8_t* weight_inert # 1: a synapse with zero traces and no spikes may be skipped
    const int64_t* core_id      # chip core id y * width + x (generator key)
    const int64_t* nbase        # global index of the core's first neuron
    # ---- per neuron
    const int32_t* ncore        # core of each neuron
    int64_t* state              # (N, n_slots) neuron state
    int64_t* traces             # (N, 3) traces x, y, r
    int64_t* acc_w              # summed spike input of this tick (exact)
    int64_t* acc_r              # summed reward input of this tick (exact)
    uint8_t* spiked             # fired since the last learning tick
    uint8_t* mark               # 1 while the neuron is in the active list
    # ---- axon tables: out entries of each neuron (CSR), external axons, synapses
    const int64_t* out_ptr      # (N + 1,)
    const Out* out              # entries
    int64_t* out_count          # packets sent through each entry
    const int64_t* ax_start     # first global synapse of each axon (external input)
    const int32_t* ax_count     # synapses of each axon
    Syn* syn                    # all synapses
    # ---- plastic synapses, in learning order
    int64_t n_plastic
    const int64_t* pl_syn       # global synapse index
    const int32_t* pl_pre       # presynaptic neuron
    const int32_t* pl_post      # postsynaptic neuron
    const int32_t* pl_core      # core of the postsynaptic neuron
    const int64_t* pl_unit      # index in that core's synapse memory
