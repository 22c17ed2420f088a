"""Migration on the candidate lists without a dense ``n × n`` matrix: the inflow
``Tᵀ x`` as a sum over each node's incoming moves, with a gather as its adjoint."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Graph(NamedTuple):
    cand: np.ndarray      # (n, M) candidates, -1 padded
    cand_pad: np.ndarray  # (n, M) candidates with padding pointing at the zero entry n
    mask: np.ndarray      # (n, M)
    in_idx: np.ndarray    # (n, max_in) flat slot indices i*M+m of the moves into each node; n*M pads


def graph(sub) -> Graph:
    """The candidate table of a substrate with its incoming-move lists."""
    cand = np.asarray(sub.candidates)
    n, M = cand.shape
    flat = cand.reshape(-1)
    valid = flat >= 0
    counts = np.bincount(flat[valid], minlength=n)
    width = max(int(counts.max(initial=0)), 1)
    order = np.argsort(np.where(valid, flat, n), kind="stable")[: int(valid.sum())]
    dest = flat[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - start[dest]
    in_idx = np.full((n, width), n * M, dtype=np.int64)
    in_idx[dest, pos] = order
    return Graph(cand, np.where(cand >= 0, cand, n), cand >= 0, in_idx)


def inflow(g: Graph):
    """``x ↦ Σ over moves into each node`` for flows ``(..., n, M, C)`` → ``(..., n, C)`` (a
    trailing batch axis ``C``, the content classes, kept innermost so that the gathers
    and the sums over it are contiguous; with ``C = 1`` the gathers run along the
    candidate slots instead), with the adjoint ``ḡ ↦ ḡ[cand]`` written out (a gather,
    not a scatter)."""
    in_idx, cand_pad = g.in_idx, g.cand_pad  # NumPy constants (see general_relaxer)
    n, M = g.cand.shape

    def pad(x, axis):  # append a zero entry along ``axis``
        shape = list(x.shape)
        shape[axis] = 1
        return jnp.concatenate([x, jnp.zeros(shape, x.dtype)], axis=axis)

    def gather_in(flows):  # (..., n, M, C) → (..., n, C)
        C = flows.shape[-1]
        if C == 1:
            flat = pad(flows.reshape(flows.shape[:-3] + (n * M,)), -1)
            return jnp.take(flat, in_idx, axis=-1).sum(-1)[..., None]
        flat = pad(flows.reshape(flows.shape[:-3] + (n * M, C)), -2)
        return jnp.take(flat, in_idx, axis=-2).sum(-2)

    def gather_out(ct):  # (..., n, C) → (..., n, M, C)
        if ct.shape[-1] == 1:
            return jnp.take(pad(ct[..., 0], -1), cand_pad, axis=-1)[..., None]
        return jnp.take(pad(ct, -2), cand_pad, axis=-2)

    @jax.custom_vjp
    def flow_in(flows):
        return gather_in(flows)

    def fwd(flows):
        return gather_in(flows), None

    def bwd(_, ct):
        return (gather_out(ct),)

    flow_in.defvjp(fwd, bwd)
    return flow_in
