"""Inference for vesicle models.

:func:`fit` dispatches on the method: ``"nuts"`` fits fully observed
:class:`~nvppl.traces.Traces` with NUTS on the exact likelihood. Results are
:class:`Fit` objects wrapping an ArviZ ``InferenceData``.
"""

from __future__ import annotations

from .fit import Fit, load_fit

__all__ = ["fit", "Fit", "load_fit", "METHODS"]

#: Inference methods and the data each takes.
METHODS = {"nuts": "Traces"}


def fit(model, data, method: str = "nuts", **kwargs) -> Fit:
    """Fit a vesicle model to data.

    Parameters
    ----------
    model : VesicleModel
        The model; its priors say what is inferred and fixed values what is not.
    data : Traces
        Fully observed traces (``method="nuts"``).
    method : {"nuts"}
        ``"nuts"``: the No-U-Turn sampler on the exact trace likelihood.
    num_samples, num_warmup : int, default 1000
        Draws kept and warm-up iterations per chain.
    num_chains : int, default 4
        Chains. By default they run one after the other when the likelihood is
        evaluated on sufficient statistics (compilation dominates), and in
        parallel over host devices (nvppl exposes one per CPU core) when it runs
        over many vesicle-steps.
    key : int or jax key, default 0
    progress_bar : bool, default True
    chain_method : {"auto", "parallel", "sequential", "vectorized"}, optional
    log_likelihood : bool, default True
        Compute the per-vesicle log-likelihood of every draw (for LOO).
    posterior_predictive : bool, default True
        Simulate ``num_ppc`` (default 100) draws per chain and store their summary
        statistics in ``posterior_predictive``.
    target_accept_prob : float, default 0.8
    max_tree_depth : int, default 10
    thinning : int, default 1
    dense_mass : bool, optional
        Adapt a dense mass matrix during warm-up. By default dense when there are
        at most 300 unconstrained parameters (it removes the long trajectories
        that correlated directions cause, e.g. the common shift of the content
        tilt ``Q``, which the likelihood does not see), diagonal otherwise.
    ppc_capacity : int, optional
        Vesicle capacity of the posterior predictive simulations.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1)
    >>> traces = nv.simulate(model, model.default_params(), n_steps=40, n_runs=2, key=0)
    >>> fit = nv.infer.fit(model, traces, num_samples=100, num_warmup=100, num_chains=2,
    ...                    progress_bar=False)
    >>> sorted(fit.idata.groups())[:3]
    ['log_likelihood', 'observed_data', 'posterior']
    """
    from ..model import VesicleModel

    if not isinstance(model, VesicleModel):
        raise TypeError(f"model must be an nvppl VesicleModel, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {sorted(METHODS)}")
    from .nuts import fit_nuts

    return fit_nuts(model, data, **kwargs)
