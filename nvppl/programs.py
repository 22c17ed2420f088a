"""The NumPyro programs of nvppl.

- :func:`life_cycle` — the generative vesicle life cycle of :ref:`design-model` as a
  NumPyro program: a ``scan`` over steps with a fixed vesicle capacity. Every
  random choice is a sample site (``births``, ``content``, ``tau0``, ``move``,
  ``dock``, ``absorb``, ``expire``, ``tau_noise``), so the program works with
  :class:`numpyro.infer.Predictive` and its log-density can be evaluated.
- :func:`trace_model` — the likelihood of fully observed traces as a NumPyro
  program (factors over sufficient statistics, or over vesicle-steps where a
  content- or tilt-dependent term needs them); see :mod:`nvppl.likelihood`.

Both declare the model's parameters through :meth:`VesicleModel.param_sites`,
so the prior is the same in both and the sites carry the ``Params`` names.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

from . import likelihood, population
from .model import ModelKey
from .kernels import emission
from .population import CAUSE_CODES, LifeState, StepRecord
from .traces import lifetime_bin_edges

__all__ = ["life_cycle", "trace_model", "LifeState", "StepRecord", "CAUSE_CODES", "default_capacity",
           "ModelKey", "PPC_STATISTICS"]

#: Summary statistics of posterior predictive checks, recorded by :func:`life_cycle`
#: as deterministic sites and computed from data by :meth:`Traces.summary_statistics`.
PPC_STATISTICS = ("occupancy", "dock_rate", "lifetime_hist", "path_length")

class _Stats(NamedTuple):
    occupancy: jax.Array   # (K, n) sum over runs and steps
    docks: jax.Array       # (K, n)
    hist: jax.Array        # (K, B)
    path: jax.Array        # (K,)
    count: jax.Array       # (K,)


def default_capacity(model, params, features, n_steps: int) -> int:
    """Vesicle slots per run for :func:`life_cycle`.

    An upper bound on the mean population (emission over all nodes, survival by
    decay alone: absorption, docking and sinks only remove more), plus eight
    Poisson standard deviations and a margin; rounded up to a multiple of 64.
    """
    F = np.asarray(features, dtype=np.float64)
    z = np.asarray(params.u)[:, 0] + np.einsum("rtnp,kp->rtnk", F, np.asarray(params.u)[:, 1:])
    if model.emission_link == "sigmoid":
        lam = np.asarray(params.r_max) / (1.0 + np.exp(-z))
    else:
        lam = np.exp(z)
    births = lam.sum(axis=2).max(axis=0)  # (T, K) worst run
    ages = np.arange(n_steps)
    if model.lifetime == "geometric":
        surv = (1.0 - np.asarray(params.delta))[None, :] ** ages[:, None]  # P(alive after k decays)
    else:
        from scipy.special import gammaincc

        surv = gammaincc(np.asarray(params.shape)[None, :], np.asarray(params.rate)[None, :] * ages[:, None])
    # mean population during step t: sum over birth steps s <= t of births[s] * surv[t - s]
    mean = sum(np.convolve(births[:, k], surv[:, k])[:n_steps] for k in range(births.shape[1]))
    peak = float(np.max(mean))
    cap = 1.25 * (peak + 8.0 * np.sqrt(peak)) + 32.0
    return int(64 * np.ceil(cap / 64.0))


def life_cycle(model, features, n_steps: int, capacity: int, params=None):
    """The generative vesicle life cycle (:ref:`design-model`) as a NumPyro program.

    Parameters
    ----------
    model : VesicleModel
    features : array, shape (R, T, n, p)
        User covariates ``F`` for ``R`` runs (``p`` may be 0).
    n_steps : int
        Number of steps ``T``.
    capacity : int
        Vesicle slots per run. If more vesicles are alive at once, the
        deterministic site ``overflow_step`` records the first such step per run
        (never silently truncated: :func:`nvppl.simulate` raises on it).
    params : Params, optional
        Parameters; when omitted they are drawn from the priors as sample sites
        named like the ``Params`` fields.

    Returns
    -------
    (LifeState, StepRecord)
        The final population and the per-step records (time first). The
        summary statistics of posterior predictive checks are recorded as
        deterministic sites ``occupancy``, ``dock_rate``, ``lifetime_hist`` and
        ``path_length`` (see :meth:`Traces.summary_statistics`).

    Examples
    --------
    >>> import jax, networkx as nx, numpy as np, nvppl as nv
    >>> from numpyro.infer import Predictive
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(3)), n_types=1)
    >>> F = np.zeros((1, 10, 3, 0))
    >>> draws = Predictive(life_cycle, num_samples=2)(jax.random.PRNGKey(0), model, F, 10, 64)
    >>> draws["occupancy"].shape, draws["delta"].shape
    ((2, 1, 3), (2, 1))
    """
    if params is None:
        params = model.param_sites()
    p = jax.tree.map(jnp.asarray, params)
    sub = model.substrate
    F = jnp.asarray(features)
    R = F.shape[0]
    n, K, C, dc = sub.n_nodes, model.n_types, int(capacity), model.content_dim
    X = emission.design_matrix(F)
    consts = population.constants(model)
    edges = jnp.asarray(lifetime_bin_edges(n_steps))
    nb = len(edges) - 1
    fdt = X.dtype

    def bins(age):
        return jnp.clip(jnp.searchsorted(edges, age, side="right") - 1, 0, nb - 1)

    def draw(name, d, mask):
        return numpyro.sample(name, d if mask is None else d.mask(mask))

    def step(carry, xs):
        state, stats = carry
        t, X_t, F_t = xs
        state, record, info = population.step(model, p, consts, state, t, X_t, F_t, draw)
        survive, removed, docked, dest = info.survive, info.removed, record.docked, state.node
        onehot_k = jax.nn.one_hot(record.vtype, K, dtype=fdt)  # (R, C, K)
        onehot_n = jax.nn.one_hot(dest, n, dtype=fdt)   # (R, C, n)
        stats = _Stats(
            occupancy=stats.occupancy + jnp.einsum("rck,rcn->kn", onehot_k * survive[..., None], onehot_n),
            docks=stats.docks + jnp.einsum("rck,rcn->kn", onehot_k * docked[..., None], onehot_n),
            hist=stats.hist + jnp.einsum("rck,rcb->kb", onehot_k * removed[..., None],
                                         jax.nn.one_hot(bins(state.age), nb, dtype=fdt)),
            path=stats.path + jnp.einsum("rck,rc->k", onehot_k, (state.away * removed).astype(fdt)),
            count=stats.count + jnp.einsum("rck,rc->k", onehot_k, removed.astype(fdt)),
        )
        return (state, stats), record

    init = population.init_state(R, C, dc, fdt)
    zeros = _Stats(jnp.zeros((K, n), fdt), jnp.zeros((K, n), fdt), jnp.zeros((K, nb), fdt),
                   jnp.zeros(K, fdt), jnp.zeros(K, fdt))
    xs = (jnp.arange(n_steps, dtype=jnp.int64), jnp.moveaxis(X, 1, 0), jnp.moveaxis(F, 1, 0))
    (final, stats), records = scan(step, (init, zeros), xs, length=n_steps)

    # vesicles alive after the last step are censored: count them in the lifetime statistics
    onehot_k = jax.nn.one_hot(final.vtype, K, dtype=fdt) * final.alive[..., None]
    hist = stats.hist + jnp.einsum("rck,rcb->kb", onehot_k, jax.nn.one_hot(bins(final.age), nb, dtype=fdt))
    path = stats.path + jnp.einsum("rck,rc->k", onehot_k, final.away.astype(fdt))
    count = jnp.maximum(stats.count + onehot_k.sum((0, 1)), 1.0)
    denom = R * n_steps
    numpyro.deterministic("occupancy", stats.occupancy / denom)
    numpyro.deterministic("dock_rate", stats.docks / denom)
    numpyro.deterministic("lifetime_hist", hist / count[:, None])
    numpyro.deterministic("path_length", path / count)
    numpyro.deterministic("overflow_step", final.overflow_step)
    return final, records


def trace_model(data, model):
    """Likelihood of fully observed traces as a NumPyro program.

    Declares the priors through :meth:`VesicleModel.param_sites` and adds one
    ``numpyro.factor`` per kernel (``emission``, ``content``, ``migration``,
    ``docking``, ``absorption``, ``decay``), computed by
    :func:`nvppl.likelihood.log_likelihood_terms` from the sufficient statistics
    in ``data`` (a :class:`~nvppl.traces.suffstats.TraceData`).
    """
    params = model.param_sites()
    for name, value in likelihood.log_likelihood_terms(params, data, model).items():
        numpyro.factor(name, value)
