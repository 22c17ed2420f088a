"""Tests of nvppl.Traces: construction, validation, I/O, merge, observe, statistics."""

import json
import tempfile
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

import nvppl as nv
from nvppl.traces import lifetime_bin_edges

N_STEPS = 6
INF = np.inf


# ======================================================== hand-built traces
@pytest.fixture(scope="module")
def sub():
    """a -> b -> c -> a and b -> d, without stay: d is a sink."""
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("b", "d")])
    return nv.Substrate.from_networkx(G, allow_stay=False)


def tables(content=True, tau0=False):
    """A valid vesicle table and steps table on ``sub`` for n_steps = 6 and 2 runs.

    run 0: v0 expires at step 2; v1 (budget 2) docks twice and is depleted at step 3;
    v2 moves into the sink d and is removed there at step 3.
    run 1: v0 is censored; v5 is absorbed at its birth step 4.
    """
    ves = pd.DataFrame({
        "run": np.array([0, 0, 0, 1, 1], dtype=np.int64),
        "vesicle": np.array([0, 1, 2, 0, 5], dtype=np.int64),
        "type": np.array([0, 1, 0, 1, 0], dtype=np.int64),
        "birth_step": np.array([0, 1, 2, 3, 4], dtype=np.int64),
        "birth_node": np.array(["a", "b", "b", "c", "a"], dtype=object),
        "budget": np.array([INF, 2.0, INF, INF, INF]),
        "death_step": np.array([2, 3, 3, 5, 4], dtype=np.int64),
        "death_cause": np.array(["expired", "depleted", "sink", "censored", "absorbed"], dtype=object),
    })
    if content:
        ves["content_0"] = [0.5, -1.25, 0.0, 2.0, -0.75]
    if tau0:
        ves["tau0"] = [3.5, np.nan, 4.25, 10.0, 0.5]
    rows = [
        (0, 0, 0, "a", "b", False), (0, 0, 1, "b", "c", True), (0, 0, 2, "c", "a", False),
        (0, 1, 1, "b", "c", True), (0, 1, 2, "c", "a", False), (0, 1, 3, "a", "b", True),
        (0, 2, 2, "b", "d", False),
        (1, 0, 3, "c", "a", False), (1, 0, 4, "a", "b", True), (1, 0, 5, "b", "c", False),
        (1, 5, 4, "a", "b", False),
    ]
    steps = pd.DataFrame(rows, columns=["run", "vesicle", "step", "node_from", "node_to", "docked"])
    steps = steps.astype({"run": np.int64, "vesicle": np.int64, "step": np.int64,
                          "docked": bool})
    return ves, steps


def build(sub, ves, steps, **kw):
    kw.setdefault("n_steps", N_STEPS)
    return nv.Traces.from_dataframes(ves, steps, sub, **kw)


def vi(ves, run, vid):
    """Row label of a vesicle in the vesicle table."""
    return ves.index[(ves.run == run) & (ves.vesicle == vid)][0]


def si(steps, run, vid, step):
    """Row label of a step row."""
    return steps.index[(steps.run == run) & (steps.vesicle == vid) & (steps.step == step)][0]


def add_row(steps, row):
    return pd.concat([steps, pd.DataFrame([row], columns=steps.columns)], ignore_index=True) \
        .astype(steps.dtypes.to_dict())


def test_valid_tables_come_back_identical(sub):
    """Valid input is accepted and returned unchanged: nothing dropped or repaired."""
    ves, steps = tables(tau0=True)
    tr = build(sub, ves, steps)
    assert (tr.n_runs, tr.n_steps, tr.n_types, tr.n_vesicles, len(tr), tr.content_dim) == (2, 6, 2, 5, 11, 1)
    assert list(tr.vesicles.columns) == ["run", "vesicle", "type", "birth_step", "birth_node", "budget",
                                         "death_step", "death_cause", "content_0", "tau0"]
    assert list(tr.steps.columns) == ["run", "vesicle", "step", "node_from", "node_to", "docked"]
    assert_frame_equal(tr.vesicles, ves)
    assert_frame_equal(tr.steps, steps)
    assert tr.covariates.shape == (2, 6, 4, 1) and np.all(tr.covariates == 1)
    assert tr.features is None and tr.covariate_dim == 0


def test_row_order_across_vesicles_is_free(sub):
    """Steps may be interleaved across vesicles and vesicles listed in any order."""
    ves, steps = tables()
    shuffled_steps = steps.sort_values(["step", "run", "vesicle"], kind="stable").reset_index(drop=True)
    shuffled_ves = ves.iloc[[4, 2, 0, 3, 1]].reset_index(drop=True)
    tr = build(sub, shuffled_ves, shuffled_steps)
    assert_frame_equal(tr.vesicles, ves)
    assert_frame_equal(tr.steps, steps)


def test_integer_labels_and_explicit_sizes():
    """Non-contiguous integer labels work; n_runs/n_types may exceed what the data use."""
    s = nv.Substrate.from_networkx(nx.path_graph([10, 20, 30]))
    ves = pd.DataFrame(dict(run=[1], vesicle=[3], type=[0], birth_step=[0], birth_node=[20], budget=[INF],
                            death_step=[1], death_cause=["absorbed"]))
    steps = pd.DataFrame(dict(run=[1, 1], vesicle=[3, 3], step=[0, 1], node_from=[20, 20], node_to=[20, 30],
                              docked=[False, False]))
    tr = nv.Traces.from_dataframes(ves, steps, s, n_steps=3, n_runs=3, n_types=4)
    assert (tr.n_runs, tr.n_types) == (3, 4)
    assert tr.steps["node_to"].tolist() == [20, 30]
    assert tr.vesicles["birth_node"].dtype == np.int64
    assert tr.counts().shape == (3, 3, 3, 4)
    with pytest.raises(nv.TraceError, match="node 40 is not in the graph"):
        nv.Traces.from_dataframes(ves.assign(birth_node=[40]), steps, s, n_steps=3)


# --------------------------------------------------------------- corruptions
def _set(table, where, col, value):
    """A mutation setting one cell (the column's dtype widened when the value needs it)."""
    def f(ves, steps):
        t = ves if table == "v" else steps
        kind = t[col].dtype.kind
        if isinstance(value, str) and kind != "O":
            t[col] = t[col].astype(object)
        elif isinstance(value, float) and kind in "iub":
            t[col] = t[col].astype(np.float64)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and kind == "b":
            t[col] = t[col].astype(np.int64)
        t.loc[where(ves, steps), col] = value
        return ves, steps
    return f


def V(run, vid):
    return lambda ves, steps: vi(ves, run, vid)


def S(run, vid, step):
    return lambda ves, steps: si(steps, run, vid, step)


def _swap_rows(ves, steps):
    a, b = si(steps, 0, 1, 2), si(steps, 0, 1, 3)
    order = list(steps.index)
    order[a], order[b] = order[b], order[a]
    return ves, steps.loc[order].reset_index(drop=True)


def _dup_row(ves, steps):
    i = si(steps, 0, 1, 2)
    return ves, pd.concat([steps.loc[:i], steps.loc[i:]], ignore_index=True)


def _drop(run, vid, step):
    return lambda ves, steps: (ves, steps.drop(index=si(steps, run, vid, step)).reset_index(drop=True))


def _out_of_sink(ves, steps):
    ves.loc[vi(ves, 0, 2), "death_cause"] = "expired"
    return ves, add_row(steps, (0, 2, 3, "d", "a", False))


def _sink_at_non_sink(ves, steps):
    ves.loc[vi(ves, 0, 0), ["death_step", "death_cause"]] = [3, "sink"]
    return ves, steps


def _orphan(ves, steps):
    return ves, add_row(steps, (1, 7, 3, "c", "a", False))


def _dup_vesicle(ves, steps):
    return pd.concat([ves, ves.loc[[vi(ves, 0, 1)]]], ignore_index=True), steps


# (id, mutation, kwargs, (run, vesicle, step), message pattern, step missing from the error today)
CASES = [
    ("birth_node_unknown", _set("v", V(0, 1), "birth_node", "z"), {}, (0, 1, 1), r"node 'z' is not in the graph", False),
    ("node_from_unknown", _set("s", S(0, 0, 1), "node_from", "z"), {}, (0, 0, 1), r"node 'z' is not in the graph", False),
    ("node_to_unknown", _set("s", S(0, 0, 1), "node_to", "zz"), {}, (0, 0, 1), r"node 'zz' is not in the graph", False),
    ("missing_edge", _set("s", S(0, 0, 2), "node_to", "b"), {}, (0, 0, 2), r"missing edge 'c' -> 'b'", False),
    ("stay_not_allowed", _set("s", S(0, 0, 2), "node_to", "c"), {}, (0, 0, 2),
     r"missing edge 'c' -> 'c' \(staying is not allowed: allow_stay=False\)", False),
    ("move_out_of_sink", _out_of_sink, {}, (0, 2, 3), r"moves out of sink node 'd'", False),
    ("steps_swapped", _swap_rows, {}, (0, 1, 3), r"step", False),
    ("step_twice", _dup_row, {}, (0, 1, 2), r"step appears twice", False),
    ("gap", _drop(0, 0, 1), {}, (0, 0, 2), r"missing step row\(s\) between steps 0 and 2", False),
    ("first_not_birth", _drop(0, 0, 0), {}, (0, 0, 1), r"first step row is at step 1 but the vesicle was born at step 0", False),
    ("from_not_where_it_was", _set("s", S(1, 0, 4), "node_from", "c"), {}, (1, 0, 4),
     r"moves from node 'c' but was at node 'a' \(where the previous step left it\)", False),
    ("from_not_birth_node", _set("v", V(1, 5), "birth_node", "b"), {}, (1, 5, 4),
     r"moves from node 'a' but was at node 'b' \(its birth node\)", False),
    ("dead_moves", _set("v", V(0, 0), "death_step", 1), {}, (0, 0, 2), r"a dead vesicle moves: it was removed at step 1", False),
    ("lives_beyond_rows", _set("v", V(0, 0), "death_step", 4), {}, (0, 0, 3),
     r"no step row at step 3, but the vesicle lives until step 4", False),
    ("negative_step_row", _set("s", S(0, 0, 0), "step", -1), {}, (0, 0, -1), r"negative step -1", False),
    ("step_row_past_end", lambda v, s: (v, add_row(s, (1, 0, 6, "c", "a", False))), {}, (1, 0, 6),
     r"step 6 is past the last step 5", False),
    ("unknown_cause", _set("v", V(0, 0), "death_cause", "exploded"), {}, (0, 0, 2), r"unknown death cause 'exploded'", False),
    ("sink_cause_not_at_sink", _sink_at_non_sink, {}, (0, 0, 3), r"death cause 'sink' but node 'a' is not a sink", False),
    ("more_docks_than_budget", _set("v", V(0, 1), "budget", 1.0), {}, (0, 1, 1),
     r"release budget 1 is spent at this step.*lives on", False),
    ("extra_dock_spends_budget", _set("s", S(0, 1, 2), "docked", True), {}, (0, 1, 2),
     r"release budget 2 is spent at this step.*lives on", False),
    ("depleted_budget_not_spent", _set("v", V(0, 1), "budget", 3.0), {}, (0, 1, 3),
     r"death cause 'depleted' but the vesicle docked 2 time\(s\) with a budget of 3", False),
    ("spent_but_expired", _set("v", V(0, 1), "death_cause", "expired"), {}, (0, 1, 3),
     r"budget is spent at this step but the death cause is 'expired', not 'depleted'", False),
    ("orphan_step_row", _orphan, {}, (1, 7, 3), r"step row for a vesicle that is not in the vesicle table", False),
    ("non_integer_step", _set("s", S(0, 0, 1), "step", 1.5), {}, (0, 0, 1.5), r"column 'step' holds 1.5, not an integer", False),
    ("non_integer_docked", _set("s", S(0, 0, 1), "docked", 0.5), {}, (0, 0, 1), r"column 'docked' holds 0.5", False),
    ("docked_not_binary", _set("s", S(0, 0, 1), "docked", 2), {}, (0, 0, 1), r"docked must be 0/1", False),
    ("bad_tau0", lambda v, s: (v.assign(tau0=[1.0, -2.0, 1.0, 1.0, 1.0]), s), {}, (0, 1, 1), r"tau0 = -2.0", False),
    ("inf_tau0", lambda v, s: (v.assign(tau0=[1.0, 1.0, INF, 1.0, 1.0]), s), {}, (0, 2, 2), r"tau0 = inf", False),
    # vesicle-table errors: the step named is the birth step (death step for death-related errors)
    ("nan_content", _set("v", V(1, 5), "content_0", np.nan), {}, (1, 5, 4), r"content_0 is nan", True),
    ("inf_content", _set("v", V(0, 1), "content_0", -INF), {}, (0, 1, 1), r"content_0 is -inf", True),
    ("negative_birth_step", _set("v", V(0, 0), "birth_step", -1), {}, (0, 0, -1), r"negative birth step -1", True),
    ("negative_death_step", _set("v", V(0, 0), "death_step", -1), {}, (0, 0, -1), r"negative death step -1", True),
    ("birth_past_end", _set("v", V(1, 5), "birth_step", 6), {}, (1, 5, 6), r"birth step 6 is past the last step 5", True),
    ("death_past_end", _set("v", V(1, 0), "death_step", 6), {}, (1, 0, 6), r"death step 6 is past the last step 5", True),
    ("death_before_birth", _set("v", V(0, 1), "death_step", 0), {}, (0, 1, 0), r"death step 0 is before birth step 1", True),
    ("negative_type", _set("v", V(0, 2), "type", -1), {}, (0, 2, 2), r"unknown type -1", True),
    ("type_too_large", _set("v", V(0, 2), "type", 2), dict(n_types=2), (0, 2, 2), r"unknown type 2; types are 0..1", True),
    ("censored_early", _set("v", V(0, 0), "death_cause", "censored"), {}, (0, 0, 2),
     r"censored vesicle must be alive at the last step 5, but its death step is 2", True),
    # table-level errors about one vesicle (no single step)
    ("duplicate_vesicle", _dup_vesicle, {}, (0, 1, None), r"vesicle id appears twice", False),
    ("budget_zero", _set("v", V(0, 0), "budget", 0.0), {}, (0, 0, None), r"budget 0.0 must be a positive integer or inf", False),
    ("budget_fraction", _set("v", V(1, 0), "budget", 2.5), {}, (1, 0, None), r"budget 2.5 must be a positive integer", False),
    ("budget_nan", _set("v", V(1, 0), "budget", np.nan), {}, (1, 0, None), r"column 'budget' is NaN", False),
    ("non_integer_birth", _set("v", V(0, 1), "birth_step", 1.5), {}, (0, 1, None),
     r"column 'birth_step' holds 1.5, not an integer", False),
    ("text_type", _set("v", V(0, 2), "type", "x"), {}, (0, 2, None), r"column 'type' holds 'x', not an integer", False),
]


def _raise(sub, case):
    _, mutate, kw, _, match, _ = case
    ves, steps = tables()
    ves, steps = mutate(ves, steps)
    with pytest.raises(nv.TraceError, match=match) as info:
        build(sub, ves, steps, **kw)
    return info.value


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_corruption_rejected(sub, case):
    """Each single corruption raises TraceError (a ValueError) naming run, vesicle and step."""
    err = _raise(sub, case)
    run, vid, step = case[3]
    assert isinstance(err, ValueError)
    assert (err.run, err.vesicle) == (run, vid)
    assert str(err).startswith(f"run {run}, vesicle {vid}")
    if not case[5]:
        assert err.step == step
        if step is not None:
            assert str(err).startswith(f"run {run}, vesicle {vid}, step {step}: ")


STEP_BUGS = [c for c in CASES if c[5]]


@pytest.mark.parametrize("case", STEP_BUGS, ids=[c[0] for c in STEP_BUGS])
def test_corruption_names_step(sub, case):
    """Vesicle-table errors name the step concerned (birth step, or death step for death errors)."""
    err = _raise(sub, case)
    run, vid, step = case[3]
    assert err.step == step
    assert str(err).startswith(f"run {run}, vesicle {vid}, step {step}: ")


def test_swapped_steps_reported_as_out_of_order(sub):
    """Two swapped step rows are reported as out of order, not as missing."""
    err = _raise(sub, ("swap", _swap_rows, {}, None, "step", False))
    assert "out of order" in str(err)


def test_negative_vesicle_id_in_steps_rejected():
    """A step row with a negative vesicle id is rejected, not attached to another vesicle."""
    s = nv.Substrate.from_networkx(nx.path_graph(2))
    ves = pd.DataFrame(dict(run=[0, 0, 1], vesicle=[0, 1, 0], type=[0, 0, 0], birth_step=[0, 0, 0],
                            birth_node=[0, 0, 0], budget=[INF] * 3, death_step=[0, 0, 0],
                            death_cause=["expired"] * 3))
    steps = pd.DataFrame(dict(run=[0, 1, 1], vesicle=[0, -1, 0], step=[0, 0, 0], node_from=[0, 0, 0],
                              node_to=[1, 1, 1], docked=[False] * 3))
    with pytest.raises(nv.TraceError) as info:
        nv.Traces.from_dataframes(ves, steps, s, n_steps=2)
    assert (info.value.run, info.value.vesicle) == (1, -1)


def test_negative_vesicle_id_in_vesicle_table(sub):
    """A negative vesicle id in the vesicle table is rejected naming the run."""
    ves, steps = tables()
    ves.loc[vi(ves, 1, 5), "vesicle"] = -5
    with pytest.raises(nv.TraceError, match="vesicle id -5 is negative") as info:
        build(sub, ves, steps)
    assert info.value.run == 1


def test_run_outside_n_runs(sub):
    """A run index beyond n_runs is rejected naming the vesicle."""
    ves, steps = tables()
    with pytest.raises(nv.TraceError, match=r"run 1 is outside 0..0") as info:
        build(sub, ves, steps, n_runs=1)
    assert info.value.vesicle == 0


@pytest.mark.parametrize(
    "table, drop, add, match",
    [
        ("v", "budget", None, r"vesicle table lacks column\(s\) \['budget'\]"),
        ("v", "death_cause", None, r"vesicle table lacks column\(s\) \['death_cause'\]"),
        ("v", None, "colour", r"vesicle table has unexpected column\(s\) \['colour'\]"),
        ("v", None, "content_2", r"content columns must be content_0..content_1"),
        ("s", "docked", None, r"steps table lacks column\(s\) \['docked'\]"),
        ("s", None, "weight", r"steps table has unexpected column\(s\) \['weight'\]"),
    ],
)
def test_columns_checked(sub, table, drop, add, match):
    """Missing and unexpected columns are TraceErrors naming the column."""
    ves, steps = tables()
    t = ves if table == "v" else steps
    if drop:
        del t[drop]
    if add:
        t[add] = 0.0
    with pytest.raises(nv.TraceError, match=match):
        build(sub, ves, steps)


def test_covariates_checked(sub):
    """Covariates of the wrong shape or with NaN are rejected (NaN naming run and step)."""
    ves, steps = tables()
    with pytest.raises(nv.TraceError, match=r"covariates must have shape"):
        build(sub, ves, steps, covariates=np.zeros((6, 3, 1)))
    F = np.zeros((2, 6, 4, 2))
    F[1, 3, 2, 1] = np.nan
    with pytest.raises(nv.TraceError, match=r"covariate 1 at node 'c' is .*nan") as info:
        build(sub, ves, steps, covariates=F)
    assert (info.value.run, info.value.step) == (1, 3)
    F[1, 3, 2, 1] = 0.5
    tr = build(sub, ves, steps, covariates=F)
    np.testing.assert_array_equal(tr.features, F)
    np.testing.assert_array_equal(tr.covariates[..., 1:], F)
    static = build(sub, ves, steps, covariates=np.arange(4.0)[:, None])
    assert static.features.shape == (2, 6, 4, 1)
    np.testing.assert_array_equal(static.features[1, 5, :, 0], np.arange(4.0))


def test_empty_tables_accepted(sub):
    """Tables without any vesicle are valid traces with zero counts."""
    ves, steps = tables(content=False)
    tr = build(sub, ves.iloc[:0], steps.iloc[:0], n_runs=2, n_types=2)
    assert tr.n_vesicles == 0 and len(tr) == 0
    assert tr.counts().sum() == 0


# ====================================================== counts and statistics
def direct_counts(tr):
    """Counts and dock counts computed from the DataFrames, vesicle by vesicle."""
    ves, steps = tr.vesicles, tr.steps
    index = {lab: i for i, lab in enumerate(tr.substrate.labels)}
    y = np.zeros((tr.n_runs, tr.n_steps, tr.substrate.n_nodes, tr.n_types), dtype=np.int64)
    D = np.zeros_like(y)
    info = {(r.run, r.vesicle): r for r in ves.itertuples()}
    for s in steps.itertuples():
        v = info[(s.run, s.vesicle)]
        removed = s.step == v.death_step and v.death_cause != "censored"
        if not removed:
            y[s.run, s.step, index[s.node_to], v.type] += 1
        if s.docked:
            D[s.run, s.step, index[s.node_to], v.type] += 1
    return y, D


def test_counts_hand_built(sub):
    """counts/dock_counts match a direct count and hand-checked cells."""
    tr = build(sub, *tables())
    y, D = direct_counts(tr)
    np.testing.assert_array_equal(tr.counts(), y)
    np.testing.assert_array_equal(tr.dock_counts(), D)
    a, b, c, d = range(4)
    assert tr.counts()[0, 2, d, 0] == 1  # v2 sits in the sink after step 2
    assert tr.counts()[0, 2, a, 0] == 0  # v0 expired during step 2
    assert tr.counts()[0, 3, b, 1] == 0  # v1 depleted during step 3
    assert tr.counts()[1, 5, c, 1] == 1  # censored vesicle counted at the last step
    assert tr.counts()[1, 4].sum() == 1  # v5 absorbed, only run-1 v0 present
    assert tr.dock_counts()[0, 1, c].tolist() == [1, 1]
    assert tr.counts().sum() == 8 and tr.dock_counts().sum() == 4


def test_summary_statistics_hand_built(sub):
    """summary_statistics entries equal values worked out by hand for the small case."""
    tr = build(sub, *tables())
    stats = tr.summary_statistics()
    np.testing.assert_allclose(stats["occupancy"], np.array([[0, 1, 1, 1], [2, 1, 2, 0]]) / 12)
    np.testing.assert_allclose(stats["dock_rate"], np.array([[0, 0, 1, 0], [0, 2, 1, 0]]) / 12)
    assert lifetime_bin_edges(6).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(stats["lifetime_hist"], [[0, 2 / 3, 0, 1 / 3, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]])
    np.testing.assert_allclose(stats["path_length"], [5 / 3, 3.0])


def direct_statistics(tr):
    """summary_statistics recomputed from the DataFrames."""
    y, D = direct_counts(tr)
    ves, steps = tr.vesicles, tr.steps
    K, denom = tr.n_types, tr.n_runs * tr.n_steps
    edges = lifetime_bin_edges(tr.n_steps)
    hist = np.zeros((K, len(edges) - 1))
    away = np.zeros(K)
    per_type = np.zeros(K)
    for v in ves.itertuples():
        mine = steps[(steps.run == v.run) & (steps.vesicle == v.vesicle)]
        L = len(mine)
        b = max(j for j in range(len(edges) - 1) if edges[j] <= L)
        assert L < edges[b + 1]
        hist[v.type, b] += 1
        away[v.type] += int((mine.node_from != mine.node_to).sum())
        per_type[v.type] += 1
    safe = np.maximum(per_type, 1)
    return {"occupancy": y.sum((0, 1)).T / denom, "dock_rate": D.sum((0, 1)).T / denom,
            "lifetime_hist": hist / safe[:, None], "path_length": away / safe}


# ============================================== a small pool of simulated models
SMALL_STEPS, SMALL_RUNS = 12, 2


def _pool():
    """A few small models (compiled once each) that differ in every data-format option."""
    out = {}
    G = nx.DiGraph([("in", "mid"), ("mid", "out"), ("mid", "side"), ("side", "in")])
    s = nv.Substrate.from_networkx(G, allow_stay=False)
    out["str_sink_countdown"] = nv.VesicleModel(s, n_types=2, content_dim=1, lifetime="countdown",
                                                budget=[1, INF])
    G = nx.cycle_graph([10, 20, 30])
    for k, lab in enumerate(G):
        G.nodes[lab]["h"] = float(k)
    s = nv.Substrate.from_networkx(G, covariates=["h"])
    out["cov_content2"] = nv.VesicleModel(s, n_types=2, content_dim=2, covariate_dim=1, budget=[3, 1])
    s = nv.Substrate.from_networkx(nx.grid_2d_graph(2, 2))
    out["tuple_countdown_cov"] = nv.VesicleModel(s, n_types=1, lifetime="countdown", sigma_tau=0.5,
                                                 covariate_dim=2)
    return out


POOL = _pool()


def _simulate(name, seed, x):
    """Simulated traces for one pool model; x in (0, 1) varies the lifetimes."""
    model = POOL[name]
    p = model.default_params().replace(a=np.full(model.n_nodes, 0.1))
    if model.lifetime == "geometric":
        p = p.replace(delta=np.full(model.n_types, 0.05 + 0.6 * x))
    else:
        p = p.replace(rate=np.full(model.n_types, 0.1 + 2.0 * x))
    F = None
    if model.covariate_dim:
        rng = np.random.default_rng(seed)
        F = rng.normal(size=(SMALL_RUNS, SMALL_STEPS, model.n_nodes, model.covariate_dim))
    return nv.simulate(model, p, n_steps=SMALL_STEPS, n_runs=SMALL_RUNS, key=seed, covariates=F)


# =========================================================== simulated traces
@pytest.fixture(scope="module")
def sim():
    """Traces of the pool model on the cycle 10-20-30 (two types, budgets 3 and 1, content, covariates)."""
    return _simulate("cov_content2", 3, 1 / 12)


@pytest.fixture(scope="module")
def sim_b():
    """Second traces of the same model (same shapes: no new compilation)."""
    return _simulate("cov_content2", 4, 1 / 12)


def test_simulated_tables_round_trip(sim):
    """from_dataframes(traces.vesicles, traces.steps) returns identical tables."""
    assert set(sim.vesicles.death_cause) >= {"expired", "censored", "depleted"}
    back = nv.Traces.from_dataframes(sim.vesicles, sim.steps, sim.substrate, n_steps=sim.n_steps,
                                     n_types=sim.n_types, covariates=sim.features)
    assert_frame_equal(back.vesicles, sim.vesicles)
    assert_frame_equal(back.steps, sim.steps)
    assert len(back) == len(sim) == len(sim.steps)


def _long_vesicle(tr, min_rows=4):
    size = tr.steps.groupby(["run", "vesicle"]).size()
    run, vid = size[size >= min_rows].index[-1]
    rows = tr.steps[(tr.steps.run == run) & (tr.steps.vesicle == vid)]
    return int(run), int(vid), rows


def test_simulated_gap_rejected(sim):
    """Deleting one middle step row of a simulated vesicle names that vesicle and the next step."""
    run, vid, rows = _long_vesicle(sim)
    k = rows.index[1]
    with pytest.raises(nv.TraceError, match="missing step row") as info:
        nv.Traces.from_dataframes(sim.vesicles, sim.steps.drop(index=k), sim.substrate, n_steps=sim.n_steps)
    assert (info.value.run, info.value.vesicle, info.value.step) == (run, vid, int(rows.step.iloc[2]))


def test_simulated_teleport_rejected(sim):
    """Changing where a simulated vesicle moves from names that vesicle and step."""
    run, vid, rows = _long_vesicle(sim)
    steps = sim.steps.copy()
    k = rows.index[2]
    steps.loc[k, "node_from"] = next(x for x in (10, 20, 30) if x != steps.loc[k, "node_from"])
    with pytest.raises(nv.TraceError, match="moves from node") as info:
        nv.Traces.from_dataframes(sim.vesicles, steps, sim.substrate, n_steps=sim.n_steps)
    assert (info.value.run, info.value.vesicle, info.value.step) == (run, vid, int(rows.step.iloc[2]))


def test_simulated_unknown_type_and_nan_content(sim):
    """An unknown type or NaN content in a simulated table names the run and vesicle."""
    run, vid, _ = _long_vesicle(sim)
    ves = sim.vesicles.copy()
    k = ves.index[(ves.run == run) & (ves.vesicle == vid)][0]
    ves.loc[k, "type"] = 7
    with pytest.raises(nv.TraceError, match="unknown type 7") as info:
        nv.Traces.from_dataframes(ves, sim.steps, sim.substrate, n_steps=sim.n_steps, n_types=2)
    assert (info.value.run, info.value.vesicle) == (run, vid)
    ves = sim.vesicles.copy()
    ves.loc[k, "content_0"] = np.nan
    with pytest.raises(nv.TraceError, match="content") as info:
        nv.Traces.from_dataframes(ves, sim.steps, sim.substrate, n_steps=sim.n_steps)
    assert (info.value.run, info.value.vesicle) == (run, vid)


def test_simulated_counts_and_statistics(sim):
    """counts, dock_counts and summary_statistics equal direct computations on simulated traces."""
    y, D = direct_counts(sim)
    np.testing.assert_array_equal(sim.counts(), y)
    np.testing.assert_array_equal(sim.dock_counts(), D)
    assert y.sum() > 100 and D.sum() > 10
    got, want = sim.summary_statistics(), direct_statistics(sim)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, err_msg=k)
    np.testing.assert_allclose(got["lifetime_hist"].sum(1), 1.0)


# ------------------------------------------------------------------ observe
def test_observe_exact(sim):
    """Exact detection returns the true counts and dock counts."""
    obs = sim.observe(counts=True, docks=True, detection="exact")
    np.testing.assert_array_equal(obs.counts, sim.counts())
    np.testing.assert_array_equal(obs.docks, sim.dock_counts())
    assert obs.shape == (2, SMALL_STEPS, 3, 2) and obs.detection == "exact"
    only_docks = sim.observe(counts=False, docks=True)
    assert only_docks.counts is None
    np.testing.assert_array_equal(only_docks.docks, sim.dock_counts())


def test_observe_binomial(sim):
    """Binomial detection never exceeds the truth and keeps a fraction p_det (5-sigma binomial bound)."""
    p = 0.7
    true = sim.counts()
    obs = sim.observe(detection="binomial", p_det=p, key=11)
    assert obs.docks is None and obs.p_det == p
    assert np.all(obs.counts <= true) and np.all(obs.counts >= 0)
    N = true.sum()
    assert abs(obs.counts.sum() - p * N) <= 5 * np.sqrt(N * p * (1 - p))
    assert obs.counts.sum() < N
    again = sim.observe(detection="binomial", p_det=p, key=11)
    np.testing.assert_array_equal(again.counts, obs.counts)
    other = sim.observe(detection="binomial", p_det=p, key=12)
    assert not np.array_equal(other.counts, obs.counts)
    full = sim.observe(detection="binomial", p_det=1.0, key=3)
    np.testing.assert_array_equal(full.counts, true)


def test_observe_poisson(sim):
    """Poisson detection has mean true + floor (5-sigma bound on the total)."""
    true = sim.counts()
    obs = sim.observe(detection="poisson", floor=0.2, key=5)
    assert obs.counts.dtype == np.int64 and np.all(obs.counts >= 0)
    lam = (true + 0.2).sum()
    assert abs(obs.counts.sum() - lam) <= 5 * np.sqrt(lam)
    assert not np.array_equal(obs.counts, true)
    assert obs.counts[true == 0].sum() > 0


def test_observe_errors(sim):
    """Invalid observe arguments are refused with a clear error."""
    with pytest.raises(ValueError, match="at least one"):
        sim.observe(counts=False, docks=False)
    with pytest.raises(ValueError, match="p_det"):
        sim.observe(detection="binomial")
    with pytest.raises(nv.ObservationError, match="detection must be one of"):
        sim.observe(detection="gaussian")
    with pytest.raises(nv.ObservationError, match=r"p_det must lie in \(0, 1\]"):
        sim.observe(detection="binomial", p_det=1.5)
    with pytest.raises(nv.ObservationError, match="exact detection takes no p_det"):
        sim.observe(detection="exact", p_det=0.5)


# -------------------------------------------------------------------- merge
def test_merge_offsets_runs(sim, sim_b):
    """merge appends the other runs after this one's, keeping every row."""
    m = sim.merge(sim_b)
    assert (m.n_runs, m.n_steps, m.n_types) == (4, SMALL_STEPS, 2)
    want_v = pd.concat([sim.vesicles, sim_b.vesicles.assign(run=sim_b.vesicles.run + 2)], ignore_index=True)
    want_s = pd.concat([sim.steps, sim_b.steps.assign(run=sim_b.steps.run + 2)], ignore_index=True)
    assert_frame_equal(m.vesicles, want_v)
    assert_frame_equal(m.steps, want_s)
    np.testing.assert_array_equal(m.counts(), np.concatenate([sim.counts(), sim_b.counts()]))
    np.testing.assert_array_equal(m.covariates, np.concatenate([sim.covariates, sim_b.covariates]))
    assert m.covariates.shape == (4, SMALL_STEPS, 3, 2)


def test_merge_refusals(sub, sim):
    """merge refuses other substrates, other n_steps, other content_dim, one-sided tau0 and non-Traces."""
    hand = build(sub, *tables())
    with pytest.raises(nv.TraceError, match="different substrates"):
        hand.merge(sim)
    ves, steps = tables()
    ves.loc[vi(ves, 1, 0), "death_cause"] = "expired"
    longer = build(sub, ves, steps, n_steps=7)
    with pytest.raises(nv.TraceError, match="different n_steps: 6 and 7"):
        hand.merge(longer)
    with pytest.raises(nv.TraceError, match="different content_dim: 1 and 0"):
        hand.merge(build(sub, *tables(content=False)))
    with pytest.raises(nv.TraceError, match="tau0"):
        hand.merge(build(sub, *tables(tau0=True)))
    with pytest.raises(TypeError, match="Traces"):
        hand.merge(tables())


def test_merge_zero_width_covariates(sub):
    """Traces with (n, 0) covariates merge with traces without covariates (both have covariate_dim 0)."""
    a = build(sub, *tables(), covariates=np.zeros((4, 0)))
    b = build(sub, *tables())
    assert a.covariate_dim == b.covariate_dim == 0
    assert a.merge(b).n_runs == 4


# =============================================================== file I/O
def test_netcdf_and_csv_hand_built(sub, tmp_path):
    """Hand-built traces with tau0 (NaN included) survive NetCDF and CSV."""
    tr = build(sub, *tables(tau0=True), covariates=np.linspace(0, 1, 2 * 6 * 4 * 2).reshape(2, 6, 4, 2))
    tr.to_netcdf(tmp_path / "t.nc")
    tr.to_csv(tmp_path / "csv")
    for back in (nv.Traces.from_netcdf(tmp_path / "t.nc", sub), nv.Traces.from_csv(tmp_path / "csv", sub)):
        assert_frame_equal(back.vesicles, tr.vesicles)
        assert_frame_equal(back.steps, tr.steps)
        np.testing.assert_array_equal(back.covariates, tr.covariates)
        assert (back.n_runs, back.n_steps, back.n_types) == (2, 6, 2)


def test_from_netcdf_other_substrate(sim, tmp_path):
    """Reading with another graph, stay rule or labels is a TraceError."""
    path = tmp_path / "t.nc"
    sim.to_netcdf(path)
    for other, match in [(nx.path_graph([10, 20, 30]), "other edges"), (nx.cycle_graph([10, 20, 30, 40]), "nodes"),
                         (nx.cycle_graph([10, 20, 31]), "nodes")]:
        with pytest.raises(nv.TraceError, match=match):
            nv.Traces.from_netcdf(path, nv.Substrate.from_networkx(other))
    with pytest.raises(nv.TraceError, match="other edges or another stay rule"):
        nv.Traces.from_netcdf(path, nv.Substrate.from_networkx(nx.cycle_graph([10, 20, 30]), allow_stay=False))
    sim.to_csv(tmp_path / "csv")
    with pytest.raises(nv.TraceError, match="other edges"):
        nv.Traces.from_csv(tmp_path / "csv", nv.Substrate.from_networkx(nx.path_graph([10, 20, 30])))


def test_from_netcdf_labels_of_another_type(sim, tmp_path):
    """Labels that only print the same (0 vs '0') are a different substrate."""
    sim.to_netcdf(tmp_path / "t.nc")
    other = nv.Substrate.from_networkx(nx.cycle_graph(["10", "20", "30"]))
    with pytest.raises(nv.TraceError):
        nv.Traces.from_netcdf(tmp_path / "t.nc", other)


def test_from_netcdf_not_traces(sub, tmp_path):
    """A NetCDF file that is not an nvppl traces file is a TraceError."""
    path = tmp_path / "x.nc"
    xr.Dataset({"a": ("x", np.arange(3))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(nv.TraceError, match="not an nvppl traces file"):
        nv.Traces.from_netcdf(path, sub)


def test_from_csv_validates(sub, tmp_path):
    """A CSV file edited to hold a move along a missing edge is rejected on load."""
    build(sub, *tables()).to_csv(tmp_path)
    steps = pd.read_csv(tmp_path / "steps.csv")
    k = si(steps, 0, 0, 2)
    steps.loc[k, "node_to"] = "b"
    steps.to_csv(tmp_path / "steps.csv", index=False)
    with pytest.raises(nv.TraceError, match=r"missing edge 'c' -> 'b'") as info:
        nv.Traces.from_csv(tmp_path, sub)
    assert (info.value.run, info.value.vesicle, info.value.step) == (0, 0, 2)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["format"] = "other"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(nv.TraceError, match="does not hold nvppl traces"):
        nv.Traces.from_csv(tmp_path, sub)


def test_csv_label_that_looks_missing(tmp_path):
    """Node labels such as 'NA' survive a CSV round trip."""
    s = nv.Substrate.from_networkx(nx.DiGraph([("NA", "DA"), ("DA", "NA")]))
    ves = pd.DataFrame(dict(run=[0], vesicle=[0], type=[0], birth_step=[0], birth_node=["NA"], budget=[INF],
                            death_step=[1], death_cause=["expired"]))
    steps = pd.DataFrame(dict(run=[0, 0], vesicle=[0, 0], step=[0, 1], node_from=["NA", "DA"],
                              node_to=["DA", "NA"], docked=[False, False]))
    tr = nv.Traces.from_dataframes(ves, steps, s, n_steps=2)
    tr.to_csv(tmp_path)
    back = nv.Traces.from_csv(tmp_path, s)
    assert_frame_equal(back.steps, tr.steps)


def test_simulate_without_any_vesicle():
    """A run in which nothing is emitted gives empty, valid traces."""
    model = POOL["cov_content2"]
    p = model.default_params().replace(u=np.array([[-60.0, 0.0], [-60.0, 0.0]]))
    F = np.zeros((SMALL_RUNS, SMALL_STEPS, 3, 1))
    tr = nv.simulate(model, p, n_steps=SMALL_STEPS, n_runs=SMALL_RUNS, key=0, covariates=F)
    assert tr.n_vesicles == 0 and tr.counts().sum() == 0


# ------------------------------------------------------------ property tests
def _assert_same_traces(a, b):
    assert_frame_equal(a.vesicles, b.vesicles, check_exact=True)
    assert_frame_equal(a.steps, b.steps, check_exact=True)
    np.testing.assert_array_equal(a.covariates, b.covariates)
    assert (a.n_runs, a.n_steps, a.n_types, a.content_dim) == (b.n_runs, b.n_steps, b.n_types, b.content_dim)


examples = dict(name=st.sampled_from(sorted(POOL)), seed=st.integers(0, 2**31 - 1),
                x=st.floats(0.0, 1.0, allow_nan=False))


@settings(max_examples=20, deadline=None)
@given(**examples)
def test_netcdf_round_trip_property(name, seed, x):
    """to_netcdf / from_netcdf loses nothing (exact floats, tau0, labels, covariates)."""
    tr = _simulate(name, seed, x)
    assert ("tau0" in tr.vesicles.columns) == (POOL[name].lifetime == "countdown")
    with tempfile.TemporaryDirectory() as d:
        tr.to_netcdf(Path(d) / "t.nc")
        back = nv.Traces.from_netcdf(Path(d) / "t.nc", tr.substrate)
    _assert_same_traces(tr, back)
    again = nv.Traces.from_dataframes(tr.vesicles, tr.steps, tr.substrate, n_steps=SMALL_STEPS,
                                      covariates=tr.features, n_runs=SMALL_RUNS, n_types=tr.n_types)
    _assert_same_traces(tr, again)


@settings(max_examples=20, deadline=None)
@given(**examples)
def test_csv_round_trip_property(name, seed, x):
    """to_csv / from_csv loses nothing (exact floats, tau0, labels, covariates)."""
    tr = _simulate(name, seed, x)
    with tempfile.TemporaryDirectory() as d:
        tr.to_csv(d)
        assert (Path(d) / "covariates.csv").exists() == (POOL[name].covariate_dim > 0)
        back = nv.Traces.from_csv(d, tr.substrate)
    _assert_same_traces(tr, back)
