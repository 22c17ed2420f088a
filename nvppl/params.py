"""``Params``: the named parameter arrays of a vesicle model, and their checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

__all__ = ["Params", "PARAM_FIELDS", "PROBABILITY_FIELDS", "POSITIVE_FIELDS", "check_field", "check_T"]

#: Fields whose values are probabilities (in [0, 1]).
PROBABILITY_FIELDS = ("a", "delta")
#: Fields whose values are positive.
POSITIVE_FIELDS = ("r_max", "shape", "rate", "content_scale")

#: Every parameter field, in a fixed order.
PARAM_FIELDS = (
    "u", "r_max", "T", "v", "Q", "w", "w_c", "a",
    "delta", "shape", "rate", "content_mean", "content_B", "content_scale",
)


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class Params:
    """Parameters of a vesicle model: an immutable JAX pytree of named arrays.

    Shapes use ``K`` types, ``n`` nodes, ``M`` candidate slots, ``d_x = 1 + p``
    covariate columns (intercept first), ``p`` covariates and ``d_c`` content
    dimensions.

    Attributes
    ----------
    u : (K, d_x)
        Emission weights (eq. 9): ``λ = r_max σ(X·u)`` or ``λ = exp(X·u)``.
    r_max : (K,)
        Maximal emission rate of the sigmoid link.
    T : (K, n, M)
        Migration kernel (eq. 15): row ``T[κ, i]`` is a probability vector over the
        candidate slots of node ``i`` (zero in padded slots and on sinks).
    v : (K, p)
        Covariate part of the migration score ``q`` (eq. 17).
    Q : (K, n, d_c)
        Content part of the migration score ``q`` (eq. 17).
    w : (K, d_x)
        Docking weights (eq. 18).
    w_c : (K, d_c)
        Content docking weights (eq. 18).
    a : (n,)
        Absorption probability per node (eq. 38).
    delta : (K,) or None
        Per-step decay probability (geometric lifetimes).
    shape, rate : (K,) or None
        Gamma distribution of the initial lifetime ``τ₀`` (countdown lifetimes, eq. 37).
    content_mean : (K, d_c)
        Mean content at emission (eq. 11).
    content_B : (K, p, d_c)
        Covariate effect on content at emission.
    content_scale : (K, d_c)
        Standard deviation of content at emission.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(3)), n_types=1)
    >>> p = model.default_params()
    >>> p.replace(delta=np.array([0.1])).delta
    array([0.1])
    """

    u: Any = None
    r_max: Any = None
    T: Any = None
    v: Any = None
    Q: Any = None
    w: Any = None
    w_c: Any = None
    a: Any = None
    delta: Any = None
    shape: Any = None
    rate: Any = None
    content_mean: Any = None
    content_B: Any = None
    content_scale: Any = None

    def replace(self, **changes) -> "Params":
        """Return a copy with some fields changed.

        Raises
        ------
        TypeError
            On an unknown field name.
        """
        unknown = set(changes) - set(PARAM_FIELDS)
        if unknown:
            raise TypeError(f"unknown Params field(s) {sorted(unknown)}; fields are {list(PARAM_FIELDS)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Fields as a dict (``None`` fields left out)."""
        return {k: getattr(self, k) for k in PARAM_FIELDS if getattr(self, k) is not None}

    def to_numpy(self) -> "Params":
        """A copy whose arrays are NumPy float64 arrays."""
        return Params(**{k: np.asarray(v, dtype=np.float64) for k, v in self.to_dict().items()})

    def tree_flatten(self):
        return tuple(getattr(self, k) for k in PARAM_FIELDS), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __repr__(self) -> str:
        parts = [f"{k}={tuple(np.shape(v))}" for k, v in self.to_dict().items()]
        return "Params(" + ", ".join(parts) + ")"


def check_field(name: str, arr: np.ndarray, substrate) -> None:
    """Check the values of one field (finite; probabilities in [0, 1]; positive
    rates and scales; rows of ``T`` on the simplex of their candidates).

    Raises
    ------
    ValueError
        Naming the field and the index (type, node label, slot).
    """
    labels = substrate.labels
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise ValueError(f"Params field {name!r} is not finite at index {tuple(bad[0].tolist())}")
    if name in PROBABILITY_FIELDS:
        bad = np.argwhere((arr < 0) | (arr > 1))
        if len(bad):
            idx = tuple(bad[0].tolist())
            where = f"node {labels[idx[0]]!r}" if name == "a" else f"type {idx[0]}"
            raise ValueError(f"Params field {name!r} at {where} is {arr[idx].item()}, outside [0, 1]")
    if name in POSITIVE_FIELDS:
        bad = np.argwhere(arr <= 0)
        if len(bad):
            idx = tuple(bad[0].tolist())
            raise ValueError(f"Params field {name!r} at index {idx} is {arr[idx].item()}, must be > 0")
    if name == "T":
        check_T(arr, substrate)

def check_T(T: np.ndarray, substrate) -> None:
    """Check a migration kernel ``T (K, n, M)``: non-negative, zero on padded
    slots and sinks, rows summing to one (eq. 15).

    Raises
    ------
    ValueError
        Naming the type, node label and slot.
    """
    sub = substrate
    labels = sub.labels
    mask = sub.candidate_mask
    on_sink = np.argwhere((T != 0) & sub.is_sink[None, :, None])
    if len(on_sink):
        k, i, s = on_sink[0]
        raise ValueError(f"T[type {k}, node {labels[i]!r}] must be all zero: node {labels[i]!r} is a sink "
                         f"(no candidate move), but slot {s} holds {T[k, i, s].item()}")
    neg = np.argwhere(T < 0)
    if len(neg):
        k, i, s = neg[0]
        raise ValueError(f"T[type {k}, node {labels[i]!r}, slot {s}] = {T[k, i, s].item()} is negative")
    off = np.argwhere((T != 0) & ~mask[None])
    if len(off):
        k, i, s = off[0]
        raise ValueError(
            f"T[type {k}, node {labels[i]!r}] puts mass {T[k, i, s].item()} on padded slot {s}, "
            f"off the graph (node {labels[i]!r} has {sub.n_candidates[i]} candidates)")
    sums = T.sum(-1)
    bad = np.argwhere((np.abs(sums - 1.0) > 1e-6) & ~sub.is_sink[None])
    if len(bad):
        k, i = bad[0]
        raise ValueError(f"T[type {k}, node {labels[i]!r}] sums to {sums[k, i].item()!r}, must sum to 1")
