"""The one table of the instruction set's numbers: opcodes, registers, fields.

Opcodes, registers, ``JC`` conditions, ``UPTSYN`` products, program sections
and rounding modes, with the bit fields of an instruction word and of the
packed immediates of ``UPTLS`` and ``UPTSYN`` (``docs/guide/emulator.rst``,
"The instruction set"). Every other part of the chip takes these numbers from
here: the encoder, assembler and interpreter of :mod:`nvppl.backend.isa`, and
the compiled emulator, whose Cython constants are written from this table when
the extensions are built (:func:`cython_include`).

The module uses the standard library only, so that the build can load it by
its file path without nvppl's dependencies.

Examples
--------
>>> Opcode.UPTSYN, Reg.WGTSUM, ROUNDINGS.index("nearest")
(<Opcode.UPTSYN: 6>, <Reg.WGTSUM: 3>, 1)
>>> UPTLS["k"].get(0x8300)
3
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["ROUNDINGS", "RT", "UPTLS", "UPTSYN", "WORD", "BitField", "Cond", "Opcode", "Reg", "Section",
           "SynMode", "cython_constants", "cython_include"]

#: The rounding modes of ``shr``; a mode's code on the chip is its index.
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


class BitField(NamedTuple):
    """The ``width`` bits of a word from bit ``lo`` up.

    Examples
    --------
    >>> f = BitField(8, 4)
    >>> f.mask, f.get(0xABCD), hex(f.put(0xB))
    (15, 11, '0xb00')
    """

    lo: int
    width: int

    @property
    def mask(self) -> int:
        """The field's largest value, ``2**width - 1``."""
        return (1 << self.width) - 1

    def get(self, word: int) -> int:
        """The field's value in ``word``."""
        return (word >> self.lo) & self.mask

    def put(self, value: int) -> int:
        """``value`` (its low ``width`` bits) at the field's place."""
        return (value & self.mask) << self.lo


#: Fields of a 32-bit instruction word (``zero``: bits that must be zero; ``imm`` is two's complement).
WORD = {"op": BitField(26, 6), "rd": BitField(22, 4), "rs": BitField(18, 4), "zero": BitField(16, 2),
        "imm": BitField(0, 16)}

#: The ``rt`` register of ``ADD``, ``SUB`` and ``CMP``: immediate bits 3–0.
RT = BitField(0, 4)

#: The packed immediate of ``UPTLS``: ``mode`` (0: add ``inc`` when rs ≠ 0; 1: add rs), the shift ``k``
#: (bits 14–12 must be zero: k ≤ 15) and ``inc`` (≤ 127).
UPTLS = {"mode": BitField(15, 1), "k": BitField(8, 7), "inc": BitField(0, 8)}

#: The packed immediate of ``UPTSYN``: the product ``mode`` (a :class:`SynMode`), the ``shift`` and the
#: signed 8-bit ``amplitude``.
UPTSYN = {"mode": BitField(12, 4), "shift": BitField(8, 4), "amplitude": BitField(0, 8)}


def cython_constants() -> dict:
    """The table as named integer constants, as the compiled emulator sees them.

    ``OP_*`` opcodes, ``REG_*`` registers and ``N_REGS``, ``COND_*``
    conditions, ``SYN_*`` products, ``SEC_*`` sections and ``N_SECTIONS``,
    ``ROUND_*`` rounding codes, and ``*_SHIFT`` / ``*_MASK`` of the packed
    immediate fields (``RT``, ``UPTLS_*``, ``UPTSYN_*``).

    Examples
    --------
    >>> c = cython_constants()
    >>> c["OP_JC"], c["REG_RAND"], c["ROUND_STOCHASTIC"], c["UPTSYN_MODE_SHIFT"]
    (13, 5, 2, 12)
    """
    out = {}
    for prefix, enum in (("OP", Opcode), ("REG", Reg), ("COND", Cond), ("SYN", SynMode), ("SEC", Section)):
        out.update({f"{prefix}_{member.name}": int(member) for member in enum})
    out["N_REGS"] = len(Reg)
    out["N_SECTIONS"] = len(Section)
    out.update({f"ROUND_{name.upper()}": code for code, name in enumerate(ROUNDINGS)})
    fields = {"RT": RT, **{f"UPTLS_{k.upper()}": f for k, f in UPTLS.items()},
              **{f"UPTSYN_{k.upper()}": f for k, f in UPTSYN.items()}}
    for name, f in fields.items():
        out[f"{name}_SHIFT"] = f.lo
        out[f"{name}_MASK"] = f.mask
    return out


def cython_include() -> str:
    """The text of ``nvppl/backend/_isa_constants.pxi``: :func:`cython_constants` as a Cython enum.

    The include also defines ``ISA_CONSTANTS``, the same names mapped to the
    compiled values, so that tests can compare the built extension with this
    table.
    """
    constants = cython_constants()
    lines = ["# The ISA constants of the compiled emulator, written from nvppl/backend/isa/opcodes.py",
             "# when the extensions are built: edit that table, not this file.", "", "cdef enum:"]
    lines += [f"    {name} = {value}" for name, value in constants.items()]
    lines += ["", "ISA_CONSTANTS = {"]
    lines += [f"    {name!r}: {name}," for name in constants]
    lines += ["}", ""]
    return "\n".join(lines)
