# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The emulator's hot loop: deliver, update, route and learn for one tick.

Implements the machine of ``docs/guide/emulator.rst`` exactly; the NumPy
reference (``nvppl/backend/reference.py``) implements it independently and the
tests compare the two bit for bit. The numbers of the instruction set come from
``_isa_constants.pxi``, which the build writes from the one opcode table,
``nvppl/backend/isa/opcodes.py``.
"""

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memset

from nvppl._engine._rng cimport splitmix

import numpy as np

include "_isa_constants.pxi"

# counters (indices into the int64 array passed to tick)
cdef enum:
    C_SYNOPS = 0
    C_UPDATES = 1
    C_INSTR = 2
    C_WUPDATES = 3
    C_PACKETS = 4
    C_FLITS = 5
    C_HOPS = 6
    C_SPIKES = 7
    N_COUNTERS = 8

COUNTERS = ("synaptic_ops", "neuron_updates", "instructions", "weight_updates", "packets", "flits", "hops",
            "spikes")

# errors reported by a unit
cdef enum:
    E_OK = 0
    E_STEPS = 1
    E_SLOT = 2
    E_FIELD = 3


cdef struct Unit:
    int64_t R[N_REGS]
    int flag            # sign of the last CMP
    uint64_t h          # generator key of the unit (computed on the first draw)
    int has_h
    uint64_t unit_word  # unit * 2**32 + tick
    uint64_t core_word  # chip core id
    uint64_t n          # draws so far
    int fired
    int64_t executed
    int error
    int64_t* state      # the neuron's state row (neuron sections)
    int64_t* traces     # the neuron's traces (neuron sections)
    int64_t* weight     # the synapse's weight (weight section)
    int s_pre
    int s_post


cdef inline uint64_t draw(Unit* u, const Chip* c) noexcept nogil:
    if not u.has_h:
        u.h = splitmix(splitmix(c.seed_mix ^ u.core_word) ^ u.unit_word)
        u.has_h = 1
    cdef uint64_t v = splitmix(u.h + u.n) >> 48
    u.n += 1
    return v


cdef inline int64_t sat(int64_t v, int64_t lo, int64_t hi) noexcept nogil:
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


cdef inline int64_t shr(int64_t v, int64_t k, int rounding, Unit* u, const Chip* c) noexcept nogil:
    if k <= 0:
        return v
    if rounding == ROUND_FLOOR:
        return v >> k
    if rounding == ROUND_NEAREST:
        return (v + (<int64_t>1 << (k - 1))) >> k
    return (v + <int64_t>(draw(u, c) & ((<uint64_t>1 << k) - 1))) >> k


cdef inline int64_t rd_reg(Unit* u, int r, const Chip* c) noexcept nogil:
    if r == REG_RAND:
        return <int64_t>(draw(u, c) >> 1)
    return u.R[r]


cdef int run_section(Unit* u, const Chip* c, int32_t start, int32_t end, int rounding) noexcept nogil:
    cdef int32_t pc = start
    cdef int32_t o, d, s, im
    cdef int64_t a, b, v, x, y, r, p, k
    cdef int64_t steps = 0
    cdef int64_t smin = c.state_min, smax = c.state_max
    while pc < end:
        o = c.op[pc]
        d = c.rd[pc]
        s = c.rs[pc]
        im = c.imm[pc]
        steps += 1
        if steps > c.max_steps:
            u.error = E_STEPS
            return 1
        pc += 1
        if o == OP_ADD:
            a = rd_reg(u, s, c)
            b = rd_reg(u, (im >> RT_SHIFT) & RT_MASK, c)
            u.R[d] = sat(a + b, smin, smax)
        elif o == OP_ADDI:
            u.R[d] = sat(rd_reg(u, s, c) + im, smin, smax)
        elif o == OP_SUB:
            a = rd_reg(u, s, c)
            b = rd_reg(u, (im >> RT_SHIFT) & RT_MASK, c)
            u.R[d] = sat(a - b, smin, smax)
        elif o == OP_SFTI:
            a = rd_reg(u, s, c)
            if im > 0:
                u.R[d] = sat(a << im, smin, smax)
            elif im < 0:
                u.R[d] = shr(a, -im, rounding, u, c)
            else:
                u.R[d] = a
        elif o == OP_LSIS:
            if im >= c.n_slots:
                u.error = E_SLOT
                return 1
            if s == 0:
                u.R[d] = u.state[im]
            else:
                u.state[im] = rd_reg(u, d, c)
        elif o == OP_LSLS:
            if s == 0:
                u.R[d] = u.traces[im]
            else:
                u.traces[im] = sat(rd_reg(u, d, c), 0, c.trace_max)
        elif o == OP_LSSYN:
            if im != 0:
                u.error = E_FIELD
                return 1
            if s == 0:
                u.R[d] = u.weight[0]
            else:
                u.weight[0] = sat(rd_reg(u, d, c), c.weight_min, c.weight_max)
        elif o == OP_UPTVT:
            v = u.R[REG_VT]
            if im < 16:
                v = v - shr(v, im, rounding, u, c)
            u.R[REG_VT] = sat(v + u.R[REG_I], smin, smax)
        elif o == OP_UPTLS:
            a = u.R[d]
            b = rd_reg(u, s, c)
            if (im >> UPTLS_MODE_SHIFT) & UPTLS_MODE_MASK:
                p = b
            else:
                p = ((im >> UPTLS_INC_SHIFT) & UPTLS_INC_MASK) if b != 0 else 0
            v = a - shr(a, (im >> UPTLS_K_SHIFT) & UPTLS_K_MASK, rounding, u, c) + p
            u.R[d] = sat(v, 0, c.trace_max)
        elif o == OP_UPTSYN:
            x = u.R[REG_TPRE]
            y = u.R[REG_TPOST]
            r = u.R[REG_TREW]
            v = (im >> UPTSYN_MODE_SHIFT) & UPTSYN_MODE_MASK
            if v == SYN_PRE:
                p = x * u.s_post
            elif v == SYN_POST:
                p = y * u.s_pre
            elif v == SYN_PREPOST:
                p = (x * y) >> c.trace_bits
            else:
                p = (((x * y) >> c.trace_bits) * r) >> c.trace_bits
            a = (im >> UPTSYN_AMPLITUDE_SHIFT) & UPTSYN_AMPLITUDE_MASK
            if a > UPTSYN_AMPLITUDE_MASK >> 1:
                a -= UPTSYN_AMPLITUDE_MASK + 1
            k = (im >> UPTSYN_SHIFT_SHIFT) & UPTSYN_SHIFT_MASK
            u.R[REG_WGT] = sat(u.R[REG_WGT] + shr(a * p, k, rounding, u, c), c.weight_min, c.weight_max)
        elif o == OP_GSPRS:
            if u.R[REG_VT] >= u.R[REG_VTH]:
                u.R[REG_VT] = u.R[REG_RES]
                u.R[REG_SPK] = 1
                u.fired = 1
            else:
                u.R[REG_SPK] = 0
        elif o == OP_CMP:
            a = rd_reg(u, s, c)
            b = rd_reg(u, (im >> RT_SHIFT) & RT_MASK, c)
            u.flag = (a > b) - (a < b)
        elif o == OP_JC:
            if (d == COND_AL or (d == COND_EQ and u.flag == 0) or (d == COND_NE and u.flag != 0)
                    or (d == COND_LT and u.flag < 0) or (d == COND_GE and u.flag >= 0)
                    or (d == COND_GT and u.flag > 0) or (d == COND_LE and u.flag <= 0)):
                pc = pc + im
        elif o == OP_NPC:
            steps -= 1
            break
    u.executed += steps
    return 0


cdef inline int64_t section(int32_t core, int s) noexcept nogil:
    """Index in ``Chip.sec`` of the start of section ``s`` of ``core`` (its end follows)."""
    return 2 * (N_SECTIONS * <int64_t>core + s)


cdef inline void unit_init(Unit* u, uint64_t core_word, uint64_t unit_word) noexcept nogil:
    cdef int k
    for k in range(N_REGS):
        u.R[k] = 0
    u.flag = 0
    u.has_h = 0
    u.n = 0
    u.fired = 0
    u.executed = 0
    u.error = E_OK
    u.core_word = core_word
    u.unit_word = unit_word
    u.s_pre = 0
    u.s_post = 0


cdef inline int unchanged(const Chip* c, const int64_t* st, const int64_t* tr, const int64_t* before) noexcept nogil:
    cdef int64_t k
    for k in range(c.n_slots):
        if st[k] != before[k]:
            return 0
    return tr[0] == before[c.n_slots] and tr[1] == before[c.n_slots + 1] and tr[2] == before[c.n_slots + 2]


cdef inline int64_t deliver(Chip* c, int64_t syn, int64_t count, int32_t* active, int64_t n_active,
                           int64_t* counters) noexcept nogil:
    cdef int64_t k
    cdef int32_t tgt
    cdef Syn* sy = &c.syn[syn]
    for k in range(count):
        tgt = sy[k].target
        if sy[k].reward:
            c.acc_r[tgt] += sy[k].weight
        else:
            c.acc_w[tgt] += sy[k].weight
        if not c.mark[tgt]:
            c.mark[tgt] = 1
            active[n_active] = tgt
            n_active += 1
    counters[C_SYNOPS] += count
    return n_active


cdef int64_t tick_nogil(Chip* c, int64_t t, const int32_t* fired_in, int64_t n_fired_in,
                        const int64_t* ext_axons, int64_t n_ext, int32_t* active, int64_t n_active,
                        int32_t* fired_out, int64_t* n_fired_out, int64_t* counters, int learn,
                        int64_t* err_unit) noexcept nogil:
    """One tick. Returns the new active count, or -1 - error code with err_unit set."""
    cdef int64_t e, g, q, k, n_next = 0, n_out = 0, syn
    cdef int32_t core, j, tgt
    cdef int quiet, dense
    cdef int64_t n_scan, wtmp
    cdef int64_t before[67]
    cdef Unit u
    cdef int64_t* st
    cdef int64_t* tr
    # 1. deliver: packets sent last tick, then the external input of this tick
    for q in range(n_fired_in):
        j = fired_in[q]
        for e in range(c.out_ptr[j], c.out_ptr[j + 1]):
            n_active = deliver(c, c.out[e].syn, c.out[e].count, active, n_active, counters)
    for q in range(n_ext):
        n_active = deliver(c, c.ax_start[ext_axons[q]], c.ax_count[ext_axons[q]], active, n_active, counters)
    # 2. update every active neuron; one whose update with no input changed nothing leaves the list.
    # When most neurons are active they are taken in index order (the set is the same: marked ones).
    dense = n_active * 4 > c.n_neurons
    n_scan = c.n_neurons if dense else n_active
    for q in range(n_scan):
        if dense:
            if not c.mark[q]:
                continue
            g = q
        else:
            g = active[q]
        core = c.ncore[g]
        quiet = c.acc_w[g] == 0 and c.acc_r[g] == 0
        st = &c.state[g * c.n_slots]
        tr = &c.traces[3 * g]
        if quiet:
            for k in range(c.n_slots):
                before[k] = st[k]
            before[c.n_slots] = tr[0]
            before[c.n_slots + 1] = tr[1]
            before[c.n_slots + 2] = tr[2]
        unit_init(&u, <uint64_t>c.core_id[core], (<uint64_t>(g - c.nbase[core]) << 32) | <uint64_t>t)
        u.R[REG_WGTSUM] = sat(c.acc_w[g], c.state_min, c.state_max)
        u.R[REG_RWSUM] = sat(c.acc_r[g], c.state_min, c.state_max)
        c.acc_w[g] = 0
        c.acc_r[g] = 0
        u.state = st
        u.traces = tr
        if run_section(&u, c, c.sec[section(core, SEC_NEURON)], c.sec[section(core, SEC_NEURON) + 1],
                       c.rounding[core]):
            err_unit[0] = g
            return -1 - u.error
        u.flag = 0
        if run_section(&u, c, c.sec[section(core, SEC_TRACE)], c.sec[section(core, SEC_TRACE) + 1],
                       c.rounding[core]):
            err_unit[0] = g
            return -1 - u.error
        counters[C_UPDATES] += 1
        counters[C_INSTR] += u.executed
        if u.fired:
            fired_out[n_out] = <int32_t>g
            n_out += 1
            c.spiked[g] = 1
        if quiet and not u.fired and u.n == 0 and unchanged(c, st, tr, before):
            c.mark[g] = 0
        else:
            active[n_next] = <int32_t>g
            n_next += 1
    # 3. route: one packet per out entry of every neuron that fired
    counters[C_SPIKES] += n_out
    for q in range(n_out):
        g = fired_out[q]
        for e in range(c.out_ptr[g], c.out_ptr[g + 1]):
            c.out_count[e] += 1
            counters[C_FLITS] += c.out[e].flits
            counters[C_HOPS] += c.out[e].hops
        counters[C_PACKETS] += c.out_ptr[g + 1] - c.out_ptr[g]
    # 4. learn
    if learn:
        for q in range(c.n_plastic):
            syn = c.pl_syn[q]
            j = c.pl_pre[q]
            tgt = c.pl_post[q]
            core = c.pl_core[q]
            if c.weight_inert[core] and not c.spiked[j] and not c.spiked[tgt] and c.traces[3 * j] == 0 \
                    and c.traces[3 * tgt + 1] == 0 and c.traces[3 * tgt + 2] == 0:
                continue
            unit_init(&u, <uint64_t>c.core_id[core], ((<uint64_t>1 << 30) + <uint64_t>c.pl_unit[q]) << 32 | <uint64_t>t)
            u.R[REG_TPRE] = c.traces[3 * j]
            u.R[REG_TPOST] = c.traces[3 * tgt + 1]
            u.R[REG_TREW] = c.traces[3 * tgt + 2]
            u.s_pre = c.spiked[j]
            u.s_post = c.spiked[tgt]
            wtmp = c.syn[syn].weight
            u.weight = &wtmp
            if run_section(&u, c, c.sec[section(core, SEC_WEIGHT)], c.sec[section(core, SEC_WEIGHT) + 1],
                           c.rounding[core]):
                err_unit[0] = syn
                return -100 - u.error
            c.syn[syn].weight = <int16_t>wtmp
            counters[C_WUPDATES] += 1
            counters[C_INSTR] += u.executed
        memset(c.spiked, 0, c.n_neurons)
    n_fired_out[0] = n_out
    return n_next


def isa_constants():
    """The ISA constants this module was compiled with, by name (see ``nvppl.backend.isa.opcodes``)."""
    return dict(ISA_CONSTANTS)


cdef class Machine:
    """The chip's memory, reached from C; made by ``nvppl.backend.emulator``."""

    cdef Chip c
    cdef object keep      # the NumPy arrays behind the pointers
    cdef public object active, fired_a, fired_b, counters
    cdef int64_t n_active
    cdef int64_t n_fired
    cdef int flip

    def __init__(self, dict a, dict sizes):
        self.keep = a
        cdef Chip* c = &self.c
        c.n_neurons = sizes["n_neurons"]
        c.n_slots = sizes["n_slots"]
        c.state_min = sizes["state_min"]
        c.state_max = sizes["state_max"]
        c.weight_min = sizes["weight_min"]
        c.weight_max = sizes["weight_max"]
        c.trace_max = sizes["trace_max"]
        c.trace_bits = sizes["trace_bits"]
        c.max_steps = sizes["max_steps"]
        c.seed_mix = 0
        c.op = _p32(a["op"]); c.rd = _p32(a["rd"]); c.rs = _p32(a["rs"]); c.imm = _p32(a["imm"])
        c.sec = _p32(a["sec"]); c.rounding = _p32(a["rounding"])
        c.weight_inert = _pu8(a["weight_inert"])
        if c.n_slots > 64:
            raise ValueError("the emulator supports at most 64 state words per neuron")
        c.core_id = _p64(a["core_id"]); c.nbase = _p64(a["nbase"]); c.ncore = _p32(a["ncore"])
        c.state = _p64(a["state"]); c.traces = _p64(a["traces"])
        c.acc_w = _p64(a["acc_w"]); c.acc_r = _p64(a["acc_r"])
        c.spiked = _pu8(a["spiked"]); c.mark = _pu8(a["mark"])
        c.out_ptr = _p64(a["out_ptr"]); c.out = <const Out*>_pu8(a["out"]); c.out_count = _p64(a["out_count"])
        c.ax_start = _p64(a["ax_start"]); c.ax_count = _p32(a["ax_count"])
        c.syn = <Syn*>_pu8(a["syn"])
        c.n_plastic = len(a["pl_syn"])
        c.pl_syn = _p64(a["pl_syn"]); c.pl_pre = _p32(a["pl_pre"]); c.pl_post = _p32(a["pl_post"])
        c.pl_core = _p32(a["pl_core"]); c.pl_unit = _p64(a["pl_unit"])
        n = max(c.n_neurons, 1)
        self.active = np.zeros(n, dtype=np.int32)
        self.fired_a = np.zeros(n, dtype=np.int32)
        self.fired_b = np.zeros(n, dtype=np.int32)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        first = a["initial_active"]
        self.n_active = len(first)
        self.active[:len(first)] = first
        a["mark"][first] = 1
        self.n_fired = 0
        self.flip = 0

    def seed(self, uint64_t seed_mix):
        self.c.seed_mix = seed_mix

    def tick(self, int64_t t, const int64_t[::1] ext_axons, bint learn):
        """Advance one tick; returns the neurons that fired (a fresh int32 array)."""
        cdef int32_t[::1] fin = self.fired_b if self.flip else self.fired_a
        cdef int32_t[::1] fout = self.fired_a if self.flip else self.fired_b
        cdef int32_t[::1] act = self.active
        cdef int64_t[::1] cnt = self.counters
        cdef int64_t n_out = 0, err_unit = -1, res
        cdef int64_t n_ext = ext_axons.shape[0]
        cdef const int64_t* ext = &ext_axons[0] if n_ext else NULL
        with nogil:
            res = tick_nogil(&self.c, t, &fin[0], self.n_fired, ext, n_ext, &act[0], self.n_active,
                             &fout[0], &n_out, &cnt[0], learn, &err_unit)
        if res < 0:
            return ("error", int(-res), int(err_unit))
        self.n_active = res
        self.n_fired = n_out
        self.flip ^= 1
        return np.asarray(fout[:n_out]).copy()


cdef inline const int32_t* _p32(arr) except NULL:
    cdef const int32_t[::1] v = arr
    if v.shape[0] == 0:
        return <const int32_t*>1
    return &v[0]


cdef inline int64_t* _p64(arr) except NULL:
    cdef int64_t[::1] v = arr
    if v.shape[0] == 0:
        return <int64_t*>8
    return &v[0]


cdef inline uint8_t* _pu8(arr) except NULL:
    cdef uint8_t[::1] v = arr
    if v.shape[0] == 0:
        return <uint8_t*>1
    return &v[0]
