"""The compiled engines of nvppl (Cython and OpenMP), one extension per job.

- ``simulate`` — explicit-vesicle simulation, one task per (run, birth step);
- ``filter`` — the particle filter over explicit vesicle populations;
- ``mailbox`` — the vesicle mailboxes of the emulated chip;
- ``relax`` — the density recursion and its adjoint.

They share ``_rng.pxd`` (counter-based random streams), ``_state.pxd`` (the
model tables and vesicle state as C structs, each field documented) and
``_life.pxd`` (one vesicle's step, inline in each engine); ``model`` holds a
model's tables (:class:`CoreModel`). Every array is allocated from Python; the
inner loops run without the GIL. :mod:`nvppl._engine.bridge` lays out a model's
tables for them and loads the engines, saying how to build them when they are
missing.
"""
