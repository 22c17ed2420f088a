"""Instruction words: :class:`Instruction`, :func:`encode`, :func:`decode` and their validation.

The layout of a word and of the packed immediates comes from
:mod:`nvppl.backend.isa.opcodes`; this module checks every field of every
opcode (``docs/guide/emulator.rst``, "Instruction word") and prints an
instruction as assembly text.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

from .opcodes import RT, UPTLS, UPTSYN, WORD, Cond, Opcode, Reg, SynMode

__all__ = ["LOAD_STORE", "SLOT_MAX", "ISAError", "Instruction", "decode", "encode", "instruction_text",
           "pack_uptls", "pack_uptsyn", "unpack_uptls", "unpack_uptsyn"]

#: The load/store opcodes: ``rs`` is the direction (0 load, 1 store), ``imm`` the slot.
LOAD_STORE = (Opcode.LSIS, Opcode.LSLS, Opcode.LSSYN)

#: The largest slot each load/store opcode can encode.
SLOT_MAX = {Opcode.LSIS: 0x7FFF, Opcode.LSLS: 2, Opcode.LSSYN: 0x7FFF}


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


def _signed16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def pack_uptls(mode: int, k: int, inc: int) -> int:
    """The signed immediate of ``UPTLS`` with fields ``mode``, ``k`` and ``inc``.

    Examples
    --------
    >>> pack_uptls(1, 3, 0), unpack_uptls(pack_uptls(0, 4, 32))
    (-32000, (0, 4, 32))
    """
    return _signed16(UPTLS["mode"].put(mode) | UPTLS["k"].put(k) | UPTLS["inc"].put(inc))


def unpack_uptls(imm: int) -> tuple:
    """``(mode, k, inc)`` of an ``UPTLS`` immediate."""
    raw = imm & WORD["imm"].mask
    return UPTLS["mode"].get(raw), UPTLS["k"].get(raw), UPTLS["inc"].get(raw)


def pack_uptsyn(mode: int, a: int, s: int) -> int:
    """The immediate of ``UPTSYN`` with product ``mode``, amplitude ``a`` and shift ``s``.

    Examples
    --------
    >>> unpack_uptsyn(pack_uptsyn(SynMode.MOD, -18, 5))
    (3, -18, 5)
    """
    return UPTSYN["mode"].put(mode) | UPTSYN["shift"].put(s) | UPTSYN["amplitude"].put(a)


def unpack_uptsyn(imm: int) -> tuple:
    """``(mode, amplitude, shift)`` of an ``UPTSYN`` immediate (the amplitude signed)."""
    raw = imm & WORD["imm"].mask
    a = UPTSYN["amplitude"].get(raw)
    return UPTSYN["mode"].get(raw), a - 256 if a & 0x80 else a, UPTSYN["shift"].get(raw)


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
    elif op in LOAD_STORE:
        if rs > 1:
            return f"{name}: direction {rs} is neither 0 (load) nor 1 (store)"
        if not 0 <= imm <= SLOT_MAX[op]:
            return f"{name}: slot {imm} out of range 0–{SLOT_MAX[op]}"
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
        mode, k, inc = unpack_uptls(imm)
        if k > 15:
            return f"UPTLS: k field {k} out of range 0–15 (bits 14–12 must be zero)"
        if inc > 127:
            return f"UPTLS: inc {inc} out of range 0–127"
        if mode == 1 and inc:
            return f"UPTLS: inc field {inc} must be zero in the add-rs form (mode 1)"
    elif op == Opcode.UPTSYN:
        if rd or rs:
            return f"UPTSYN: unused rd/rs fields must be zero (rd {rd}, rs {rs})"
        mode = unpack_uptsyn(imm)[0]
        if mode > 3:
            return f"UPTSYN: mode {mode} out of range 0–3"
    elif op in (Opcode.ADD, Opcode.SUB):
        if rd == Reg.RAND:
            return f"{name}: cannot write RAND"
        if not 0 <= imm <= RT.mask:
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
        if not 0 <= imm <= RT.mask:
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
        The :class:`~nvppl.backend.isa.Opcode`.
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
        return RT.get(self.imm)

    def __str__(self) -> str:
        return instruction_text(self)


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
    >>> try:
    ...     encode(Instruction(Opcode.UPTVT, 0, 0, 17))
    ... except ISAError as err:
    ...     print(err)
    cannot encode Instruction(op=4, rd=0, rs=0, imm=17): UPTVT: km 17 out of range 0–16
    """
    op, rd, rs, imm = (operator.index(f) for f in ins)
    err = _field_error(op, rd, rs, imm)
    if err is not None:
        raise ISAError(f"cannot encode Instruction(op={op}, rd={rd}, rs={rs}, imm={imm}): {err}")
    return WORD["op"].put(op) | WORD["rd"].put(rd) | WORD["rs"].put(rs) | WORD["imm"].put(imm)


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
        With ``op`` an :class:`~nvppl.backend.isa.Opcode` and ``imm`` the
        signed immediate.

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
    nvppl.backend.isa.encoding.ISAError: word 4 (0x20010000): bits 17–16 must be zero
    """
    w = operator.index(word)
    if not 0 <= w < 1 << 32:
        raise ISAError(f"{w} is not a 32-bit word", word=index)
    if WORD["zero"].get(w):
        raise ISAError("bits 17–16 must be zero", word=index, value=w)
    op, rd, rs = WORD["op"].get(w), WORD["rd"].get(w), WORD["rs"].get(w)
    imm = _signed16(WORD["imm"].get(w))
    err = _field_error(op, rd, rs, imm)
    if err is not None:
        raise ISAError(err, word=index, value=w)
    return Instruction(Opcode(op), rd, rs, imm)


def _reg_name(r: int) -> str:
    return Reg(r).name


def instruction_text(ins: Instruction, target: str | None = None) -> str:
    """Assembly text of one instruction (``JC`` with the label ``target`` or its numeric offset).

    Examples
    --------
    >>> instruction_text(Instruction(Opcode.JC, Cond.GE, 0, 2)), instruction_text(Instruction(Opcode.JC), "L0")
    ('JC GE, +2', 'JC AL, L0')
    """
    op, rd, rs, imm = ins
    op = Opcode(op)
    if op in (Opcode.NPC, Opcode.GSPRS):
        return op.name
    if op in LOAD_STORE:
        if rs:
            return f"{op.name} [{imm}], {_reg_name(rd)}"
        return f"{op.name} {_reg_name(rd)}, [{imm}]"
    if op == Opcode.UPTVT:
        return f"UPTVT {imm}"
    if op == Opcode.UPTLS:
        mode, k, inc = unpack_uptls(imm)
        tail = f"{k}" if mode else f"{k}, {inc}"
        return f"UPTLS {_reg_name(rd)}, {_reg_name(rs)}, {tail}"
    if op == Opcode.UPTSYN:
        mode, a, s = unpack_uptsyn(imm)
        return f"UPTSYN {SynMode(mode).name}, {a}, {s}"
    if op in (Opcode.ADD, Opcode.SUB):
        return f"{op.name} {_reg_name(rd)}, {_reg_name(rs)}, {_reg_name(RT.get(imm))}"
    if op in (Opcode.ADDI, Opcode.SFTI):
        return f"{op.name} {_reg_name(rd)}, {_reg_name(rs)}, {imm}"
    if op == Opcode.CMP:
        return f"CMP {_reg_name(rs)}, {_reg_name(RT.get(imm))}"
    return f"JC {Cond(rd).name}, {target if target is not None else f'{imm:+d}'}"
