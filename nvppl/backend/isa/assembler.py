"""The assembler: program text to a :class:`~nvppl.backend.isa.NeuronProgram`.

The syntax is that of the instruction table of the guide
(``docs/guide/emulator.rst``, "Instruction word"); see :func:`assemble`.
"""

from __future__ import annotations

import re

from .encoding import LOAD_STORE, SLOT_MAX, ISAError, Instruction, encode, pack_uptls, pack_uptsyn
from .opcodes import Cond, Opcode, Reg, SynMode
from .program import NeuronProgram, program_errors

__all__ = ["as_program", "assemble"]

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
    if op in LOAD_STORE:
        hi = SLOT_MAX[op]
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
            return Instruction(op, rd, rs, pack_uptls(0, k, _int(ops[3], "inc", 0, 127)))
        return Instruction(op, rd, rs, pack_uptls(1, k, 0))
    if op == Opcode.UPTSYN:
        try:
            mode = SynMode[ops[0].upper()]
        except KeyError:
            raise _LineError(f"unknown UPTSYN mode {ops[0]!r} (PRE, POST, PREPOST, MOD)") from None
        return Instruction(op, 0, 0, pack_uptsyn(mode, _int(ops[1], "amplitude", -128, 127),
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
    hexadecimal, optionally signed. ``NPC`` ends a section (see the notes of
    :mod:`nvppl.backend.isa`); a ``JC`` target is a label or a signed offset
    from the next word.

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
    nvppl.backend.isa.encoding.ISAError: line 2 ('ADD R0, R9, R1'): unknown register 'R9'
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
    for index, msg in program_errors(decoded, max_words):
        raise ISAError(msg, line=items[index][0], text=items[index][1])
    return NeuronProgram([encode(ins) for ins in decoded], max_words=max_words)


def as_program(program) -> NeuronProgram:
    """``program`` as a :class:`~nvppl.backend.isa.NeuronProgram`: a program, its text or its words.

    Text and words are validated without a length limit.
    """
    if isinstance(program, NeuronProgram):
        return program
    if isinstance(program, str):
        return assemble(program, max_words=None)
    return NeuronProgram.from_words(program, max_words=None)
