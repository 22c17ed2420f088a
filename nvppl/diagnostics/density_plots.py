"""Plots of density relaxation results, used through two attributes: ``rho``
(expected vesicles per step, node and type) and ``expected_docks``, arrays of
shape ``(T, n, K)`` or ``(R, T, n, K)`` with a leading run axis."""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np

from .._files import save_figure
from ..density import detected_mean

__all__ = ["plot_counts", "plot_density_graph", "plot_density_heatmap"]

_KINDS = {"rho": ("rho", "expected vesicles"), "docks": ("expected_docks", "expected docks")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path, dpi=110, bbox_inches="tight")


def _array(density, attr):
    arr = np.asarray(getattr(density, attr), dtype=np.float64)
    if arr.ndim not in (3, 4):
        raise ValueError(f"density {attr} must have shape (steps, nodes, types) or (runs, steps, nodes, types), "
                         f"got shape {arr.shape}")
    return arr


def _select(density, kind, run, type):
    """The ``(T, n)`` slice of ``kind`` for one run and type, and its label."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {tuple(_KINDS)}, got {kind!r}")
    attr, label = _KINDS[kind]
    arr = _array(density, attr)
    if arr.ndim == 4:
        arr = arr[_check_index(run, arr.shape[0], "run", "is out of range: the density has {n} runs")]
    return arr[:, :, _check_type(type, arr.shape[-1])], label


def _check_index(value, n, what, message):
    i = operator.index(value)
    if not 0 <= i < n:
        raise ValueError(f"{what} {i} " + message.format(n=n))
    return i


def _check_type(type, K):
    return _check_index(type, K, "type", "is out of range: the density has K = {n} types")


def plot_density_heatmap(density, substrate=None, type=0, kind="rho", run=0, ax=None, path=None):
    """Heatmap of a density over steps (x axis) and nodes (y axis), for one type.

    Parameters
    ----------
    density : density result
        An object with arrays ``rho`` and ``expected_docks`` of shape
        ``(T, n, K)`` or ``(R, T, n, K)``.
    substrate : Substrate, optional
        Labels the node axis with ``substrate.labels`` (at most about 20 ticks).
    type : int, default 0
        The vesicle type.
    kind : {"rho", "docks"}, default "rho"
        Expected vesicles after each step (``rho``) or expected docks during
        each step (``expected_docks``).
    run : int, default 0
        The run, when the density has a run axis (ignored otherwise).
    ax : matplotlib.axes.Axes, optional
        Draw into these axes instead of a new figure.
    path : str or Path, optional
        Where to save the figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Unknown ``kind``, ``type`` or ``run`` out of range, or another number of
        nodes in the substrate.

    Examples
    --------
    >>> import types, numpy as np, networkx as nx, matplotlib.pyplot as plt, nvppl as nv
    >>> rho = np.linspace(0, 1, 15).reshape(5, 3, 1)
    >>> density = types.SimpleNamespace(rho=rho, expected_docks=0.1 * rho)
    >>> sub = nv.Substrate.from_networkx(nx.path_graph(3))
    >>> fig = nv.diagnostics.plot_density_heatmap(density, sub, kind="docks")
    >>> fig.axes[0].images[0].get_array().shape  # (nodes, steps)
    (3, 5)
    >>> plt.close(fig)
    """
    plt = _pyplot()
    values, label = _select(density, kind, run, type)
    T, n = values.shape
    if substrate is not None and substrate.n_nodes != n:
        raise ValueError(f"the density covers {n} nodes but the substrate has {substrate.n_nodes}")
    size = (min(3 + 0.15 * T, 12), min(2 + 0.25 * n, 10))
    fig, ax = plt.subplots(figsize=size) if ax is None else (ax.figure, ax)
    image = ax.imshow(values.T, aspect="auto", origin="lower", interpolation="nearest",
                      extent=(-0.5, T - 0.5, -0.5, n - 0.5))
    ticks = np.arange(0, n, max(1, -(-n // 20)))
    ax.set(xlabel="step", ylabel="node", title=f"type {type}: {label}", yticks=ticks)
    if substrate is not None:
        ax.set_yticklabels([str(substrate.labels[i]) for i in ticks])
    fig.colorbar(image, ax=ax, label=label)
    _save(fig, path)
    return fig


def plot_density_graph(substrate, density, steps=None, type=0, kind="rho", run=0, layout=None, path=None):
    """The graph at chosen steps with nodes coloured by a density, one panel per step.

    All panels share one colour scale (from 0, or the smallest value if
    negative, to the largest value shown) and one colorbar. Edges are drawn as
    undirected line segments.

    Parameters
    ----------
    substrate : Substrate
    density : density result
    steps : int or sequence of int, optional
        Steps to draw (default: 4 steps evenly spread over ``0 .. T-1``,
        including the last; fewer when ``T < 4``).
    type, kind, run, path
        As in :func:`plot_density_heatmap`.
    layout : array of shape (n, 2), optional
        Node positions in node-index order (default: ``substrate.layout()``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Unknown ``kind``; ``type``, ``run`` or a step out of range; a density
        or ``layout`` whose number of nodes differs from the substrate's.

    Examples
    --------
    >>> import types, numpy as np, networkx as nx, matplotlib.pyplot as plt, nvppl as nv
    >>> rho = np.linspace(0, 1, 15).reshape(5, 3, 1)
    >>> density = types.SimpleNamespace(rho=rho, expected_docks=0.1 * rho)
    >>> sub = nv.Substrate.from_networkx(nx.path_graph(3))
    >>> fig = nv.diagnostics.plot_density_graph(sub, density, steps=[0, 4])
    >>> len(fig.axes)  # two panels and the colorbar
    3
    >>> plt.close(fig)
    """
    plt = _pyplot()
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    values, label = _select(density, kind, run, type)
    T, n = values.shape
    if substrate.n_nodes != n:
        raise ValueError(f"the density covers {n} nodes but the substrate has {substrate.n_nodes}")
    if steps is None:
        steps = np.unique(np.linspace(0, T - 1, min(4, T)).round().astype(int))
    steps = [_check_index(t, T, "step", "is outside [0, {n}): the density covers T = {n} steps")
             for t in np.atleast_1d(steps).tolist()]
    if not steps:
        raise ValueError("steps is empty: give at least one step to draw")
    pos = substrate.layout() if layout is None else np.asarray(layout, dtype=np.float64)
    if pos.shape != (n, 2):
        raise ValueError(f"layout must have shape (n_nodes, 2) = ({n}, 2), got {pos.shape}")
    edges = np.asarray(substrate.edges).reshape(-1, 2)
    edges = np.unique(np.sort(edges[edges[:, 0] != edges[:, 1]], axis=1), axis=0)
    shown = values[steps]
    vmin, vmax = min(0.0, float(shown.min())), float(shown.max())
    norm = Normalize(vmin, vmax if vmax > vmin else vmin + 1.0)
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps) + 1.0, 3.4), squeeze=False,
                             layout="constrained")
    for ax, t, row in zip(axes[0], steps, shown):
        ax.add_collection(LineCollection(pos[edges], colors="0.6", linewidths=0.8, zorder=1))
        nodes = ax.scatter(pos[:, 0], pos[:, 1], c=row, cmap="viridis", norm=norm, s=60,
                           edgecolors="0.2", linewidths=0.5, zorder=2)
        ax.set(title=f"step {t}", aspect="equal")
        ax.margins(0.1)
        ax.set_axis_off()
    fig.colorbar(nodes, ax=list(axes[0]), shrink=0.8, label=f"type {type}: {label}")
    _save(fig, path)
    return fig


def plot_counts(obs, density, type=None, path=None):
    """Observed versus predicted counts and dock counts.

    The predicted mean of an observation follows the detection model of
    ``obs``: ``rho`` for exact detection, ``p_det * rho`` for binomial and
    ``rho + floor`` for Poisson detection (``expected_docks`` in place of
    ``rho`` for docks). One row per observed kind (counts, docks): on the left
    the observed mean over runs against the predicted mean for every step,
    node and type; on the right the total over nodes (and the types shown) per
    step, observed per run (thin lines) and their mean, with the prediction
    and a band of ±2·sqrt(predicted), the spread of a Poisson total of one
    run.

    Parameters
    ----------
    obs : Observations
    density : density result
        A run axis, if any, must match the runs of ``obs``.
    type : int, optional
        Show one type (default: all types).
    path : str or Path, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Steps, nodes, types or runs of ``obs`` and ``density`` that differ,
        ``type`` out of range, or binomial detection with unknown ``p_det``.

    Examples
    --------
    >>> import types, numpy as np, matplotlib.pyplot as plt, nvppl as nv
    >>> obs = nv.Observations(counts=np.ones((2, 5, 3, 1), int))
    >>> density = types.SimpleNamespace(rho=np.ones((5, 3, 1)), expected_docks=np.zeros((5, 3, 1)))
    >>> fig = nv.diagnostics.plot_counts(obs, density)
    >>> fig.axes[0].collections[0].get_offsets().shape  # 5 steps x 3 nodes x 1 type
    (15, 2)
    >>> plt.close(fig)
    """
    plt = _pyplot()
    kinds = [(name, attr) for name, attr in (("counts", "rho"), ("docks", "expected_docks"))
             if getattr(obs, name, None) is not None]
    if not kinds:
        raise ValueError("the observations hold neither counts nor docks")
    if obs.detection == "binomial" and obs.p_det is None:
        raise ValueError("binomial detection with unknown p_det: give Observations(..., p_det=...) to predict "
                         "the observed counts")
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 3.8 * len(kinds)), squeeze=False)
    for row, (name, attr) in zip(axes, kinds):
        y = np.asarray(getattr(obs, name), dtype=np.float64)
        m = _array(density, attr)
        m = m[None] if m.ndim == 3 else m
        for axis, what in ((1, "steps"), (2, "nodes"), (3, "types")) + (((0, "runs"),) if len(m) > 1 else ()):
            if y.shape[axis] != m.shape[axis]:
                raise ValueError(f"{what} differ: the observed {name} have {y.shape[axis]} {what} but the "
                                 f"density {attr} has {m.shape[axis]}")
        ks = list(range(y.shape[3])) if type is None else [_check_type(type, y.shape[3])]
        m = detected_mean(m, obs.detection, obs.p_det, obs.floor)
        y, m = y[..., ks], m[..., ks]
        observed, predicted = y.mean(0).ravel(), m.mean(0).ravel()
        which = "all types" if type is None else f"type {ks[0]}"
        ax = row[0]
        ax.scatter(observed, predicted, s=8, alpha=0.6)
        top = max(float(observed.max()), float(predicted.max()), 1e-12)
        ax.plot([0, top], [0, top], "k--", lw=0.8, label="identity")
        ax.set(xlabel=f"observed {name} (mean over {len(y)} runs)",
               ylabel=f"predicted mean ({obs.detection} detection)")
        ax.set_title(f"{name} per step, node and type ({which})", fontsize=9)
        ax.legend(fontsize=7)
        ax = row[1]
        steps = np.arange(y.shape[1])
        totals, pred = y.sum((2, 3)), m.sum((2, 3)).mean(0)
        for r, line in enumerate(totals):
            ax.plot(steps, line, color="C0", lw=0.6, alpha=0.4, label="observed runs" if r == 0 else None)
        ax.plot(steps, totals.mean(0), color="C0", lw=1.8, label="observed mean")
        ax.plot(steps, pred, color="C1", lw=1.5, label="predicted")
        band = 2 * np.sqrt(np.maximum(pred, 0))
        ax.fill_between(steps, np.maximum(pred - band, 0), pred + band, color="C1", alpha=0.25,
                        label="±2·sqrt(predicted)")
        ax.set(xlabel="step", ylabel=f"total {name} over nodes")
        ax.set_title(f"total {name} per step ({which})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return fig
