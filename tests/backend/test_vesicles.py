"""Quantisation of vesicle models for the chip: tables, deployed Params, refusals."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import nvppl as nv
from tests._support.networks import random_vesicle_params as _random_params
from nvppl.backend.vesicles import (
    ONE, DeploymentError, check_deployable, decode_vesicle_word, quantize, vesicle_word)


def _model(**options):
    G = nx.gnp_random_graph(25, 0.2, seed=3, directed=True)
    G.add_nodes_from(range(25))
    return nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=options.pop("allow_stay", True)), **options)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deployed_params_are_the_tables_and_close_to_the_fit(seed):
    model = _model(n_types=2, budget=[1, None], emission_link=["sigmoid", "log"][seed % 2])
    params = _random_params(model, seed)
    tables, q, report = quantize(model, params)
    model.check_params(q)
    ncand = (model.substrate.candidates >= 0).sum(axis=1)
    # migration: deployed rows are the differences of the cumulative thresholds, exact probability vectors
    for k in range(2):
        for i in range(model.n_nodes):
            c = ncand[i]
            if c == 0:
                assert not tables.migration[k, i].any() and not q.T[k, i].any()
                continue
            np.testing.assert_array_equal(q.T[k, i, :c] * ONE, np.diff(np.r_[0, tables.migration[k, i, :c]]))
            assert tables.migration[k, i, c - 1] == ONE and q.T[k, i].sum() == 1.0
    # each probability moves by at most half a threshold step (a row entry: one step, two rounded sums)
    assert np.abs(q.T - np.asarray(params.T)).max() <= 1 / ONE
    assert np.abs(q.delta - params.delta).max() <= 0.5 / ONE
    assert np.abs(q.a - params.a).max() <= 0.5 / ONE
    assert np.abs(special.expit(q.w[:, 0]) - special.expit(np.asarray(params.w)[:, 0])).max() <= 0.5 / ONE + 1e-15
    np.testing.assert_allclose(special.expit(q.w[:, 0]) * ONE, tables.dock, rtol=0, atol=1e-9)
    # emission: the deployed weight gives the deployed table's mean
    L = tables.emission.shape[1]
    pmf = np.diff(np.concatenate([np.zeros((2, 1)), tables.emission], axis=1), axis=1) / ONE
    mean_q = (pmf * np.arange(L)).sum(axis=1)
    lam_q = nv.kernels.emission.emission_rate(np.ones((1, 1)), q.u, q.r_max, model.emission_link)
    np.testing.assert_allclose(np.asarray(lam_q).reshape(-1), mean_q, rtol=1e-12)
    # the report's worst errors are the observed ones, and tiny
    worst = dict(zip(report["kernel"], report["worst"]))
    tv = 0.5 * np.abs(q.T - np.asarray(params.T)).sum(axis=-1)
    assert worst["migration"] == pytest.approx(tv.max())
    assert worst["decay"] == pytest.approx(np.abs(q.delta - params.delta).max())
    assert max(worst.values()) < 1e-3


def test_table_inversion_draws_the_deployed_laws():
    """Inverting the tables with uniform 16-bit draws gives the deployed probabilities (χ², p > 1e-3)."""
    model = _model(n_types=1)
    tables, q, _ = quantize(model, _random_params(model, 5))
    rng = np.random.default_rng(0)
    u = rng.integers(0, ONE, size=200_000)
    i = int(np.argmax((model.substrate.candidates >= 0).sum(axis=1)))
    slot = np.searchsorted(tables.migration[0, i], u, side="right")  # first entry exceeding u
    c = int((model.substrate.candidates[i] >= 0).sum())
    counts = np.bincount(slot, minlength=c)[:c]
    expected = q.T[0, i, :c] * len(u)
    assert stats.chisquare(counts[expected > 0], expected[expected > 0]).pvalue > 1e-3
    n = np.searchsorted(tables.emission[0], u, side="right")
    pmf = np.diff(np.r_[0, tables.emission[0]]) / ONE
    counts = np.bincount(n, minlength=len(pmf))
    keep = pmf * len(u) > 5
    assert stats.chisquare(counts[keep], pmf[keep] * len(u) * counts[keep].sum() / (pmf[keep] * len(u)).sum()
                           ).pvalue > 1e-3


@pytest.mark.parametrize(("options", "message"), [
    (dict(lifetime="countdown"), "countdown lifetimes"),
    (dict(covariate_dim=1), "covariate_dim = 1"),
    (dict(content_dim=2), "content_dim = 2"),
    (dict(covariate_dim=1, tilt=True), "covariate_dim"),
    (dict(n_types=9), "9 vesicle types"),
    (dict(n_types=2, budget=[3, 20]), "type 1: budget 20"),
])
def test_models_without_a_mapping_are_refused(options, message):
    with pytest.raises(DeploymentError, match=message):
        check_deployable(_model(**options))


def test_parameters_the_chip_cannot_hold_are_refused():
    model = _model(n_types=1)
    p = model.default_params()
    with pytest.raises(DeploymentError, match="type 0 docking: the deployed probability 1.0"):
        quantize(model, p.replace(w=np.array([[30.0]])))
    with pytest.raises(DeploymentError, match=r"type 0: decay δ = 1e-06 rounds to 0"):
        quantize(model, p.replace(delta=np.array([1e-6])))
    log_model = _model(n_types=1, emission_link="log")
    with pytest.raises(DeploymentError, match="type 0: emission rate 500 needs more than 64 table entries"):
        quantize(log_model, log_model.default_params().replace(u=np.array([[np.log(500.0)]])))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 7), st.integers(0, 15), st.integers(0, 0xFFFF), st.integers(0, (1 << 24) - 1))
def test_vesicle_word_round_trip(vtype, left, lifetime, vid):
    word = vesicle_word(vtype, left, lifetime, vid)
    assert 0 <= word < 1 << 47
    assert decode_vesicle_word(word) == (vtype, left, lifetime, vid)


def test_vesicle_word_errors():
    with pytest.raises(ValueError, match="vesicle type 8 does not fit its 3-bit field"):
        vesicle_word(8, 0, 0, 0)
    with pytest.raises(ValueError, match="vesicle id 16777216"):
        vesicle_word(0, 0, 0, 1 << 24)
    with pytest.raises(ValueError, match="not a vesicle word"):
        decode_vesicle_word(1 << 47)


def test_deployed_process_is_exact_in_the_mean_of_the_deployed_params():
    """Occupancy and dock counts of the deployed process (quantised tables, on-chip draws)
    equal the density relaxation of ``quantized_params`` within Monte Carlo error.

    At a single step the count of a cell is Poisson (independent vesicles, Poisson births),
    so the mean of R runs has standard error sqrt(ρ / R); every cell must lie within 4.5 SE
    (720 cells: the largest of 720 standard normals exceeds 4.5 with probability 5e-3)."""
    from nvppl.backend.vesicle_reference import simulate_vesicles

    G = nx.gnp_random_graph(12, 0.3, seed=2, directed=True)
    G.add_nodes_from(range(12))
    G.remove_edges_from(list(G.out_edges(0)))  # node 0 is a sink
    model = nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=False), n_types=2, budget=[1, None])
    params = _random_params(model, 7).replace(a=np.linspace(0.0, 0.2, 12))
    tables, q, _ = quantize(model, params)
    assert model.substrate.is_sink.any()
    R, T = 250, 30
    traces = simulate_vesicles(model, tables, n_ticks=T, n_runs=R, key=11)
    causes = set(traces.vesicles["death_cause"])
    assert {"sink", "depleted", "absorbed", "expired", "censored"} <= causes
    obs = traces.observe(counts=True, docks=True, detection="exact")
    dens = nv.density.relax(model, q, n_steps=T)
    for name, observed, expected in (("counts", obs.counts, np.asarray(dens.rho)),
                                     ("docks", obs.docks, np.asarray(dens.expected_docks))):
        se = np.sqrt(np.maximum(expected, 0.05) / R)
        z = (observed.mean(axis=0) - expected) / se
        assert np.abs(z).max() < 4.5, (name, np.unravel_index(np.abs(z).argmax(), z.shape), np.abs(z).max())
    # power: a density with 30 % more decay is rejected by the same test
    wrong = np.asarray(nv.density.relax(model, q.replace(delta=q.delta * 1.3), n_steps=T).rho)
    assert np.abs((obs.counts.mean(axis=0) - wrong) / np.sqrt(np.maximum(wrong, 0.05) / R)).max() > 4.5
    # the same key gives the same traces
    again = simulate_vesicles(model, tables, n_ticks=T, n_runs=2, key=11)
    first = traces.steps[traces.steps["run"] < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.steps, first, check_dtype=False)
