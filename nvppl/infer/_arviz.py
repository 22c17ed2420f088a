"""The one adapter between nvppl and ArviZ.

nvppl targets the ArviZ 0.23 line, whose container is ``InferenceData``; every
other part of :mod:`nvppl.infer` reaches ArviZ through this module, so a move
to ArviZ 1.x (an xarray ``DataTree``) stays here. (:mod:`nvppl.diagnostics`
also draws ArviZ plots.)

- :func:`to_inference_data` and :func:`observations_to_inference_data` build
  the ``InferenceData`` of a fit, with nvppl's coordinates and dimensions;
- :func:`write_netcdf` and :func:`read_netcdf` save and load it (atomically,
  see :mod:`nvppl._files`);
- :func:`summary` and :func:`psis_log_weights` wrap ``arviz.summary`` and PSIS.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._files import write_netcdf as _write_file

__all__ = ["arviz", "to_inference_data", "observations_to_inference_data", "psis_log_weights", "summary",
           "write_netcdf", "read_netcdf"]


def arviz():
    """Import ArviZ, silencing the FutureWarning it prints about its 1.x refactor
    (nvppl targets the 0.23 line and keeps the migration behind this module)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az
    return az


def _coords_dims(model, n_vesicles=None):
    sub = model.substrate
    p = model.covariate_dim
    names = list(sub.covariate_names) if len(sub.covariate_names) == p else [f"f_{j}" for j in range(p)]
    coords = {
        "type": np.arange(model.n_types), "node": [str(x) for x in sub.labels],
        "slot": np.arange(sub.max_candidates), "x_feature": ["intercept"] + names, "feature": names,
        "content": np.arange(model.content_dim),
    }
    dims = {
        "u": ["type", "x_feature"], "r_max": ["type"], "T": ["type", "node", "slot"], "v": ["type", "feature"],
        "Q": ["type", "node", "content"], "w": ["type", "x_feature"], "w_c": ["type", "content"], "a": ["node"],
        "delta": ["type"], "shape": ["type"], "rate": ["type"], "content_mean": ["type", "content"],
        "content_B": ["type", "feature", "content"], "content_scale": ["type", "content"],
        "occupancy": ["type", "node"], "dock_rate": ["type", "node"], "lifetime_hist": ["type", "lifetime_bin"],
        "path_length": ["type"], "vesicle": ["vesicle_id"],
    }
    return coords, dims


def to_inference_data(model, posterior: dict, sample_stats: dict | None = None, log_likelihood=None,
                      posterior_predictive: dict | None = None, observed: dict | None = None,
                      attrs: dict | None = None, n_steps: int | None = None):
    """Build an ``arviz.InferenceData`` with nvppl's coordinates and dimensions.

    Parameters
    ----------
    model : VesicleModel
    posterior : dict
        Field name → array ``(chain, draw, *field_shape)``.
    sample_stats : dict, optional
    log_likelihood : array ``(chain, draw, vesicle)``, optional
    posterior_predictive, observed : dict, optional
        Summary statistics (see :meth:`nvppl.Traces.summary_statistics`).
    attrs : dict, optional
        Attributes stored on the posterior group.
    """
    az = arviz()

    coords, dims = _coords_dims(model)
    for stats in (observed, posterior_predictive):
        if stats is not None and "lifetime_hist" in stats:
            coords["lifetime_bin"] = np.arange(np.shape(stats["lifetime_hist"])[-1])
    if log_likelihood is not None:
        coords["vesicle_id"] = np.arange(np.shape(log_likelihood)[-1])
    groups = {
        "posterior": posterior, "sample_stats": sample_stats,
        "log_likelihood": None if log_likelihood is None else {"vesicle": log_likelihood},
        "posterior_predictive": posterior_predictive, "observed_data": observed,
    }
    groups = {k: v for k, v in groups.items() if v is not None}
    used = {d for name in set().union(*[set(g) for g in groups.values()]) for d in dims.get(name, [])}
    idata = az.from_dict(**groups, coords={k: v for k, v in coords.items() if k in used},
                         dims={k: v for k, v in dims.items()
                               if any(k in g for g in groups.values())})
    for key, value in (attrs or {}).items():
        idata.posterior.attrs[key] = value
    return idata


def observations_to_inference_data(model, obs, posterior: dict, sample_stats: dict, loglik_steps=None,
                                   attrs: dict | None = None, posterior_predictive: dict | None = None):
    """``arviz.InferenceData`` of a fit to :class:`~nvppl.Observations`.

    Like :func:`to_inference_data`, with the per-run, per-step log-likelihood
    ``loglik_steps (chain, draw, run, step)`` as variable ``obs`` of the
    ``log_likelihood`` group and the observed ``counts``/``docks`` (dims run,
    step, node, type) as ``observed_data``; ``posterior_predictive`` holds
    replicated ``counts``/``docks`` of the same shape after ``(chain, draw)``.
    """
    az = arviz()
    coords, dims = _coords_dims(model)
    coords = {**coords, "run": np.arange(obs.n_runs), "step": np.arange(obs.n_steps)}
    dims = {**dims, "obs": ["run", "step"], "counts": ["run", "step", "node", "type"],
            "docks": ["run", "step", "node", "type"]}
    observed = {k: np.asarray(getattr(obs, k)) for k in ("counts", "docks") if getattr(obs, k) is not None}
    groups = {"posterior": posterior, "sample_stats": sample_stats, "observed_data": observed}
    if loglik_steps is not None:
        groups["log_likelihood"] = {"obs": loglik_steps}
    if posterior_predictive:
        groups["posterior_predictive"] = posterior_predictive
    used = {d for g in groups.values() for name in g for d in dims.get(name, [])}
    idata = az.from_dict(**groups, coords={k: v for k, v in coords.items() if k in used},
                         dims={k: v for k, v in dims.items() if any(k in g for g in groups.values())})
    for k, v in (attrs or {}).items():
        idata.posterior.attrs[k] = v
    if obs.p_det is not None:
        idata.observed_data.attrs["p_det"] = obs.p_det
    idata.observed_data.attrs["detection"] = obs.detection
    return idata


def psis_log_weights(log_weights):
    """Pareto-smoothed importance weights (ArviZ's PSIS).

    Parameters
    ----------
    log_weights : array (S,)
        Raw log weights (``-inf`` for zero weight).

    Returns
    -------
    (smoothed, khat) : ndarray (S,), float
        Smoothed log weights, normalised to sum to one on the linear scale, and
        the Pareto shape estimate ``k̂`` (reliable below 0.7).

    Examples
    --------
    >>> import numpy as np
    >>> lw, k = psis_log_weights(np.random.default_rng(0).normal(size=1000))
    >>> bool(k < 0.7), round(float(np.exp(lw).sum()), 6)
    (True, 1.0)
    """
    az = arviz()
    lw = np.asarray(log_weights, dtype=np.float64)
    smoothed, khat = az.psislw(lw.copy(), reff=1.0)
    return np.asarray(smoothed), float(khat)


def summary(idata, var_names, **kwargs):
    """``arviz.summary`` of ``var_names`` (a pandas DataFrame), without the
    warnings ArviZ prints for constant entries (their R-hat is undefined)."""
    az = arviz()
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return az.summary(idata, var_names=var_names, **kwargs)


def write_netcdf(idata, path) -> None:
    """Write an ``InferenceData`` to a NetCDF file as ``InferenceData.to_netcdf``
    does (one HDF5 group per ArviZ group, compressed), atomically: a failed
    write leaves a previous file at ``path`` intact."""
    def fill(buffer):
        mode = "w"
        if idata._attrs:
            import xarray as xr

            xr.Dataset(attrs=idata._attrs).to_netcdf(buffer, mode=mode, engine="h5netcdf", group="/")
            mode = "a"
        for group in idata._groups_all:
            data = getattr(idata, group)
            encoding = {name: {"zlib": True} for name, var in data.variables.items()
                        if np.issubdtype(var.dtype, np.number) or var.dtype == np.bool_}
            data.to_netcdf(buffer, mode=mode, group=group, engine="h5netcdf", encoding=encoding)
            mode = "a"

    _write_file(path, fill)


def read_netcdf(path):
    """Read an ``InferenceData`` written by :func:`write_netcdf` (or by ArviZ)."""
    return arviz().from_netcdf(str(path), engine="h5netcdf")
