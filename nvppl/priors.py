"""Priors of a vesicle model's parameters.

Defaults (``docs/design.rst``, "Parameters"): ``Normal(0, 1.5)`` on the
emission, docking, tilt and content weights, ``Dirichlet(1)`` on each row of
``T`` over its candidate slots, ``Beta(1, 1)`` on the probabilities ``delta``
and ``a``, ``Gamma(2, 1)`` on the countdown ``shape`` and ``rate``,
``HalfNormal(1)`` on content scales, and ``r_max`` fixed at 1.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .params import POSITIVE_FIELDS, PROBABILITY_FIELDS

__all__ = ["default_priors", "prepare_prior", "row_dirichlet", "RowDirichlet"]

def default_priors() -> dict:
    """The default prior (or fixed value) of every field; ``T`` is built per row by
    :func:`row_dirichlet`."""
    normal = dist.Normal(0.0, 1.5)
    return {
        "u": normal, "r_max": 1.0, "T": dist.Dirichlet(jnp.ones(1)), "v": normal,
        "Q": normal, "w": normal, "w_c": normal, "a": dist.Beta(1.0, 1.0),
        "delta": dist.Beta(1.0, 1.0), "shape": dist.Gamma(2.0, 1.0), "rate": dist.Gamma(2.0, 1.0),
        "content_mean": normal, "content_B": normal, "content_scale": dist.HalfNormal(1.0),
    }


def prepare_prior(name: str, prior, shape: tuple):
    """A scalar (batched) prior on field ``name`` expanded to ``shape`` as one event.

    Raises
    ------
    ValueError
        A support that does not fit the field (a probability, a positive
        quantity), a non-scalar event shape, or a batch shape that does not
        broadcast to ``shape``.
    """
    lower = float(np.min(getattr(prior.support, "lower_bound", -np.inf)))
    upper = float(np.max(getattr(prior.support, "upper_bound", np.inf)))
    if name in PROBABILITY_FIELDS and not (lower >= 0.0 and upper <= 1.0):
        raise ValueError(f"the prior on {name!r} must have support in [0, 1] (a probability); "
                         f"{type(prior).__name__} has support {prior.support}")
    if name in POSITIVE_FIELDS and not lower >= 0.0:
        raise ValueError(f"the prior on {name!r} must have positive support; "
                         f"{type(prior).__name__} has support {prior.support}")
    if prior.event_shape:
        raise ValueError(f"the prior on {name!r} must be a scalar (batched) distribution, "
                         f"got event shape {prior.event_shape}")
    try:
        return prior.expand(shape).to_event(len(shape))
    except ValueError:
        raise ValueError(f"the prior on {name!r} has batch shape {prior.batch_shape}, "
                         f"which does not broadcast to {shape}") from None


def row_dirichlet(prior, substrate, n_types: int) -> "RowDirichlet":
    """The prior of ``T``: ``prior`` (a numpyro Dirichlet whose concentration broadcasts to
    ``(K, n, M)``, or ``None`` for Dirichlet(1)) on the candidate slots of every row.

    Raises
    ------
    ValueError
        Another distribution, a concentration of another shape, or a non-positive
        concentration on a candidate slot.
    """
    K, n, M = n_types, substrate.n_nodes, substrate.max_candidates
    if prior is None:
        conc = np.ones((K, n, M))
    else:
        if not isinstance(prior, dist.Dirichlet):
            raise ValueError("the prior on 'T' must be a numpyro Dirichlet (one per row) or a fixed array")
        try:
            conc = np.broadcast_to(np.asarray(prior.concentration, dtype=np.float64), (K, n, M)).copy()
        except ValueError:
            raise ValueError(f"the Dirichlet concentration for 'T' has shape {np.shape(prior.concentration)}, "
                             f"which does not broadcast to {(K, n, M)}") from None
    mask = substrate.candidate_mask
    if np.any(~(conc[:, mask] > 0)):
        raise ValueError("the Dirichlet concentration for 'T' must be positive on every candidate slot")
    return RowDirichlet(np.where(mask[None], conc, 0.0), substrate.n_candidates)


class RowDirichlet:
    """Dirichlet priors on the rows of ``T``, grouped by node degree so that each
    row has exactly as many coordinates as candidates."""

    def __init__(self, concentration: np.ndarray, n_candidates: np.ndarray):
        self.concentration = concentration  # (K, n, M), zero on padded slots
        self.n_candidates = np.asarray(n_candidates)
        self.groups = {int(m): np.flatnonzero(self.n_candidates == m) for m in np.unique(self.n_candidates)}

    def sample_sites(self):
        K, n, M = self.concentration.shape
        T = jnp.zeros((K, n, M))
        for m, nodes in self.groups.items():
            if m == 0:
                continue
            if m == 1:
                T = T.at[:, nodes, 0].set(1.0)
                continue
            conc = jnp.asarray(self.concentration[:, nodes, :m])
            rows = numpyro.sample(f"T_rows_{m}", dist.Dirichlet(conc).to_event(2))
            T = T.at[:, nodes, :m].set(rows)
        return numpyro.deterministic("T", T)

    def log_prob(self, T):
        """Log density of ``T`` under the row priors (sum over rows of degree ≥ 2)."""
        total = 0.0
        for m, nodes in self.groups.items():
            if m >= 2:
                conc = jnp.asarray(self.concentration[:, nodes, :m])
                total = total + dist.Dirichlet(conc).log_prob(T[:, nodes, :m]).sum()
        return total
