"""Deployed vesicle models: the emulator against the NumPy reference, images, placement, refusals, fits."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import nvppl as nv
from tests._support.networks import random_vesicle_params as _random_params
from nvppl.backend import ChipConfig, DeploymentError, Emulator, ImageError, compile, read_image
from nvppl.backend.program import expected_hops
from nvppl.backend.vesicle_reference import simulate_vesicles


def _model(n_types=2, budget=(1, None), seed=3, n=25, allow_stay=True):
    G = nx.gnp_random_graph(n, 0.2, seed=seed, directed=True)
    G.add_nodes_from(range(n))
    return nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=allow_stay), n_types=n_types,
                           budget=list(budget)[:n_types])


def _same(a: nv.Traces, b: nv.Traces):
    pd.testing.assert_frame_equal(a.vesicles.reset_index(drop=True), b.vesicles.reset_index(drop=True))
    pd.testing.assert_frame_equal(a.steps.reset_index(drop=True), b.steps.reset_index(drop=True))


@pytest.mark.parametrize("seed, nodes_per_core, allow_stay", [(0, 3, True), (1, 1, False), (2, 25, True)])
def test_emulator_equals_the_numpy_reference_event_for_event(seed, nodes_per_core, allow_stay):
    model = _model(allow_stay=allow_stay, seed=seed + 3)
    params = _random_params(model, seed)
    prog = compile(model, params, nodes_per_core=nodes_per_core)
    run = Emulator(prog).run(40, key=seed, n_runs=3)
    ref = simulate_vesicles(model, prog.vesicles.tables(), 40, 3, key=seed)
    _same(run.traces, ref)
    causes = set(ref.vesicles["death_cause"])
    assert {"censored", "expired"} <= causes and len(causes) >= 3, causes   # the run exercises the kernels


def test_traces_do_not_depend_on_placement_and_follow_the_key():
    model = _model()
    params = _random_params(model, 5)
    a = Emulator(compile(model, params, nodes_per_core=2)).run(30, key=7, n_runs=2)
    b = Emulator(compile(model, params, nodes_per_core=9)).run(30, key=7, n_runs=2)
    _same(a.traces, b.traces)
    assert a.counters["vesicle_packets"] > b.counters["vesicle_packets"]   # more cores, more packets
    c = Emulator(compile(model, params, nodes_per_core=2)).run(30, key=8, n_runs=2)
    assert not a.traces.steps.equals(c.traces.steps)
    again = Emulator(compile(model, params, nodes_per_core=2)).run(30, key=7, n_runs=2)
    _same(a.traces, again.traces)


def test_counters_count_the_events_of_the_traces():
    model = _model()
    params = _random_params(model, 1)
    prog = compile(model, params, nodes_per_core=4)
    run = Emulator(prog).run(30, key=2, n_runs=2)
    tr, c = run.traces, run.counters
    s = tr.steps
    node_core = prog.vesicles.node_core
    xy = np.array([(core.x, core.y) for core in prog.vesicles.cores])
    fr = node_core[[model.substrate.index_of(v) for v in s["node_from"]]]
    to = node_core[[model.substrate.index_of(v) for v in s["node_to"]]]
    cross = fr != to
    assert c["vesicle_steps"] == len(s)
    assert c["vesicle_births"] == tr.n_vesicles
    assert c["vesicle_docks"] == int(s["docked"].sum())
    assert c["vesicle_packets"] == c["vesicle_migration_packets"] == int(cross.sum())
    assert c["vesicle_flits"] == 4 * int(cross.sum())
    assert c["vesicle_hops"] == int(np.abs(xy[fr] - xy[to]).sum())
    assert c["spike_packets"] == 0 and c["packets"] == c["vesicle_packets"]
    chip = prog.chip
    sinks = int((tr.vesicles["death_cause"] == "sink").sum())
    updates = len(s) + sinks + model.n_nodes * model.n_types * 30 * 2
    assert c["vesicle_updates"] == updates
    assert c["energy_pj"] == pytest.approx(updates * chip.pj_per_vesicle_update + c["vesicle_hops"] * chip.pj_per_hop)


def test_image_round_trip_runs_identically(tmp_path):
    model = _model()
    params = _random_params(model, 3)
    prog = compile(model, params, nodes_per_core=5)
    prog.write(tmp_path)
    back = read_image(tmp_path)
    assert back.equals(prog)
    _same(Emulator(back).run(25, key=1).traces, Emulator(prog).run(25, key=1).traces)
    np.testing.assert_array_equal(back.quantized_params.T, prog.quantized_params.T)
    assert back.vesicles.source == prog.vesicles.source == "params"
    # one changed table word is a different program
    core = prog.vesicles.cores[0]
    path = tmp_path / f"core_{core.x}_{core.y}.txt"
    lines = path.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.split()[4].startswith("0x0a"))   # a migration word
    parts = lines[k].split()
    parts[5] = hex(int(parts[5], 16) ^ 1)
    lines[k] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")
    assert not read_image(tmp_path).equals(prog)


def test_malformed_node_core_images_name_the_file(tmp_path):
    model = _model()
    prog = compile(model, _random_params(model, 0), nodes_per_core=5)
    prog.write(tmp_path)
    core = prog.vesicles.cores[1]
    path = tmp_path / f"core_{core.x}_{core.y}.txt"
    text = path.read_text()
    path.write_text(text + f"0 W {core.x} {core.y} 0x02000000 0x000000000001\n")   # neuron state on a node core
    with pytest.raises(ImageError, match=f"core_{core.x}_{core.y}.txt.*state region"):
        read_image(tmp_path)
    # a migration word naming a node that is not a candidate
    lines = text.splitlines()
    k = next(i for i, line in enumerate(lines) if line.split()[4].startswith("0x0a"))
    parts = lines[k].split()
    parts[5] = hex(int(parts[5], 16) ^ (1 << 30))
    lines[k] = " ".join(parts)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImageError, match="destinations differ"):
        read_image(tmp_path)


def test_placement_keeps_migrations_short():
    G = nx.DiGraph(nx.grid_2d_graph(12, 12))
    model = nv.VesicleModel(nv.Substrate.from_networkx(G), n_types=1)
    params = model.default_params()
    prog = compile(model, params, nodes_per_core=4)
    ves = prog.vesicles
    assert sorted(np.bincount(ves.node_core).tolist()) == [4] * 36    # every node placed once, 4 per core
    tiles = [(c.x, c.y) for c in ves.cores]
    placed = ves.expected_hops(prog.chip)
    rng = np.random.default_rng(0)
    random = [expected_hops(prog.quantized_params, model, rng.permutation(ves.node_core), tiles, prog.chip)
              for _ in range(20)]
    # a random placement of this grid costs several hops per step; the flow order well under half of that
    assert placed < 0.4 * min(random), (placed, min(random))
    run = Emulator(prog).run(30, key=0)
    assert run.counters["vesicle_hops"] / run.counters["vesicle_steps"] == pytest.approx(placed, rel=0.25)


def test_resources_and_report():
    model = _model()
    prog = compile(model, _random_params(model, 0), nodes_per_core=6)
    r = prog.resources
    assert r["graph_nodes"] == 25 and r["node_cores"] == 5 and r["cores"] == 5 and r["nodes_max_per_core"] == 6
    assert r["mailbox_words"] == 5 * prog.chip.mailbox_words
    assert r["table_words"] == sum(c.table_words for c in prog.vesicles.cores)
    assert r["table_words_max_per_core"][1] == prog.chip.synapse_words
    rep = prog.quantization_report
    assert set(rep["kernel"]) == {"emission", "emission mean", "migration", "docking", "absorption", "decay"}
    assert (rep["worst"] >= rep["typical"]).all() and (rep["worst"] < 1e-4).all()


def test_refusals_name_the_feature_or_resource():
    sub = nv.Substrate.from_networkx(nx.cycle_graph(6))
    for options, word in (({"lifetime": "countdown"}, "countdown"), ({"covariate_dim": 1}, "covariate"),
                          ({"content_dim": 1}, "content"), ({"tilt": True}, "tilt")):
        model = nv.VesicleModel(sub, n_types=1, **options)
        with pytest.raises(DeploymentError, match=word):
            compile(model, model.default_params())
    model = nv.VesicleModel(sub, n_types=1)
    params = model.default_params()
    with pytest.raises(nv.CapacityError, match="cores: the 6 graph nodes need 6 node cores"):
        compile(model, params, chip=ChipConfig(width=2, height=2), nodes_per_core=1)
    with pytest.raises(nv.CapacityError, match=r"table memory: node core \(1, 0\)"):
        compile(model, params, chip=ChipConfig(synapse_words=8), nodes_per_core=6)
    prog = compile(model, params, chip=ChipConfig(mailbox_words=4), nodes_per_core=6)
    with pytest.raises(nv.CapacityError, match=r"mailbox: run 0, tick \d+: node core \(1, 0\)"):
        Emulator(prog).run(200, key=0)
    with pytest.raises(TypeError, match="needs a Fit or Params"):
        compile(model)
    with pytest.raises(TypeError, match="Fit or Params"):
        compile(model, {"delta": 0.1})
    with pytest.raises(TypeError, match="draw= selects posterior draws"):
        compile(model, params, draw=0)
    with pytest.raises(ValueError, match="nodes_per_core"):
        compile(model, params, nodes_per_core=0)
    with pytest.raises(ValueError, match="n_runs"):
        Emulator(compile(model, params)).run(5, n_runs=0)


@pytest.fixture(scope="module")
def fit():
    """A Fit whose posterior holds 2 chains x 20 draws of δ and of the docking logit (other fields fixed)."""
    import arviz as az

    from nvppl.infer.fit import Fit

    model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(5)), n_types=1, priors={"a": 0.0})
    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"delta": rng.uniform(0.05, 0.2, (2, 20, 1)),
                                    "w": rng.normal(-1.0, 0.3, (2, 20, 1, 1))})
    return Fit(idata, model, "nuts")


def test_deploying_a_fit_takes_the_mean_a_draw_or_several(fit):
    model = fit.model
    mean = compile(model, fit)
    assert mean.vesicles.source.startswith("posterior mean of a nuts fit (40 draws)")
    np.testing.assert_allclose(mean.vesicles.params.delta, fit.posterior_mean().delta)
    one = compile(model, fit, draw=(1, 3))
    np.testing.assert_allclose(one.vesicles.params.delta, fit.idata.posterior["delta"].values[1, 3])
    flat = compile(model, fit, draw=23)          # chain 1, draw 3 of 2 x 20
    np.testing.assert_array_equal(flat.quantized_params.delta, one.quantized_params.delta)
    progs = compile(model, fit, draw=[0, 5, 39])
    assert len(progs) == 3 and not progs[0].equals(progs[1])
    deltas = fit.idata.posterior["delta"].values.reshape(-1, 1)
    for p, d in zip(progs, [0, 5, 39]):
        np.testing.assert_allclose(p.vesicles.params.delta, deltas[d])
        assert abs(p.quantized_params.delta[0] - deltas[d][0]) <= 0.5 / 2 ** 16
    with pytest.raises(IndexError, match="outside the posterior"):
        compile(model, fit, draw=40)
    other = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(5)), n_types=1)
    with pytest.raises(ValueError, match="different model"):
        compile(other, fit)
