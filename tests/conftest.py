"""Shared test configuration.

Every module's compiled JAX programs are released when the module ends: a
single pytest process compiles hundreds of programs, and each keeps memory
mappings alive, which over the whole suite approach the kernel's limit on
mappings per process (``vm.max_map_count``, 65530 by default)."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    jax.clear_caches()
