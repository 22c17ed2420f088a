"""The outputs of the command line are written atomically: a write that fails
(a file-size limit, a full disk) or a command that fails or is interrupted
leaves a previous output byte for byte, and no partial file, temporary file or
new folder behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

import nvppl as nv
from tests.cli.test_cli import EDGES, SPEC, assert_error, run

pytestmark = pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping:DeprecationWarning")

#: File-size limit (bytes) of the subprocesses; traces and fits are larger.
LIMIT = 4096

#: Runs ``nvppl.cli.main(argv[2:])`` with a file-size limit of ``argv[1]`` bytes.
LIMITED = """\
import resource, sys
from nvppl.cli import main
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A graph, a spec, simulated traces and a small NUTS fit."""
    d = tmp_path_factory.mktemp("outputs")
    graph, spec, traces, fit = d / "graph.txt", d / "spec.yaml", d / "traces.nc", d / "fit.nc"
    graph.write_text(EDGES)
    spec.write_text(SPEC)
    status, _, err = run(["simulate", "--graph", graph, "--spec", spec, "-o", traces, "--steps", 30,
                          "--runs", 1, "--seed", 3])
    assert status == 0, err
    status, _, err = run(["fit", traces, "--graph", graph, "--spec", spec, "-o", fit, "--samples", 10,
                          "--warmup", 20, "--chains", 2, "--no-progress"])
    assert status == 0, err
    return {"graph": graph, "spec": spec, "traces": traces, "fit": fit}


def run_limited(argv, cwd):
    """Run the command line in a subprocess whose files may not grow past :data:`LIMIT` bytes."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", LIMITED, str(LIMIT)] + [str(a) for a in argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=900)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def assert_clear_failure(res, *fragments):
    """Exit status 2 (not a signal), one error line on standard error, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nvppl: error: "), res.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------ file-size limit
def test_simulate_past_the_file_size_limit_keeps_the_previous_traces(files, tmp_path):
    previous = tmp_path / "out.nc"
    assert run(["simulate", "--graph", files["graph"], "--spec", files["spec"], "-o", previous,
                "--steps", 30, "--runs", 1, "--seed", 1])[0] == 0
    before, names = previous.read_bytes(), listing(tmp_path)
    assert len(before) > LIMIT  # the new traces cannot be written
    res = run_limited(["simulate", "--graph", files["graph"], "--spec", files["spec"], "-o", "out.nc",
                       "--steps", 30, "--runs", 1, "--seed", 2], cwd=tmp_path)
    assert_clear_failure(res, "cannot write the traces 'out.nc'", "File too large",
                         "the previous file is unchanged")
    assert previous.read_bytes() == before
    assert listing(tmp_path) == names


def test_fit_past_the_file_size_limit_keeps_the_previous_fit(files, tmp_path):
    previous = tmp_path / "fit.nc"
    previous.write_bytes(files["fit"].read_bytes())
    res = run_limited(["fit", files["traces"], "--graph", files["graph"], "--spec", files["spec"],
                       "-o", "fit.nc", "--samples", 20, "--warmup", 20, "--chains", 1, "--seed", 4,
                       "--no-progress", "--plots", "plots"], cwd=tmp_path)
    assert_clear_failure(res, "cannot write the fit 'fit.nc'", "File too large", "the previous file is unchanged")
    assert previous.read_bytes() == files["fit"].read_bytes()
    assert listing(tmp_path) == ["fit.nc"]  # no temporary file, no plot folder


# ------------------------------------------------------------------ full disk
@pytest.fixture
def full_disk(monkeypatch):
    """Every file written through nvppl._files fails as on a full disk."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def test_simulate_on_a_full_disk(files, tmp_path, full_disk):
    previous = tmp_path / "out.nc"
    previous.write_bytes(b"previous traces")
    argv = ["simulate", "--graph", files["graph"], "--spec", files["spec"], "--steps", 10, "--runs", 1]
    assert_error(run(argv + ["-o", previous]), "cannot write the traces", "No space left on device",
                 "the previous file is unchanged")
    assert previous.read_bytes() == b"previous traces"
    assert_error(run(argv + ["-o", tmp_path / "new" / "deeper" / "out.nc"]), "No space left on device",
                 "nothing was written")
    assert listing(tmp_path) == ["out.nc"]  # neither temporary files nor the new folders


# ---------------------------------------------------------- failed commands
def test_fit_refused_creates_no_folder(files, tmp_path):
    spec = tmp_path / "two_types.yaml"
    spec.write_text("model:\n  n_types: 2\n")
    assert_error(run(["fit", files["traces"], "--graph", files["graph"], "--spec", spec,
                      "-o", tmp_path / "out" / "fit.nc", "--plots", tmp_path / "plots", "--no-progress"]),
                 "n_types=2")
    assert listing(tmp_path) == ["two_types.yaml"]


def test_fit_interrupted_creates_no_folder(files, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nv.infer, "fit", interrupted)
    status, out, err = run(["fit", files["traces"], "--graph", files["graph"], "--spec", files["spec"],
                            "-o", tmp_path / "out" / "fit.nc", "--plots", tmp_path / "plots"])
    assert (status, err.strip()) == (130, "nvppl: interrupted")
    assert listing(tmp_path) == []


def test_plots_appear_complete_or_not_at_all(files, tmp_path, monkeypatch):
    plots = tmp_path / "new" / "plots"
    with monkeypatch.context() as m:
        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        m.setattr(nv.diagnostics, "plot_rank", no_space)  # trace.png is written, then rank.png fails
        assert_error(run(["summary", files["fit"], "--plots", plots]), "cannot write the plots",
                     "No space left on device")
    assert listing(tmp_path) == []
    # into an existing folder the plots are added and other files kept
    plots.mkdir(parents=True)
    (plots / "notes.txt").write_text("mine")
    status, out, err = run(["summary", files["fit"], "--plots", plots])
    assert status == 0, err
    assert listing(plots) == ["notes.txt", "ppc.png", "rank.png", "trace.png"]
    assert (plots / "notes.txt").read_text() == "mine"
