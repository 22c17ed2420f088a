# cython: language_level=3
"""The splitmix64 finaliser of the on-chip random generator (``docs/guide/emulator.rst``).

Shared by the compiled emulator (``_emulator.pyx``) and the vesicle engine
(``_vesicles.pyx``); :func:`nvppl.backend.isa.mix` is its NumPy twin.
"""

from libc.stdint cimport uint64_t


cdef inline uint64_t mix(uint64_t z) noexcept nogil:
    z = z + <uint64_t>0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)
