"""Reading and writing traces: NetCDF (through xarray) and CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .errors import TraceError
from .substrate import Substrate
from .traces import CAUSES, Traces

FORMAT = "nvppl-traces-1"


def _label_key(x) -> str:
    """Text that identifies a label with its type (10 and "10" differ)."""
    from .substrate import _label_to_json

    try:
        return json.dumps(_label_to_json(x))
    except ValueError:
        return repr(x)


def _graph_fingerprint(sub: Substrate) -> dict:
    return {"labels": [_label_key(x) for x in sub.labels], "candidates": sub.candidates.tolist(),
            "allow_stay": sub.allow_stay}


def _check_substrate(meta: dict, sub: Substrate, path) -> None:
    labels = [_label_key(x) for x in sub.labels]
    if meta["labels"] != labels:
        raise TraceError(f"{path}: the traces were written on a graph with nodes {meta['labels'][:8]}... "
                         f"({len(meta['labels'])} nodes), not this substrate's {labels[:8]}... ({len(labels)})")
    if meta["allow_stay"] != sub.allow_stay or meta["candidates"] != sub.candidates.tolist():
        raise TraceError(f"{path}: the traces were written on a graph with other edges or another stay rule "
                         "than this substrate's")


def to_netcdf(traces: Traces, path) -> None:
    v, s = traces._v, traces._s
    data = {
        "v_run": ("vesicle", v["run"]), "v_vesicle": ("vesicle", v["vesicle"]), "v_type": ("vesicle", v["type"]),
        "v_birth_step": ("vesicle", v["birth_step"]), "v_birth_node": ("vesicle", v["birth_node"]),
        "v_budget": ("vesicle", v["budget"]), "v_death_step": ("vesicle", v["death_step"]),
        "v_death_cause": ("vesicle", v["death_cause"].astype(np.int8)),
        "v_content": (("vesicle", "content"), v["content"]),
        "s_vrow": ("row", s["vrow"]), "s_step": ("row", s["step"]), "s_node_from": ("row", s["node_from"]),
        "s_node_to": ("row", s["node_to"]), "s_docked": ("row", s["docked"].astype(np.int8)),
        "node_label": ("node", np.array([str(x) for x in traces.substrate.labels], dtype=object)),
    }
    if v["tau0"] is not None:
        data["v_tau0"] = ("vesicle", v["tau0"])
    if traces.features is not None:
        data["features"] = (("run", "time", "node", "feature"), np.asarray(traces.features))
    ds = xr.Dataset(data, attrs={
        "format": FORMAT, "n_steps": traces.n_steps, "n_runs": traces.n_runs, "n_types": traces.n_types,
        "death_causes": json.dumps(list(CAUSES)), "graph": json.dumps(_graph_fingerprint(traces.substrate)),
        "description": "nvppl vesicle traces; node columns hold node indices, node_label their labels",
    })
    ds.to_netcdf(path, engine="h5netcdf")


def from_netcdf(path, sub: Substrate) -> Traces:
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        ds = ds.load()
    if ds.attrs.get("format") != FORMAT:
        raise TraceError(f"{path} is not an nvppl traces file (format {ds.attrs.get('format')!r})")
    _check_substrate(json.loads(ds.attrs["graph"]), sub, path)
    if json.loads(ds.attrs["death_causes"]) != list(CAUSES):
        raise TraceError(f"{path} uses unknown death-cause codes {ds.attrs['death_causes']}")
    g = lambda name: ds[name].values  # noqa: E731
    v = {k: g("v_" + k) for k in ("run", "vesicle", "type", "birth_step", "birth_node", "budget",
                                   "death_step", "death_cause", "content")}
    v["tau0"] = g("v_tau0") if "v_tau0" in ds else None
    s = {k: g("s_" + k) for k in ("vrow", "step", "node_from", "node_to", "docked")}
    features = g("features") if "features" in ds else None
    return Traces(sub, int(ds.attrs["n_steps"]), int(ds.attrs["n_runs"]), int(ds.attrs["n_types"]),
                  v, s, features)


def to_csv(traces: Traces, directory) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    labels = [str(x) for x in traces.substrate.labels]
    if len(set(labels)) != len(labels):
        raise ValueError("node labels are not distinct as text, so they cannot be written to CSV")
    ves, steps = traces.vesicles, traces.steps
    for df, cols in ((ves, ["birth_node"]), (steps, ["node_from", "node_to"])):
        for c in cols:
            df[c] = [str(x) for x in df[c]]
    ves.to_csv(out / "vesicles.csv", index=False)
    steps.to_csv(out / "steps.csv", index=False)
    if traces.features is not None:
        F = traces.features
        R, T, n, p = F.shape
        r, t, i = np.meshgrid(np.arange(R), np.arange(T), np.arange(n), indexing="ij")
        cov = pd.DataFrame({"run": r.ravel(), "step": t.ravel(),
                            "node": np.array(labels, dtype=object)[i.ravel()]})
        for j in range(p):
            cov[f"f_{j}"] = F[..., j].ravel()
        cov.to_csv(out / "covariates.csv", index=False)
    meta = {"format": FORMAT, "n_steps": traces.n_steps, "n_runs": traces.n_runs, "n_types": traces.n_types,
            "graph": _graph_fingerprint(traces.substrate)}
    (out / "meta.json").write_text(json.dumps(meta))


def from_csv(directory, sub: Substrate) -> Traces:
    src = Path(directory)
    meta = json.loads((src / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise TraceError(f"{src} does not hold nvppl traces (meta.json format {meta.get('format')!r})")
    _check_substrate(meta["graph"], sub, src)
    by_text = {str(x): x for x in sub.labels}
    node_cols = {"birth_node": str, "node_from": str, "node_to": str, "node": str}
    # node labels such as "NA" or "" are labels, not missing values: only tau0 may be missing
    na = {"keep_default_na": False, "na_values": {"tau0": ["", "nan", "NaN"]}}
    ves = pd.read_csv(src / "vesicles.csv", dtype={"birth_node": str, "death_cause": str}, **na)
    steps = pd.read_csv(src / "steps.csv", dtype={"node_from": str, "node_to": str}, keep_default_na=False)
    for df in (ves, steps):
        for c in node_cols:
            if c in df.columns:
                df[c] = [by_text.get(x, x) for x in df[c]]
    features = None
    cov_path = src / "covariates.csv"
    if cov_path.exists():
        cov = pd.read_csv(cov_path, dtype={"node": str}, keep_default_na=False)
        R, T, n = meta["n_runs"], meta["n_steps"], sub.n_nodes
        fcols = [c for c in cov.columns if c.startswith("f_")]
        node = pd.Index([str(x) for x in sub.labels]).get_indexer(cov["node"].to_numpy())
        if (node < 0).any() or len(cov) != R * T * n:
            raise TraceError(f"{cov_path}: expected one row per run, step and node ({R * T * n} rows) "
                             "on this substrate's nodes")
        features = np.full((R, T, n, len(fcols)), np.nan)
        features[cov["run"].to_numpy(), cov["step"].to_numpy(), node] = cov[fcols].to_numpy()
    return Traces.from_dataframes(ves, steps, sub, meta["n_steps"], features,
                                  n_runs=meta["n_runs"], n_types=meta["n_types"])
