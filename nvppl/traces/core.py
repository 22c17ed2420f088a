"""Fully observed vesicle traces (the trace format of ``docs/design.rst``).

A :class:`Traces` object holds independent runs of the vesicle process: a
vesicle table (one row per vesicle), a steps table (one row per vesicle per step
in which it moved) and the covariates. It is validated on construction; a bad
trace raises :class:`~nvppl.errors.TraceError` naming the run, vesicle and step.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .._validate import as_numpy_rng, first
from ..covariates import broadcast_covariates
from ..errors import TraceError
from ..substrate import Substrate
from . import checks as chk
from . import io
from .frames import parse_tables
from .observations import Observations

__all__ = ["Traces", "CAUSES", "lifetime_bin_edges"]

CAUSES = chk.CAUSES
_V_INT = ("run", "vesicle", "type", "birth_step", "death_step")


def lifetime_bin_edges(n_steps: int) -> np.ndarray:
    """Edges of the lifetime histogram used in posterior predictive checks.

    A vesicle's lifetime ``L`` is its number of steps rows (moves made); bin ``b``
    holds ``edges[b] <= L < edges[b + 1]``. The edges are 0, 1, 2, then roughly
    geometric up to ``n_steps + 1``.

    Examples
    --------
    >>> lifetime_bin_edges(10).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]
    """
    geo = np.round(np.geomspace(1, n_steps + 1, 12)).astype(np.int64)
    return np.unique(np.concatenate([[0, 1, 2], geo, [n_steps + 1]]))


class Traces:
    """Fully observed runs of the vesicle process.

    Build with :func:`nvppl.simulate`, :meth:`from_dataframes`, :meth:`from_csv`
    or :meth:`from_netcdf`.

    Attributes
    ----------
    substrate : Substrate
    n_steps, n_runs, n_types, content_dim : int
    vesicles : pandas.DataFrame
        ``run, vesicle, type, birth_step, birth_node, budget, death_step,
        death_cause`` plus ``content_0..`` and ``tau0`` where present; nodes in
        the original labels; ``budget`` is ``inf`` for an infinite budget.
        ``death_step`` is the step in which the vesicle was removed (for
        censored vesicles, the last step ``n_steps - 1``).
    steps : pandas.DataFrame
        ``run, vesicle, step, node_from, node_to, docked``: one row per vesicle per
        step in which it moved (a vesicle removed at a sink has no row for that step).
    covariates : ndarray, shape (n_runs, n_steps, n_nodes, d_x)
        The design ``X = (1, F)``.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.path_graph(3))
    >>> model = nv.VesicleModel(sub, n_types=1)
    >>> traces = nv.simulate(model, model.default_params(), n_steps=20, n_runs=2, key=0)
    >>> list(traces.steps.columns)
    ['run', 'vesicle', 'step', 'node_from', 'node_to', 'docked']
    """

    def __init__(self, substrate: Substrate, n_steps: int, n_runs: int, n_types: int,
                 vesicles: Mapping, steps: Mapping, features: np.ndarray | None = None,
                 *, validate: bool = True):
        """Low-level constructor from index-based arrays (see :meth:`from_dataframes`
        for the public one). ``vesicles`` and ``steps`` must be grouped by vesicle."""
        self.substrate = substrate
        self.n_steps, self.n_runs, self.n_types = int(n_steps), int(n_runs), int(n_types)
        if self.n_steps < 1 or self.n_runs < 1 or self.n_types < 1:
            raise TraceError(f"n_steps, n_runs and n_types must be >= 1, got "
                             f"{self.n_steps}, {self.n_runs}, {self.n_types}")
        v = {k: np.asarray(vesicles[k], dtype=np.int64) for k in _V_INT + ("birth_node",)}
        v["death_cause"] = np.asarray(vesicles["death_cause"], dtype=np.int64)
        v["budget"] = np.asarray(vesicles["budget"], dtype=np.float64)
        content = vesicles.get("content")
        content = np.zeros((len(v["run"]), 0)) if content is None else np.asarray(content, dtype=np.float64)
        if content.ndim != 2 or content.shape[0] != len(v["run"]):
            raise TraceError(f"content must have one row per vesicle, got shape {content.shape}")
        v["content"] = content
        tau0 = vesicles.get("tau0")
        v["tau0"] = None if tau0 is None else np.asarray(tau0, dtype=np.float64)
        s = {k: np.asarray(steps[k], dtype=np.int64) for k in ("vrow", "step", "node_from", "node_to")}
        s["docked"] = np.asarray(steps["docked"])
        if features is not None and np.shape(features)[-1] == 0:
            features = None  # no covariates
        self._features = None if features is None else \
            broadcast_covariates(features, self.n_runs, self.n_steps, substrate)
        if validate:
            chk.check_indices(v, s, substrate.n_nodes)
            chk.check_vesicles(v, self.n_runs, self.n_steps, self.n_types)
            i = first(np.diff(s["vrow"]) < 0) if len(s["vrow"]) else None
            if i is not None:
                raise TraceError("internal: steps must be grouped by vesicle")
            chk.check_steps(v, s, substrate, self.n_steps)
        elif "slot" in steps:  # trusted producer (the compiled core) knows the slots
            s["slot"] = np.asarray(steps["slot"], dtype=np.int64)
        else:
            s["slot"] = substrate.slot_of(s["node_from"], s["node_to"])
        s["docked"] = s["docked"].astype(bool, copy=False)
        self._v, self._s = v, s

    # ---------------------------------------------------------------- basics
    @property
    def content_dim(self) -> int:
        """Content dimension ``d_c``."""
        return int(self._v["content"].shape[1])

    @property
    def n_vesicle_steps(self) -> int:
        """Number of vesicle-steps over all runs (``len(self.steps)``, without building the table)."""
        return len(self._s["step"])

    @property
    def n_vesicles(self) -> int:
        """Number of vesicles over all runs."""
        return len(self._v["run"])

    @property
    def features(self) -> np.ndarray | None:
        """User covariates ``F`` (``n_runs × n_steps × n × p``) or ``None``."""
        return self._features

    @property
    def covariate_dim(self) -> int:
        """``p``: number of user covariates (0 when there are none)."""
        return 0 if self._features is None else int(self._features.shape[-1])

    @property
    def covariates(self) -> np.ndarray:
        """Design ``X = (1, F)`` of shape ``(n_runs, n_steps, n, 1 + p)``."""
        shape = (self.n_runs, self.n_steps, self.substrate.n_nodes)
        ones = np.ones(shape + (1,))
        return ones if self._features is None else np.concatenate([ones, self._features], -1)

    def __len__(self) -> int:
        return len(self._s["step"])

    def __repr__(self) -> str:
        return (f"Traces(n_runs={self.n_runs}, n_steps={self.n_steps}, n_types={self.n_types}, "
                f"vesicles={self.n_vesicles}, vesicle_steps={len(self)}, content_dim={self.content_dim}, "
                f"covariate_dim={self.covariate_dim})")

    # ------------------------------------------------------------ DataFrames
    @property
    def vesicles(self) -> pd.DataFrame:
        """The vesicle table as a DataFrame (see the class docstring)."""
        v, labels = self._v, self.substrate.label_array
        data = {k: v[k] for k in ("run", "vesicle", "type", "birth_step")}
        data["birth_node"] = labels[v["birth_node"]]
        data["budget"] = v["budget"]
        data["death_step"] = v["death_step"]
        data["death_cause"] = np.array(CAUSES, dtype=object)[v["death_cause"]]
        for j in range(self.content_dim):
            data[f"content_{j}"] = v["content"][:, j]
        if v["tau0"] is not None:
            data["tau0"] = v["tau0"]
        return pd.DataFrame(data)

    @property
    def steps(self) -> pd.DataFrame:
        """The steps table as a DataFrame (see the class docstring)."""
        s, v, labels = self._s, self._v, self.substrate.label_array
        return pd.DataFrame({
            "run": v["run"][s["vrow"]], "vesicle": v["vesicle"][s["vrow"]], "step": s["step"],
            "node_from": labels[s["node_from"]], "node_to": labels[s["node_to"]], "docked": s["docked"],
        })

    @classmethod
    def from_dataframes(cls, vesicles: pd.DataFrame, steps: pd.DataFrame, substrate: Substrate,
                        n_steps: int, covariates=None, *, n_runs: int | None = None,
                        n_types: int | None = None) -> "Traces":
        """Build and validate traces from a vesicle table and a steps table.

        Parameters
        ----------
        vesicles : DataFrame
            Columns ``run, vesicle, type, birth_step, birth_node, budget,
            death_step, death_cause``, optional ``content_0..content_{d-1}`` and
            ``tau0`` (NaN where unknown). Nodes in the substrate's original labels.
        steps : DataFrame
            Columns ``run, vesicle, step, node_from, node_to, docked``; rows of one
            vesicle in increasing step order.
        substrate : Substrate
        n_steps : int
            Length ``T`` of every run.
        covariates : array, optional
            User covariates ``F`` without intercept: ``(n_runs, T, n, p)``,
            ``(T, n, p)`` (the same for every run) or ``(n, p)`` (static).
        n_runs : int, optional
            Number of runs (default: from ``covariates`` or the largest run + 1).
        n_types : int, optional
            Number of types (default: the largest type + 1); larger types are rejected.

        Raises
        ------
        TraceError
            Naming the run, vesicle and step of the first inconsistency: a node
            not in the graph, a move along a missing edge, steps out of order or
            missing, a dead vesicle that moves, NaN content, negative steps,
            unknown types or causes, a budget that does not match the docks, and
            unexpected or missing columns.

        Examples
        --------
        >>> import networkx as nx, pandas as pd, nvppl as nv
        >>> sub = nv.Substrate.from_networkx(nx.path_graph(["a", "b"]))
        >>> ves = pd.DataFrame(dict(run=[0], vesicle=[0], type=[0], birth_step=[0], birth_node=["a"],
        ...                         budget=[float("inf")], death_step=[1], death_cause=["expired"]))
        >>> st = pd.DataFrame(dict(run=[0, 0], vesicle=[0, 0], step=[0, 1], node_from=["a", "b"],
        ...                        node_to=["b", "a"], docked=[False, True]))
        >>> nv.Traces.from_dataframes(ves, st, sub, n_steps=3)
        Traces(n_runs=1, n_steps=3, n_types=1, vesicles=1, vesicle_steps=2, content_dim=0, covariate_dim=0)
        >>> st.loc[1, "node_to"] = "z"
        >>> nv.Traces.from_dataframes(ves, st, sub, n_steps=3)
        Traceback (most recent call last):
        ...
        nvppl.errors.TraceError: run 0, vesicle 0, step 1: node 'z' is not in the graph
        """
        v, s, n_runs, n_types, features = parse_tables(vesicles, steps, substrate, n_steps, covariates,
                                                       n_runs=n_runs, n_types=n_types)
        return cls(substrate, n_steps, n_runs, n_types, v, s, features)

    # --------------------------------------------------------------- merging
    def merge(self, other: "Traces") -> "Traces":
        """Concatenate the runs of two trace sets (``other``'s runs come after ``self``'s).

        Raises
        ------
        TraceError
            If the substrates, numbers of steps, content dimensions or covariate
            layouts differ.
        """
        if not isinstance(other, Traces):
            raise TypeError(f"can only merge Traces, got {type(other).__name__}")
        if not self.substrate.same_as(other.substrate):
            raise TraceError("cannot merge traces on different substrates")
        for name in ("n_steps", "content_dim", "covariate_dim"):
            if getattr(self, name) != getattr(other, name):
                raise TraceError(f"cannot merge traces with different {name}: "
                                 f"{getattr(self, name)} and {getattr(other, name)}")
        if (self._v["tau0"] is None) != (other._v["tau0"] is None):
            raise TraceError("cannot merge traces where only one records tau0")
        v = {}
        for k in self._v:
            a, b = self._v[k], other._v[k]
            v[k] = None if a is None else np.concatenate([a, b])
        v["run"][self.n_vesicles:] += self.n_runs
        s = {k: np.concatenate([self._s[k], other._s[k]]) for k in ("vrow", "step", "node_from", "node_to", "docked")}
        s["vrow"][len(self):] += self.n_vesicles
        feats = None if self._features is None else np.concatenate([self._features, other._features])
        return Traces(self.substrate, self.n_steps, self.n_runs + other.n_runs,
                      max(self.n_types, other.n_types), v, s, feats)

    # ---------------------------------------------------------- observations
    def counts(self) -> np.ndarray:
        """True counts ``y[run, t, node, type]`` of vesicles present after step ``t``."""
        s, v = self._s, self._v
        vr = s["vrow"]
        present = (s["step"] != v["death_step"][vr]) | (v["death_cause"][vr] == chk.CENSORED)
        return self._cell_sum(vr, s["step"], s["node_to"], present)

    def dock_counts(self) -> np.ndarray:
        """True dock counts ``D[run, t, node, type]`` at step ``t``."""
        s = self._s
        return self._cell_sum(s["vrow"], s["step"], s["node_to"], s["docked"])

    def _cell_sum(self, vr, step, node, weight):
        v = self._v
        R, T, n, K = self.n_runs, self.n_steps, self.substrate.n_nodes, self.n_types
        flat = ((v["run"][vr] * T + step) * n + node) * K + v["type"][vr]
        return np.bincount(flat, weights=np.asarray(weight, float), minlength=R * T * n * K) \
            .astype(np.int64).reshape(R, T, n, K)

    def observe(self, counts: bool = True, docks: bool = False, detection: str = "exact",
                p_det: float | None = None, key=0, floor: float = 0.1) -> Observations:
        """Derive partial observations (:class:`~nvppl.Observations`) from these traces.

        Parameters
        ----------
        counts, docks : bool
            Observe the counts present after each step and/or the dock counts.
        detection : {"exact", "binomial", "poisson"}
            ``"exact"``: true counts; ``"binomial"``: each vesicle (or dock) is seen
            with probability ``p_det``; ``"poisson"``: ``Poisson(true + floor)``.
        p_det : float, optional
            Detection probability for ``"binomial"``.
        key : int or jax key
            Seed of the detection noise.
        floor : float
            Rate floor of the Poisson detection model.

        Returns
        -------
        Observations
        """
        if not (counts or docks):
            raise ValueError("observe at least one of counts=True or docks=True")
        if detection == "binomial" and p_det is None:
            raise ValueError("binomial detection needs p_det (the probability of seeing a vesicle)")
        Observations.check_detection(detection, p_det, floor)
        rng = as_numpy_rng(key)

        def detect(true):
            if detection == "exact":
                return true
            if detection == "binomial":
                return rng.binomial(true, p_det)
            return rng.poisson(true + floor)

        y = detect(self.counts()) if counts else None
        d = detect(self.dock_counts()) if docks else None
        return Observations(counts=y, docks=d, detection=detection, p_det=p_det, floor=floor)

    # ------------------------------------------------------ summary statistics
    def summary_statistics(self, n_types: int | None = None) -> dict:
        """Posterior predictive summary statistics of these traces.

        Parameters
        ----------
        n_types : int, optional
            Number of types to report (default: the traces'); a model may have
            types that never occur in the data.

        Returns
        -------
        dict of ndarray
            ``occupancy (K, n)``: mean number of vesicles present after a step, per
            type and node, averaged over runs and steps; ``dock_rate (K, n)``: mean
            docks per step; ``lifetime_hist (K, B)``: fraction of each type's
            vesicles whose number of moves falls in each bin of
            :func:`lifetime_bin_edges` (zeros for a type without vesicles);
            ``path_length (K,)``: mean number of moves to another node per
            vesicle (0 for a type without vesicles).
        """
        v, s = self._v, self._s
        K, n = max(self.n_types, n_types or 0), self.substrate.n_nodes
        denom = self.n_runs * self.n_steps
        occ = np.zeros((K, n))
        docks = np.zeros((K, n))
        occ[: self.n_types] = self.counts().sum((0, 1)).T / denom
        docks[: self.n_types] = self.dock_counts().sum((0, 1)).T / denom
        moves = np.bincount(s["vrow"], minlength=self.n_vesicles)
        away = np.bincount(s["vrow"], weights=(s["node_from"] != s["node_to"]).astype(float),
                           minlength=self.n_vesicles)
        edges = lifetime_bin_edges(self.n_steps)
        b = np.searchsorted(edges, moves, side="right") - 1
        nb = len(edges) - 1
        hist = np.bincount(v["type"] * nb + b, minlength=K * nb).reshape(K, nb).astype(float)
        per_type = np.bincount(v["type"], minlength=K).astype(float)
        safe = np.maximum(per_type, 1.0)
        return {
            "occupancy": occ, "dock_rate": docks, "lifetime_hist": hist / safe[:, None],
            "path_length": np.bincount(v["type"], weights=away, minlength=K) / safe,
        }

    # -------------------------------------------------------------------- I/O
    def _meta(self) -> dict:
        return {"n_steps": self.n_steps, "n_runs": self.n_runs, "n_types": self.n_types}

    def to_netcdf(self, path) -> None:
        """Write to a NetCDF file (through xarray); :meth:`from_netcdf` reads it back.

        The write is atomic: if it fails (a full disk, a file-size limit), a file
        already at ``path`` is left as it was."""
        io.write_netcdf(path, self._v, self._s, self._features, self.substrate, self._meta())

    @classmethod
    def from_netcdf(cls, path, substrate: Substrate) -> "Traces":
        """Read traces written by :meth:`to_netcdf`, validating them against ``substrate``."""
        meta, v, s, features = io.read_netcdf(path, substrate)
        return cls(substrate, meta["n_steps"], meta["n_runs"], meta["n_types"], v, s, features)

    def to_csv(self, directory) -> None:
        """Write ``vesicles.csv``, ``steps.csv``, ``covariates.csv`` (if any) and
        ``meta.json`` into ``directory`` (each file atomically); :meth:`from_csv`
        reads them back."""
        io.write_csv(directory, self.vesicles, self.steps, self._features, self.substrate, self._meta())

    @classmethod
    def from_csv(cls, directory, substrate: Substrate) -> "Traces":
        """Read traces written by :meth:`to_csv` (node labels matched by their text)."""
        meta, vesicles, steps, features = io.read_csv(directory, substrate)
        return cls.from_dataframes(vesicles, steps, substrate, meta["n_steps"], features,
                                   n_runs=meta["n_runs"], n_types=meta["n_types"])
