"""Atomic writes (:mod:`nvppl._files`): a failed write leaves the previous file
as it was and nothing half-written behind, including past a file-size limit."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from nvppl import _files


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_complete_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    _files.write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert _names(tmp_path) == ["a.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with _files.atomic_file(target, "w") as f:
            f.write("partial")
            raise RuntimeError("midway")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]


def test_a_failed_netcdf_fill_writes_nothing(tmp_path):
    def fill(buffer):
        buffer.write(b"HDF")
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space"):
        _files.write_netcdf(tmp_path / "x.nc", fill)
    assert _names(tmp_path) == []


def test_a_folder_is_replaced_only_when_complete(tmp_path):
    target = tmp_path / "image"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ValueError):
        with _files.atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise ValueError("stop")
    assert _names(target) == ["old.txt"]
    assert _names(tmp_path) == ["image"]
    with _files.atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _names(target) == ["new.txt"]
    assert _names(tmp_path) == ["image"]
    with pytest.raises(NotADirectoryError):
        with _files.atomic_dir(target / "new.txt"):
            pass


def test_save_figure_takes_the_format_from_the_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    _files.save_figure(fig, tmp_path / "f.png")
    _files.save_figure(fig, tmp_path / "f.pdf")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"


_FSIZE = """
    import resource, sys, networkx as nx, numpy as np, nvppl as nv
    folder = sys.argv[1]
    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1, priors={{"a": 0.0}})
    small = nv.simulate(model, model.default_params(), n_steps=5, n_runs=1, key=0)
    {prepare}
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    try:
        {write}
    except OSError as exc:
        print("OSError:", exc)
"""


@pytest.mark.parametrize("what", ["traces", "fit"])
def test_writing_past_a_file_size_limit_is_an_error_and_keeps_the_old_file(tmp_path, what):
    """Before, HDF5 wrote to the file itself and the process crashed at exit,
    the old output destroyed; now the write fails cleanly."""
    if what == "traces":
        prepare = 'small.to_netcdf(folder + "/out.nc"); big = nv.simulate(model, model.default_params(), ' \
                  'n_steps=300, n_runs=2, key=1)'
        write = 'big.to_netcdf(folder + "/out.nc")'
    else:
        prepare = 'small.to_netcdf(folder + "/out.nc"); big = nv.infer.fit(model, small, num_samples=30, ' \
                  'num_warmup=30, num_chains=1, progress_bar=False)'  # a fit file is larger than the limit
        write = 'big.to_netcdf(folder + "/out.nc")'
    code = textwrap.dedent(_FSIZE).format(prepare=prepare, write=write)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert "OSError:" in out.stdout and "File too large" in out.stdout
    assert _names(tmp_path) == ["out.nc"]   # no temporary file left behind
    import networkx as nx

    import nvppl as nv

    old = nv.Traces.from_netcdf(tmp_path / "out.nc", nv.Substrate.from_networkx(nx.cycle_graph(4)))
    assert old.n_steps == 5
