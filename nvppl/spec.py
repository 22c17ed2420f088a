"""Model specifications as data: priors and fixed values in JSON/YAML form.

A model's options and priors are written as plain mappings (the ``model``
section of a spec file, the model stored in a saved Fit):
``{"dist": "Normal", "loc": 0, "scale": 2}`` is a prior, a number or nested
list (or ``{"fixed": value}``) a fixed value. :meth:`VesicleModel.to_spec
<nvppl.VesicleModel.to_spec>` and :meth:`~nvppl.VesicleModel.from_spec` use
these functions.

Examples
--------
>>> import numpyro.distributions as dist
>>> prior_to_json("delta", dist.Beta(1.0, 3.0))
{'dist': 'Beta', 'concentration1': 1.0, 'concentration0': 3.0}
>>> prior_from_json("a", {"fixed": 0.0})
0.0
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from .errors import SpecError

__all__ = ["DISTRIBUTIONS", "prior_to_json", "prior_from_json", "SpecError"]

#: Distributions a spec may name, with their arguments in order.
DISTRIBUTIONS = {
    "Normal": ("loc", "scale"), "HalfNormal": ("scale",), "Beta": ("concentration1", "concentration0"),
    "Gamma": ("concentration", "rate"), "Dirichlet": ("concentration",), "LogNormal": ("loc", "scale"),
    "Exponential": ("rate",), "Uniform": ("low", "high"), "HalfCauchy": ("scale",),
    "StudentT": ("df", "loc", "scale"), "Cauchy": ("loc", "scale"), "InverseGamma": ("concentration", "rate"),
}


def prior_to_json(name, prior):
    """A JSON-compatible dict of a prior (``{"dist": ..., args}``) or a fixed value (``{"fixed": value}``).

    Raises
    ------
    SpecError
        A distribution that cannot be written (not in :data:`DISTRIBUTIONS`).
    """
    if isinstance(prior, dist.Distribution):
        kind = type(prior).__name__
        if kind not in DISTRIBUTIONS:
            raise SpecError(f"the prior on {name!r} ({kind}) cannot be written to a file; "
                            f"supported: {sorted(DISTRIBUTIONS)}")
        return {"dist": kind, **{a: np.asarray(getattr(prior, a)).tolist() for a in DISTRIBUTIONS[kind]}}
    return {"fixed": np.asarray(prior, dtype=np.float64).tolist()}


def prior_from_json(name, spec):
    """Inverse of :func:`prior_to_json`; a number or nested list is a fixed value.

    Raises
    ------
    SpecError
        An unknown distribution or argument (named in the message).
    """
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "fixed" in spec:
            return spec["fixed"]
        kind = spec.pop("dist", None)
        if kind not in DISTRIBUTIONS:
            raise SpecError(f"prior on {name!r}: 'dist' must be one of {sorted(DISTRIBUTIONS)}, got {kind!r}")
        extra = set(spec) - set(DISTRIBUTIONS[kind])
        if extra:
            raise SpecError(f"prior on {name!r}: {kind} takes {list(DISTRIBUTIONS[kind])}, got {sorted(extra)}")
        return getattr(dist, kind)(**{k: jnp.asarray(v, dtype=jnp.float64) for k, v in spec.items()})
    return spec
