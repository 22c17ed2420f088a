"""Sites and substrates of equinox networks (nvppl.overlay.sites, Overlay.from_network)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.overlay.sites import find_sites, parse_path


class ConvNet(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 4, 3, key=k1, dtype=jnp.float32)
        self.conv2 = eqx.nn.Conv2d(4, 6, 3, key=k2, dtype=jnp.float32)
        self.head = eqx.nn.Linear(6 * 4 * 4, 3, key=k3, dtype=jnp.float32)

    def __call__(self, x):
        x = jax.nn.relu(self.conv1(x))
        x = jax.nn.relu(self.conv2(x))
        return self.head(x.reshape(-1))


def test_mlp_layers_are_sites_in_forward_order():
    net = eqx.nn.MLP(5, 2, 7, depth=2, key=jax.random.key(0))
    ov = nv.overlay.Overlay.from_network(net, content_dim=1)
    assert [s.name for s in ov.sites] == ["layers[0]", "layers[1]", "layers[2]"]
    assert [(s.width, s.fan_in) for s in ov.sites] == [(7, 5), (7, 7), (2, 7)]
    sub = ov.substrate
    # forward edges plus stay: node i moves to i or i + 1
    assert sub.candidates.tolist() == [[0, 1], [1, 2], [2, -1]]
    assert ov.model.covariate_dim == len(ov.covariate_names) == 3


def test_unit_granularity_lateral_and_feedback_edges():
    net = eqx.nn.MLP(3, 2, 4, depth=1, key=jax.random.key(0))
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, granularity="unit", lateral=True, feedback=True)
    sub = ov.substrate
    assert sub.n_nodes == 4 + 2
    assert ov.site_of_node.tolist() == [0, 0, 0, 0, 1, 1]
    assert sub.labels[0] == "L0:layers[0]/0" and sub.labels[4] == "L1:layers[1]/0"
    # a unit of layer 0: itself, 3 lateral, 2 forward
    assert sorted(sub.candidates[0][sub.candidates[0] >= 0].tolist()) == [0, 1, 2, 3, 4, 5]
    # a unit of layer 1: itself, 1 lateral, 4 feedback
    assert sorted(sub.candidates[4][sub.candidates[4] >= 0].tolist()) == [0, 1, 2, 3, 4, 5]


def test_cnn_and_own_module_sites():
    net = ConvNet(jax.random.key(0))
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, granularity="unit")
    assert [(s.name, s.kind, s.width) for s in ov.sites] == [("conv1", "conv", 4), ("conv2", "conv", 6),
                                                               ("head", "linear", 3)]
    assert ov.sites[1].fan_in == 4 * 9
    assert ov.substrate.n_nodes == 13


def test_user_sites_with_a_slice_and_user_graph():
    net = eqx.nn.MLP(3, 2, 6, depth=2, key=jax.random.key(0))
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, sites=[("layers[1]", slice(0, 3)), "layers[2]"],
                                         granularity="unit")
    assert ov.sites[0].units.tolist() == [0, 1, 2] and ov.substrate.n_nodes == 5
    G = nx.DiGraph()
    G.add_nodes_from(ov.substrate.labels)
    G.add_edge(ov.substrate.labels[4], ov.substrate.labels[0])
    ov2 = nv.overlay.Overlay.from_network(net, content_dim=1, sites=[("layers[1]", slice(0, 3)), "layers[2]"],
                                          granularity="unit", graph=G)
    assert ov2.substrate.candidates[4].tolist()[:2] == [0, 4]


@pytest.mark.parametrize("kwargs, match", [
    (dict(sites=["layers[9]"]), "no site 'layers\\[9\\]'"),
    (dict(sites=["activation"]), "must be an eqx.nn.Linear"),
    (dict(sites=["layers[0]", "layers[0]"]), "listed twice"),
    (dict(sites=[("layers[0]", slice(5, 5))]), "selects no unit"),
    (dict(release=("act", "dream")), "unknown release operator 'dream'"),
    (dict(mode="fast"), "mode"),
    (dict(capacity=0), "capacity"),
    (dict(release=("param",), content_dim=0), "content_dim >= 1"),
    (dict(mode="density", lifetime="countdown"), "countdown"),
    (dict(mode="density", budget=2), "budget"),
    (dict(mode="density", priors={"w_c": 0.5}), "content-dependent docking"),
    (dict(graph=nx.path_graph(3)), "node labels"),
])
def test_bad_overlays_are_refused_with_a_reason(kwargs, match):
    net = eqx.nn.MLP(3, 2, 4, depth=1, key=jax.random.key(0))
    kwargs = {"content_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        nv.overlay.Overlay.from_network(net, **kwargs)


def test_paths_parse_and_scan_mlp_is_refused():
    assert parse_path("a.b[2].c") == ("a", "b", 2, "c")
    with pytest.raises(ValueError, match="cannot read"):
        parse_path("a..b")
    net = eqx.nn.MLP(3, 2, 4, depth=3, key=jax.random.key(0), scan=True)
    with pytest.raises(ValueError, match="scan=False"):
        find_sites(net)


def test_float32_network_keeps_float32_release_maps():
    net = eqx.nn.MLP(3, 2, 4, depth=1, key=jax.random.key(0), dtype=jnp.float32)
    ov = nv.overlay.Overlay.from_network(net, content_dim=2, release=nv.overlay.OPERATORS)
    rp = ov.init_release(0)
    assert ov.dtype == np.float32
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(rp))
