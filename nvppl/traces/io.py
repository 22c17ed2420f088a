"""Reading and writing traces: NetCDF (through xarray) and CSV.

The functions here move the index arrays of :class:`~nvppl.traces.Traces`
(and its tables) to and from files; :class:`~nvppl.traces.Traces` validates
what is read. Every file is written atomically (:mod:`nvppl._files`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .._files import write_bytes, write_netcdf as _write_netcdf, write_text
from ..errors import TraceError
from ..substrate import label_to_json
from .checks import CAUSES

__all__ = ["FORMAT", "write_netcdf", "read_netcdf", "write_csv", "read_csv"]

FORMAT = "nvppl-traces-1"


def _label_key(x) -> str:
    """Text that identifies a label with its type (10 and "10" differ)."""
    try:
        return json.dumps(label_to_json(x))
    except ValueError:
        return repr(x)


def _graph_fingerprint(sub) -> dict:
    return {"labels": [_label_key(x) for x in sub.labels], "candidates": sub.candidates.tolist(),
            "allow_stay": sub.allow_stay}


def _check_substrate(meta: dict, sub, path) -> None:
    labels = [_label_key(x) for x in sub.labels]
    if meta["labels"] != labels:
        raise TraceError(f"{path}: the traces were written on a graph with nodes {meta['labels'][:8]}... "
                         f"({len(meta['labels'])} nodes), not this substrate's {labels[:8]}... ({len(labels)})")
    if meta["allow_stay"] != sub.allow_stay or meta["candidates"] != sub.candidates.tolist():
        raise TraceError(f"{path}: the traces were written on a graph with other edges or another stay rule "
                         "than this substrate's")


def write_netcdf(path, v: dict, s: dict, features, sub, meta: dict) -> None:
    """Write the index arrays of traces to a NetCDF file (atomically)."""
    data = {
        "v_run": ("vesicle", v["run"]), "v_vesicle": ("vesicle", v["vesicle"]), "v_type": ("vesicle", v["type"]),
        "v_birth_step": ("vesicle", v["birth_step"]), "v_birth_node": ("vesicle", v["birth_node"]),
        "v_budget": ("vesicle", v["budget"]), "v_death_step": ("vesicle", v["death_step"]),
        "v_death_cause": ("vesicle", v["death_cause"].astype(np.int8)),
        "v_content": (("vesicle", "content"), v["content"]),
        "s_vrow": ("row", s["vrow"]), "s_step": ("row", s["step"]), "s_node_from": ("row", s["node_from"]),
        "s_node_to": ("row", s["node_to"]), "s_docked": ("row", s["docked"].astype(np.int8)),
        "node_label": ("node", np.array([str(x) for x in sub.labels], dtype=object)),
    }
    if v["tau0"] is not None:
        data["v_tau0"] = ("vesicle", v["tau0"])
    if features is not None:
        data["features"] = (("run", "time", "node", "feature"), np.asarray(features))
    ds = xr.Dataset(data, attrs={
        "format": FORMAT, "n_steps": meta["n_steps"], "n_runs": meta["n_runs"], "n_types": meta["n_types"],
        "death_causes": json.dumps(list(CAUSES)), "graph": json.dumps(_graph_fingerprint(sub)),
        "description": "nvppl vesicle traces; node columns hold node indices, node_label their labels",
    })
    _write_netcdf(path, lambda buffer: ds.to_netcdf(buffer, engine="h5netcdf"))


def read_netcdf(path, sub):
    """``(meta, v, s, features)`` of a traces file, checked to be written on ``sub``'s graph."""
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
    meta = {k: int(ds.attrs[k]) for k in ("n_steps", "n_runs", "n_types")}
    return meta, v, s, features


def write_csv(directory, vesicles, steps, features, sub, meta: dict) -> None:
    """Write the tables (DataFrames, nodes as labels) and covariates of traces as
    CSV files into ``directory``, each atomically; ``meta.json`` comes last, and a
    ``covariates.csv`` of earlier traces without covariates is removed."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    labels = [str(x) for x in sub.labels]
    if len(set(labels)) != len(labels):
        raise ValueError("node labels are not distinct as text, so they cannot be written to CSV")
    ves, steps = vesicles.copy(), steps.copy()
    for df, cols in ((ves, ["birth_node"]), (steps, ["node_from", "node_to"])):
        for c in cols:
            df[c] = [str(x) for x in df[c]]
    write_text(out / "vesicles.csv", ves.to_csv(index=False))
    write_text(out / "steps.csv", steps.to_csv(index=False))
    if features is not None:
        F = features
        R, T, n, p = F.shape
        r, t, i = np.meshgrid(np.arange(R), np.arange(T), np.arange(n), indexing="ij")
        cov = pd.DataFrame({"run": r.ravel(), "step": t.ravel(),
                            "node": np.array(labels, dtype=object)[i.ravel()]})
        for j in range(p):
            cov[f"f_{j}"] = F[..., j].ravel()
        write_text(out / "covariates.csv", cov.to_csv(index=False))
    elif (out / "covariates.csv").exists():
        (out / "covariates.csv").unlink()
    meta = {"format": FORMAT, **meta, "graph": _graph_fingerprint(sub)}
    write_bytes(out / "meta.json", json.dumps(meta).encode())


def read_csv(directory, sub):
    """``(meta, vesicles, steps, features)`` of traces written by :func:`write_csv`,
    node labels matched to ``sub``'s by their text."""
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
    return meta, ves, steps, features
