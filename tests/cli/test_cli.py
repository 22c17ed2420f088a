"""End-to-end tests of the ``nvppl`` command line (simulate, fit, summary)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.cli import main, read_graph

# ArviZ 0.23 plotting calls a matplotlib API that newer matplotlib deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping:DeprecationWarning")

N_STEPS = 30

EDGES = "# a 3-cycle with a tail\n0 1\n1 2\n2 0\n2 3\n"

SPEC = """\
model:
  n_types: 1
  priors:
    a: 0.0
    delta: {dist: Beta, concentration1: 1, concentration0: 1}
params:
  delta: [0.1]
"""


def run(argv):
    """Run ``main(argv)`` in-process; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def substrate_of(graph_path, **kwargs):
    return nv.Substrate.from_networkx(read_graph(graph_path), **kwargs)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Files shared by the tests: a graph, a spec, simulated traces and one NUTS fit."""
    d = tmp_path_factory.mktemp("cli")
    graph, spec = d / "graph.txt", d / "spec.yaml"
    graph.write_text(EDGES)
    spec.write_text(SPEC)
    traces, fit, plots = d / "traces.nc", d / "out" / "fit.nc", d / "plots"
    sim = run(["simulate", "--graph", graph, "--spec", spec, "-o", traces,
               "--steps", N_STEPS, "--runs", 1, "--seed", 3])
    assert sim[0] == 0, sim[2]
    fitted = run(["fit", traces, "--graph", graph, "--spec", spec, "-o", fit, "--samples", 50,
                  "--warmup", 50, "--chains", 1, "--seed", 1, "--no-progress", "--plots", plots])
    assert fitted[0] == 0, fitted[2]
    return {"dir": d, "graph": graph, "spec": spec, "traces": traces, "fit": fit, "plots": plots,
            "simulate": sim, "fitted": fitted}


def assert_error(result, *fragments):
    status, out, err = result
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nvppl: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------ simulate
def test_simulate_writes_loadable_traces(work):
    status, out, err = work["simulate"]
    lines = out.strip().splitlines()
    assert len(lines) == 1
    traces = nv.Traces.from_netcdf(work["traces"], substrate_of(work["graph"]))
    assert (traces.n_runs, traces.n_steps, traces.n_types) == (1, N_STEPS, 1)
    assert traces.substrate.labels == (0, 1, 2, 3)  # integer labels from the edge list
    m = re.search(r"(\d+) run\(s\).*?(\d+) vesicles, (\d+) vesicle-steps", lines[0])
    assert m, lines[0]
    assert (int(m[1]), int(m[2]), int(m[3])) == (1, traces.n_vesicles, len(traces))
    assert traces.n_vesicles > 0


def test_simulate_is_reproducible_and_uses_params(work, tmp_path):
    # JSON spec; a number is broadcast to the field's shape; delta = 1 ends every life at birth
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": {"n_types": 1, "priors": {"a": 0.0}}, "params": {"delta": 1.0}}))
    paths = [tmp_path / "a.nc", tmp_path / "b.nc"]
    for path in paths:
        status, _, err = run(["simulate", "--graph", work["graph"], "--spec", spec, "-o", path,
                              "--steps", 20, "--runs", 2, "--seed", 5])
        assert status == 0, err
    sub = substrate_of(work["graph"])
    a, b = (nv.Traces.from_netcdf(p, sub) for p in paths)
    assert a.n_runs == 2 and a.n_vesicles > 0
    assert a.steps.equals(b.steps) and a.vesicles.equals(b.vesicles)
    ves = a.vesicles
    assert (ves.death_step == ves.birth_step).all()
    assert set(ves.death_cause) == {"expired"}


def test_simulate_backends_threads_and_capacity(work, tmp_path):
    base = ["simulate", "--graph", work["graph"], "--spec", work["spec"], "--steps", 15, "--seed", 2]
    one, two = tmp_path / "one.nc", tmp_path / "two.nc"
    assert run(base + ["-o", one, "--threads", 1])[0] == 0
    assert run(base + ["-o", two, "--threads", 2, "--backend", "compiled"])[0] == 0
    sub = substrate_of(work["graph"])
    assert nv.Traces.from_netcdf(one, sub).steps.equals(nv.Traces.from_netcdf(two, sub).steps)
    small = tmp_path / "small.nc"
    assert_error(run(base + ["-o", small, "--backend", "numpyro", "--capacity", 2]),
                 "--capacity", "nothing was written")
    assert_error(run(base + ["-o", small, "--capacity", 2]), "--capacity applies to --backend numpyro")
    assert not small.exists()
    assert run(base + ["-o", small, "--backend", "numpyro"])[0] == 0


def test_simulate_graphml_covariates_from_prior(tmp_path):
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")])
    for i, node in enumerate(sorted(G)):
        G.nodes[node]["x"] = float(i)
    graph = tmp_path / "g.graphml"
    nx.write_graphml(G, graph)
    spec = tmp_path / "spec.yml"
    spec.write_text("model:\n  n_types: 1\nsubstrate:\n  allow_stay: false\n  covariates: [x]\n"
                    "params:\n  delta: 0.5\n")
    out = tmp_path / "t.nc"
    status, stdout, err = run(["simulate", "--graph", graph, "--spec", spec, "-o", out,
                               "--steps", 15, "--runs", 1, "--from-prior"])
    assert status == 0, err
    assert "params section (delta) is not used" in err
    sub = nv.Substrate.from_networkx(read_graph(graph), allow_stay=False, covariates=["x"])
    traces = nv.Traces.from_netcdf(out, sub)
    assert traces.substrate.labels == ("a", "b", "c")
    assert traces.covariate_dim == 1
    assert np.allclose(traces.features[0, 0, :, 0], [0.0, 1.0, 2.0])


def test_read_graph_labels_and_direction(tmp_path):
    path = tmp_path / "edges.txt"
    path.write_text("10 2 1.5\n2 x\n")
    G = read_graph(path)
    assert G.is_directed() and set(G.nodes) == {"10", "2", "x"}  # not all integers: strings
    path.write_text("10 2\n2 -3  # a comment\n")
    G = read_graph(path, undirected=True)
    assert not G.is_directed() and set(G.nodes) == {10, 2, -3}


# ----------------------------------------------------------------------- fit
def test_fit_writes_loadable_fit_and_prints_summary(work):
    status, out, err = work["fitted"]
    fit = nv.load_fit(work["fit"])
    assert fit.method == "nuts"
    assert fit.idata.posterior.sizes["chain"] == 1 and fit.idata.posterior.sizes["draw"] == 50
    assert set(fit.model.inferred) == {"u", "T", "w", "delta"}
    for name in ("u[0, intercept]", "w[0, intercept]", "delta[0]", "T[0, 0, 0]", "r_hat"):
        assert name in out
    assert "inferred: u, T, w, delta" in out


def test_fit_plots(work):
    for name in ("trace.png", "rank.png", "ppc.png"):
        path = work["plots"] / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------- summary
def test_summary_prints_header_table_and_plots(work, tmp_path):
    status, out, err = run(["summary", work["fit"], "--plots", tmp_path / "p"])
    assert status == 0, err
    assert "method: nuts" in out and "chains: 1" in out and "draws: 50" in out
    assert "inferred: u, T, w, delta" in out
    for name in ("u[0, intercept]", "w[0, intercept]", "delta[0]", "mean", "ess_bulk"):
        assert name in out
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["ppc.png", "rank.png", "trace.png"]


# ---------------------------------------------------------------------- help
@pytest.mark.parametrize("command, options", [
    ("simulate", ["--graph", "--spec", "--output", "--steps", "--runs", "--seed", "--from-prior",
                  "--undirected"]),
    ("fit", ["TRACES", "--graph", "--spec", "--output", "--samples", "--warmup", "--chains", "--seed",
             "--no-progress", "--plots"]),
    ("summary", ["FIT", "--plots"]),
    ("deploy", ["FIT", "--chip", "--output", "IMAGE_DIR", "--draw", "--draws", "--nodes-per-core",
                "mailbox_words"]),
    ("emulate", ["IMAGE_DIR", "--ticks", "--output", "--runs", "--seed"]),
    (None, ["simulate", "fit", "summary", "deploy", "emulate"]),
])
def test_help(command, options, capsys):
    with pytest.raises(SystemExit) as exc:
        main(([command] if command else []) + ["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text


@pytest.mark.parametrize("launcher", ["script", "module"])
def test_installed_command(launcher):
    if launcher == "script":
        script = Path(sys.executable).parent / "nvppl"
        if not script.exists():
            pytest.skip(f"console script not installed at {script}")
        cmd = [str(script), "--help"]
    else:
        cmd = [sys.executable, "-m", "nvppl.cli", "--help"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "simulate" in res.stdout and "summary" in res.stdout


# -------------------------------------------------------------------- errors
def test_error_missing_graph(work, tmp_path):
    assert_error(run(["simulate", "--graph", tmp_path / "nope.txt", "--spec", work["spec"],
                      "-o", tmp_path / "t.nc"]), "graph file", "nope.txt", "does not exist")


@pytest.mark.parametrize("text, fragments", [
    (SPEC + "extra: 1\n", ["unknown spec section", "'extra'"]),
    ("model:\n  n_types: 1\n  colour: red\n", ["unknown model option", "'colour'"]),
    ("model:\n  n_types: 1\nsubstrate:\n  stay: true\n", ["unknown key", "'stay'"]),
    ("model:\n  n_types: 1\nparams:\n  delta: [0.1, 0.2]\n", ["'delta'", "shape (2,)", "expected (1,)"]),
    ("model:\n  n_types: 1\nparams:\n  dleta: 0.1\n", ["unknown parameter name", "'dleta'"]),
    ("model:\n  n_types: 1\nparams:\n  delta: [1.5]\n", ["'delta'", "outside [0, 1]"]),
    ("model:\n  n_types: 1\nparams:\n  T: [[1, 0], [1]]\n", ["params.T", "ragged"]),
    ("model:\n  n_types: 1\n  priors:\n    u: {dist: Normal, loc: 0, scal: 1}\n", ["prior on 'u'", "'scal'"]),
    ("model: [1\n", ["invalid YAML", "line 2"]),
    ("params:\n  delta: 0.1\n", ["no 'model' section"]),
])
def test_error_bad_spec(work, tmp_path, text, fragments):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    out = tmp_path / "t.nc"
    assert_error(run(["simulate", "--graph", work["graph"], "--spec", spec, "-o", out]), "bad.yaml", *fragments)
    assert not out.exists()


@pytest.mark.parametrize("argv, fragments", [
    (["simulate", "--graph", "G", "--spec", "S", "-o", "t.nc", "--bogus"], ["--bogus", "nvppl simulate --help"]),
    (["simulate", "--graph", "G", "--spec", "S", "-o", "t.nc", "--steps", "0"], ["--steps", "positive"]),
    (["fit", "--graph", "G", "--spec", "S", "-o", "f.nc"], ["required", "TRACES"]),
    (["frobnicate"], ["invalid choice", "'frobnicate'"]),
    ([], ["a command is required"]),
])
def test_error_bad_arguments(argv, fragments):
    assert_error(run(argv), *fragments)


def test_error_traces_on_another_graph(work, tmp_path):
    graph = tmp_path / "other.txt"
    graph.write_text("0 1\n1 0\n")
    assert_error(run(["fit", work["traces"], "--graph", graph, "--spec", work["spec"], "-o", tmp_path / "f.nc",
                      "--no-progress"]), "invalid traces", "traces.nc")
    assert not (tmp_path / "f.nc").exists()


def test_error_summary_of_non_fit(work):
    assert_error(run(["summary", work["traces"]]), "traces.nc", "not an nvppl fit")
    assert_error(run(["summary", work["graph"]]), "graph.txt", "cannot read the fit")
