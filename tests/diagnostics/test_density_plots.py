"""Plots of density relaxation results and ``Substrate.layout``."""

import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.diagnostics import plot_counts, plot_density_graph, plot_density_heatmap


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def sub():
    return nv.Substrate.from_networkx(nx.path_graph(["a", "b", "c", "d"]))


def make_density(shape=(6, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    rho = rng.uniform(0.1, 3.0, shape)
    return types.SimpleNamespace(rho=rho, expected_docks=0.1 * rng.uniform(0.1, 1.0, shape))


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize("kind", ["spring", "kamada_kawai", "circular"])
def test_layout_shape_and_determinism(sub, kind):
    pos = sub.layout(kind, seed=3)
    assert pos.shape == (4, 2) and pos.dtype == np.float64
    assert np.all(np.isfinite(pos))
    np.testing.assert_array_equal(pos, sub.layout(kind, seed=3))
    assert len({tuple(p) for p in pos.round(6)}) == 4  # distinct positions


def test_layout_seed_changes_spring_positions(sub):
    assert not np.allclose(sub.layout("spring", seed=0), sub.layout("spring", seed=1))


def test_layout_unknown_kind(sub):
    with pytest.raises(ValueError, match="unknown layout kind 'grid'.*spring"):
        sub.layout("grid")


# ----------------------------------------------------------------- heatmap
@pytest.mark.parametrize("kind, attr", [("rho", "rho"), ("docks", "expected_docks")])
def test_heatmap_shows_the_slice(sub, kind, attr):
    density = make_density()
    fig = plot_density_heatmap(density, sub, type=1, kind=kind)
    assert len(fig.axes) == 2  # heatmap and colorbar
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(image, getattr(density, attr)[:, :, 1].T)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b", "c", "d"]


def test_heatmap_run_axis_and_given_axes(sub, tmp_path):
    density = make_density((3, 6, 4, 2))
    fig, ax = plt.subplots()
    out = plot_density_heatmap(density, type=0, run=2, ax=ax, path=tmp_path / "sub" / "h.png")
    assert out is fig
    np.testing.assert_allclose(ax.images[0].get_array(), density.rho[2, :, :, 0].T)
    assert (tmp_path / "sub" / "h.png").stat().st_size > 0


def test_heatmap_accepts_jax_arrays(sub):
    import jax.numpy as jnp

    density = make_density()
    fig = plot_density_heatmap(types.SimpleNamespace(rho=jnp.asarray(density.rho), expected_docks=None), sub)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), density.rho[:, :, 0].T)


def test_heatmap_thins_node_labels():
    sub = nv.Substrate.from_networkx(nx.path_graph(100))
    fig = plot_density_heatmap(make_density((3, 100, 1)), sub)
    ticks = fig.axes[0].get_yticks()
    assert 2 <= len(ticks) <= 25 and ticks[0] == 0


def test_heatmap_errors(sub):
    density = make_density()
    with pytest.raises(ValueError, match="type 2 is out of range.*K = 2"):
        plot_density_heatmap(density, sub, type=2)
    with pytest.raises(ValueError, match="kind must be one of"):
        plot_density_heatmap(density, sub, kind="content")
    with pytest.raises(ValueError, match="run 3 is out of range.*3 runs"):
        plot_density_heatmap(make_density((3, 6, 4, 2)), run=3)
    with pytest.raises(ValueError, match="4 nodes but the substrate has 3"):
        plot_density_heatmap(density, nv.Substrate.from_networkx(nx.path_graph(3)))
    with pytest.raises(ValueError, match=r"got shape \(6, 4\)"):
        plot_density_heatmap(types.SimpleNamespace(rho=np.ones((6, 4)), expected_docks=None))


# ------------------------------------------------------------------- graph
def test_graph_default_steps_include_last(sub):
    fig = plot_density_graph(sub, make_density((10, 4, 2)))
    titles = [ax.get_title() for ax in fig.axes[:-1]]
    assert len(fig.axes) == 5  # 4 panels and one colorbar
    assert titles[0] == "step 0" and titles[-1] == "step 9"
    short = plot_density_graph(sub, make_density((2, 4, 1)))
    assert [ax.get_title() for ax in short.axes[:-1]] == ["step 0", "step 1"]


def test_graph_colours_follow_density(sub):
    density = make_density()
    steps = [1, 4]
    fig = plot_density_graph(sub, density, steps=steps, type=1, layout=sub.layout("circular"))
    fig.canvas.draw()
    cmap = matplotlib.colormaps["viridis"]
    values = density.rho[steps, :, 1]
    top = np.unravel_index(values.argmax(), values.shape)
    for p, ax in enumerate(fig.axes[:2]):
        colours = ax.collections[1].get_facecolors()
        # one shared scale from 0 to the largest value shown
        np.testing.assert_allclose(colours, cmap(values[p] / values.max()), atol=1e-6)
        at_top = np.all(np.isclose(colours, cmap(1.0)), axis=1)
        assert at_top.tolist() == [(p, i) == top for i in range(4)]


def test_graph_edges_and_positions(sub):
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    fig = plot_density_graph(sub, make_density(), steps=2, layout=pos)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[1].get_offsets(), pos)
    segments = {tuple(map(tuple, s)) for s in ax.collections[0].get_segments()}
    assert segments == {((0, 0), (1, 0)), ((1, 0), (2, 0)), ((2, 0), (3, 1))}


def test_graph_errors(sub):
    density = make_density()
    with pytest.raises(ValueError, match=r"step 6 is outside \[0, 6\)"):
        plot_density_graph(sub, density, steps=[0, 6])
    with pytest.raises(ValueError, match="step -1"):
        plot_density_graph(sub, density, steps=-1)
    with pytest.raises(ValueError, match="type 5 is out of range.*K = 2"):
        plot_density_graph(sub, density, type=5)
    with pytest.raises(ValueError, match=r"layout must have shape \(n_nodes, 2\) = \(4, 2\), got \(3, 2\)"):
        plot_density_graph(sub, density, layout=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="4 nodes but the substrate has 3"):
        plot_density_graph(nv.Substrate.from_networkx(nx.path_graph(3)), density)


# ------------------------------------------------------------------ counts
def make_obs(density, detection="exact", runs=3, **kw):
    rng = np.random.default_rng(1)
    return nv.Observations(counts=rng.poisson(np.broadcast_to(density.rho, (runs,) + density.rho.shape[-3:])),
                           docks=rng.poisson(np.broadcast_to(density.expected_docks,
                                                             (runs,) + density.rho.shape[-3:])),
                           detection=detection, **kw)


@pytest.mark.parametrize("detection, kw, predict", [
    ("exact", {}, lambda m: m),
    ("binomial", {"p_det": 0.5}, lambda m: 0.5 * m),
    ("poisson", {"floor": 0.25}, lambda m: m + 0.25),
])
def test_counts_scatter_offsets(detection, kw, predict):
    density = make_density()
    obs = make_obs(density, detection, **kw)
    fig = plot_counts(obs, density)
    assert len(fig.axes) == 4  # counts and docks rows, two panels each
    for row, (y, m) in enumerate(((obs.counts, density.rho), (obs.docks, density.expected_docks))):
        offsets = fig.axes[2 * row].collections[0].get_offsets()
        np.testing.assert_allclose(offsets[:, 0], y.mean(0).ravel())
        np.testing.assert_allclose(offsets[:, 1], predict(m).ravel())
        lines = fig.axes[2 * row + 1].get_lines()
        np.testing.assert_allclose(lines[-1].get_ydata(), predict(m).sum((1, 2)))  # predicted total
        np.testing.assert_allclose(lines[-2].get_ydata(), y.sum((2, 3)).mean(0))  # observed mean
        assert len(lines) == obs.n_runs + 2


def test_counts_one_type_and_run_axis():
    density = make_density((3, 6, 4, 2))
    obs = nv.Observations(counts=np.ones((3, 6, 4, 2), int))
    fig = plot_counts(obs, density, type=1)
    assert len(fig.axes) == 2
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], 1.0)
    np.testing.assert_allclose(offsets[:, 1], density.rho[..., 1].mean(0).ravel())


def test_counts_errors():
    density = make_density()
    with pytest.raises(ValueError, match="p_det"):
        plot_counts(make_obs(density, "binomial"), density)
    obs = make_obs(density)
    with pytest.raises(ValueError, match="type 2 is out of range.*K = 2"):
        plot_counts(obs, density, type=2)
    for shape, axis in (((5, 4, 2), "steps"), ((6, 3, 2), "nodes"), ((6, 4, 1), "types"), ((2, 6, 4, 2), "runs")):
        with pytest.raises(ValueError, match=f"{axis} differ"):
            plot_counts(obs, make_density(shape))
