"""Ready-made program sections and :func:`build_program`.

The neuron sections of a LIF and of a relay (input) neuron, the trace section
and the weight sections of pair STDP and of the three-factor rule, as assembly
text in the syntax of :func:`~nvppl.backend.isa.assemble`; the compiler builds
every population's program from them.
"""

from __future__ import annotations

from ..._validate import integer
from .assembler import assemble
from .program import NeuronProgram

__all__ = ["build_program", "lif_section", "relay_section", "stdp_section", "three_factor_section",
           "trace_section"]


def _param(name: str, value, lo: int, hi: int) -> int:
    v = integer(value, name, None, error=TypeError)
    if not lo <= v <= hi:
        raise ValueError(f"{name} = {v} is out of range [{lo}, {hi}]")
    return v


def _lines(*lines) -> str:
    return "".join(f"    {ln}\n" for ln in lines if ln)


def lif_section(*, threshold, leak_shift, syn_shift=None, reset=0, bias=0) -> str:
    """Neuron section of a leaky integrate-and-fire neuron.

    State slot 0 holds the potential V; slot 1 the synaptic current I (only
    with ``syn_shift``). Per tick, with W = WGTSUM:

    - ``syn_shift=None``: I ← W (this tick's input only);
      otherwise I ← sat(I − shr(I, syn_shift) + W), stored in slot 1;
    - V ← sat(V − shr(V, leak_shift) + sat(I + bias));
    - if V ≥ threshold: spike and V ← reset.

    Parameters
    ----------
    threshold, reset, bias : int
        In units of the state LSB, in [−32768, 32767].
    leak_shift : int
        0–16; 16 means no leak.
    syn_shift : int or None
        0–15, or None for no synaptic memory.

    Returns
    -------
    str
        Assembly text of the section.

    Raises
    ------
    ValueError, TypeError
        A parameter out of range or not an integer, naming it.

    Examples
    --------
    >>> print(lif_section(threshold=100, leak_shift=4), end="")
        LSIS VT, [0]
        ADDI I, WGTSUM, 0
        UPTVT 4
        ADDI VTH, VTH, 100
        GSPRS
        LSIS [0], VT
    >>> lif_section(threshold=100, leak_shift=17)
    Traceback (most recent call last):
    ...
    ValueError: leak_shift = 17 is out of range [0, 16]
    """
    threshold = _param("threshold", threshold, -0x8000, 0x7FFF)
    leak_shift = _param("leak_shift", leak_shift, 0, 16)
    reset = _param("reset", reset, -0x8000, 0x7FFF)
    bias = _param("bias", bias, -0x8000, 0x7FFF)
    if syn_shift is None:
        current = ("LSIS VT, [0]", f"ADDI I, WGTSUM, {bias}")
    else:
        syn_shift = _param("syn_shift", syn_shift, 0, 15)
        current = ("LSIS VT, [0]", "LSIS I, [1]", f"SFTI R0, I, {-syn_shift}", "SUB I, I, R0",
                   "ADD I, I, WGTSUM", "LSIS [1], I", f"ADDI I, I, {bias}" if bias else "")
    return _lines(*current, f"UPTVT {leak_shift}", f"ADDI VTH, VTH, {threshold}",
                  f"ADDI RES, RES, {reset}" if reset else "", "GSPRS", "LSIS [0], VT")


def relay_section() -> str:
    """Neuron section of a relay (input) neuron: it fires exactly when WGTSUM > 0.

    Stateless, hence rest-stable.

    Examples
    --------
    >>> import numpy as np
    >>> from nvppl.backend.isa import Reg, Section, execute, is_rest_stable
    >>> prog = build_program(neuron=relay_section())
    >>> regs = np.zeros((16, 3), dtype=np.int64)
    >>> regs[Reg.WGTSUM] = [-1, 0, 1]
    >>> execute(prog, Section.NEURON, regs).fired.tolist(), is_rest_stable(prog)
    ([False, False, True], True)
    """
    return _lines("ADDI VTH, VTH, 1", "ADDI VT, WGTSUM, 0", "GSPRS")


def _trace_pair(name: str, pair):
    try:
        k, inc = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (k, inc), got {pair!r}") from None
    return _param(f"{name}[0] (k)", k, 0, 15), _param(f"{name}[1] (inc)", inc, 0, 127)


def trace_section(*, x=None, y=None, r=None) -> str:
    """Trace section: decay and increment the presynaptic, postsynaptic and reward traces.

    Parameters
    ----------
    x, y : (int, int), optional
        ``(k, inc)`` of the presynaptic trace (slot 0) and postsynaptic trace
        (slot 1): trace ← clamp(trace − shr(trace, k) + (inc if SPK), 0, 127).
        k 0–15, inc 0–127.
    r : int, optional
        k of the reward trace (slot 2): r ← clamp(r − shr(r, k) + RWSUM, 0, 127).

    Omitted traces are not touched.

    Examples
    --------
    >>> print(trace_section(x=(4, 32), r=3), end="")
        LSLS TPRE, [0]
        UPTLS TPRE, SPK, 4, 32
        LSLS [0], TPRE
        LSLS TREW, [2]
        UPTLS TREW, RWSUM, 3
        LSLS [2], TREW
    """
    out = []
    for name, slot, reg, pair in (("x", 0, "TPRE", x), ("y", 1, "TPOST", y)):
        if pair is not None:
            k, inc = _trace_pair(name, pair)
            out += [f"LSLS {reg}, [{slot}]", f"UPTLS {reg}, SPK, {k}, {inc}", f"LSLS [{slot}], {reg}"]
    if r is not None:
        k = _param("r", r, 0, 15)
        out += ["LSLS TREW, [2]", f"UPTLS TREW, RWSUM, {k}", "LSLS [2], TREW"]
    return _lines(*out)


def stdp_section(*, a_pre, a_post, shift) -> str:
    """Weight section of pair STDP: w ← sat_w(w + shr(a_pre·x·s_post, shift) + shr(a_post·y·s_pre, shift)).

    Parameters
    ----------
    a_pre, a_post : int
        Amplitudes in [−128, 127] (``a_post < 0`` for depression).
    shift : int
        0–15.

    Examples
    --------
    >>> print(stdp_section(a_pre=16, a_post=-18, shift=5), end="")
        LSSYN WGT, [0]
        UPTSYN PRE, 16, 5
        UPTSYN POST, -18, 5
        LSSYN [0], WGT
    """
    a_pre = _param("a_pre", a_pre, -128, 127)
    a_post = _param("a_post", a_post, -128, 127)
    shift = _param("shift", shift, 0, 15)
    return _lines("LSSYN WGT, [0]", f"UPTSYN PRE, {a_pre}, {shift}", f"UPTSYN POST, {a_post}, {shift}",
                  "LSSYN [0], WGT")


def three_factor_section(*, a_mod, shift, a_pre=0, a_post=0) -> str:
    """Weight section of a reward-modulated rule: the MOD term, plus PRE/POST terms when non-zero.

    Parameters
    ----------
    a_mod, a_pre, a_post : int
        Amplitudes in [−128, 127].
    shift : int
        0–15.

    Examples
    --------
    >>> print(three_factor_section(a_mod=40, shift=3), end="")
        LSSYN WGT, [0]
        UPTSYN MOD, 40, 3
        LSSYN [0], WGT
    """
    a_mod = _param("a_mod", a_mod, -128, 127)
    a_pre = _param("a_pre", a_pre, -128, 127)
    a_post = _param("a_post", a_post, -128, 127)
    shift = _param("shift", shift, 0, 15)
    return _lines("LSSYN WGT, [0]", f"UPTSYN MOD, {a_mod}, {shift}",
                  f"UPTSYN PRE, {a_pre}, {shift}" if a_pre else "",
                  f"UPTSYN POST, {a_post}, {shift}" if a_post else "", "LSSYN [0], WGT")


def build_program(weight: str = "", neuron: str = "", trace: str = "", *, max_words=1024) -> NeuronProgram:
    """Assemble the three sections into one program, separated by ``NPC``.

    Trailing empty sections get no ``NPC``.

    Examples
    --------
    >>> prog = build_program(neuron=relay_section(), trace=trace_section(x=(4, 32)))
    >>> prog.sections
    ((0, 0), (1, 4), (5, 8))
    """
    parts = [weight, neuron, trace]
    while parts and not parts[-1].strip():
        parts.pop()
    return assemble("\nNPC\n".join(parts), max_words=max_words)
