"""``Fit``: the result of :func:`nvppl.infer.fit`, wrapping an ArviZ InferenceData."""

from __future__ import annotations

import numpy as np

from ..model import VesicleModel
from ..params import Params
from . import _arviz

__all__ = ["Fit", "load_fit"]

MODEL_ATTR = "nvppl_model"


class Fit:
    """A fitted vesicle model.

    Attributes
    ----------
    idata : arviz.InferenceData
        Groups ``posterior`` (one variable per inferred ``Params`` field, same
        shapes after ``chain`` and ``draw``), ``sample_stats``, ``log_likelihood``
        (variable ``vesicle``: one entry per vesicle, so ``az.loo(fit.idata)``
        works), ``posterior_predictive`` and ``observed_data`` (summary
        statistics: ``occupancy``, ``dock_rate``, ``lifetime_hist``,
        ``path_length``). The model specification is stored in
        ``idata.posterior.attrs["nvppl_model"]``. A PMMH fit to
        :class:`~nvppl.Observations` has instead the variable ``obs`` (dims
        ``run, step``: the stored log-likelihood increments of the particle
        filter) in ``log_likelihood``, the observed ``counts``/``docks`` in
        ``observed_data``, and no ``posterior_predictive``.
    model : VesicleModel
    method : str

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.path_graph(3)), n_types=1,
    ...                         priors={"a": 0.0})
    >>> traces = nv.simulate(model, model.default_params(), n_steps=30, key=0)
    >>> fit = nv.infer.fit(model, traces, num_samples=50, num_warmup=50, num_chains=1,
    ...                    progress_bar=False, posterior_predictive=False)
    >>> fit.posterior_mean().delta.shape
    (1,)
    """

    def __init__(self, idata, model: VesicleModel, method: str, **extra):
        self.idata = idata
        self.model = model
        self.method = method
        self.extra = extra

    def summary(self, var_names=None, **kwargs):
        """``arviz.summary`` of the inferred parameters (a pandas DataFrame).

        Entries of ``T`` fixed by the graph (padded slots, rows with a single
        candidate) are constant and left out of the table. Extra keyword arguments
        go to :func:`arviz.summary`.
        """
        names = list(var_names or [n for n in self.model.inferred if n in self.idata.posterior])
        table = _arviz.summary(self.idata, names, **kwargs)
        if "T" in names and "sd" in table.columns:
            fixed = table.index.str.startswith("T[") & (table["sd"] == 0)
            table = table[~fixed]
        return table

    def posterior_mean(self) -> Params:
        """Posterior mean of every inferred field, fixed fields at their values.

        The mean of ``T`` rows stays on the simplex, so the result is a valid
        parameter set (checked with :meth:`VesicleModel.check_params`).
        """
        post = self.idata.posterior
        draws = {n: post[n].values.reshape((-1,) + post[n].shape[2:]).mean(0)
                 for n in self.model.inferred if n in post}
        return self.model.check_params(self.model.params_with(draws))

    def posterior_draw(self, chain: int = 0, draw: int = 0) -> Params:
        """The parameters of one posterior draw."""
        post = self.idata.posterior
        values = {n: post[n].values[chain, draw] for n in self.model.inferred if n in post}
        return self.model.check_params(self.model.params_with(values))

    @property
    def num_draws(self) -> int:
        """Number of chains × draws in the posterior."""
        post = self.idata.posterior
        return int(post.sizes["chain"] * post.sizes["draw"])

    def to_netcdf(self, path) -> None:
        """Write the InferenceData (with the model specification) to NetCDF;
        :func:`nvppl.load_fit` reads it back. No pickle is involved, and the write
        is atomic: if it fails, a file already at ``path`` is left as it was."""
        self.idata.posterior.attrs[MODEL_ATTR] = self.model.to_json()
        self.idata.posterior.attrs["nvppl_method"] = self.method
        _arviz.write_netcdf(self.idata, path)

    def __repr__(self) -> str:
        post = self.idata.posterior
        return (f"Fit(method={self.method!r}, chains={post.sizes['chain']}, draws={post.sizes['draw']}, "
                f"inferred={list(self.model.inferred)})")


def load_fit(path) -> Fit:
    """Read a :class:`Fit` written by :meth:`Fit.to_netcdf`.

    Raises
    ------
    ValueError
        If the file does not hold an nvppl fit.
    """
    idata = _arviz.read_netcdf(path)
    attrs = idata.posterior.attrs if "posterior" in idata.groups() else {}
    if MODEL_ATTR not in attrs:
        raise ValueError(f"{path} is not an nvppl fit (no '{MODEL_ATTR}' attribute in its posterior)")
    model = VesicleModel.from_json(attrs[MODEL_ATTR])
    return Fit(idata, model, attrs.get("nvppl_method", "unknown"))
