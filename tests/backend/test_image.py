"""Chip images on disk: atomic writes, and edited tables refused or stopped with a clean error.

The runs of edited images happen in a subprocess, so that a crash of the
compiled engines fails the test instead of ending the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import nvppl as nv
import nvppl.backend.image as image
from nvppl.backend import ImageError, compile, read_image
from nvppl.backend.program import REGIONS, field
from tests._support.networks import random_inputs, random_network, random_vesicle_params, small_chip

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = f"0x{REGIONS['vesicle_migration']:02x}"               # address prefix (bits 31–24) of the region
EMISSION_0 = f"0x{REGIONS['vesicle_emission'] << 24:08x}"         # address of the first emission word


def _model(n=12, seed=2):
    G = nx.gnp_random_graph(n, 0.3, seed=seed, directed=True)
    G.add_nodes_from(range(n))
    return nv.VesicleModel(nv.Substrate.from_networkx(G), n_types=2)


def _vesicle_program(seed=0):
    model = _model()
    return compile(model, random_vesicle_params(model, seed), nodes_per_core=4)


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _zero_migration_thresholds(path: Path, keep=lambda k: False) -> None:
    """Clear bits 16–0 (the cumulative threshold) of the migration words of a core file, but those ``keep`` keeps."""
    lines = path.read_text().splitlines()
    k = 0
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) == 6 and parts[4].startswith(MIGRATION):
            if not keep(k):
                parts[5] = f"0x{int(parts[5], 16) & ~((1 << 17) - 1):012x}"
                lines[i] = " ".join(parts)
            k += 1
    assert k > 0, "the core file holds no migration words"
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- atomic writes

def test_a_failed_write_leaves_the_previous_image(tmp_path, monkeypatch):
    folder = tmp_path / "image"
    first = _vesicle_program(0)
    first.write(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = _vesicle_program(1)
    calls = []

    def failing(path, text):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        Path(path).write_text(text)

    monkeypatch.setattr(image, "write_text", failing)
    with pytest.raises(OSError, match="No space left"):
        second.write(folder)
    assert len(calls) == 3
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image"]   # no half-written folder beside it
    assert read_image(folder).equals(first)


def test_an_image_replaces_a_previous_image_whole(tmp_path):
    folder = tmp_path / "image"
    big = _vesicle_program(0)
    big.write(folder)
    model = _model()
    small = compile(model, random_vesicle_params(model, 1), nodes_per_core=12)
    small.write(folder)
    assert len(list(folder.glob("core_*.txt"))) == len(small.vesicles.cores) < len(big.vesicles.cores)
    assert read_image(folder).equals(small)


def test_a_folder_with_other_files_is_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        _vesicle_program(0).write(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_network_image_is_written_whole_too(tmp_path, monkeypatch):
    net = random_network(0)
    prog = compile(net, chip=small_chip())

    def read_only(path, text):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(image, "write_text", read_only)
    with pytest.raises(OSError, match="Read-only"):
        prog.write(tmp_path / "net")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    prog.write(tmp_path / "net")
    back = read_image(tmp_path / "net")
    inputs = random_inputs(net, 20, 0)
    a = nv.backend.Emulator(back).run(20, key=3, inputs=inputs)
    b = nv.backend.Emulator(prog).run(20, key=3, inputs=inputs)
    assert a.spikes.equals(b.spikes) and a.counters == b.counters


# --------------------------------------------------------------------------- edited tables

def test_an_image_with_a_zeroed_migration_table_is_refused_cleanly(tmp_path):
    prog = _vesicle_program(0)
    prog.write(tmp_path)
    core = prog.vesicles.cores[-1]       # the last rows of the table: an unbounded walk leaves the table there
    _zero_migration_thresholds(tmp_path / f"core_{core.x}_{core.y}.txt")
    res = _run(f"""
        import nvppl as nv
        from nvppl.backend import ImageError
        try:
            prog = nv.backend.read_image({str(tmp_path)!r})
            nv.backend.Emulator(prog).run(n_ticks=30, key=0)
        except ImageError as exc:
            print("ImageError:", exc)
    """)
    assert res.returncode == 0, res.stderr
    assert "ImageError:" in res.stdout
    assert f"node core ({core.x}, {core.y}), node" in res.stdout and "type 0" in res.stdout
    assert "must not decrease and must end at 2**16" in res.stdout


def test_a_decreasing_or_short_table_is_refused(tmp_path):
    prog = _vesicle_program(0)
    prog.write(tmp_path)
    cores = prog.vesicles.cores
    core = next(c for c in cores if field(c.nodes, 20, 8)[0] >= 2)   # its first node has two candidates or more
    path = tmp_path / f"core_{core.x}_{core.y}.txt"
    text = path.read_text()
    _zero_migration_thresholds(path, keep=lambda k: k != 0)     # the first entry of the first row: still walkable
    read_image(tmp_path)
    path.write_text(text)
    _zero_migration_thresholds(path, keep=lambda k: k != len(core.migration) - 1)   # the end of the last row
    with pytest.raises(ImageError, match=rf"node core \({core.x}, {core.y}\), node \d+, type 1: the cumulative "
                                         "migration thresholds"):
        read_image(tmp_path)
    path.write_text(text)
    for c in cores:                                               # every node core holds the emission table
        path = tmp_path / f"core_{c.x}_{c.y}.txt"
        lines = path.read_text().splitlines()
        k = next(i for i, line in enumerate(lines) if line.split()[4] == EMISSION_0)
        parts = lines[k].split()
        parts[5] = f"0x{(1 << 16) + 1:012x}"                      # above 2**16, so the table decreases after it
        lines[k] = " ".join(parts)
        path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImageError, match="type 0: the cumulative emission thresholds"):
        read_image(tmp_path)


def test_the_mailbox_engine_bounds_its_walk_by_the_row():
    """Tables that skip the load-time checks: the engine stops with an error naming the node and type."""
    res = _run("""
        import networkx as nx, numpy as np
        import nvppl as nv
        from nvppl.backend import ImageError, compile
        from nvppl.backend.program import VesicleProgram
        from tests._support.networks import random_vesicle_params

        G = nx.gnp_random_graph(12, 0.3, seed=2, directed=True)
        model = nv.VesicleModel(nv.Substrate.from_networkx(G), n_types=2)
        prog = compile(model, random_vesicle_params(model, 0), nodes_per_core=4)
        tables = prog.vesicles.tables()
        VesicleProgram.tables = lambda self: tables._replace(migration=np.zeros_like(tables.migration))
        try:
            nv.backend.Emulator(prog).run(n_ticks=30, key=0)
        except ImageError as exc:
            print("ImageError:", exc)
    """)
    assert res.returncode == 0, res.stderr
    assert "ImageError: run 0, tick" in res.stdout
    assert "node core (" in res.stdout and "type " in res.stdout and "no entry above the draw" in res.stdout


def test_valid_tables_pass_the_load_checks():
    prog = _vesicle_program(3)
    t = prog.vesicles.tables()
    ncand = (np.asarray(prog.vesicles.model.substrate.candidates) >= 0).sum(axis=1)
    last = t.migration[:, np.arange(len(ncand)), np.maximum(ncand - 1, 0)]
    assert np.all(last[:, ncand > 0] == 1 << 16) and np.all(t.emission[:, -1] == 1 << 16)
