"""The reference interpreter: :func:`execute` runs one section of a program on many lanes in NumPy.

It is the fixed-point reference of the chip's cores (``docs/guide/emulator.rst``,
"The instruction set"), vectorised across lanes (one lane per neuron, or per
synapse in the weight section). :func:`is_rest_stable` and
:func:`is_weight_inert` are the load-time checks that let the event-driven
emulator skip work.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .assembler import as_program
from .encoding import LOAD_STORE, ISAError, unpack_uptls, unpack_uptsyn
from .fixed_point import check_rounding, shr, signed_bounds
from .generator import as_u64, draw
from .opcodes import RT, Cond, Opcode, Reg, Section, SynMode

__all__ = ["ExecResult", "execute", "is_rest_stable", "is_weight_inert"]


class ExecResult(NamedTuple):
    """Outcome of :func:`execute`.

    Attributes
    ----------
    fired : numpy.ndarray of bool, shape (n_lanes,)
        Whether a ``GSPRS`` fired in the lane.
    instructions : numpy.ndarray of int64, shape (n_lanes,)
        Instructions executed by the lane, not counting the ``NPC`` (or
        program end) that ends the section.
    """

    fired: np.ndarray
    instructions: np.ndarray


def _inout(name: str, a, shape) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.int64:
        raise TypeError(f"{name} must be an int64 numpy array (it is modified in place)")
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} has shape {a.shape}, expected {want}")
    return a


def _flags(name: str, a, n: int) -> np.ndarray:
    if a is None:
        return np.zeros(n, dtype=bool)
    a = np.asarray(a, dtype=bool)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},)")
    return a


class _Lanes:
    """The lanes of one :func:`execute` call at the current word."""

    def __init__(self, regs, h, counters, rounding):
        self.regs, self.h, self.counters, self.rounding = regs, h, counters, rounding
        self.idx = None
        self.fail = None

    def draw16(self) -> np.ndarray:
        if self.h is None:
            self.fail("takes a random draw but no unit keys h were given")
        idx = self.idx
        u = draw(self.h[idx], self.counters[idx]).astype(np.int64)
        self.counters[idx] += 1
        return u

    def read(self, r: int) -> np.ndarray:
        if r == Reg.RAND:
            return self.draw16() >> 1
        return self.regs[r, self.idx]

    def shr(self, v, k: int) -> np.ndarray:
        if k == 0:
            return v
        draws = self.draw16() if self.rounding == "stochastic" else None
        return shr(v, k, self.rounding, draws)


def execute(program, section, regs, *, state=None, traces=None, synapse=None, s_pre=None, s_post=None,
            h=None, counters=None, rounding="nearest", state_bits=16, trace_bits=7, weight_bits=8,
            max_steps=4096) -> ExecResult:
    """Run one section of a program on many lanes (the fixed-point reference).

    Each lane is one neuron (neuron and trace sections) or one synapse
    (weight section) and has its own program counter. At every step the
    lowest program counter among the lanes still running is executed for all
    lanes at that word, so lanes may take different branches and meet again.

    Parameters
    ----------
    program : NeuronProgram, str or sequence of int
    section : Section or int
    regs : numpy.ndarray of int64, shape (16, n_lanes)
        The registers, prepared by the caller (all zero except WGTSUM and
        RWSUM for a neuron; TPRE, TPOST and TREW for a synapse). Modified in
        place; run the trace section after the neuron section with the same
        array. The RAND row is never written.
    state : numpy.ndarray of int64, shape (n_lanes, n_slots), optional
        Neuron state for ``LSIS``; modified in place.
    traces : numpy.ndarray of int64, shape (n_lanes, 3), optional
        Traces x, y, r for ``LSLS``; modified in place.
    synapse : numpy.ndarray of int64, shape (n_lanes, 1), optional
        Synapse fields for ``LSSYN`` (field 0: the weight); modified in place.
    s_pre, s_post : array_like of bool, shape (n_lanes,), optional
        Spike flags for ``UPTSYN``; None means no spike.
    h : array_like of uint64, shape (n_lanes,), optional
        Unit keys (:func:`unit_key`); needed by RAND reads and stochastic
        rounding.
    counters : numpy.ndarray of int64, shape (n_lanes,), optional
        Index of each lane's next draw; read and advanced in place, so that
        the neuron and trace sections of a neuron continue one stream.
        None: start at 0.
    rounding : {"floor", "nearest", "stochastic"}
    state_bits, trace_bits, weight_bits : int
        Register/state width (``sat``), trace width (clamp to
        [0, 2**trace_bits − 1]) and weight width (``sat_w``).
    max_steps : int
        Maximum instructions per lane.

    Returns
    -------
    ExecResult

    Raises
    ------
    ISAError
        Naming the word: a memory access without that memory or beyond it,
        a draw without keys, or a lane exceeding ``max_steps``.

    Examples
    --------
    >>> from nvppl.backend.isa import assemble
    >>> prog = assemble('''
    ...     NPC
    ...     ADDI VTH, VTH, 10
    ...     ADD VT, VT, WGTSUM
    ...     GSPRS
    ... ''')
    >>> regs = np.zeros((16, 3), dtype=np.int64)
    >>> regs[Reg.WGTSUM] = [5, 10, 20]
    >>> res = execute(prog, Section.NEURON, regs)
    >>> res.fired.tolist(), res.instructions.tolist(), regs[Reg.SPK].tolist()
    ([False, True, True], [3, 3, 3], [0, 1, 1])
    """
    prog = as_program(program)
    section = Section(section)
    check_rounding(rounding)
    regs = _inout("regs", regs, (16, None))
    n = regs.shape[1]
    if state is not None:
        state = _inout("state", state, (n, None))
    if traces is not None:
        traces = _inout("traces", traces, (n, 3))
    if synapse is not None:
        synapse = _inout("synapse", synapse, (n, None))
    s_pre, s_post = _flags("s_pre", s_pre, n), _flags("s_post", s_post, n)
    if h is not None:
        h = np.broadcast_to(as_u64(h, "h"), (n,))
    counters = np.zeros(n, dtype=np.int64) if counters is None else _inout("counters", counters, (n,))
    lo, hi = signed_bounds(state_bits)
    wlo, whi = signed_bounds(weight_bits)
    tmax = (1 << trace_bits) - 1
    tdiv = 1 << trace_bits
    start, end = prog.sections[section]
    dec, words = prog.instructions, prog.words

    pc = np.full(n, start, dtype=np.int64)
    flag = np.zeros(n, dtype=np.int64)
    fired = np.zeros(n, dtype=bool)
    steps = np.zeros(n, dtype=np.int64)
    lanes = _Lanes(regs, h, counters, rounding)
    never = np.iinfo(np.int64).max

    while n:
        p = int(np.where(pc < end, pc, never).min())
        if p >= end:
            break
        idx = np.flatnonzero(pc == p)
        op, rd, rs, imm = dec[p]

        def fail(msg, p=p, op=op):
            raise ISAError(f"{Opcode(op).name}: {msg}", word=p, value=int(words[p]))

        lanes.idx, lanes.fail = idx, fail
        if steps[idx].max() >= max_steps:
            lane = int(idx[np.argmax(steps[idx])])
            fail(f"lane {lane} did not finish the {section.name.lower()} section within "
                 f"max_steps = {max_steps} instructions")
        steps[idx] += 1
        nxt = p + 1

        if op in LOAD_STORE:
            mem, what = {Opcode.LSIS: (state, "state"), Opcode.LSLS: (traces, "traces"),
                         Opcode.LSSYN: (synapse, "synapse")}[op]
            if mem is None:
                fail(f"needs {what} memory, but none was given")
            if op == Opcode.LSSYN and imm != 0:
                fail(f"synapse field {imm} does not exist (field 0 is the weight)")
            if imm >= mem.shape[1]:
                fail(f"{what} slot {imm} out of range ({mem.shape[1]} slots)")
            if rs == 0:
                regs[rd, idx] = mem[idx, imm]
            else:
                v = lanes.read(rd)
                if op == Opcode.LSLS:
                    v = np.clip(v, 0, tmax)
                elif op == Opcode.LSSYN:
                    v = np.clip(v, wlo, whi)
                mem[idx, imm] = v
        elif op == Opcode.UPTVT:
            vt = regs[Reg.VT, idx]
            leak = 0 if imm == 16 else lanes.shr(vt, imm)
            regs[Reg.VT, idx] = np.clip(vt - leak + regs[Reg.I, idx], lo, hi)
        elif op == Opcode.UPTLS:
            mode, k, inc = unpack_uptls(imm)
            cur = regs[rd, idx]
            src = lanes.read(rs)
            add = np.where(src != 0, inc, 0) if mode == 0 else src
            regs[rd, idx] = np.clip(cur - lanes.shr(cur, k) + add, 0, tmax)
        elif op == Opcode.UPTSYN:
            mode, a, s = unpack_uptsyn(imm)
            x, y = regs[Reg.TPRE, idx], regs[Reg.TPOST, idx]
            if mode == SynMode.PRE:
                prod = x * s_post[idx]
            elif mode == SynMode.POST:
                prod = y * s_pre[idx]
            elif mode == SynMode.PREPOST:
                prod = (x * y) // tdiv
            else:
                prod = ((x * y) // tdiv * regs[Reg.TREW, idx]) // tdiv
            regs[Reg.WGT, idx] = np.clip(regs[Reg.WGT, idx] + lanes.shr(a * prod, s), wlo, whi)
        elif op == Opcode.GSPRS:
            vt = regs[Reg.VT, idx]
            spike = vt >= regs[Reg.VTH, idx]
            regs[Reg.VT, idx] = np.where(spike, regs[Reg.RES, idx], vt)
            regs[Reg.SPK, idx] = spike
            fired[idx] |= spike
        elif op in (Opcode.ADD, Opcode.SUB):
            a = lanes.read(rs)
            b = lanes.read(RT.get(imm))
            regs[rd, idx] = np.clip(a + b if op == Opcode.ADD else a - b, lo, hi)
        elif op == Opcode.ADDI:
            regs[rd, idx] = np.clip(lanes.read(rs) + imm, lo, hi)
        elif op == Opcode.SFTI:
            v = lanes.read(rs)
            regs[rd, idx] = np.clip(v << imm, lo, hi) if imm >= 0 else lanes.shr(v, -imm)
        elif op == Opcode.CMP:
            a = lanes.read(rs)
            flag[idx] = np.sign(a - lanes.read(RT.get(imm)))
        elif op == Opcode.JC:
            f = flag[idx]
            take = {Cond.AL: np.ones_like(f, dtype=bool), Cond.EQ: f == 0, Cond.NE: f != 0,
                    Cond.LT: f < 0, Cond.GE: f >= 0, Cond.GT: f > 0, Cond.LE: f <= 0}[rd]
            nxt = np.where(take, p + 1 + imm, p + 1)
        pc[idx] = nxt
    return ExecResult(fired, steps)


def is_rest_stable(program, *, n_slots=4, rounding="nearest", state_bits=16, trace_bits=7) -> bool:
    """Whether a neuron at rest stays at rest, so that the emulator may skip it.

    Runs the neuron then the trace section on one lane from all-zero
    registers, state and traces with WGTSUM = RWSUM = 0. Execution errors
    (such as a state slot beyond ``n_slots``) are raised, not reported as
    instability.

    Returns
    -------
    bool
        True iff nothing fires, nothing is drawn (no RAND read, no stochastic
        rounding draw) and state and traces stay all zero.

    Examples
    --------
    >>> from nvppl.backend.isa import build_program, lif_section
    >>> is_rest_stable(build_program(neuron=lif_section(threshold=64, leak_shift=3)))
    True
    >>> is_rest_stable(build_program(neuron=lif_section(threshold=64, leak_shift=3, bias=1)))
    False
    >>> is_rest_stable(build_program(neuron=lif_section(threshold=64, leak_shift=3)), rounding="stochastic")
    False
    """
    prog = as_program(program)
    regs = np.zeros((16, 1), dtype=np.int64)
    state = np.zeros((1, n_slots), dtype=np.int64)
    traces = np.zeros((1, 3), dtype=np.int64)
    counters = np.zeros(1, dtype=np.int64)
    kw = {"state": state, "traces": traces, "h": np.zeros(1, dtype=np.uint64), "counters": counters,
          "rounding": rounding, "state_bits": state_bits, "trace_bits": trace_bits}
    res = execute(prog, Section.NEURON, regs, **kw)
    execute(prog, Section.TRACE, regs, **kw)
    return bool(not res.fired[0] and counters[0] == 0 and not state.any() and not traces.any())


def is_weight_inert(program, *, rounding="nearest", weight_bits=8, state_bits=16, trace_bits=7) -> bool:
    """Whether the weight section leaves a synapse unchanged when all its traces are zero.

    Runs the weight section for every weight in the ``weight_bits`` range at
    once, with TPRE = TPOST = TREW = 0 and no spike flags. An empty weight
    section is inert. A weight section that accesses neuron state or traces
    raises :class:`ISAError`.

    Returns
    -------
    bool
        True iff every weight is unchanged and nothing is drawn.

    Examples
    --------
    >>> from nvppl.backend.isa import build_program, stdp_section
    >>> prog = build_program(weight=stdp_section(a_pre=20, a_post=-24, shift=4))
    >>> is_weight_inert(prog, rounding="nearest"), is_weight_inert(prog, rounding="stochastic")
    (True, False)
    """
    prog = as_program(program)
    lo, hi = signed_bounds(weight_bits)
    w = np.arange(lo, hi + 1, dtype=np.int64)
    m = w.size
    synapse = w[:, None].copy()
    counters = np.zeros(m, dtype=np.int64)
    execute(prog, Section.WEIGHT, np.zeros((16, m), dtype=np.int64), synapse=synapse,
            h=np.zeros(m, dtype=np.uint64), counters=counters, rounding=rounding, state_bits=state_bits,
            trace_bits=trace_bits, weight_bits=weight_bits)
    return bool(np.array_equal(synapse[:, 0], w) and not counters.any())
