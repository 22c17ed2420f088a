"""Sites of a base network and the graph over them (DESIGN §7, "Sites").

A *site* is a layer with a weight — an ``eqx.nn.Linear`` or an ``eqx.nn.Conv``
(1-, 2- or 3-d) — found by walking the equinox module's pytree, or a layer the
user names by its pytree path (``"layers[1]"``, ``"conv2"``), optionally with a
slice of its units (output features or channels). The graph has one node per
site (``granularity="layer"``) or one per unit of each site (``"unit"``), edges
along the forward computation (site ``l`` to site ``l + 1``), and optionally
lateral edges (between the units of one site) and feedback edges (reversed
forward edges); the user may pass any networkx graph over the same node labels
(read by :meth:`nvppl.Substrate.from_networkx`, the one place networkx is touched).

Node labels sort in site order: ``"L0:layers[0]"`` for a layer, and
``"L0:layers[0]/007"`` for its unit 7.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np

__all__ = ["Site", "find_sites", "get_at", "replace_at", "parse_path", "site_edges", "NodeMap", "node_map"]

_TOKEN = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]")


class Site(NamedTuple):
    """One layer of the base network that vesicles can act on."""

    name: str          # pytree path, e.g. "layers[1]"
    path: tuple        # ("layers", 1): attribute names and sequence indices
    kind: str          # "linear" or "conv"
    width: int         # output features (linear) or output channels (conv)
    fan_in: int        # columns of the weight seen as a matrix (in features × kernel size)
    units: np.ndarray  # the units (output rows) covered by the site
    has_bias: bool


def parse_path(text: str) -> tuple:
    """``"layers[1].conv"`` → ``("layers", 1, "conv")``.

    Examples
    --------
    >>> parse_path("layers[1]")
    ('layers', 1)
    >>> parse_path(".blocks[0].fc")
    ('blocks', 0, 'fc')
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a site path must be a non-empty string such as 'layers[0]', got {text!r}")
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read the site path {text!r} at {text[pos:]!r}; write attribute names "
                             "and [index] entries, e.g. 'layers[1]' or 'block.conv'")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(out)


def _path_name(path) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else p)
    return s


def get_at(tree, path: tuple):
    """The sub-module at ``path``."""
    node = tree
    for p in path:
        try:
            node = node[p] if isinstance(p, int) else getattr(node, p)
        except (AttributeError, IndexError, TypeError) as exc:
            raise ValueError(f"the network has no site {_path_name(path)!r} (failed at {p!r}: {exc})") from None
    return node


def replace_at(tree, paths, values):
    """``tree`` with the sub-modules at ``paths`` replaced by ``values``."""
    paths = list(paths)
    if not paths:
        return tree
    return eqx.tree_at(lambda t: [get_at(t, p) for p in paths], tree, replace=list(values),
                       is_leaf=lambda x: x is None)


def _describe(layer, name, path, units=None) -> Site:
    if isinstance(layer, eqx.nn.Linear):
        w = layer.weight
        if w.ndim != 2:
            raise ValueError(f"site {name!r}: a Linear with scalar input or output is not a site (weight shape "
                             f"{w.shape})")
        kind = "linear"
    elif isinstance(layer, eqx.nn.Conv):
        w = layer.weight
        kind = "conv"
    else:
        raise ValueError(f"site {name!r} is a {type(layer).__name__}; a site must be an eqx.nn.Linear or an "
                         "eqx.nn.Conv (Conv1d/2d/3d)")
    width, fan_in = int(w.shape[0]), int(np.prod(w.shape[1:]))
    all_units = np.arange(width)
    if units is None:
        sel = all_units
    else:
        sel = all_units[units]
        if sel.size == 0:
            raise ValueError(f"site {name!r}: the slice {units!r} selects no unit of its {width}")
    return Site(name, tuple(path), kind, width, fan_in, np.asarray(sel, dtype=np.int64), layer.bias is not None)


def _is_layer(x) -> bool:
    return isinstance(x, (eqx.nn.Linear, eqx.nn.Conv))


def find_sites(net, sites=None) -> list:
    """The sites of ``net``: every Linear and Conv layer in pytree order, or those named.

    Parameters
    ----------
    net : equinox.Module
    sites : list, optional
        Pytree paths (``"layers[0]"``), or ``(path, slice)`` pairs to cover some
        units only.

    Examples
    --------
    >>> import equinox as eqx, jax
    >>> net = eqx.nn.MLP(4, 2, 8, depth=2, key=jax.random.key(0))
    >>> [(s.name, s.width, s.fan_in) for s in find_sites(net)]
    [('layers[0]', 8, 4), ('layers[1]', 8, 8), ('layers[2]', 2, 8)]
    """
    if isinstance(net, eqx.nn.MLP) and getattr(net, "scan", False):
        raise ValueError("an eqx.nn.MLP built with scan=True shares one stacked layer for its hidden layers; "
                         "build it with scan=False (the default) so that each layer is a site")
    if sites is None:
        leaves = jax.tree_util.tree_flatten_with_path(net, is_leaf=_is_layer)[0]
        found = []
        for kp, leaf in leaves:
            if not _is_layer(leaf):
                continue
            path = tuple(k.name if isinstance(k, jax.tree_util.GetAttrKey) else k.idx for k in kp)
            found.append(_describe(leaf, _path_name(path), path))
        if not found:
            raise ValueError(f"found no eqx.nn.Linear or eqx.nn.Conv layer in the {type(net).__name__}; name the "
                             "sites with sites=[...] or use layers from equinox.nn")
        return found
    out, seen = [], set()
    for entry in sites:
        text, units = (entry, None) if isinstance(entry, str) else tuple(entry)
        if units is not None and not isinstance(units, slice):
            raise ValueError(f"site {text!r}: units must be given as a slice, got {units!r}")
        path = parse_path(text)
        name = _path_name(path)
        if name in seen:
            raise ValueError(f"site {name!r} is listed twice")
        seen.add(name)
        out.append(_describe(get_at(net, path), name, path, units))
    if not out:
        raise ValueError("sites is empty; name at least one layer")
    return out


class NodeMap(NamedTuple):
    """Where each graph node sits in the network."""

    labels: tuple          # node labels in index order
    site: np.ndarray       # (n,) site of each node
    per_node: np.ndarray   # (n_sites,) units per node at each site (the site's width or 1)
    first: np.ndarray      # (n_sites,) index of the site's first node


def _labels(sites, granularity):
    w = len(str(len(sites) - 1))
    out = []
    for s_i, s in enumerate(sites):
        base = f"L{s_i:0{w}d}:{s.name}"
        if granularity == "layer":
            out.append([base])
        else:
            uw = len(str(s.width - 1))
            out.append([f"{base}/{u:0{uw}d}" for u in s.units])
    return out


def node_map(sites, granularity: str) -> NodeMap:
    """The node labels of ``sites`` and each node's site, in index (sorted-label) order."""
    groups = _labels(sites, granularity)
    labels = tuple(lab for g in groups for lab in g)
    if list(labels) != sorted(labels):  # the substrate relabels in sorted order
        raise AssertionError("internal: site labels do not sort in site order")
    site = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]).astype(np.int64)
    per_node = np.array([len(s.units) if granularity == "layer" else 1 for s in sites], dtype=np.int64)
    first = np.concatenate([[0], np.cumsum([len(g) for g in groups])[:-1]]).astype(np.int64)
    return NodeMap(labels, site, per_node, first)


def site_edges(sites, granularity: str = "layer", lateral: bool = False, feedback: bool = False) -> list:
    """The directed edges between the sites' nodes: forward, optionally lateral and feedback ones."""
    groups = _labels(sites, granularity)
    edges = []
    for a, b in zip(groups[:-1], groups[1:]):
        for u in a:
            for v in b:
                edges.append((u, v))
                if feedback:
                    edges.append((v, u))
    if lateral:
        for g in groups:
            edges.extend((u, v) for u in g for v in g if u != v)
    return edges
