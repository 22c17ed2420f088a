"""Model specifications as data: spec files, and priors and fixed values in JSON/YAML form.

A spec file (YAML or JSON, read by :func:`read_spec`) holds the sections
``model`` (the options of :meth:`VesicleModel.from_spec
<nvppl.VesicleModel.from_spec>`), ``substrate`` (``allow_stay``,
``covariates``) and ``params`` (values of :class:`~nvppl.Params` fields); the
command line reads its models from such files (see ``docs/guide/cli.rst``).

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

import json
import re
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from .errors import SpecError  # also importable from here; documented as nvppl.SpecError

__all__ = [
    "DISTRIBUTIONS", "prior_to_json", "prior_from_json", "SPEC_SECTIONS", "SUBSTRATE_KEYS", "read_spec",
    "yaml_loader", "yaml_problem",
]

#: Sections of a spec file.
SPEC_SECTIONS = ("model", "substrate", "params")
#: Keys of the ``substrate`` section of a spec file.
SUBSTRATE_KEYS = ("allow_stay", "covariates")

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


# ------------------------------------------------------------------------- spec files
def yaml_loader():
    """A safe YAML loader that also reads numbers such as ``1e-3`` (no decimal point) as floats.

    Returns
    -------
    type
        A subclass of ``yaml.SafeLoader`` for ``yaml.load(text, Loader=...)``.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."),
    )
    return Loader


def yaml_problem(exc) -> str:
    """Where and what a YAML syntax error is, on one line (``line L, column C: problem``).

    Parameters
    ----------
    exc : yaml.YAMLError

    Returns
    -------
    str
    """
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return _one_line(exc)


def read_spec(path) -> dict:
    """Read a spec file and check its layout.

    Parameters
    ----------
    path : str or Path
        YAML (``.yaml``/``.yml``) or JSON (``.json``) file holding a mapping with
        the sections ``model`` (required: the dict of
        :meth:`VesicleModel.from_spec <nvppl.VesicleModel.from_spec>`),
        ``substrate`` (optional: ``allow_stay``, default true, and
        ``covariates``, a list of node attribute names) and ``params``
        (optional: Params field names to numbers or nested lists).

    Returns
    -------
    dict
        ``{"model": dict, "substrate": {"allow_stay": bool, "covariates": list},
        "params": dict}``. The sections are not checked against a model here:
        :meth:`VesicleModel.from_spec <nvppl.VesicleModel.from_spec>` checks the
        ``model`` section.

    Raises
    ------
    SpecError
        A file that cannot be read, an unknown extension, a syntax error, an
        unknown section or key (named in the message) or a value of the wrong
        kind. Every message starts with ``path``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "spec.yaml"
    >>> _ = path.write_text("model:\\n  n_types: 1\\nparams:\\n  delta: 1e-3\\n")
    >>> read_spec(path)["params"]
    {'delta': 0.001}
    >>> _ = path.write_text("model: {}\\nextra: 1\\n")
    >>> read_spec(path)
    Traceback (most recent call last):
    ...
    nvppl.errors.SpecError: ...: unknown spec section(s) ['extra']; sections are ['model', 'substrate', 'params']
    """
    data = _load(Path(path), path)
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: the spec must be a mapping with sections {list(SPEC_SECTIONS)}, "
                        f"got {type(data).__name__}")
    unknown = sorted(map(str, set(data) - set(SPEC_SECTIONS)))
    if unknown:
        raise SpecError(f"{path}: unknown spec section(s) {unknown}; sections are {list(SPEC_SECTIONS)}")
    if "model" not in data:
        raise SpecError(f"{path}: the spec has no 'model' section")
    model = _section(data, "model", path)
    if model.get("priors") is not None and not isinstance(model["priors"], Mapping):
        raise SpecError(f"{path}: model.priors must be a mapping of parameter names to priors or values, "
                        f"got {type(model['priors']).__name__}")
    return {"model": model, "substrate": _substrate_section(data, path), "params": _section(data, "params", path)}


def _load(p: Path, path):
    """The content of a spec file, by its extension."""
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SpecError(f"{path}: unknown spec format {suffix or '(no extension)'!r}; "
                        "use a .yaml, .yml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the spec file: {_one_line(exc)}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: invalid JSON: {exc}") from None
    import yaml

    try:
        return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {yaml_problem(exc)}") from None


def _substrate_section(data, path) -> dict:
    substrate = _section(data, "substrate", path)
    unknown = sorted(map(str, set(substrate) - set(SUBSTRATE_KEYS)))
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {unknown} in the substrate section; "
                        f"keys are {list(SUBSTRATE_KEYS)}")
    allow_stay = substrate.get("allow_stay", True)
    if not isinstance(allow_stay, bool):
        raise SpecError(f"{path}: substrate.allow_stay must be true or false, got {allow_stay!r}")
    covariates = substrate.get("covariates") or []
    if not isinstance(covariates, list) or not all(isinstance(c, str) for c in covariates):
        raise SpecError(f"{path}: substrate.covariates must be a list of node attribute names, "
                        f"got {covariates!r}")
    if len(set(covariates)) != len(covariates):
        raise SpecError(f"{path}: substrate.covariates lists an attribute twice: {covariates}")
    return {"allow_stay": allow_stay, "covariates": list(covariates)}


def _section(data, name, path) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}: the {name!r} section must be a mapping, got {type(value).__name__}")
    return dict(value)


def _one_line(exc) -> str:
    """The message of an exception on one line."""
    return " ".join((str(exc).strip() or type(exc).__name__).split())
