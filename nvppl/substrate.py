"""The substrate graph: the networkx boundary of nvppl.

A :class:`Substrate` turns a ``networkx`` graph into the static arrays that every
other part of nvppl uses: nodes relabelled ``0..n-1`` in sorted order of their
original labels, and a padded table of candidate moves per node (``docs/design.rst``).
networkx is imported here and nowhere else in the numerical code.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

__all__ = ["Substrate", "label_to_json", "label_from_json"]


@dataclass(frozen=True, eq=False)
class Substrate:
    """A directed graph prepared for vesicle models.

    Vesicles at node ``i`` may move to the candidates ``C(i)``: the out-neighbours
    of ``i`` plus ``i`` itself when ``allow_stay`` (paper eq. 15: the migration
    kernel is zero off the graph). A node with no candidate is a *sink*: a
    vesicle there is removed when it next tries to move.

    Build one with :meth:`from_networkx`; the fields are read-only arrays.

    Attributes
    ----------
    labels : tuple
        Original node labels; node index ``i`` has label ``labels[i]``.
    candidates : ndarray of int64, shape (n, max_cand)
        Candidate node indices per node, sorted, padded with -1.
    n_candidates : ndarray of int64, shape (n,)
        Number of valid entries in each row of ``candidates``.
    allow_stay : bool
        Whether a vesicle may stay where it is.
    node_covariates : ndarray of float64, shape (n, p)
        Static per-node features taken from node attributes (``p`` may be 0).
    covariate_names : tuple of str
        Names of the node attributes in ``node_covariates``.
    edges : ndarray of int64, shape (m, 2)
        The graph's directed edges as node indices (self-loops included only if
        the graph has them), sorted.

    Examples
    --------
    >>> import networkx as nx
    >>> sub = Substrate.from_networkx(nx.path_graph(["a", "b", "c"]))
    >>> sub.labels
    ('a', 'b', 'c')
    >>> sub.candidates.tolist()
    [[0, 1, -1], [0, 1, 2], [1, 2, -1]]
    """

    labels: tuple
    candidates: np.ndarray
    n_candidates: np.ndarray
    allow_stay: bool
    node_covariates: np.ndarray
    covariate_names: tuple
    edges: np.ndarray

    # ------------------------------------------------------------------ build
    @classmethod
    def from_networkx(
        cls,
        G,
        allow_stay: bool = True,
        covariates: Sequence[str] | None = None,
    ) -> "Substrate":
        """Build a substrate from a ``networkx.DiGraph`` or ``Graph``.

        Parameters
        ----------
        G : networkx.DiGraph or networkx.Graph
            The graph. An undirected graph is taken as both directions. Multigraphs
            are refused (a vesicle move has no notion of parallel edges).
        allow_stay : bool, default True
            Include each node among its own candidates.
        covariates : sequence of str, optional
            Names of numeric node attributes to use as static covariates
            ``F[i, :]`` (the same at every step). Every node must carry every
            attribute as a finite real number.

        Returns
        -------
        Substrate

        Raises
        ------
        ValueError
            Empty graph, multigraph, labels that cannot be sorted, or a node
            attribute that cannot become a covariate (the message names the node
            and attribute).

        Examples
        --------
        >>> import networkx as nx
        >>> G = nx.DiGraph([(2, 1), (1, 0)])
        >>> sub = Substrate.from_networkx(G, allow_stay=False)
        >>> sub.labels, sub.sinks.tolist()
        ((0, 1, 2), [0])
        """
        import networkx as nx

        if not isinstance(G, (nx.Graph, nx.DiGraph)):
            raise TypeError(f"expected a networkx Graph or DiGraph, got {type(G).__name__}")
        if G.is_multigraph():
            raise ValueError(
                "multigraphs are not supported: convert with nx.DiGraph(G) "
                "(parallel edges carry no extra meaning for vesicle moves)"
            )
        if G.number_of_nodes() == 0:
            raise ValueError("the graph is empty: a substrate needs at least one node")
        try:
            labels = tuple(sorted(G.nodes))
        except TypeError as exc:
            kinds = sorted({type(x).__name__ for x in G.nodes})
            raise ValueError(
                f"node labels cannot be sorted ({exc}); labels have types {kinds}. "
                "Relabel the graph with labels of one comparable type."
            ) from None
        cand, n_cand, edges = _candidates(labels, G.edges(), G.is_directed(), allow_stay)
        n = len(labels)

        names = tuple(covariates or ())
        feats = np.zeros((n, len(names)), dtype=np.float64)
        for k, name in enumerate(names):
            for i, label in enumerate(labels):
                attrs = G.nodes[label]
                if name not in attrs:
                    raise ValueError(
                        f"node {label!r} has no attribute {name!r}; every node needs each "
                        f"covariate attribute {list(names)}"
                    )
                value = attrs[name]
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise ValueError(
                        f"node {label!r} attribute {name!r} = {value!r} cannot become a "
                        "covariate: it must be a real number"
                    )
                if not np.isfinite(float(value)):
                    raise ValueError(
                        f"node {label!r} attribute {name!r} = {value!r} cannot become a "
                        "covariate: it must be finite"
                    )
                feats[i, k] = float(value)
        return cls._create(labels, cand, n_cand, allow_stay, feats, names, edges)

    @classmethod
    def from_edges(cls, nodes, edges, allow_stay: bool = True) -> "Substrate":
        """Build a substrate from node labels and directed edges ``(a, b)``, without networkx.

        Examples
        --------
        >>> sub = Substrate.from_edges(["a", "b"], [("a", "b")])
        >>> sub.candidates.tolist()
        [[0, 1], [1, -1]]
        """
        nodes = list(nodes)
        if not nodes:
            raise ValueError("a substrate needs at least one node")
        if len(set(nodes)) != len(nodes):
            raise ValueError("node labels must be distinct")
        try:
            labels = tuple(sorted(nodes))
        except TypeError as exc:
            raise ValueError(f"node labels cannot be sorted ({exc})") from None
        known = set(labels)
        edges = list(edges)
        for a, b in edges:
            if a not in known or b not in known:
                raise ValueError(f"edge ({a!r}, {b!r}) names a node that is not in the node list")
        cand, n_cand, pairs = _candidates(labels, edges, True, allow_stay)
        return cls._create(labels, cand, n_cand, allow_stay, np.zeros((len(labels), 0)), (), pairs)

    @classmethod
    def _create(cls, labels, cand, n_cand, allow_stay, feats, names, edges):
        for arr in (cand, n_cand, feats, edges):
            arr.setflags(write=False)
        return cls(tuple(labels), cand, n_cand, bool(allow_stay), feats, tuple(names), edges)

    # ------------------------------------------------------------- properties
    @property
    def n_nodes(self) -> int:
        """Number of nodes ``n``."""
        return len(self.labels)

    @property
    def max_candidates(self) -> int:
        """Width of the candidate table (at least 1)."""
        return int(self.candidates.shape[1])

    @property
    def covariate_dim(self) -> int:
        """Number of static node covariates ``p``."""
        return int(self.node_covariates.shape[1])

    @property
    def is_sink(self) -> np.ndarray:
        """Boolean mask of sink nodes (no candidate move)."""
        return self.n_candidates == 0

    @property
    def sinks(self) -> np.ndarray:
        """Indices of sink nodes."""
        return np.flatnonzero(self.is_sink)

    @property
    def candidate_mask(self) -> np.ndarray:
        """Boolean ``(n, max_cand)`` mask of the valid candidate slots."""
        return self.candidates >= 0

    @property
    def label_array(self) -> np.ndarray:
        """Labels as a NumPy array: int64 or float64 when all labels are such
        numbers, otherwise an object array."""
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in self.labels):
            return np.array(self.labels, dtype=np.int64)
        out = np.empty(self.n_nodes, dtype=object)
        out[:] = list(self.labels)
        return out

    # ---------------------------------------------------------------- lookups
    def index_of(self, label: Hashable) -> int:
        """Node index of an original label.

        Raises
        ------
        KeyError
            If the label is not a node of the substrate.
        """
        try:
            return self._index[label]
        except (KeyError, TypeError):
            raise KeyError(f"node {label!r} is not in the graph") from None

    @property
    def _index(self) -> dict:
        cache = self.__dict__.get("_index_cache")
        if cache is None:
            cache = {label: i for i, label in enumerate(self.labels)}
            object.__setattr__(self, "_index_cache", cache)
        return cache

    def slot_of(self, node_from, node_to) -> np.ndarray:
        """Candidate slot of each move ``node_from -> node_to`` (indices), or -1
        where the move is not allowed. Vectorised over arrays.

        Examples
        --------
        >>> import networkx as nx
        >>> sub = Substrate.from_networkx(nx.DiGraph([(0, 1)]))
        >>> sub.slot_of([0, 0, 1], [1, 0, 0]).tolist()
        [1, 0, -1]
        """
        a = np.asarray(node_from, dtype=np.int64)
        b = np.asarray(node_to, dtype=np.int64)
        n, m = self.n_nodes, self.max_candidates
        ok = (a >= 0) & (a < n) & (b >= 0) & (b < n)
        a_safe, b_safe = np.where(ok, a, 0), np.where(ok, b, 0)
        rows = self.candidates[a_safe]  # (..., m)
        hit = rows == b_safe[..., None]
        slot = np.where(hit.any(-1), hit.argmax(-1), -1)
        return np.where(ok, slot, -1).astype(np.int64) if m else np.full(a.shape, -1)

    # ------------------------------------------------------------- comparison
    def same_as(self, other: "Substrate") -> bool:
        """True when both substrates have the same labels, candidates and stay rule."""
        return (
            isinstance(other, Substrate)
            and self.labels == other.labels
            and self.allow_stay == other.allow_stay
            and np.array_equal(self.candidates, other.candidates)
        )

    def to_networkx(self):
        """The substrate's graph as a ``networkx.DiGraph`` with the original labels
        (stay moves are not edges; self-loops of the original graph are)."""
        import networkx as nx

        G = nx.DiGraph()
        G.add_nodes_from(self.labels)
        for k, label in enumerate(self.labels):
            for name, value in zip(self.covariate_names, self.node_covariates[k]):
                G.nodes[label][name] = float(value)
        G.add_edges_from((self.labels[i], self.labels[j]) for i, j in self.edges)
        return G

    def layout(self, kind: str = "spring", seed: int = 0) -> np.ndarray:
        """Node positions for drawing the graph, in node-index order.

        The edges are taken as undirected; self-loops are ignored.

        Parameters
        ----------
        kind : {"spring", "kamada_kawai", "circular"}, default "spring"
            The networkx layout: ``spring_layout`` (force-directed, started from
            positions drawn with ``seed``), ``kamada_kawai_layout`` or
            ``circular_layout``. The last two do not use ``seed``.
        seed : int, default 0
            Random seed of the spring layout; the same seed gives the same
            positions.

        Returns
        -------
        ndarray of float64, shape (n, 2)
            Row ``i`` is the position of node index ``i``.

        Raises
        ------
        ValueError
            If ``kind`` is not one of the layouts above.

        Examples
        --------
        >>> import networkx as nx
        >>> sub = Substrate.from_networkx(nx.cycle_graph(4))
        >>> pos = sub.layout("circular")
        >>> pos.shape
        (4, 2)
        >>> bool((sub.layout(seed=1) == sub.layout(seed=1)).all())
        True
        """
        import networkx as nx

        kinds = ("spring", "kamada_kawai", "circular")
        if kind not in kinds:
            raise ValueError(f"unknown layout kind {kind!r}; choose one of {kinds}")
        G = nx.Graph()
        G.add_nodes_from(range(self.n_nodes))
        G.add_edges_from((int(i), int(j)) for i, j in self.edges if i != j)
        if kind == "spring":
            pos = nx.spring_layout(G, seed=seed)
        elif kind == "kamada_kawai":
            pos = nx.kamada_kawai_layout(G)
        else:
            pos = nx.circular_layout(G)
        return np.array([pos[i] for i in range(self.n_nodes)], dtype=np.float64).reshape(self.n_nodes, 2)

    # ---------------------------------------------------------- serialisation
    def to_json(self) -> str:
        """A JSON description (labels, edges, stay rule, covariates) that
        :meth:`from_json` turns back into an identical substrate.

        Raises
        ------
        ValueError
            If the labels are not JSON-representable (ints, floats, strings or
            tuples of those).
        """
        labels = [label_to_json(x) for x in self.labels]
        return json.dumps(
            {
                "labels": labels,
                "edges": self.edges.tolist(),
                "allow_stay": self.allow_stay,
                "covariate_names": list(self.covariate_names),
                "node_covariates": self.node_covariates.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "Substrate":
        """Inverse of :meth:`to_json`."""
        import networkx as nx

        spec = json.loads(text)
        labels = [label_from_json(x) for x in spec["labels"]]
        G = nx.DiGraph()
        G.add_nodes_from(labels)
        for label, row in zip(labels, spec["node_covariates"]):
            for name, value in zip(spec["covariate_names"], row):
                G.nodes[label][name] = value
        G.add_edges_from((labels[i], labels[j]) for i, j in spec["edges"])
        return cls.from_networkx(G, allow_stay=spec["allow_stay"], covariates=spec["covariate_names"])

    def __repr__(self) -> str:
        return (
            f"Substrate(n_nodes={self.n_nodes}, edges={len(self.edges)}, "
            f"allow_stay={self.allow_stay}, sinks={int(self.is_sink.sum())}, "
            f"covariates={list(self.covariate_names)})"
        )


def label_to_json(x):
    """A node label as JSON data (a tuple becomes ``{"tuple": [...]}``).

    Raises
    ------
    ValueError
        A label that is not an int, float, str or tuple of those.
    """
    if isinstance(x, tuple):
        return {"tuple": [label_to_json(y) for y in x]}
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"label {x!r} cannot be written to a file")
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, (int, float, str)):
        return x
    raise ValueError(
        f"node label {x!r} of type {type(x).__name__} cannot be written to a file; "
        "use int, float, str or tuple labels"
    )


def label_from_json(x):
    """Inverse of :func:`label_to_json`."""
    if isinstance(x, dict):
        return tuple(label_from_json(y) for y in x["tuple"])
    return x


def _candidates(labels, edge_pairs, directed: bool, allow_stay: bool):
    """Sorted candidate table, candidate counts and edge index pairs of a graph."""
    index = {label: i for i, label in enumerate(labels)}
    n = len(labels)
    out: list[set[int]] = [set() for _ in range(n)]
    edge_list = []
    for a, b in edge_pairs:
        i, j = index[a], index[b]
        out[i].add(j)
        edge_list.append((i, j))
        if not directed:
            out[j].add(i)
            if i != j:
                edge_list.append((j, i))
    if allow_stay:
        for i in range(n):
            out[i].add(i)
    n_cand = np.array([len(s) for s in out], dtype=np.int64)
    max_cand = max(int(n_cand.max()), 1)
    cand = np.full((n, max_cand), -1, dtype=np.int64)
    for i, s in enumerate(out):
        cand[i, : len(s)] = sorted(s)
    edges = np.array(sorted(set(edge_list)), dtype=np.int64).reshape(-1, 2)
    return cand, n_cand, edges
