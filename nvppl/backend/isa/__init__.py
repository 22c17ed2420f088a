"""The instruction set of the neuron cores: encoding, assembler, reference interpreter.

This package implements the section *The instruction set* of the emulator guide
(``docs/guide/emulator.rst``), together with its rounding rules and its
counter-based random generator, one concept per module:

- :mod:`~nvppl.backend.isa.opcodes`: the one table of numbers, the
  enumerations :class:`Opcode`, :class:`Reg`, :class:`Cond`, :class:`SynMode`
  and :class:`Section` and the bit fields of instruction words (the compiled
  emulator's constants are generated from it);
- :mod:`~nvppl.backend.isa.encoding`: :class:`Instruction` with
  :func:`encode` and :func:`decode` of 32-bit words;
- :mod:`~nvppl.backend.isa.program`: :class:`NeuronProgram` and
  :func:`disassemble`; :mod:`~nvppl.backend.isa.assembler`: :func:`assemble`;
- :mod:`~nvppl.backend.isa.fixed_point`: :func:`saturate` and :func:`shr`;
- :mod:`~nvppl.backend.isa.generator`: the random generator :func:`mix`,
  :func:`unit_key` and :func:`draw`;
- :mod:`~nvppl.backend.isa.interpreter`: :func:`execute`, the NumPy
  fixed-point reference interpreter, vectorised across lanes (one lane per
  neuron, or per synapse in the weight section), and the load-time checks
  :func:`is_rest_stable` and :func:`is_weight_inert`;
- :mod:`~nvppl.backend.isa.sections`: ready-made sections
  (:func:`lif_section`, :func:`relay_section`, :func:`trace_section`,
  :func:`stdp_section`, :func:`three_factor_section`) and
  :func:`build_program`.

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

from .assembler import assemble
from .encoding import ISAError, Instruction, decode, encode
from .fixed_point import saturate, shr
from .generator import draw, mix, unit_key
from .interpreter import ExecResult, execute, is_rest_stable, is_weight_inert
from .opcodes import ROUNDINGS, Cond, Opcode, Reg, Section, SynMode
from .program import NeuronProgram, disassemble
from .sections import (
    build_program,
    lif_section,
    relay_section,
    stdp_section,
    three_factor_section,
    trace_section,
)

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
