"""Vesicle and steps tables (pandas DataFrames) to the index arrays of :class:`~nvppl.traces.Traces`.

Nodes are matched by their original labels; every column is checked for its
kind (integers, numbers, finite content) before the tables are checked against
each other (:mod:`nvppl.traces.checks`). Errors name the run, vesicle and step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validate import first, show
from ..covariates import broadcast_covariates
from ..errors import TraceError
from . import checks as chk

__all__ = ["parse_tables", "VESICLE_COLUMNS", "STEP_COLUMNS"]

#: Columns of the vesicle table (content and tau0 columns may follow).
VESICLE_COLUMNS = ("run", "vesicle", "type", "birth_step", "birth_node", "budget", "death_step", "death_cause")
#: Columns of the steps table.
STEP_COLUMNS = ("run", "vesicle", "step", "node_from", "node_to", "docked")
_V_INT = ("run", "vesicle", "type", "birth_step", "death_step")


def parse_tables(vesicles, steps, substrate, n_steps, covariates=None, *, n_runs=None, n_types=None):
    """Index arrays ``(v, s, n_runs, n_types, features)`` of a vesicle table and a
    steps table; see :meth:`Traces.from_dataframes <nvppl.traces.Traces.from_dataframes>`.

    Raises
    ------
    TraceError
        Naming the run, vesicle and step of the first inconsistency.
    """
    if not isinstance(vesicles, pd.DataFrame) or not isinstance(steps, pd.DataFrame):
        raise TypeError("vesicles and steps must be pandas DataFrames")
    n_steps = int(n_steps)
    base = list(VESICLE_COLUMNS)
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
    missing = [c for c in STEP_COLUMNS if c not in steps.columns]
    if missing:
        raise TraceError(f"steps table lacks column(s) {missing}")
    extra = [c for c in steps.columns if c not in STEP_COLUMNS]
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
    code = pd.Index(chk.CAUSES).get_indexer(pd.Series(causes, dtype=object).astype(str).to_numpy())
    i = first(code < 0)
    if i is not None:
        raise TraceError(f"unknown death cause {show(causes[i])}; causes are {list(chk.CAUSES)}",
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
        i = first(v["type"] < 0)
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
    i = first((s_run < 0) | (s_run >= n_runs) | (s_vid < 0))
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
    i = first(~found)
    if i is not None:
        raise TraceError("step row for a vesicle that is not in the vesicle table", **step_ids(i))
    s["vrow"] = pos
    group = np.argsort(pos, kind="stable")  # group by vesicle, keep row order within a vesicle
    s = {k: a[group] for k, a in s.items()}
    return v, s, n_runs, n_types, features


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
        raise TraceError(f"column {name!r} holds {show(values[bad])}, not a number", **ids(bad)) from None
    if not allow_nan and name.startswith("content_"):
        i = first(~np.isfinite(arr))
        if i is not None:
            raise TraceError(f"{name} is {show(arr[i])}; content must be finite (NaN content is not allowed)", **ids(i))
    elif not allow_nan:
        i = first(np.isnan(arr))
        if i is not None:
            raise TraceError(f"column {name!r} is NaN", **ids(i))
    return arr


def _is_float(x):
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _node_index(sub, values, name, ids):
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
    i = first(idx < 0)
    if i is not None:
        raise TraceError(f"node {show(values[i])} is not in the graph", **ids(i))
    return idx.astype(np.int64)


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False
