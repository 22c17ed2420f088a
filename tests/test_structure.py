"""The package keeps its one-way shape (``docs/design.rst``, "Architecture").

The imports of every module of ``nvppl`` are read from the source (``import``
and ``from ... import`` statements anywhere in a module, function bodies
included, and ``cimport`` in Cython files) and checked:

- no cycle between modules, and none between the package's top-level parts;
- every import points to the same layer or a lower one of :data:`LAYERS`
  (``nvppl/__init__.py`` aside, which re-exports the public names);
- no module is longer than 600 lines (800 for a Cython ``.pyx``);
- the picture of the parts' imports in ``docs/design_graph.txt`` (shown on the
  design page) is today's: regenerate it with
  ``python -m tests.test_structure > docs/design_graph.txt``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "nvppl"
GRAPH_FILE = ROOT.parent / "docs" / "design_graph.txt"

#: The parts of nvppl from the bottom up; a part imports only from its own layer or lower ones.
LAYERS = (
    ("errors", "_validate", "_files", "_devices", "_extension", "_version"),
    ("substrate",),
    ("spec",),
    ("params", "priors", "model", "covariates"),
    ("kernels",),
    ("traces",),
    ("likelihood", "population", "programs", "exact"),
    ("_engine",),
    ("simulate",),
    ("density",),
    ("smc",),
    ("infer",),
    ("diagnostics",),
    ("overlay", "snn", "rl", "data"),
    ("backend",),
    ("cli",),
)
MAX_LINES = {".py": 600, ".pyx": 800}
_CIMPORT = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+cimport\s+([\w, ]+)|cimport\s+([\w.]+))", re.M)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
    files = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".pyx", ".pxd") and "__pycache__" not in p.parts]
    return {_module_name(p) + (":pxd" if p.suffix == ".pxd" else ""): p for p in files}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(base: str, level: int, current: str, is_pkg: bool) -> str:
    if level == 0:
        return base
    parts = current.split(".")
    package = parts if is_pkg else parts[:-1]
    package = package[: len(package) - (level - 1)]
    return ".".join(package + ([base] if base else []))


def _targets(name: str, path: Path, known: set) -> set:
    """nvppl modules that module ``name`` imports."""
    out = set()
    text = path.read_text()
    is_pkg = _is_package(path)

    def add(module, names=()):
        if not module.startswith("nvppl"):
            return
        hits = {f"{module}.{n}" for n in names if f"{module}.{n}" in known}
        out.update(hits)
        if len(hits) < len(names) or not names:
            while module not in known and "." in module:
                module = module.rsplit(".", 1)[0]
            out.add(module)

    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                add(_resolve(node.module or "", node.level, name, is_pkg), [a.name for a in node.names])
    else:
        for rel, names, plain in _CIMPORT.findall(text):
            if plain:
                add(plain)
            else:
                level = len(rel) - len(rel.lstrip("."))
                base = _resolve(rel.lstrip("."), level, name, False)
                add(base, [n.strip() for n in names.split(",")])
    out.discard(name)
    return out


def _graph():
    mods = _modules()
    known = {m.removesuffix(":pxd") for m in mods}
    graph = {}
    for key, path in mods.items():
        name = key.removesuffix(":pxd")
        graph.setdefault(name, set()).update(_targets(name, path, known))
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise KeyError(unit)


def _part_graph() -> dict:
    units = {}
    for module, targets in _graph().items():
        if _unit(module) == "__init__":
            continue
        units.setdefault(_unit(module), set()).update(
            _unit(t) for t in targets if _unit(t) not in (_unit(module), "__init__"))
    return units


def render_graph() -> str:
    """The parts and the parts they import, arrows implied by a longer path left
    out (a transitive reduction), from the top layer down."""
    graph = _part_graph()

    def reach(u, seen):
        for w in graph.get(u, ()):
            if w not in seen:
                seen.add(w)
                reach(w, seen)
        return seen

    order = sorted(graph, key=lambda u: (-_layer(u), u))
    lines = []
    for u in order:
        direct = graph[u]
        implied = set().union(*[reach(w, set()) for w in direct]) if direct else set()
        keep = sorted(direct - implied, key=lambda w: (-_layer(w), w))
        lines.append(f"{u:<12} -> {', '.join(keep) if keep else '(nothing of nvppl)'}")
    return "\n".join(lines) + "\n"


def test_the_reader_sees_imports_of_every_kind(tmp_path):
    """The checks below can fail: the reader finds relative, absolute, nested and Cython imports."""
    known = {"nvppl.a", "nvppl.b", "nvppl.c", "nvppl.d", "nvppl.pkg", "nvppl.pkg.e"}
    src = tmp_path / "m.py"
    src.write_text("import nvppl.a\nfrom . import b\ndef f():\n    from .pkg import e\n    from .c import x\n")
    assert _targets("nvppl.m", src, known) == {"nvppl.a", "nvppl.b", "nvppl.pkg.e", "nvppl.c"}
    pyx = tmp_path / "n.pyx"
    pyx.write_text("from .d cimport mix\nfrom libc.math cimport exp\n")
    assert _targets("nvppl.pkg.n", pyx, known | {"nvppl.pkg.d"}) == {"nvppl.pkg.d"}
    assert _cycles({"x": {"y"}, "y": {"x"}, "z": {"x"}}) == [["x", "y"]]


def test_every_part_is_in_a_layer():
    units = {_unit(m) for m in _graph()} - {"__init__"}
    assert units <= {u for layer in LAYERS for u in layer}, sorted(units - {u for layer in LAYERS for u in layer})


def test_no_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_no_cycle_between_parts():
    units = {}
    for module, targets in _graph().items():
        units.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    assert _cycles(units) == []


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in _graph().items():
        if _unit(module) == "__init__":
            continue
        for t in targets:
            if _unit(t) == "__init__":
                wrong.append(f"{module} -> {t} (the package's __init__)")
            elif _layer(_unit(t)) > _layer(_unit(module)):
                wrong.append(f"{module} -> {t}")
    assert wrong == []


@pytest.mark.parametrize("suffix", sorted(MAX_LINES))
def test_no_module_is_too_long(suffix):
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob(f"*{suffix}")
            if (n := len(p.read_text().splitlines())) > MAX_LINES[suffix]}
    assert long == {}


def test_the_design_page_shows_todays_imports():
    assert GRAPH_FILE.read_text() == render_graph(), \
        "regenerate with: python -m tests.test_structure > docs/design_graph.txt"


if __name__ == "__main__":
    print(render_graph(), end="")
