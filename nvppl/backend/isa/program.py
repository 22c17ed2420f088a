"""Validated core programs: :class:`NeuronProgram`, its sections and its canonical text.

A program is a sequence of instruction words in three sections separated by
``NPC`` (``docs/guide/emulator.rst``, "Programs and sections"):
:func:`section_bounds` finds them and :func:`program_errors` lists what a
program may not do, whatever its words.
"""

from __future__ import annotations

import numpy as np

from .encoding import ISAError, decode, instruction_text
from .opcodes import Opcode, Section

__all__ = ["NeuronProgram", "disassemble", "program_errors", "section_bounds"]


def section_bounds(ops) -> tuple:
    """((start, end), ...) of the three sections; end is the closing NPC or the program end."""
    n = len(ops)
    npcs = [i for i, op in enumerate(ops) if op == Opcode.NPC]
    bounds, start = [], 0
    for s in range(3):
        end = npcs[s] if s < len(npcs) else n
        bounds.append((start, end))
        start = min(end + 1, n)
    return tuple(bounds)


def program_errors(decoded, max_words):
    """(word index, message) of every program-level violation, in word order."""
    bounds = section_bounds([ins.op for ins in decoded])
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

    Build one with :func:`~nvppl.backend.isa.assemble`, :meth:`from_words` or
    :func:`~nvppl.backend.isa.build_program`. Two programs are equal when their words are equal.

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
    >>> from nvppl.backend.isa import assemble
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
    nvppl.backend.isa.encoding.ISAError: word 0 (0x1c000000): GSPRS is only allowed in the neuron section (here: weight)
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
        for i, msg in program_errors(decoded, max_words):
            raise ISAError(msg, word=i, value=int(arr[i]))
        arr = arr.astype(np.uint32)
        arr.flags.writeable = False
        self._words = arr
        self._decoded = decoded
        self._sections = section_bounds([ins.op for ins in decoded])
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


def disassemble(program) -> str:
    """Canonical assembly text of a program.

    One instruction per line, indented by four spaces; ``JC`` targets are
    labels ``L0``, ``L1``, … numbered in word order, each on its own line.
    :func:`~nvppl.backend.isa.assemble` of the text gives back the same words,
    and the text of those words is the same text.

    Parameters
    ----------
    program : NeuronProgram or sequence of int
        A program or its words (validated without length limit).

    Examples
    --------
    >>> from nvppl.backend.isa import assemble
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
    prog = program if isinstance(program, NeuronProgram) else NeuronProgram.from_words(program, max_words=None)
    dec = prog.instructions
    targets = sorted({i + 1 + ins.imm for i, ins in enumerate(dec) if ins.op == Opcode.JC})
    names = {t: f"L{j}" for j, t in enumerate(targets)}
    lines = []
    for i, ins in enumerate(dec):
        if i in names:
            lines.append(f"{names[i]}:")
        target = names[i + 1 + ins.imm] if ins.op == Opcode.JC else None
        lines.append("    " + instruction_text(ins, target))
    if len(dec) in names:
        lines.append(f"{names[len(dec)]}:")
    return "\n".join(lines) + "\n" if lines else ""
