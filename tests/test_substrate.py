"""Tests of nvppl.Substrate: relabelling, candidate tables, sinks, covariates, JSON."""

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nvppl as nv


def _same(a, b):
    """Assert two substrates hold identical fields."""
    assert a.labels == b.labels
    assert [type(x) for x in a.labels] == [type(x) for x in b.labels]
    np.testing.assert_array_equal(a.candidates, b.candidates)
    np.testing.assert_array_equal(a.n_candidates, b.n_candidates)
    np.testing.assert_array_equal(a.edges, b.edges)
    np.testing.assert_array_equal(a.node_covariates, b.node_covariates)
    assert a.covariate_names == b.covariate_names
    assert a.allow_stay == b.allow_stay
    assert a.same_as(b) and b.same_as(a)


# ----------------------------------------------------------------- building
def test_digraph_candidates_with_stay():
    """A DiGraph gives out-neighbours plus the node itself, sorted and -1 padded."""
    G = nx.DiGraph([("c", "a"), ("a", "b"), ("a", "c"), ("b", "c")])
    sub = nv.Substrate.from_networkx(G)
    assert sub.labels == ("a", "b", "c")
    assert sub.candidates.tolist() == [[0, 1, 2], [1, 2, -1], [0, 2, -1]]
    assert sub.n_candidates.tolist() == [3, 2, 2]
    assert sub.candidate_mask.tolist() == [[True] * 3, [True, True, False], [True, True, False]]
    assert sub.edges.tolist() == [[0, 1], [0, 2], [1, 2], [2, 0]]
    assert sub.sinks.tolist() == []
    assert sub.allow_stay is True
    assert sub.n_nodes == 3 and sub.max_candidates == 3


def test_digraph_candidates_without_stay_and_sinks():
    """Without stay a node with no out-edge is a sink with an all -1 row."""
    G = nx.DiGraph([(3, 1), (1, 2), (3, 2)])
    G.add_node(0)
    sub = nv.Substrate.from_networkx(G, allow_stay=False)
    assert sub.labels == (0, 1, 2, 3)
    assert sub.candidates.tolist() == [[-1, -1], [2, -1], [-1, -1], [1, 2]]
    assert sub.n_candidates.tolist() == [0, 1, 0, 2]
    assert sub.sinks.tolist() == [0, 2]
    assert sub.is_sink.tolist() == [True, False, True, False]


def test_undirected_graph_is_both_directions():
    """An undirected edge gives a move both ways."""
    sub = nv.Substrate.from_networkx(nx.path_graph(["x", "y", "z"]), allow_stay=False)
    assert sub.candidates.tolist() == [[1, -1], [0, 2], [1, -1]]
    assert sub.edges.tolist() == [[0, 1], [1, 0], [1, 2], [2, 1]]
    assert sub.sinks.tolist() == []


def test_directed_edge_is_one_direction_only():
    """A DiGraph edge a -> b does not allow b -> a."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([("a", "b")]), allow_stay=False)
    assert sub.slot_of([0, 1], [1, 0]).tolist() == [0, -1]
    assert sub.sinks.tolist() == [1]


def test_self_loop_kept_without_stay():
    """A self-loop of the graph is a candidate even when stay is not allowed."""
    G = nx.DiGraph([(0, 0), (0, 1)])
    sub = nv.Substrate.from_networkx(G, allow_stay=False)
    assert sub.candidates.tolist() == [[0, 1], [-1, -1]]
    assert sub.edges.tolist() == [[0, 0], [0, 1]]


def test_relabelling_in_sorted_order():
    """Nodes are indexed in sorted order of their labels, whatever the insertion order."""
    G = nx.DiGraph()
    G.add_nodes_from([30, 10, 20])
    G.add_edge(30, 10)
    sub = nv.Substrate.from_networkx(G, allow_stay=False)
    assert sub.labels == (10, 20, 30)
    assert sub.index_of(30) == 2 and sub.index_of(10) == 0
    assert sub.candidates.tolist() == [[-1], [-1], [0]]
    assert sub.label_array.dtype == np.int64
    assert sub.label_array.tolist() == [10, 20, 30]


def test_tuple_labels():
    """Tuple labels are sorted lexicographically and kept as tuples."""
    G = nx.grid_2d_graph(2, 2)
    sub = nv.Substrate.from_networkx(G)
    assert sub.labels == ((0, 0), (0, 1), (1, 0), (1, 1))
    assert sub.candidates.tolist() == [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]
    assert sub.index_of((1, 0)) == 2
    assert sub.label_array.dtype == object
    assert list(sub.label_array) == list(sub.labels)


def test_string_labels_and_index_of_unknown():
    """String labels are kept; an unknown label raises KeyError naming it."""
    sub = nv.Substrate.from_networkx(nx.path_graph(["b", "a"]))
    assert sub.labels == ("a", "b")
    with pytest.raises(KeyError, match="'zz'"):
        sub.index_of("zz")


def test_slot_of_vectorised():
    """slot_of gives the candidate slot of each move, -1 when not allowed or out of range."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 2)]))
    got = sub.slot_of([0, 0, 1, 2, 0, -1, 5], [0, 1, 2, 2, 2, 0, 0])
    assert got.tolist() == [0, 1, 1, 0, -1, -1, -1]


def test_node_covariates_from_attributes():
    """Named numeric node attributes become the covariate matrix in node order."""
    G = nx.path_graph(["b", "a", "c"])
    for lab, (h, g) in {"a": (1, 0.5), "b": (2.5, -1.0), "c": (np.float32(3.0), np.int64(4))}.items():
        G.nodes[lab]["h"] = h
        G.nodes[lab]["g"] = g
        G.nodes[lab]["ignored"] = "text"
    sub = nv.Substrate.from_networkx(G, covariates=["h", "g"])
    assert sub.covariate_names == ("h", "g")
    assert sub.covariate_dim == 2
    np.testing.assert_array_equal(sub.node_covariates, [[1.0, 0.5], [2.5, -1.0], [3.0, 4.0]])
    assert sub.node_covariates.dtype == np.float64


def test_no_covariates_by_default():
    """Without covariate names the covariate matrix is n x 0."""
    G = nx.path_graph(3)
    G.nodes[0]["h"] = 1.0
    sub = nv.Substrate.from_networkx(G)
    assert sub.node_covariates.shape == (3, 0)
    assert sub.covariate_names == ()


def test_arrays_are_read_only():
    """The substrate's arrays cannot be modified in place."""
    sub = nv.Substrate.from_networkx(nx.path_graph(3))
    with pytest.raises(ValueError):
        sub.candidates[0, 0] = 2
    with pytest.raises(ValueError):
        sub.n_candidates[0] = 0


# ------------------------------------------------------------------- errors
def test_empty_graph_refused():
    """An empty graph is a clear ValueError."""
    with pytest.raises(ValueError, match="empty"):
        nv.Substrate.from_networkx(nx.DiGraph())


def test_unsortable_labels_refused():
    """Mixed int and str labels are a ValueError naming the label types."""
    G = nx.DiGraph([(1, "a")])
    with pytest.raises(ValueError, match=r"cannot be sorted.*int.*str"):
        nv.Substrate.from_networkx(G)


@pytest.mark.parametrize("cls", [nx.MultiDiGraph, nx.MultiGraph])
def test_multigraph_refused(cls):
    """Multigraphs are a ValueError, not silently collapsed."""
    G = cls([(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="multigraph"):
        nv.Substrate.from_networkx(G)


def test_not_a_graph_refused():
    """A non-networkx object is a TypeError."""
    with pytest.raises(TypeError, match="networkx"):
        nv.Substrate.from_networkx([(0, 1)])


@pytest.mark.parametrize(
    "value, why",
    [("high", "real number"), (math.nan, "finite"), (np.inf, "finite"), (True, "real number"),
     (np.bool_(False), "real number"), (None, "real number"), (1 + 2j, "real number")],
)
def test_bad_covariate_attribute_refused(value, why):
    """An attribute that is not a finite real number is a ValueError naming node and attribute."""
    G = nx.path_graph(["a", "b", "c"])
    for lab in G:
        G.nodes[lab]["h"] = 1.0
    G.nodes["b"]["h"] = value
    with pytest.raises(ValueError, match=rf"node 'b' attribute 'h'.*{why}"):
        nv.Substrate.from_networkx(G, covariates=["h"])


def test_missing_covariate_attribute_refused():
    """A covariate attribute missing on one node is a ValueError naming the node."""
    G = nx.path_graph([1, 2, 3])
    G.nodes[1]["h"] = 0.0
    G.nodes[3]["h"] = 0.0
    with pytest.raises(ValueError, match=r"node 2 has no attribute 'h'"):
        nv.Substrate.from_networkx(G, covariates=["h"])


# --------------------------------------------------------------------- JSON
@pytest.mark.parametrize(
    "G, stay, cov",
    [
        (nx.DiGraph([("b", "a"), ("a", "c")]), False, None),
        (nx.cycle_graph(4), True, None),
        (nx.grid_2d_graph(2, 3), True, None),
        (nx.DiGraph([(0.5, 1.5), (1.5, 1.5)]), False, None),
        (nx.DiGraph([(10, 20), (20, 30)]), True, ["h", "g"]),
    ],
)
def test_json_round_trip(G, stay, cov):
    """to_json / from_json gives an identical substrate (labels, edges, stay, covariates)."""
    if cov:
        for k, lab in enumerate(sorted(G)):
            G.nodes[lab]["h"] = 0.25 * k - 1.0
            G.nodes[lab]["g"] = 1e-300 * (k + 1)
    sub = nv.Substrate.from_networkx(G, allow_stay=stay, covariates=cov)
    back = nv.Substrate.from_json(sub.to_json())
    _same(sub, back)


def test_json_refuses_unwritable_labels():
    """Labels that JSON cannot hold are a ValueError naming the label."""
    sub = nv.Substrate.from_networkx(nx.path_graph([frozenset({1}), frozenset({1, 2})]))
    with pytest.raises(ValueError, match="frozenset"):
        sub.to_json()


def test_to_networkx_round_trip():
    """to_networkx gives back the original directed edges and attributes."""
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "c")])
    for k, lab in enumerate("abc"):
        G.nodes[lab]["h"] = float(k)
    sub = nv.Substrate.from_networkx(G, allow_stay=False, covariates=["h"])
    H = sub.to_networkx()
    assert sorted(H.edges) == sorted(G.edges)
    assert dict(H.nodes(data="h")) == {"a": 0.0, "b": 1.0, "c": 2.0}
    _same(sub, nv.Substrate.from_networkx(H, allow_stay=False, covariates=["h"]))


def test_same_as_distinguishes():
    """same_as is False for a different stay rule, different edges or different labels."""
    a = nv.Substrate.from_networkx(nx.path_graph(3))
    assert a.same_as(nv.Substrate.from_networkx(nx.path_graph(3)))
    assert not a.same_as(nv.Substrate.from_networkx(nx.path_graph(3), allow_stay=False))
    assert not a.same_as(nv.Substrate.from_networkx(nx.cycle_graph(3)))
    assert not a.same_as(nv.Substrate.from_networkx(nx.path_graph(["0", "1", "2"])))


# ------------------------------------------------------- property (random)
@st.composite
def graphs(draw):
    n = draw(st.integers(1, 6))
    pairs = [(i, j) for i in range(n) for j in range(n)]
    edges = draw(st.lists(st.sampled_from(pairs), max_size=12, unique=True))
    directed = draw(st.booleans())
    kind = draw(st.sampled_from(["int", "str"]))
    perm = draw(st.permutations(range(n)))
    lab = [perm[i] * 7 - 3 for i in range(n)] if kind == "int" else [f"n{perm[i]:02d}" for i in range(n)]
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(lab)
    G.add_edges_from((lab[i], lab[j]) for i, j in edges)
    return G


@settings(max_examples=25, deadline=None)
@given(G=graphs(), stay=st.booleans())
def test_candidates_match_graph(G, stay):
    """For random graphs each candidate row is the sorted out-neighbourhood (+ self), -1 padded."""
    sub = nv.Substrate.from_networkx(G, allow_stay=stay)
    labels = sorted(G.nodes)
    assert list(sub.labels) == labels
    D = G.to_directed() if not G.is_directed() else G
    for i, lab in enumerate(labels):
        want = {labels.index(x) for x in D.successors(lab)}
        if stay:
            want.add(i)
        row = sub.candidates[i].tolist()
        k = len(want)
        assert row[:k] == sorted(want)
        assert all(x == -1 for x in row[k:])
        assert sub.n_candidates[i] == k
        assert bool(sub.is_sink[i]) == (k == 0)
    assert sub.max_candidates == max(1, max(sub.n_candidates))
    _same(sub, nv.Substrate.from_json(sub.to_json()))


def test_from_edges_builds_the_same_substrate_as_from_networkx():
    edges = [("b", "a"), ("a", "c"), ("c", "c")]
    a = nv.Substrate.from_edges(["a", "b", "c"], edges, allow_stay=False)
    b = nv.Substrate.from_networkx(nx.DiGraph(edges), allow_stay=False)
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.candidates, b.candidates)
    np.testing.assert_array_equal(a.edges, b.edges)
    with pytest.raises(ValueError, match="not in the node list"):
        nv.Substrate.from_edges(["a"], [("a", "z")])
    with pytest.raises(ValueError, match="distinct"):
        nv.Substrate.from_edges(["a", "a"], [])
