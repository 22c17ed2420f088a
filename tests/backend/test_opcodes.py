"""The one opcode table: the compiled emulator is built from it, and the build can read it alone."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

from nvppl._extension import load
from nvppl.backend import isa
from nvppl.backend.isa import opcodes

TABLE = Path(opcodes.__file__)


def test_the_compiled_emulator_has_the_constants_of_the_table():
    compiled = load("nvppl.backend._emulator").isa_constants()
    assert compiled == opcodes.cython_constants()
    assert compiled["OP_UPTSYN"] == isa.Opcode.UPTSYN and compiled["REG_RWSUM"] == isa.Reg.RWSUM
    assert compiled["ROUND_STOCHASTIC"] == isa.ROUNDINGS.index("stochastic")


def test_the_constants_name_every_member_of_the_table():
    c = opcodes.cython_constants()
    for prefix, enum in (("OP", isa.Opcode), ("REG", isa.Reg), ("COND", isa.Cond), ("SYN", isa.SynMode),
                         ("SEC", isa.Section)):
        assert {k: v for k, v in c.items() if k.startswith(prefix + "_")} == {
            f"{prefix}_{m.name}": int(m) for m in enum}
    assert (c["UPTLS_K_SHIFT"], c["UPTLS_K_MASK"], c["UPTSYN_AMPLITUDE_MASK"], c["RT_MASK"]) == (8, 0x7F, 0xFF, 0xF)
    text = opcodes.cython_include()
    assert all(f"    {name} = {value}\n" in text for name, value in c.items())


def test_the_table_needs_only_the_standard_library():
    tree = ast.parse(TABLE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import needs the package"
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # loaded by its path, as the build does, in an interpreter that cannot import numpy
    code = (f"import importlib.util, sys; sys.modules['numpy'] = None; "
            f"spec = importlib.util.spec_from_file_location('t', {str(TABLE)!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(len(m.cython_include().splitlines()))")
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > len(opcodes.cython_constants())


def test_the_generated_include_is_the_table_of_this_checkout():
    spec = importlib.util.spec_from_file_location("opcodes_by_path", TABLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    include = TABLE.parents[1] / "_isa_constants.pxi"
    assert include.read_text() == module.cython_include()
