"""Covariates: the user's features ``F[t, i, :]`` of eq. 9 and the design ``X = (1, F)``.

Per-node covariates stand for ψ(h, g, m), features of the base network's
activations, gradients and meta-state at node ``i`` and step ``t``. They may be
given static ``(n, p)``, shared by the runs ``(T, n, p)`` or per run
``(R, T, n, p)``; every part of nvppl works on the full ``(R, T, n, p)`` form,
read-only, and prepends the intercept itself (``X[..., 0] = 1``).

Examples
--------
>>> import networkx as nx, numpy as np, nvppl as nv
>>> sub = nv.Substrate.from_networkx(nx.path_graph(3))
>>> broadcast_covariates(np.ones((3, 2)), 4, 10, sub).shape
(4, 10, 3, 2)
"""

from __future__ import annotations

import numpy as np

from ._validate import show
from .errors import TraceError

__all__ = ["broadcast_covariates", "model_features", "features_for"]


def broadcast_covariates(covariates, n_runs: int, n_steps: int, substrate) -> np.ndarray:
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
        raise TraceError(f"covariate {j} at node {substrate.labels[i]!r} is {show(F[r, s, i, j])}; "
                         "covariates are not finite there", run=int(r), step=int(s))
    out = np.ascontiguousarray(F)
    out.setflags(write=False)
    return out


def model_features(model, covariates, n_runs: int, n_steps: int) -> np.ndarray:
    """Covariates ``F (n_runs, n_steps, n, p)`` for a simulation.

    ``covariates`` may be ``(n, p)`` (static), ``(n_steps, n, p)`` (shared by the
    runs) or ``(n_runs, n_steps, n, p)``; ``None`` takes the substrate's node
    covariates, or none when ``covariate_dim == 0``.
    """
    n, p = model.n_nodes, model.covariate_dim
    if covariates is None:
        if p == 0:
            return np.zeros((n_runs, n_steps, n, 0))
        if model.substrate.covariate_dim != p:
            raise ValueError(f"the model has covariate_dim={p}: pass covariates of shape "
                             f"({n_runs}, {n_steps}, {n}, {p}) or build the substrate with "
                             f"{p} node covariate attribute(s)")
        covariates = model.substrate.node_covariates
    if np.ndim(covariates) == 0 or np.shape(covariates)[-1] != p:
        raise ValueError(f"covariates must have shape ({n_runs}, {n_steps}, {n}, {p}), ({n_steps}, {n}, {p}) "
                         f"or ({n}, {p}) for covariate_dim={p}; got {np.shape(covariates)}")
    return broadcast_covariates(covariates, n_runs, n_steps, model.substrate)


def features_for(model, traces) -> np.ndarray:
    """The covariates ``F (R, T, n, p)`` of ``traces`` for ``model``: the traces'
    own, else the substrate's static node covariates; checked against
    ``model.covariate_dim``."""
    p = model.covariate_dim
    R, T, n = traces.n_runs, traces.n_steps, model.n_nodes
    if traces.features is not None:
        if traces.covariate_dim != p:
            raise TraceError(f"the traces carry {traces.covariate_dim} covariate(s) but the model has "
                             f"covariate_dim={p}")
        return np.asarray(traces.features)
    if p == 0:
        return np.zeros((R, T, n, 0))
    sub = model.substrate
    if sub.covariate_dim != p:
        raise TraceError(f"the model has covariate_dim={p} but the traces carry no covariates and the "
                         f"substrate has {sub.covariate_dim} node covariate(s)")
    return np.broadcast_to(sub.node_covariates, (R, T, n, p))
