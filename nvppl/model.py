"""``VesicleModel``: the specification of a vesicle life-cycle model and its priors.

The model of :ref:`design-model` on a :class:`~nvppl.substrate.Substrate`: emission
(eq. 9–13), migration (eq. 15–17), docking (eq. 18–19), absorption and decay
(eq. 37–38). The model holds options that are never inferred (number of types,
content dimension, lifetime family, emission link, tilt, budgets, temperatures)
and, for every parameter field, either a prior (a NumPyro distribution) or a
fixed value.
"""

from __future__ import annotations

import functools
import json
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ._validate import as_jax_key, nonneg_int, positive_int
from .params import PARAM_FIELDS, Params, check_field
from .priors import default_priors, prepare_prior, row_dirichlet
from .spec import prior_from_json, prior_to_json
from .substrate import Substrate

__all__ = ["VesicleModel", "ModelKey", "LIFETIMES", "EMISSION_LINKS"]

LIFETIMES = ("geometric", "countdown")
EMISSION_LINKS = ("sigmoid", "log")

class VesicleModel:
    """A vesicle life-cycle model on a substrate graph (:ref:`design-model`).

    Parameters
    ----------
    substrate : Substrate
        The graph.
    n_types : int, default 2
        Number of vesicle types ``K``.
    content_dim : int, default 0
        Content dimension ``d_c`` (0 for content-free vesicles).
    lifetime : {"geometric", "countdown"}
        ``"geometric"``: removal with probability ``δ_κ`` each step.
        ``"countdown"``: ``τ₀ ~ Gamma(shape_κ, rate_κ)`` at birth,
        ``τ ← τ − 1 + ε`` with ``ε ~ Normal(0, σ_τ²)`` (eq. 37), removal when ``τ ≤ 0``.
    emission_link : {"sigmoid", "log"}
        ``λ = r_max σ(X·u)`` (eq. 9) or ``λ = exp(X·u)``.
    covariate_dim : int, default 0
        Number ``p`` of user covariates ``F[t, i, :]``; the design matrix is
        ``X = (1, F)``.
    tilt : bool, default False
        Infer the migration score ``q_t(ℓ', c) = F[t,ℓ']·v_κ + c·Q_κ[ℓ']`` (eq. 17).
        When False, ``v = 0`` and ``Q = 0`` and migration is the Markov kernel ``T``.
    budget : int, sequence of int or None
        Release budget per type; ``None`` is infinite.
    gamma : float or sequence of float, default 1.0
        Fixed migration temperature ``γ_κ`` (not inferred).
    sigma_tau : float, default 0.0
        Lifetime noise ``σ_τ`` of countdown lifetimes (simulation only: the
        likelihood requires ``σ_τ = 0``).
    priors : mapping, optional
        Per parameter field, a NumPyro distribution (the prior; scalar
        distributions are broadcast over the field's shape) or a value (the
        parameter is fixed and not inferred). Defaults: ``Normal(0, 1.5)`` on
        ``u, w, w_c, v, Q, content_mean, content_B``; ``Dirichlet(1)`` on each row of
        ``T`` (pass ``dist.Dirichlet(alpha)`` with ``alpha`` broadcastable to
        ``(K, n, M)`` to change it); ``Beta(1, 1)`` on ``delta`` and ``a``;
        ``Gamma(2, 1)`` on ``shape`` and ``rate``; ``HalfNormal(1)`` on
        ``content_scale``; ``r_max`` fixed at 1.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> sub = nv.Substrate.from_networkx(nx.cycle_graph(4))
    >>> model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0})
    >>> model.inferred
    ('u', 'T', 'w', 'delta')
    >>> model.sample_params(0).delta.shape
    (1,)
    """

    def __init__(
        self,
        substrate: Substrate,
        n_types: int = 2,
        content_dim: int = 0,
        lifetime: str = "geometric",
        emission_link: str = "sigmoid",
        covariate_dim: int = 0,
        tilt: bool = False,
        budget=None,
        gamma=1.0,
        sigma_tau: float = 0.0,
        priors: Mapping | None = None,
    ):
        if not isinstance(substrate, Substrate):
            raise TypeError("substrate must be an nvppl.Substrate (use Substrate.from_networkx(G))")
        self.substrate = substrate
        self.n_types = positive_int(n_types, "n_types")
        self.content_dim = nonneg_int(content_dim, "content_dim")
        self.covariate_dim = nonneg_int(covariate_dim, "covariate_dim")
        if lifetime not in LIFETIMES:
            raise ValueError(f"lifetime must be one of {LIFETIMES}, got {lifetime!r}")
        if emission_link not in EMISSION_LINKS:
            raise ValueError(f"emission_link must be one of {EMISSION_LINKS}, got {emission_link!r}")
        self.lifetime = lifetime
        self.emission_link = emission_link
        self.tilt = bool(tilt)
        K = self.n_types
        self.budget = _budget(budget, K)
        self.gamma = _per_type(gamma, K, "gamma")
        if not np.all(np.isfinite(self.gamma)):
            raise ValueError("gamma must be finite")
        self.sigma_tau = float(sigma_tau)
        if not (np.isfinite(self.sigma_tau) and self.sigma_tau >= 0):
            raise ValueError(f"sigma_tau must be a finite number >= 0, got {sigma_tau!r}")
        if self.sigma_tau > 0 and lifetime != "countdown":
            raise ValueError("sigma_tau applies to countdown lifetimes only (lifetime='countdown')")
        self._user_priors = dict(priors or {})
        self.priors, self.fixed = self._resolve_priors(self._user_priors)

    # ------------------------------------------------------------ dimensions
    @property
    def n_nodes(self) -> int:
        """Number of nodes ``n``."""
        return self.substrate.n_nodes

    @property
    def x_dim(self) -> int:
        """Columns of the design matrix ``X = (1, F)``: ``1 + covariate_dim``."""
        return 1 + self.covariate_dim

    @property
    def content_dependent_docking(self) -> bool:
        """Whether docking depends on content (``w_c`` inferred or non-zero)."""
        return self.content_dim > 0 and ("w_c" in self.priors or np.any(self.fixed["w_c"] != 0))

    @property
    def tilted(self) -> bool:
        """Whether migration has a non-zero score term (eq. 17)."""
        if self.tilt:
            return True
        return bool(np.any(self.fixed["v"] != 0) or np.any(self.fixed["Q"] != 0))

    def field_shape(self, name: str) -> tuple | None:
        """Shape of a parameter field, or ``None`` when the lifetime family does not use it."""
        K, n, M = self.n_types, self.n_nodes, self.substrate.max_candidates
        p, dx, dc = self.covariate_dim, self.x_dim, self.content_dim
        shapes = {
            "u": (K, dx), "r_max": (K,), "T": (K, n, M), "v": (K, p), "Q": (K, n, dc),
            "w": (K, dx), "w_c": (K, dc), "a": (n,), "delta": (K,), "shape": (K,),
            "rate": (K,), "content_mean": (K, dc), "content_B": (K, p, dc), "content_scale": (K, dc),
        }
        if self.lifetime == "geometric" and name in ("shape", "rate"):
            return None
        if self.lifetime == "countdown" and name == "delta":
            return None
        return shapes[name]

    @property
    def inferred(self) -> tuple:
        """Names of the parameter fields that carry a prior (are inferred)."""
        return tuple(k for k in PARAM_FIELDS if k in self.priors)

    # --------------------------------------------------------------- priors
    def _active(self, name: str) -> bool:
        """Whether a field may carry a prior under the model options."""
        shape = self.field_shape(name)
        if shape is None or int(np.prod(shape)) == 0:
            return False
        if name in ("v", "Q"):
            return self.tilt
        if name == "r_max":
            return self.emission_link == "sigmoid"
        return True

    def _resolve_priors(self, user: Mapping):
        unknown = set(user) - set(PARAM_FIELDS)
        if unknown:
            raise ValueError(f"unknown parameter name(s) in priors: {sorted(unknown)}; names are {list(PARAM_FIELDS)}")
        defaults = default_priors()
        defaults["T"] = None  # built per row below
        priors, fixed = {}, {}
        for name in PARAM_FIELDS:
            shape = self.field_shape(name)
            spec = user.get(name, defaults[name])
            if shape is None:
                if name in user:
                    raise ValueError(f"{name!r} is not a parameter of a {self.lifetime!r} lifetime model")
                continue
            if isinstance(spec, dist.Distribution) or (name == "T" and spec is None):
                if not self._active(name):
                    if name in user:
                        why = "tilt=False" if name in ("v", "Q") else (
                            "emission_link='log'" if name == "r_max" else f"its shape is {shape}")
                        raise ValueError(f"a prior on {name!r} needs the parameter to be in the model ({why}); "
                                         "pass a value to fix it instead")
                    fixed[name] = self._default_value(name)
                    continue
                priors[name] = row_dirichlet(spec, self.substrate, self.n_types) if name == "T" \
                    else prepare_prior(name, spec, shape)
            else:
                value = np.broadcast_to(np.asarray(spec, dtype=np.float64), shape) if np.ndim(spec) == 0 \
                    else np.asarray(spec, dtype=np.float64)
                if value.shape != shape:
                    raise ValueError(f"fixed value of {name!r} has shape {value.shape}, expected {shape}")
                fixed[name] = np.array(value)
        for name, value in fixed.items():
            check_field(name, value, self.substrate)
        return priors, fixed

    def _default_value(self, name: str) -> np.ndarray:
        """Default value of a field (used when it is not inferred, and by
        :meth:`default_params`): emission rate 0.5, uniform ``T``, docking
        probability 0.2, no absorption, decay 0.05 (mean countdown lifetime 20)."""
        shape = self.field_shape(name)
        sub = self.substrate
        if name == "u":
            out = np.zeros(shape)
            out[:, 0] = 0.0 if self.emission_link == "sigmoid" else np.log(0.5)
            return out
        if name == "r_max":
            return np.ones(shape)
        if name == "T":
            row = np.where(sub.candidate_mask, 1.0 / np.maximum(sub.n_candidates, 1)[:, None], 0.0)
            return np.broadcast_to(row, shape).copy()
        if name == "w":
            out = np.zeros(shape)
            out[:, 0] = np.log(0.2 / 0.8)
            return out
        if name == "delta":
            return np.full(shape, 0.05)
        if name == "shape":
            return np.full(shape, 2.0)
        if name == "rate":
            return np.full(shape, 0.1)
        if name == "content_scale":
            return np.ones(shape)
        return np.zeros(shape)

    # ------------------------------------------------------------ parameters
    def default_params(self) -> Params:
        """Parameters at their defaults, with fixed values applied.

        Defaults: emission rate 0.5 per node and type, uniform migration over the
        candidates, docking probability 0.2, no absorption, decay probability 0.05
        (countdown: ``τ₀ ~ Gamma(2, 0.1)``), content ~ Normal(0, 1).
        """
        return self.params_with({})

    def sample_params(self, key) -> Params:
        """Draw parameters from the priors (fixed fields keep their values).

        Parameters
        ----------
        key : int or jax key
        """
        return _prior_sampler(self)(as_jax_key(key)).to_numpy()

    def param_sites(self) -> Params:
        """Inside a NumPyro program: declare a sample site per inferred field
        (named as the field) and return the full :class:`Params`. The rows of ``T``
        are sampled per node degree (sites ``T_rows_<m>``) and assembled into the
        deterministic site ``T``."""
        values = {}
        for name in PARAM_FIELDS:
            if self.field_shape(name) is None:
                continue
            if name in self.fixed:
                values[name] = jnp.asarray(self.fixed[name])
            elif name == "T":
                values[name] = self.priors["T"].sample_sites()
            else:
                values[name] = numpyro.sample(name, self.priors[name])
        return Params(**values)

    def params_with(self, values: Mapping) -> Params:
        """Params from values of (some) inferred fields, the fixed fields filled in.

        The values may carry leading sample axes (e.g. ``(draw, *field_shape)``);
        fixed fields are broadcast to the same leading axes.
        """
        out, lead = {}, ()
        for name, value in values.items():
            value = np.asarray(value)
            out[name] = value
            lead = value.shape[: value.ndim - len(self.field_shape(name))]
        for name in PARAM_FIELDS:
            shape = self.field_shape(name)
            if shape is not None and name not in out:
                value = self.fixed[name] if name in self.fixed else self._default_value(name)
                out[name] = np.array(np.broadcast_to(value, lead + shape))
        return Params(**out)

    def check_params(self, params: Params) -> Params:
        """Validate parameters against the model and return them as NumPy arrays.

        Raises
        ------
        ValueError
            A missing field, a shape mismatch, a non-finite value, a probability
            outside [0, 1], a non-positive rate or scale, a ``T`` row off the
            simplex or with mass off the graph. The message names the field and
            the index (type, node label, slot).
        """
        if not isinstance(params, Params):
            raise TypeError(f"expected nvppl Params, got {type(params).__name__}")
        out = {}
        for name in PARAM_FIELDS:
            shape = self.field_shape(name)
            value = getattr(params, name)
            if shape is None:
                continue
            if value is None:
                raise ValueError(f"Params field {name!r} is missing (expected shape {shape})")
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != shape:
                raise ValueError(f"Params field {name!r} has shape {arr.shape}, expected {shape}")
            check_field(name, arr, self.substrate)
            if name in ("v", "Q", "w_c") and name in self.fixed and not np.any(self.fixed[name]) and np.any(arr):
                what = "docking does not depend on content" if name == "w_c" else "migration has no tilt"
                raise ValueError(f"Params field {name!r} is non-zero, but the model fixes it at 0 ({what} in this "
                                 f"model, and the samplers and the density rely on that); give {name!r} a prior "
                                 f"or a non-zero fixed value in the model instead")
            out[name] = arr
        return Params(**out)

    # ----------------------------------------------------------- serialising
    def to_spec(self) -> dict:
        """A JSON-compatible dict of the model options and priors (without the substrate).

        Examples
        --------
        >>> import networkx as nx, nvppl as nv
        >>> sub = nv.Substrate.from_networkx(nx.path_graph(2))
        >>> nv.VesicleModel(sub, n_types=1, priors={"a": 0.0}).to_spec()["priors"]["a"]
        {'fixed': 0.0}
        """
        return {
            "n_types": self.n_types, "content_dim": self.content_dim, "lifetime": self.lifetime,
            "emission_link": self.emission_link, "covariate_dim": self.covariate_dim, "tilt": self.tilt,
            "budget": [None if np.isinf(b) else int(b) for b in self.budget],
            "gamma": self.gamma.tolist(), "sigma_tau": self.sigma_tau,
            "priors": {k: prior_to_json(k, v) for k, v in self._user_priors.items()},
        }

    @classmethod
    def from_spec(cls, substrate: Substrate, spec: Mapping) -> "VesicleModel":
        """Inverse of :meth:`to_spec`; also reads the model section of a CLI spec file.

        Priors are given as ``{"dist": "Normal", "loc": 0, "scale": 2}``, fixed
        values as numbers, nested lists or ``{"fixed": value}``.
        """
        spec = dict(spec)
        unknown = set(spec) - {"n_types", "content_dim", "lifetime", "emission_link", "covariate_dim",
                               "tilt", "budget", "gamma", "sigma_tau", "priors"}
        if unknown:
            raise ValueError(f"unknown model option(s) {sorted(unknown)}")
        priors = {k: prior_from_json(k, v) for k, v in (spec.pop("priors", None) or {}).items()}
        budget = spec.pop("budget", None)
        if isinstance(budget, list):
            budget = [np.inf if b is None else b for b in budget]
        return cls(substrate, budget=budget, priors=priors, **spec)

    def to_json(self) -> str:
        """Model options, priors and substrate as one JSON string (see :meth:`from_json`)."""
        return json.dumps({"model": self.to_spec(), "substrate": json.loads(self.substrate.to_json())})

    @classmethod
    def from_json(cls, text: str) -> "VesicleModel":
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        sub = Substrate.from_json(json.dumps(data["substrate"]))
        return cls.from_spec(sub, data["model"])

    def __repr__(self) -> str:
        return (f"VesicleModel(n_types={self.n_types}, content_dim={self.content_dim}, "
                f"lifetime={self.lifetime!r}, emission_link={self.emission_link!r}, "
                f"covariate_dim={self.covariate_dim}, tilt={self.tilt}, "
                f"inferred={list(self.inferred)}, substrate={self.substrate!r})")


class ModelKey:
    """Cache key of a model: models with the same specification (substrate,
    options, priors) share compiled programs."""

    def __init__(self, model):
        self.model = model
        try:
            self.text = model.to_json()
        except ValueError:  # a prior that cannot be serialised: key on identity
            self.text = f"id:{id(model)}"

    def __hash__(self):
        return hash(self.text)

    def __eq__(self, other):
        return isinstance(other, ModelKey) and self.text == other.text


def _prior_sampler(model):
    """A compiled prior sampler, shared by models of the same specification."""
    return _cached_prior_sampler(ModelKey(model))


@functools.lru_cache(maxsize=32)
def _cached_prior_sampler(key: ModelKey):
    return jax.jit(lambda rng: numpyro.handlers.seed(key.model.param_sites, rng)())


def _per_type(x, K, name):
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(K, float(arr))
    if arr.shape != (K,):
        raise ValueError(f"{name} must be a number or have one entry per type ({K}), got shape {arr.shape}")
    return arr.copy()


def _budget(budget, K):
    if budget is None:
        return np.full(K, np.inf)
    if isinstance(budget, (list, tuple)):
        budget = [np.inf if b is None else b for b in budget]
    arr = _per_type(budget, K, "budget")
    for k, b in enumerate(arr):
        if not (np.isinf(b) and b > 0) and not (b >= 1 and b == int(b)):
            raise ValueError(f"budget of type {k} must be a positive integer or None (infinite), got {b.item()!r}")
    return arr
