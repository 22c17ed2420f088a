# cython: language_level=3
"""Declaration of :class:`CoreModel` for the engines that read it."""

from ._state cimport Model


cdef class CoreModel:
    # the C view of the tables (pointers into ``arrays``)
    cdef Model m
    # the NumPy arrays the pointers of ``m`` point into, by name
    cdef readonly object arrays
    # lengths of the run and step axes of the (run, step, node, type) tables (1 when shared)
    cdef readonly int n_runs_table, n_steps_table
