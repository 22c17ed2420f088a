"""Fully observed vesicle traces (DESIGN §2.1).

A :class:`Traces` object holds independent runs of the vesicle process: a
vesicle table (one row per vesicle), a steps table (one row per vesicle per step
in which it moved) and the covariates. It is validated on construction; a bad
trace raises :class:`~nvppl.errors.TraceError` naming the run, vesicle and step.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from . import _trace_checks as chk
from ._keys import as_numpy_rng
from .errors import TraceError
from .observations import Observations
from .substrate import Substrate

__all__ = ["Traces", "CAUSES", "lifetime_bin_edges", "broadcast_covariates"]

CAUSES = chk.CAUSES
_V_INT = ("run", "vesicle", "type", "birth_step", "death_step")
_S_COLS = ("run", "vesicle", "step", "node_from", "node_to", "docked")


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
            _check_indices(v, s, substrate.n_nodes)
            chk.check_vesicles(v, self.n_runs, self.n_steps, self.n_types)
            i = chk.first(np.diff(s["vrow"]) < 0) if len(s["vrow"]) else None
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
        if not isinstance(vesicles, pd.DataFrame) or not isinstance(steps, pd.DataFrame):
            raise TypeError("vesicles and steps must be pandas DataFrames")
        n_steps = int(n_steps)
        base = ["run", "vesicle", "type", "birth_step", "birth_node", "budget", "death_step", "death_cause"]
        missing = [c for c in base if c not in vesicles.columns]
        if missing:
            raise TraceError(f"vesicle table lacks column(s) {missing}")
        content_cols = sorted((c for c in vesicles.columns if str(c).startswith("content_")),
                              key=lambda c: _content_index(c))
        d_c = len(content_cols)
        if [str(c) for c in content_cols] != [f"content_{j}" for j in range(d_c)]:
            raise TraceError(f"content columns must be content_0..content_{d_c - 1}, got {content_cols}")
        extra = [c for c in vesicles.columns if c not in base and c not in content_cols and c != "tau0"]
        if extra:
            raise TraceError(f"vesicle table has unexpected column(s) {extra}")
        missing = [c for c in _S_COLS if c not in steps.columns]
        if missing:
            raise TraceError(f"steps table lacks column(s) {missing}")
        extra = [c for c in steps.columns if c not in _S_COLS]
        if extra:
            raise TraceError(f"steps table has unexpected column(s) {extra}")

        vruns = vesicles["run"].to_numpy()
        vids = vesicles["vesicle"].to_numpy()

        def vid_ids(i, step=None):
            return {"run": _item(vruns[i]), "vesicle": _item(vids[i]), "step": step}

        v = {}
        for col in _V_INT:
            v[col] = chk.check_integral(vesicles[col].to_numpy(), col, vid_ids)
        v["birth_node"] = _node_index(substrate, vesicles["birth_node"].to_numpy(), "birth_node",
                                      lambda i: vid_ids(i, _item(v["birth_step"][i])))
        v["budget"] = _float_column(vesicles["budget"].to_numpy(), "budget", vid_ids)
        causes = vesicles["death_cause"].to_numpy()
        code = pd.Index(CAUSES).get_indexer(pd.Series(causes, dtype=object).astype(str).to_numpy())
        i = chk.first(code < 0)
        if i is not None:
            raise TraceError(f"unknown death cause {chk.show(causes[i])}; causes are {list(CAUSES)}",
                             **vid_ids(i, _item(v["death_step"][i])))
        v["death_cause"] = code
        def birth_ids(i):
            return vid_ids(i, _item(v["birth_step"][i]))

        v["content"] = np.column_stack([_float_column(vesicles[c].to_numpy(), c, birth_ids) for c in content_cols]) \
            if d_c else np.zeros((len(vesicles), 0))
        v["tau0"] = _float_column(vesicles["tau0"].to_numpy(), "tau0", birth_ids, allow_nan=True) \
            if "tau0" in vesicles.columns else None

        if n_types is None:
            n_types = int(v["type"].max(initial=-1)) + 1 if len(vesicles) else 1
            i = chk.first(v["type"] < 0)
            if i is not None:
                raise TraceError(f"unknown type {v['type'][i]}; types are 0, 1, ...",
                                 **vid_ids(i, _item(v["birth_step"][i])))
            n_types = max(n_types, 1)
        if n_runs is None:
            n_runs = np.shape(covariates)[0] if np.ndim(covariates) == 4 else \
                (int(v["run"].max(initial=-1)) + 1 or 1)
        features = None if covariates is None else broadcast_covariates(covariates, n_runs, n_steps, substrate)
        chk.check_vesicles(v, n_runs, n_steps, n_types)
        order = np.lexsort((v["vesicle"], v["run"]))
        v = {k: (None if a is None else a[order]) for k, a in v.items()}

        sruns = steps["run"].to_numpy()
        svids = steps["vesicle"].to_numpy()
        sstep = steps["step"].to_numpy()

        def step_ids(i):
            return {"run": _item(sruns[i]), "vesicle": _item(svids[i]), "step": _item(sstep[i])}

        s_run = chk.check_integral(sruns, "run", step_ids, "steps table")
        s_vid = chk.check_integral(svids, "vesicle", step_ids, "steps table")
        s_step = chk.check_integral(sstep, "step", step_ids, "steps table")
        i = chk.first((s_run < 0) | (s_run >= n_runs) | (s_vid < 0))
        if i is not None:
            raise TraceError("step row for a vesicle that is not in the vesicle table", **step_ids(i))
        s = {"step": s_step}
        s["node_from"] = _node_index(substrate, steps["node_from"].to_numpy(), "node_from", step_ids)
        s["node_to"] = _node_index(substrate, steps["node_to"].to_numpy(), "node_to", step_ids)
        s["docked"] = chk.check_integral(steps["docked"].to_numpy(), "docked", step_ids, "steps table")
        # locate each row's vesicle
        width = int(max(v["vesicle"].max(initial=0), s_vid.max(initial=0))) + 1
        vkey = v["run"] * width + v["vesicle"]
        skey = s_run * width + s_vid
        pos = np.searchsorted(vkey, skey)
        found = (pos < len(vkey)) & (vkey[np.minimum(pos, max(len(vkey) - 1, 0))] == skey) if len(vkey) \
            else np.zeros(len(skey), bool)
        i = chk.first(~found)
        if i is not None:
            raise TraceError("step row for a vesicle that is not in the vesicle table", **step_ids(i))
        s["vrow"] = pos
        group = np.argsort(pos, kind="stable")  # group by vesicle, keep row order within a vesicle
        s = {k: a[group] for k, a in s.items()}
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
        """Derive partial observations (DESIGN §2.2) from these traces.

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
    def to_netcdf(self, path) -> None:
        """Write to a NetCDF file (through xarray); :meth:`from_netcdf` reads it back."""
        from ._trace_io import to_netcdf

        to_netcdf(self, path)

    @classmethod
    def from_netcdf(cls, path, substrate: Substrate) -> "Traces":
        """Read traces written by :meth:`to_netcdf`, validating them against ``substrate``."""
        from ._trace_io import from_netcdf

        return from_netcdf(path, substrate)

    def to_csv(self, directory) -> None:
        """Write ``vesicles.csv``, ``steps.csv``, ``covariates.csv`` (if any) and
        ``meta.json`` into ``directory``; :meth:`from_csv` reads them back."""
        from ._trace_io import to_csv

        to_csv(self, directory)

    @classmethod
    def from_csv(cls, directory, substrate: Substrate) -> "Traces":
        """Read traces written by :meth:`to_csv` (node labels matched by their text)."""
        from ._trace_io import from_csv

        return from_csv(directory, substrate)


# ---------------------------------------------------------------- helpers
def _item(x):
    return x.item() if hasattr(x, "item") else x


def _content_index(c):
    try:
        return int(str(c).split("_", 1)[1])
    except ValueError:
        return -1


def _float_column(values, name, ids, allow_nan=False):
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(k for k, x in enumerate(values) if not _is_float(x))
        raise TraceError(f"column {name!r} holds {chk.show(values[bad])}, not a number", **ids(bad)) from None
    if not allow_nan and name.startswith("content_"):
        i = chk.first(~np.isfinite(arr))
        if i is not None:
            raise TraceError(f"{name} is {chk.show(arr[i])}; content must be finite (NaN content is not allowed)", **ids(i))
    elif not allow_nan:
        i = chk.first(np.isnan(arr))
        if i is not None:
            raise TraceError(f"column {name!r} is NaN", **ids(i))
    return arr


def _is_float(x):
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _node_index(sub: Substrate, values, name, ids):
    values = np.asarray(values)
    labels = sub.label_array
    if values.dtype.kind in "iu" and labels.dtype.kind == "i":
        idx = pd.Index(labels).get_indexer(values)
    else:
        index = pd.Index(list(sub.labels), dtype=object, tupleize_cols=False)
        obj = np.empty(len(values), dtype=object)
        obj[:] = list(values)
        try:
            idx = index.get_indexer(obj)
        except TypeError:
            idx = np.array([sub._index.get(x, -1) if _hashable(x) else -1 for x in obj], dtype=np.int64)
    i = chk.first(idx < 0)
    if i is not None:
        raise TraceError(f"node {chk.show(values[i])} is not in the graph", **ids(i))
    return idx.astype(np.int64)


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _check_indices(v, s, n):
    """Range checks on index-based columns (files written by other tools may be corrupt)."""
    for table, cols in ((v, ("birth_node",)), (s, ("node_from", "node_to"))):
        for c in cols:
            i = chk.first((table[c] < 0) | (table[c] >= n))
            if i is not None:
                raise TraceError(f"{c} index {table[c][i]} is not a node of the graph ({n} nodes)")
    i = chk.first((s["vrow"] < 0) | (s["vrow"] >= len(v["run"])))
    if i is not None:
        raise TraceError(f"step row {i} refers to vesicle row {s['vrow'][i]}, which does not exist")
    i = chk.first((v["death_cause"] < 0) | (v["death_cause"] >= len(CAUSES)))
    if i is not None:
        raise TraceError(f"unknown death-cause code {v['death_cause'][i]}",
                         run=int(v["run"][i]), vesicle=int(v["vesicle"][i]))


def broadcast_covariates(covariates, n_runs: int, n_steps: int, substrate: Substrate) -> np.ndarray:
    """User covariates ``F`` as a read-only ``(n_runs, n_steps, n, p)`` array.

    ``covariates`` may be ``(n, p)`` (static), ``(n_steps, n, p)`` (shared by the
    runs) or ``(n_runs, n_steps, n, p)``.

    Raises
    ------
    TraceError
        On another shape, or a non-finite entry (naming run, step, covariate and node).
    """
    F = np.asarray(covariates, dtype=np.float64)
    n = substrate.n_nodes
    p = F.shape[-1] if F.ndim else 0
    shapes = {2: (n, p), 3: (n_steps, n, p), 4: (n_runs, n_steps, n, p)}
    if F.ndim not in shapes or F.shape != shapes[F.ndim]:
        raise TraceError(f"covariates must have shape (n_runs={n_runs}, {n_steps}, {n}, p), ({n_steps}, {n}, p) "
                         f"or ({n}, p); got {F.shape}")
    F = np.broadcast_to(F, shapes[4])
    bad = np.argwhere(~np.isfinite(F))
    if len(bad):
        r, s, i, j = bad[0]
        raise TraceError(f"covariate {j} at node {substrate.labels[i]!r} is {chk.show(F[r, s, i, j])}; "
                         "covariates are not finite there", run=int(r), step=int(s))
    out = np.ascontiguousarray(F)
    out.setflags(write=False)
    return out
