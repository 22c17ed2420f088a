"""The instruction set of the neuron cores: encoding, assembler, reference interpreter.

This module implements the section *The instruction set* of the emulator guide
(``docs/guide/emulator.rst``), together with its rounding rules and its
counter-based random generator:

- the enumerations :class:`Opcode`, :class:`Reg`, :class:`Cond`,
  :class:`SynMode` and :class:`Section`;
- :class:`Instruction` with :func:`encode` and :func:`decode` of 32-bit words;
- :class:`NeuronProgram`, built by :func:`assemble` or
  :meth:`NeuronProgram.from_words`, and :func:`disassemble`;
- the fixed-point helpers :func:`saturate` and :func:`shr`;
- the random generator :func:`mix`, :func:`unit_key` and :func:`draw`;
- :func:`execute`, the NumPy fixed-point reference interpreter, vectorised
  across lanes (one lane per neuron, or per synapse in the weight section);
- the load-time checks :func:`is_rest_stable` and :func:`is_weight_inert`;
- ready-made sections (:func:`lif_section`, :func:`relay_section`,
  :func:`trace_section`, :func:`stdp_section`, :func:`three_factor_section`)
  and :func:`build_program`.

Conventions the guide leaves open are fixed here as follows.

- A ``JC`` target may be any word of its own section or the section's end
  (its closing ``NPC``, or the end of the program): jumping to the end ends
  the section. Numeric offsets are relative to the next word
  (``pc ← pc + 1 + offset``).
- A program has at most three ``NPC`` words. The third one, after the trace
  section, is optional; nothing may follow it. With fewer ``NPC`` words the
  remaining sections are empty (a program without ``NPC`` is all weight
  section).
- The comparison flag is not one of the sixteen registers: it is 0 at the
  start of every section run.
- Within one instruction, registers are read in syntax order (``rs`` before
  ``rt``; ``UPTLS`` reads ``rd`` then ``rs``), then the rounding draw of its
  ``shr`` (if any) is taken.
- ``shr`` with stochastic rounding and ``k ≥ 1`` always takes a draw, even
  when the shifted value is a multiple of 2ᵏ. Hence, under stochastic rounding,
  a leaky neuron is not rest-stable and a learning rule is not weight-inert.
- ``UPTVT 16`` performs no shift and takes no draw; ``SFTI rd, rs, 0`` copies.
- ``LSIS`` and ``LSSYN`` slots are encoded as any non-negative 15-bit
  immediate; a slot beyond the memory (``LSIS`` slot ≥ the state slots,
  ``LSSYN`` field ≠ 0) is an error when executed. ``UPTLS`` in the add-``rs``
  form (mode 1) must have a zero ``inc`` field.
- The ``⌊x · y / 128⌋`` of ``UPTSYN`` divides by 2 ** ``trace_bits`` (128 for
  7-bit traces), as a floor division whatever the rounding mode.
- A neuron fires at most once per tick: it fires when any ``GSPRS`` fires.
- Memory words are loaded into registers as they are (callers keep them in
  range); results written to registers saturate to ``state_bits``.
- An executed instruction count excludes the ``NPC`` (or program end) that
  ends the section.
"""

from __future__ import annotations

import operator
import re
from enum import IntEnum
from typing import NamedTuple

import numpy as np

__all__ = [
    "ROUNDINGS",
    "Cond",
    "ExecResult",
    "ISAError",
    "Instruction",
    "NeuronProgram",
    "Opcode",
    "Reg",
    "Section",
    "SynMode",
    "assemble",
    "build_program",
    "decode",
    "disassemble",
    "draw",
    "encode",
    "execute",
    "is_rest_stable",
    "is_weight_inert",
    "lif_section",
    "mix",
    "relay_section",
    "saturate",
    "shr",
    "stdp_section",
    "three_factor_section",
    "trace_section",
    "unit_key",
]

#: The rounding modes of :func:`shr`.
ROUNDINGS = ("floor", "nearest", "stochastic")


class Opcode(IntEnum):
    """Operation codes (instruction bits 31–26).

    Examples
    --------
    >>> Opcode.UPTSYN, Opcode["jc".upper()]
    (<Opcode.UPTSYN: 6>, <Opcode.JC: 13>)
    """

    NPC = 0
    LSIS = 1
    LSLS = 2
    LSSYN = 3
    UPTVT = 4
    UPTLS = 5
    UPTSYN = 6
    GSPRS = 7
    ADD = 8
    ADDI = 9
    SUB = 10
    SFTI = 11
    CMP = 12
    JC = 13


class Reg(IntEnum):
    """The sixteen working registers.

    Examples
    --------
    >>> Reg.WGTSUM, Reg(15)
    (<Reg.WGTSUM: 3>, <Reg.R3: 15>)
    """

    VT = 0
    VTH = 1
    I = 2
    WGTSUM = 3
    RES = 4
    RAND = 5
    WGT = 6
    TPRE = 7
    TPOST = 8
    TREW = 9
    SPK = 10
    RWSUM = 11
    R0 = 12
    R1 = 13
    R2 = 14
    R3 = 15


class Cond(IntEnum):
    """Conditions of ``JC``, tested on the comparison flag.

    Examples
    --------
    >>> [c.name for c in Cond]
    ['AL', 'EQ', 'NE', 'LT', 'GE', 'GT', 'LE']
    """

    AL = 0
    EQ = 1
    NE = 2
    LT = 3
    GE = 4
    GT = 5
    LE = 6


class SynMode(IntEnum):
    """Products of ``UPTSYN``: x · s_post, y · s_pre, ⌊x·y/128⌋, ⌊⌊x·y/128⌋·r/128⌋.

    Examples
    --------
    >>> SynMode.MOD
    <SynMode.MOD: 3>
    """

    PRE = 0
    POST = 1
    PREPOST = 2
    MOD = 3


class Section(IntEnum):
    """The three sections of a program, in program order.

    Examples
    --------
    >>> list(Section)
    [<Section.WEIGHT: 0>, <Section.NEURON: 1>, <Section.TRACE: 2>]
    """

    WEIGHT = 0
    NEURON = 1
    TRACE = 2


class ISAError(ValueError):
    """An invalid instruction, program or execution.

    Parameters
    ----------
    message : str
        What is wrong.
    line, text : int and str, optional
        Assembly line number (from 1) and its text; included in the message.
    word, value : int, optional
        Word index in the program and the word's value; included in the
        message (the value in hex).

    Examples
    --------
    >>> str(ISAError("unknown register 'R9'", line=3, text="ADD R0, R9, R1"))
    "line 3 ('ADD R0, R9, R1'): unknown register 'R9'"
    >>> str(ISAError("unknown opcode 63", word=5, value=0xFC000000))
    'word 5 (0xfc000000): unknown opcode 63'
    """

    def __init__(self, message: str, *, line=None, text=None, word=None, value=None):
        self.line, self.text, self.word, self.value = line, text, word, value
        where = ""
        if line is not None:
            where = f"line {line}" + (f" ({text!r})" if text is not None else "")
        elif word is not None:
            where = f"word {word}" + (f" (0x{value:08x})" if value is not None else "")
        elif value is not None:
            where = f"word 0x{value:08x}"
        super().__init__(f"{where}: {message}" if where else message)


# --------------------------------------------------------------------------- encoding

_LOAD_STORE = (Opcode.LSIS, Opcode.LSLS, Opcode.LSSYN)
_SLOT_MAX = {Opcode.LSIS: 0x7FFF, Opcode.LSLS: 2, Opcode.LSSYN: 0x7FFF}


def _uptls_imm(mode: int, k: int, inc: int) -> int:
    raw = (mode << 15) | (k << 8) | inc
    return raw - 0x10000 if raw & 0x8000 else raw


def _uptls_fields(imm: int):
    raw = imm & 0xFFFF
    return raw >> 15, (raw >> 8) & 0x7F, raw & 0xFF


def _uptsyn_imm(mode: int, a: int, s: int) -> int:
    return (mode << 12) | (s << 8) | (a & 0xFF)


def _uptsyn_fields(imm: int):
    raw = imm & 0xFFFF
    a = raw & 0xFF
    return raw >> 12, a - 256 if a & 0x80 else a, (raw >> 8) & 0xF


def _field_error(op: int, rd: int, rs: int, imm: int):
    """Why (op, rd, rs, imm) is not a valid instruction, or None."""
    if op not in Opcode._value2member_map_:
        return f"unknown opcode {op}"
    op = Opcode(op)
    name = op.name
    if not 0 <= rd <= 15:
        return f"{name}: rd field {rd} out of range 0–15"
    if not 0 <= rs <= 15:
        return f"{name}: rs field {rs} out of range 0–15"
    if not -0x8000 <= imm <= 0x7FFF:
        return f"{name}: immediate {imm} out of the signed 16-bit range"
    if op in (Opcode.NPC, Opcode.GSPRS):
        if rd or rs or imm:
            return f"{name}: unused fields must be zero (rd {rd}, rs {rs}, imm {imm})"
    elif op in _LOAD_STORE:
        if rs > 1:
            return f"{name}: direction {rs} is neither 0 (load) nor 1 (store)"
        if not 0 <= imm <= _SLOT_MAX[op]:
            return f"{name}: slot {imm} out of range 0–{_SLOT_MAX[op]}"
        if rs == 0 and rd == Reg.RAND:
            return f"{name}: a load cannot write RAND"
    elif op == Opcode.UPTVT:
        if rd or rs:
            return f"UPTVT: unused rd/rs fields must be zero (rd {rd}, rs {rs})"
        if not 0 <= imm <= 16:
            return f"UPTVT: km {imm} out of range 0–16"
    elif op == Opcode.UPTLS:
        if rd == Reg.RAND:
            return "UPTLS: cannot write RAND"
        mode, k, inc = _uptls_fields(imm)
        if k > 15:
            return f"UPTLS: k field {k} out of range 0–15 (bits 14–12 must be zero)"
        if inc > 127:
            return f"UPTLS: inc {inc} out of range 0–127"
        if mode == 1 and inc:
            return f"UPTLS: inc field {inc} must be zero in the add-rs form (mode 1)"
    elif op == Opcode.UPTSYN:
        if rd or rs:
            return f"UPTSYN: unused rd/rs fields must be zero (rd {rd}, rs {rs})"
        mode = (imm & 0xFFFF) >> 12
        if mode > 3:
            return f"UPTSYN: mode {mode} out of range 0–3"
    elif op in (Opcode.ADD, Opcode.SUB):
        if rd == Reg.RAND:
            return f"{name}: cannot write RAND"
        if not 0 <= imm <= 15:
            return f"{name}: imm bits 15–4 must be zero (imm 0x{imm & 0xFFFF:04x})"
    elif op == Opcode.ADDI:
        if rd == Reg.RAND:
            return "ADDI: cannot write RAND"
    elif op == Opcode.SFTI:
        if rd == Reg.RAND:
            return "SFTI: cannot write RAND"
        if not -15 <= imm <= 15:
            return f"SFTI: shift {imm} out of range −15–15"
    elif op == Opcode.CMP:
        if rd:
            return f"CMP: unused rd field must be zero (rd {rd})"
        if not 0 <= imm <= 15:
            return f"CMP: imm bits 15–4 must be zero (imm 0x{imm & 0xFFFF:04x})"
    elif op == Opcode.JC:
        if rs:
            return f"JC: unused rs field must be zero (rs {rs})"
        if rd > 6:
            return f"JC: condition {rd} out of range 0–6"
    return None


class Instruction(NamedTuple):
    """One decoded instruction.

    Attributes
    ----------
    op : int
        The :class:`Opcode`.
    rd, rs : int
        The rd and rs fields (registers, direction, or the ``JC`` condition).
    imm : int
        The signed value of the 16-bit immediate field. Packed immediates
        (``UPTLS``, ``UPTSYN``) keep their bit layout, read as two's
        complement; the ``rt`` register of 3-register operations is in bits 3–0.

    Examples
    --------
    >>> ins = Instruction(Opcode.ADD, Reg.R0, Reg.WGTSUM, Reg.R1)
    >>> ins.rt
    13
    >>> str(ins)
    'ADD R0, WGTSUM, R1'
    >>> str(decode(encode(Instruction(Opcode.JC, Cond.LT, 0, -3))))
    'JC LT, -3'
    """

    op: int
    rd: int = 0
    rs: int = 0
    imm: int = 0

    @property
    def rt(self) -> int:
        """The ``rt`` register of ADD, SUB and CMP (immediate bits 3–0)."""
        return self.imm & 0xF

    def __str__(self) -> str:
        return _format(self)


def encode(ins) -> int:
    """Encode an instruction as a 32-bit word, validating every field.

    Parameters
    ----------
    ins : Instruction or tuple (op, rd, rs, imm)

    Returns
    -------
    int
        The word, in [0, 2**32).

    Raises
    ------
    ISAError
        An invalid field for this opcode.

    Examples
    --------
    >>> hex(encode(Instruction(Opcode.ADDI, Reg.VTH, Reg.VTH, -1)))
    '0x2444ffff'
    >>> encode(Instruction(Opcode.UPTVT, 0, 0, 17))
    Traceback (most recent call last):
    ...
    nvppl.backend.isa.ISAError: cannot encode Instruction(op=4, rd=0, rs=0, imm=17): UPTVT: km 17 out of range 0–16
    """
    op, rd, rs, imm = (operator.index(f) for f in ins)
    err = _field_error(op, rd, rs, imm)
    if err is not None:
        raise ISAError(f"cannot encode Instruction(op={op}, rd={rd}, rs={rs}, imm={imm}): {err}")
    return (op << 26) | (rd << 22) | (rs << 18) | (imm & 0xFFFF)


def decode(word, *, index=None) -> Instruction:
    """Decode a 32-bit word.

    Parameters
    ----------
    word : int
        The instruction word.
    index : int, optional
        The word's index in its program, for error messages.

    Returns
    -------
    Instruction
        With ``op`` an :class:`Opcode` and ``imm`` the signed immediate.

    Raises
    ------
    ISAError
        Unknown opcode, a non-zero unused field (including bits 17–16), an
        out-of-range field, or a write to RAND; the message names the word.

    Examples
    --------
    >>> decode(0x2444FFFF)
    Instruction(op=<Opcode.ADDI: 9>, rd=1, rs=1, imm=-1)
    >>> decode(0x20010000, index=4)
    Traceback (most recent call last):
    ...
    nvppl.backend.isa.ISAError: word 4 (0x20010000): bits 17–16 must be zero
    """
    w = operator.index(word)
    if not 0 <= w < 1 << 32:
        raise ISAError(f"{w} is not a 32-bit word", word=index)
    if (w >> 16) & 3:
        raise ISAError("bits 17–16 must be zero", word=index, value=w)
    op, rd, rs, imm = w >> 26, (w >> 22) & 0xF, (w >> 18) & 0xF, w & 0xFFFF
    if imm & 0x8000:
        imm -= 0x10000
    err = _field_error(op, rd, rs, imm)
    if err is not None:
        raise ISAError(err, word=index, value=w)
    return Instruction(Opcode(op), rd, rs, imm)


def _reg_name(r: int) -> str:
    return Reg(r).name


def _format(ins: Instruction, target: str | None = None) -> str:
    """Assembly text of one instruction (``JC`` with ``target`` or its numeric offset)."""
    op, rd, rs, imm = ins
    op = Opcode(op)
    if op in (Opcode.NPC, Opcode.GSPRS):
        return op.name
    if op in _LOAD_STORE:
        if rs:
            return f"{op.name} [{imm}], {_reg_name(rd)}"
        return f"{op.name} {_reg_name(rd)}, [{imm}]"
    if op == Opcode.UPTVT:
        return f"UPTVT {imm}"
    if op == Opcode.UPTLS:
        mode, k, inc = _uptls_fields(imm)
        tail = f"{k}" if mode else f"{k}, {inc}"
        return f"UPTLS {_reg_name(rd)}, {_reg_name(rs)}, {tail}"
    if op == Opcode.UPTSYN:
        mode, a, s = _uptsyn_fields(imm)
        return f"UPTSYN {SynMode(mode).name}, {a}, {s}"
    if op in (Opcode.ADD, Opcode.SUB):
        return f"{op.name} {_reg_name(rd)}, {_reg_name(rs)}, {_reg_name(ins.rt)}"
    if op in (Opcode.ADDI, Opcode.SFTI):
        return f"{op.name} {_reg_name(rd)}, {_reg_name(rs)}, {imm}"
    if op == Opcode.CMP:
        return f"CMP {_reg_name(rs)}, {_reg_name(ins.rt)}"
    return f"JC {Cond(rd).name}, {target if target is not None else f'{imm:+d}'}"


# --------------------------------------------------------------------------- programs

def _section_bounds(ops) -> tuple:
    """((start, end), ...) of the three sections; end is the closing NPC or the program end."""
    n = len(ops)
    npcs = [i for i, op in enumerate(ops) if op == Opcode.NPC]
    bounds, start = [], 0
    for s in range(3):
        end = npcs[s] if s < len(npcs) else n
        bounds.append((start, end))
        start = min(end + 1, n)
    return tuple(bounds)


def _program_errors(decoded, max_words):
    """(word index, message) of every program-level violation, in word order."""
    bounds = _section_bounds([ins.op for ins in decoded])
    closed = 0
    for i, ins in enumerate(decoded):
        if max_words is not None and i == max_words:
            yield i, f"the program is longer than max_words = {max_words} words"
        if closed == 3:
            yield i, "nothing may follow the NPC that ends the trace section"
            continue
        if ins.op == Opcode.NPC:
            closed += 1
            continue
        sec = Section(closed)
        if ins.op in (Opcode.LSSYN, Opcode.UPTSYN) and sec != Section.WEIGHT:
            yield i, f"{Opcode(ins.op).name} is only allowed in the weight section (here: {sec.name.lower()})"
        if ins.op == Opcode.GSPRS and sec != Section.NEURON:
            yield i, f"GSPRS is only allowed in the neuron section (here: {sec.name.lower()})"
        if ins.op == Opcode.JC:
            a, b = bounds[sec]
            target = i + 1 + ins.imm
            if not a <= target <= b:
                yield i, (f"JC target word {target} is outside the {sec.name.lower()} section "
                          f"(words {a}–{b - 1}, ending at {b})")


class NeuronProgram:
    """A validated, immutable core program.

    Build one with :func:`assemble`, :meth:`from_words` or
    :func:`build_program`. Two programs are equal when their words are equal.

    Parameters
    ----------
    words : sequence of int
        32-bit instruction words.
    max_words : int or None, default 1024
        Maximum program length (the instruction memory); None for no limit.

    Attributes
    ----------
    words : numpy.ndarray of uint32
        The instruction words (read-only).
    instructions : tuple of Instruction
        The decoded words.
    sections : tuple of (int, int)
        ``(start, end)`` word range of the weight, neuron and trace sections;
        ``end`` is the index of the section's closing ``NPC`` (or the program
        length), so the ``NPC`` is excluded. Absent sections are empty
        ranges at the program end.
    text : str
        Canonical assembly text (:func:`disassemble`).

    Raises
    ------
    ISAError
        Naming the offending word index and value: an invalid word, more than
        three sections, ``LSSYN``/``UPTSYN`` outside the weight section,
        ``GSPRS`` outside the neuron section, a ``JC`` target outside its
        section, or a program longer than ``max_words``.

    Examples
    --------
    >>> prog = assemble('''
    ...     NPC            ; empty weight section
    ...     ADDI VT, WGTSUM, 0
    ...     GSPRS
    ... ''')
    >>> len(prog), prog.sections
    (3, ((0, 0), (1, 3), (3, 3)))
    >>> prog == NeuronProgram.from_words(prog.words)
    True
    >>> NeuronProgram.from_words([0x1C000000])
    Traceback (most recent call last):
    ...
    nvppl.backend.isa.ISAError: word 0 (0x1c000000): GSPRS is only allowed in the neuron section (here: weight)
    """

    __slots__ = ("_decoded", "_sections", "_text", "_words")

    def __init__(self, words, *, max_words=1024):
        arr = np.asarray(words)
        if arr.size == 0:
            arr = np.zeros(0, dtype=np.int64)
        if arr.ndim != 1:
            raise ISAError(f"program words must be one-dimensional, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise ISAError(f"program words must be integers, got dtype {arr.dtype}")
        decoded = tuple(decode(int(w), index=i) for i, w in enumerate(arr.tolist()))
        for i, msg in _program_errors(decoded, max_words):
            raise ISAError(msg, word=i, value=int(arr[i]))
        arr = arr.astype(np.uint32)
        arr.flags.writeable = False
        self._words = arr
        self._decoded = decoded
        self._sections = _section_bounds([ins.op for ins in decoded])
        self._text = None

    @classmethod
    def from_words(cls, words, *, max_words=1024) -> NeuronProgram:
        """A program from its instruction words (validated; see the class).

        Examples
        --------
        >>> NeuronProgram.from_words([0x00000000, 0x1C000000]).text
        '    NPC\\n    GSPRS\\n'
        """
        return cls(words, max_words=max_words)

    @property
    def words(self) -> np.ndarray:
        return self._words

    @property
    def instructions(self) -> tuple:
        return self._decoded

    @property
    def sections(self) -> tuple:
        return self._sections

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = disassemble(self)
        return self._text

    def __len__(self) -> int:
        return len(self._decoded)

    def __eq__(self, other):
        if not isinstance(other, NeuronProgram):
            return NotImplemented
        return np.array_equal(self._words, other._words)

    def __hash__(self):
        return hash(self._words.tobytes())

    def __repr__(self):
        sizes = ", ".join(f"{s.name.lower()} {b - a}" for s, (a, b) in zip(Section, self._sections))
        return f"<NeuronProgram: {len(self)} words; {sizes}>"


def _as_program(program) -> NeuronProgram:
    if isinstance(program, NeuronProgram):
        return program
    if isinstance(program, str):
        return assemble(program, max_words=None)
    return NeuronProgram.from_words(program, max_words=None)


def disassemble(program) -> str:
    """Canonical assembly text of a program.

    One instruction per line, indented by four spaces; ``JC`` targets are
    labels ``L0``, ``L1``, … numbered in word order, each on its own line.
    :func:`assemble` of the text gives back the same words, and the text of
    those words is the same text.

    Parameters
    ----------
    program : NeuronProgram or sequence of int
        A program or its words (validated without length limit).

    Examples
    --------
    >>> print(disassemble(assemble('''
    ...     npc
    ...     cmp wgtsum, r0
    ...     jc le, 1   # skip the spike when WGTSUM <= 0
    ...     addi vt, vt, 1
    ...     gsprs
    ... ''')), end="")
        NPC
        CMP WGTSUM, R0
        JC LE, L0
        ADDI VT, VT, 1
    L0:
        GSPRS
    """
    prog = _as_program(program)
    dec = prog.instructions
    targets = sorted({i + 1 + ins.imm for i, ins in enumerate(dec) if ins.op == Opcode.JC})
    names = {t: f"L{j}" for j, t in enumerate(targets)}
    lines = []
    for i, ins in enumerate(dec):
        if i in names:
            lines.append(f"{names[i]}:")
        target = names[i + 1 + ins.imm] if ins.op == Opcode.JC else None
        lines.append("    " + _format(ins, target))
    if len(dec) in names:
        lines.append(f"{names[len(dec)]}:")
    return "\n".join(lines) + "\n" if lines else ""


# --------------------------------------------------------------------------- assembler

_LABEL_RE = re.compile(r"\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*:")
_INT_RE = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+)\Z")
_MEM_RE = re.compile(r"\[\s*([^\[\]]*?)\s*\]\Z")
_NOPERANDS = {"NPC": (0,), "GSPRS": (0,), "LSIS": (2,), "LSLS": (2,), "LSSYN": (2,), "UPTVT": (1,),
              "UPTLS": (3, 4), "UPTSYN": (3,), "ADD": (3,), "ADDI": (3,), "SUB": (3,), "SFTI": (3,),
              "CMP": (2,), "JC": (2,)}


class _LineError(Exception):
    pass


def _int(tok: str, what: str, lo: int, hi: int) -> int:
    if not _INT_RE.match(tok):
        raise _LineError(f"{what} {tok!r} is not an integer")
    v = int(tok, 0) if not re.match(r"[+-]?0[0-9]", tok) else int(tok, 10)
    if not lo <= v <= hi:
        raise _LineError(f"{what} {v} out of range [{lo}, {hi}]")
    return v


def _reg(tok: str) -> Reg:
    try:
        return Reg[tok.upper()]
    except KeyError:
        raise _LineError(f"unknown register {tok!r}") from None


def _dest(tok: str, name: str) -> Reg:
    r = _reg(tok)
    if r == Reg.RAND:
        raise _LineError(f"{name} cannot write RAND")
    return r


def _parse(mnem: str, ops: list, index: int, labels: dict) -> Instruction:
    op = Opcode[mnem]
    if len(ops) not in _NOPERANDS[mnem]:
        want = " or ".join(str(k) for k in _NOPERANDS[mnem])
        raise _LineError(f"{mnem} takes {want} operands, got {len(ops)}")
    if op in (Opcode.NPC, Opcode.GSPRS):
        return Instruction(op)
    if op in _LOAD_STORE:
        hi = _SLOT_MAX[op]
        m0, m1 = _MEM_RE.match(ops[0]), _MEM_RE.match(ops[1])
        if m0:
            return Instruction(op, _reg(ops[1]), 1, _int(m0.group(1), "slot", 0, hi))
        if not m1:
            raise _LineError(f"{mnem} needs a memory operand [slot]")
        return Instruction(op, _dest(ops[0], f"{mnem} (load)"), 0, _int(m1.group(1), "slot", 0, hi))
    if op == Opcode.UPTVT:
        return Instruction(op, 0, 0, _int(ops[0], "km", 0, 16))
    if op == Opcode.UPTLS:
        rd, rs, k = _dest(ops[0], mnem), _reg(ops[1]), _int(ops[2], "k", 0, 15)
        if len(ops) == 4:
            return Instruction(op, rd, rs, _uptls_imm(0, k, _int(ops[3], "inc", 0, 127)))
        return Instruction(op, rd, rs, _uptls_imm(1, k, 0))
    if op == Opcode.UPTSYN:
        try:
            mode = SynMode[ops[0].upper()]
        except KeyError:
            raise _LineError(f"unknown UPTSYN mode {ops[0]!r} (PRE, POST, PREPOST, MOD)") from None
        return Instruction(op, 0, 0, _uptsyn_imm(mode, _int(ops[1], "amplitude", -128, 127),
                                                 _int(ops[2], "shift", 0, 15)))
    if op in (Opcode.ADD, Opcode.SUB):
        return Instruction(op, _dest(ops[0], mnem), _reg(ops[1]), _reg(ops[2]))
    if op == Opcode.ADDI:
        return Instruction(op, _dest(ops[0], mnem), _reg(ops[1]), _int(ops[2], "immediate", -0x8000, 0x7FFF))
    if op == Opcode.SFTI:
        return Instruction(op, _dest(ops[0], mnem), _reg(ops[1]), _int(ops[2], "shift", -15, 15))
    if op == Opcode.CMP:
        return Instruction(op, 0, _reg(ops[0]), _reg(ops[1]))
    try:
        cond = Cond[ops[0].upper()]
    except KeyError:
        raise _LineError(f"unknown condition {ops[0]!r} (AL, EQ, NE, LT, GE, GT, LE)") from None
    if _INT_RE.match(ops[1]):
        offset = _int(ops[1], "offset", -0x8000, 0x7FFF)
    elif ops[1] in labels:
        offset = _int(str(labels[ops[1]] - index - 1), "offset to the label", -0x8000, 0x7FFF)
    else:
        raise _LineError(f"unknown label {ops[1]!r}")
    return Instruction(op, cond, 0, offset)


def assemble(text: str, *, max_words=1024) -> NeuronProgram:
    """Assemble program text.

    Syntax: one instruction per line, as in the instruction table of the
    guide; comments from ``;`` or ``#`` to the end of the line; blank lines;
    labels ``name:`` (case-sensitive) on their own line or before an
    instruction. Mnemonics, registers, ``UPTSYN`` modes and ``JC``
    conditions are case-insensitive. Immediates are decimal or ``0x``
    hexadecimal, optionally signed. ``NPC`` ends a section (see the module
    notes); a ``JC`` target is a label or a signed offset from the next word.

    Parameters
    ----------
    text : str
    max_words : int or None, default 1024
        Maximum program length; None for no limit.

    Returns
    -------
    NeuronProgram

    Raises
    ------
    ISAError
        Naming the line number and text: unknown mnemonic, register, mode,
        condition or label; a duplicate label; a wrong operand count; an
        immediate out of range; a write to RAND; a ``JC`` target outside its
        section; ``LSSYN``/``UPTSYN`` outside the weight section; ``GSPRS``
        outside the neuron section; more than three sections; a program
        longer than ``max_words``.

    Examples
    --------
    >>> prog = assemble('''
    ... loop:  ADDI R0, R0, 1     ; count to 3
    ...        CMP R0, R1
    ...        JC LT, loop
    ... ''')
    >>> [hex(w) for w in prog.words]
    ['0x27300001', '0x3030000d', '0x34c0fffd']
    >>> assemble("NPC\\nADD R0, R9, R1")
    Traceback (most recent call last):
    ...
    nvppl.backend.isa.ISAError: line 2 ('ADD R0, R9, R1'): unknown register 'R9'
    """
    items, labels, label_lines = [], {}, {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        code = re.split(r"[;#]", raw, maxsplit=1)[0]
        while m := _LABEL_RE.match(code):
            name = m.group(1)
            if name in labels:
                raise ISAError(f"duplicate label {name!r} (first defined on line {label_lines[name]})",
                               line=lineno, text=raw.strip())
            labels[name], label_lines[name] = len(items), lineno
            code = code[m.end():]
        code = code.strip()
        if not code:
            continue
        parts = code.split(None, 1)
        mnem = parts[0].upper()
        if mnem not in Opcode.__members__:
            raise ISAError(f"unknown mnemonic {parts[0]!r}", line=lineno, text=raw.strip())
        ops = [o.strip() for o in parts[1].split(",")] if len(parts) > 1 else []
        if any(not o for o in ops):
            raise ISAError("empty operand", line=lineno, text=raw.strip())
        items.append((lineno, raw.strip(), mnem, ops))
    decoded = []
    for index, (lineno, raw, mnem, ops) in enumerate(items):
        try:
            decoded.append(_parse(mnem, ops, index, labels))
        except _LineError as err:
            raise ISAError(str(err), line=lineno, text=raw) from None
    for index, msg in _program_errors(decoded, max_words):
        raise ISAError(msg, line=items[index][0], text=items[index][1])
    return NeuronProgram([encode(ins) for ins in decoded], max_words=max_words)


# --------------------------------------------------------------------------- fixed point

def _check_rounding(rounding):
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def _bounds(bits: int):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(v, bits: int) -> np.ndarray:
    """Clamp to the signed ``bits``-bit range [−2^(bits−1), 2^(bits−1) − 1].

    Examples
    --------
    >>> saturate([-40000, -5, 40000], 16).tolist()
    [-32768, -5, 32767]
    """
    lo, hi = _bounds(operator.index(bits))
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def shr(v, k: int, rounding: str, draws=None) -> np.ndarray:
    """Divide by 2ᵏ with a rounding mode, on int64.

    ``"floor"``: ⌊v / 2ᵏ⌋; ``"nearest"``: ⌊(v + 2ᵏ⁻¹) / 2ᵏ⌋ (half up);
    ``"stochastic"``: ⌊(v + u mod 2ᵏ) / 2ᵏ⌋ with ``u`` the 16-bit ``draws``.
    ``shr(v, 0)`` is ``v`` and uses no draw.

    Parameters
    ----------
    v : array_like of int
    k : int
        Shift, 0–62.
    rounding : {"floor", "nearest", "stochastic"}
    draws : array_like of int, optional
        One 16-bit random number per element; required for stochastic
        rounding with k ≥ 1.

    Examples
    --------
    >>> v = np.array([-3, -2, 2, 3])
    >>> shr(v, 1, "floor").tolist(), shr(v, 1, "nearest").tolist()
    ([-2, -1, 1, 1], [-1, -1, 1, 2])
    >>> shr(v, 1, "stochastic", draws=[0, 1, 0, 1]).tolist()
    [-2, -1, 1, 2]
    """
    _check_rounding(rounding)
    k = operator.index(k)
    if not 0 <= k <= 62:
        raise ValueError(f"shift k = {k} out of range 0–62")
    v = np.asarray(v, dtype=np.int64)
    if k == 0:
        return v.copy()
    if rounding == "floor":
        return v >> k
    if rounding == "nearest":
        return (v + (1 << (k - 1))) >> k
    if draws is None:
        raise ValueError("stochastic rounding needs draws")
    u = np.asarray(draws).astype(np.int64)
    return (v + (u & ((1 << k) - 1))) >> k


# --------------------------------------------------------------------------- random generator

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _u64(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.uint64:
        return a
    if a.dtype.kind == "O":
        a = np.asarray(x, dtype=np.uint64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "i" and (a < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return a.astype(np.uint64)


def mix(z) -> np.ndarray:
    """The splitmix64 finaliser on 64-bit unsigned integers (arithmetic mod 2⁶⁴).

    Examples
    --------
    >>> hex(int(mix(0)))
    '0xe220a8397b1dcdaf'
    """
    z = _u64(z, "z")
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def unit_key(seed, core, unit, tick) -> np.ndarray:
    """The key ``h = mix(mix(mix(seed) ^ core) ^ (unit · 2³² + tick))`` of a unit at a tick.

    Arguments broadcast against each other. The unit is a neuron's index on
    its core, or 2³⁰ + a synapse's index in the core's synapse memory.

    Examples
    --------
    >>> h = unit_key(7, core=3, unit=np.arange(4), tick=10)
    >>> h.dtype, h.shape
    (dtype('uint64'), (4,))
    """
    seed, core = _u64(seed, "seed"), _u64(core, "core")
    unit, tick = _u64(unit, "unit"), _u64(tick, "tick")
    with np.errstate(over="ignore"):
        return mix(mix(mix(seed) ^ core) ^ ((unit << np.uint64(32)) + tick))


def draw(h, n) -> np.ndarray:
    """The n-th 16-bit draw ``u_n = mix(h + n) >> 48`` of units with keys ``h``.

    Examples
    --------
    >>> u = draw(unit_key(1, 1, 0, 0), np.arange(5))
    >>> bool(((u >= 0) & (u < 2**16)).all()), u.dtype
    (True, dtype('uint64'))
    """
    h, n = _u64(h, "h"), _u64(n, "n")
    with np.errstate(over="ignore"):
        return mix(h + n) >> np.uint64(48)


# --------------------------------------------------------------------------- interpreter

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
    prog = _as_program(program)
    section = Section(section)
    _check_rounding(rounding)
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
        h = np.broadcast_to(_u64(h, "h"), (n,))
    counters = np.zeros(n, dtype=np.int64) if counters is None else _inout("counters", counters, (n,))
    lo, hi = _bounds(state_bits)
    wlo, whi = _bounds(weight_bits)
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

        if op in _LOAD_STORE:
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
            mode, k, inc = _uptls_fields(imm)
            cur = regs[rd, idx]
            src = lanes.read(rs)
            add = np.where(src != 0, inc, 0) if mode == 0 else src
            regs[rd, idx] = np.clip(cur - lanes.shr(cur, k) + add, 0, tmax)
        elif op == Opcode.UPTSYN:
            mode, a, s = _uptsyn_fields(imm)
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
            b = lanes.read(imm & 0xF)
            regs[rd, idx] = np.clip(a + b if op == Opcode.ADD else a - b, lo, hi)
        elif op == Opcode.ADDI:
            regs[rd, idx] = np.clip(lanes.read(rs) + imm, lo, hi)
        elif op == Opcode.SFTI:
            v = lanes.read(rs)
            regs[rd, idx] = np.clip(v << imm, lo, hi) if imm >= 0 else lanes.shr(v, -imm)
        elif op == Opcode.CMP:
            a = lanes.read(rs)
            flag[idx] = np.sign(a - lanes.read(imm & 0xF))
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
    >>> is_rest_stable(build_program(neuron=lif_section(threshold=64, leak_shift=3)))
    True
    >>> is_rest_stable(build_program(neuron=lif_section(threshold=64, leak_shift=3, bias=1)))
    False
    >>> is_rest_stable(build_program(neuron=lif_section(threshold=64, leak_shift=3)), rounding="stochastic")
    False
    """
    prog = _as_program(program)
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
    >>> prog = build_program(weight=stdp_section(a_pre=20, a_post=-24, shift=4))
    >>> is_weight_inert(prog, rounding="nearest"), is_weight_inert(prog, rounding="stochastic")
    (True, False)
    """
    prog = _as_program(program)
    lo, hi = _bounds(weight_bits)
    w = np.arange(lo, hi + 1, dtype=np.int64)
    m = w.size
    synapse = w[:, None].copy()
    counters = np.zeros(m, dtype=np.int64)
    execute(prog, Section.WEIGHT, np.zeros((16, m), dtype=np.int64), synapse=synapse,
            h=np.zeros(m, dtype=np.uint64), counters=counters, rounding=rounding, state_bits=state_bits,
            trace_bits=trace_bits, weight_bits=weight_bits)
    return bool(np.array_equal(synapse[:, 0], w) and not counters.any())


# --------------------------------------------------------------------------- ready-made programs

def _param(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
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
