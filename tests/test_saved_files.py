"""Files written by nvppl 0.1.0 still load (``tests/data/v0_1``).

Each file was written by the version before the package was restructured; the
values in ``expected.json`` were computed by that version from the same files.
"""

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import nvppl as nv

DATA = Path(__file__).resolve().parent / "data" / "v0_1"
EXPECTED = json.loads((DATA / "expected.json").read_text())


@pytest.fixture(scope="module")
def ring():
    G = nx.read_edgelist(DATA / "ring.edgelist", create_using=nx.DiGraph, nodetype=int)
    return nv.Substrate.from_networkx(G)


def test_traces_from_the_command_line_load(ring):
    tr = nv.Traces.from_netcdf(DATA / "traces.nc", ring)
    want = EXPECTED["traces"]
    assert (tr.n_vesicles, len(tr), int(tr.steps.docked.sum())) == (
        want["n_vesicles"], want["n_vesicle_steps"], want["docks"])


def test_traces_with_content_covariates_and_lifetimes_load():
    sub = nv.Substrate.from_networkx(nx.cycle_graph(["a", "b", "c", "d"]))
    tr = nv.Traces.from_netcdf(DATA / "traces_content.nc", sub)
    want = EXPECTED["traces_content"]
    assert (tr.n_vesicles, len(tr), int(tr.steps.docked.sum())) == (
        want["n_vesicles"], want["n_vesicle_steps"], want["docks"])
    np.testing.assert_allclose(tr.vesicles.content_0.sum(), want["content_sum"], rtol=1e-12)
    np.testing.assert_allclose(tr.vesicles.tau0.sum(), want["tau0_sum"], rtol=1e-12)
    np.testing.assert_allclose(tr.features.sum(), want["feature_sum"], rtol=1e-12)
    assert set(tr.vesicles.birth_node) <= {"a", "b", "c", "d"}


def test_fit_loads_with_its_model_and_posterior():
    fit = nv.load_fit(DATA / "fit.nc")
    want = EXPECTED["fit"]
    assert fit.method == want["method"]
    assert list(fit.model.inferred) == want["inferred"]
    assert set(want["groups"]) <= set(fit.idata.groups())
    np.testing.assert_allclose(fit.posterior_mean().delta, want["delta_mean"], rtol=1e-12)


def test_emulator_traces_load(ring):
    tr = nv.Traces.from_netcdf(DATA / "chip_traces.nc", ring)
    want = EXPECTED["chip_traces"]
    assert (tr.n_vesicles, len(tr)) == (want["n_vesicles"], want["n_vesicle_steps"])


def test_vesicle_chip_image_loads_and_runs_as_before():
    prog = nv.backend.read_image(DATA / "image")
    want = EXPECTED["image"]
    assert prog.resources["cores"] == want["cores"]
    run = nv.backend.Emulator(prog).run(n_ticks=10, key=0)
    assert (run.traces.n_vesicles, len(run.traces)) == (
        want["emulate_key0_10ticks_vesicles"], want["emulate_key0_10ticks_steps"])
    for name, value in want["counters"].items():
        assert run.counters[name] == value, name


def test_network_chip_image_loads_and_runs_as_before():
    prog = nv.backend.read_image(DATA / "net_image")
    spikes = np.zeros((20, 8), dtype=int)
    spikes[::2] = 1
    run = nv.backend.Emulator(prog).run(n_ticks=20, key=0, inputs={"in": spikes})
    want = EXPECTED["net_image"]
    assert int(run.raster("out").sum()) == want["spikes_out"]
    assert run.counters["synaptic_ops"] == want["synaptic_ops"]
