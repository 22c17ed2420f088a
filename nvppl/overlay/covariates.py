r"""Online covariates ψ(h, g, m) of the overlay's sites (eq. 9–14; DESIGN §7).

At every training step and for every node (a site, or one of its units):

``log_rms_act``
    ``½ log(mean h̃² + 10⁻¹²)`` of the node's (modulated) pre-activation over the
    batch (and a convolution's positions);
``log_rms_grad``
    the same for the loss gradient ``∂L/∂h̃`` at the node;
``loss``
    the training loss, shared by every node (an error signal);
``memory_norm``
    ``‖M‖`` of the node's memory (only when the memory operator is on);

then one column per user function ``fn(x, y, loss) → scalar or (n_nodes,)``.
Each column is standardised by running statistics pooled over nodes and past
steps (Chan's update of count, mean and sum of squares), after adding the
current step: ``z = (ψ − mean) / sqrt(var + 10⁻¹²)``. Differences between sites
are kept, and the emission weights mean the same at any scale of the network.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["BUILTIN", "names", "RunningStats", "init_stats", "standardise", "raw"]

#: The built-in covariates, in column order.
BUILTIN = ("log_rms_act", "log_rms_grad", "loss", "memory_norm")
_EPS = 1e-12


def names(memory: bool, user=()) -> tuple:
    """Column names: the built-ins (``memory_norm`` only with memory) then the user's."""
    base = tuple(n for n in BUILTIN if memory or n != "memory_norm")
    return base + tuple(user)


class RunningStats(NamedTuple):
    """Running count, mean and sum of squared deviations per column."""

    count: jax.Array  # ()
    mean: jax.Array   # (p,)
    m2: jax.Array     # (p,)


def init_stats(p: int) -> RunningStats:
    """No data yet."""
    return RunningStats(jnp.zeros(()), jnp.zeros(p), jnp.zeros(p))


def standardise(stats: RunningStats, psi):
    """Add the rows of ``psi (n, p)`` to the statistics and return ``(stats, z)``.

    Examples
    --------
    >>> st, z = standardise(init_stats(1), jnp.array([[1.0], [3.0]]))
    >>> [round(v, 6) for v in z[:, 0].tolist()], float(st.mean[0])
    ([-1.0, 1.0], 2.0)
    """
    nb = psi.shape[0]
    b_mean = jnp.mean(psi, axis=0)
    b_m2 = jnp.sum((psi - b_mean) ** 2, axis=0)
    n = stats.count + nb
    delta = b_mean - stats.mean
    mean = stats.mean + delta * nb / n
    m2 = stats.m2 + b_m2 + delta ** 2 * stats.count * nb / n
    new = RunningStats(n, mean, m2)
    z = (psi - mean) / jnp.sqrt(m2 / n + _EPS)
    return new, z


def raw(ov, probes, loss, mem_norm, user_values):
    """Unstandardised covariates ``(n, p)``.

    Parameters
    ----------
    probes : list of (3, width) arrays
        Per site the gradient of the wrapper's probe (sums of ``h̃²``, of
        ``(∂L/∂h̃)²`` and the number of values per unit).
    loss : scalar
    mem_norm : (n,) or None
    user_values : list of scalars or (n,) arrays
    """
    acts, grads = [], []
    for i, s in enumerate(ov.sites):
        pr = probes[i][:, jnp.asarray(s.units)]  # (3, units)
        h = int(ov.nodes.per_node[i])
        pr = pr.reshape(3, -1, h).sum(-1)  # (3, N_s)
        acts.append(0.5 * jnp.log(pr[0] / jnp.maximum(pr[2], 1.0) + _EPS))
        grads.append(0.5 * jnp.log(pr[1] / jnp.maximum(pr[2], 1.0) + _EPS))
    n = ov.model.n_nodes
    cols = [jnp.concatenate(acts), jnp.concatenate(grads), jnp.broadcast_to(loss, (n,))]
    if mem_norm is not None:
        cols.append(mem_norm)
    cols.extend(jnp.broadcast_to(jnp.asarray(v, cols[0].dtype), (n,)) for v in user_values)
    return jnp.stack([c.astype(cols[0].dtype) for c in cols], axis=-1)
