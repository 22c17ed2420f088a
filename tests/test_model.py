"""Tests of VesicleModel options, priors, Params and parameter validation."""

import dataclasses
import json
import re

import jax
import networkx as nx
import numpy as np
import numpyro.distributions as dist
import pytest

import nvppl as nv
from nvppl.params import PARAM_FIELDS


@pytest.fixture(scope="module")
def path3():
    """Undirected path a - b - c with stay (3 candidate slots)."""
    return nv.Substrate.from_networkx(nx.path_graph(["a", "b", "c"]))


@pytest.fixture(scope="module")
def sink_sub():
    """a -> b, a -> c, b -> c without stay: c is a sink."""
    return nv.Substrate.from_networkx(nx.DiGraph([("a", "b"), ("a", "c"), ("b", "c")]), allow_stay=False)


@pytest.fixture(scope="module")
def rich_model(sink_sub):
    """A model with every optional part, used for prior sampling (compiled once)."""
    return nv.VesicleModel(sink_sub, n_types=2, content_dim=1, covariate_dim=1, lifetime="countdown",
                           tilt=True, budget=[1, np.inf], priors={"a": 0.0})


# ------------------------------------------------------------------ options
def test_default_options(path3):
    """Defaults: 2 types, no content, geometric, sigmoid, no covariates, infinite budgets."""
    m = nv.VesicleModel(path3)
    assert (m.n_types, m.content_dim, m.covariate_dim, m.x_dim) == (2, 0, 0, 1)
    assert m.lifetime == "geometric" and m.emission_link == "sigmoid" and m.tilt is False
    assert np.all(np.isinf(m.budget)) and m.budget.shape == (2,)
    np.testing.assert_array_equal(m.gamma, [1.0, 1.0])
    assert m.sigma_tau == 0.0
    assert m.inferred == ("u", "T", "w", "a", "delta")
    assert not m.tilted and not m.content_dependent_docking


@pytest.mark.parametrize(
    "kw, inferred",
    [
        (dict(n_types=1), ("u", "T", "w", "a", "delta")),
        (dict(n_types=3, lifetime="countdown"), ("u", "T", "w", "a", "shape", "rate")),
        (dict(content_dim=2), ("u", "T", "w", "w_c", "a", "delta", "content_mean", "content_scale")),
        (dict(content_dim=2, covariate_dim=1),
         ("u", "T", "w", "w_c", "a", "delta", "content_mean", "content_B", "content_scale")),
        (dict(covariate_dim=2), ("u", "T", "w", "a", "delta")),
        (dict(tilt=True), ("u", "T", "w", "a", "delta")),
        (dict(tilt=True, covariate_dim=1), ("u", "T", "v", "w", "a", "delta")),
        (dict(tilt=True, content_dim=1), ("u", "T", "Q", "w", "w_c", "a", "delta", "content_mean", "content_scale")),
        (dict(emission_link="log"), ("u", "T", "w", "a", "delta")),
        (dict(priors={"r_max": dist.Gamma(2.0, 1.0)}), ("u", "r_max", "T", "w", "a", "delta")),
        (dict(priors={"a": 0.0, "w": 0.0}), ("u", "T", "delta")),
    ],
)
def test_inferred_fields(path3, kw, inferred):
    """Which fields carry a prior depends on the options; the others are fixed."""
    m = nv.VesicleModel(path3, **kw)
    assert m.inferred == inferred
    active = [k for k in PARAM_FIELDS if m.field_shape(k) is not None]
    assert set(m.inferred) | set(m.fixed) == set(active)
    assert not set(m.inferred) & set(m.fixed)


@pytest.mark.parametrize("K, dc, p, life", [(1, 0, 0, "geometric"), (3, 2, 1, "countdown"), (2, 1, 2, "geometric")])
def test_field_shapes_and_default_params(path3, K, dc, p, life):
    """default_params has the documented shape for every field and passes check_params."""
    m = nv.VesicleModel(path3, n_types=K, content_dim=dc, covariate_dim=p, lifetime=life)
    n, M, dx = 3, 3, 1 + p
    want = {"u": (K, dx), "r_max": (K,), "T": (K, n, M), "v": (K, p), "Q": (K, n, dc), "w": (K, dx),
            "w_c": (K, dc), "a": (n,), "content_mean": (K, dc), "content_B": (K, p, dc), "content_scale": (K, dc)}
    if life == "geometric":
        want["delta"] = (K,)
    else:
        want["shape"] = want["rate"] = (K,)
    params = m.default_params()
    assert {k: np.shape(v) for k, v in params.to_dict().items()} == want
    for name in PARAM_FIELDS:
        assert m.field_shape(name) == want.get(name)
    checked = m.check_params(params)
    for k in want:
        np.testing.assert_array_equal(getattr(checked, k), getattr(params, k))


def test_default_param_values(sink_sub):
    """Defaults: uniform T on candidates, dock prob 0.2, rate 0.5, delta 0.05, no absorption."""
    m = nv.VesicleModel(sink_sub, n_types=2)
    p = m.default_params()
    np.testing.assert_allclose(p.T[0], [[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(p.T[0], p.T[1])
    np.testing.assert_allclose(1 / (1 + np.exp(-p.w[:, 0])), [0.2, 0.2])
    np.testing.assert_allclose(p.r_max / (1 + np.exp(-p.u[:, 0])), [0.5, 0.5])
    np.testing.assert_array_equal(p.delta, [0.05, 0.05])
    np.testing.assert_array_equal(p.a, [0, 0, 0])
    log = nv.VesicleModel(sink_sub, n_types=1, emission_link="log").default_params()
    np.testing.assert_allclose(np.exp(log.u[:, 0]), [0.5])
    cd = nv.VesicleModel(sink_sub, n_types=1, lifetime="countdown").default_params()
    np.testing.assert_allclose(cd.shape / cd.rate, [20.0])
    assert cd.delta is None


def test_budget_gamma_sigma_tau_options(path3):
    """Per-type budgets and temperatures, infinite budgets, countdown noise are kept."""
    m = nv.VesicleModel(path3, n_types=3, budget=[1, 4, np.inf], gamma=[0.5, 1.0, 2.0],
                        lifetime="countdown", sigma_tau=0.3)
    np.testing.assert_array_equal(m.budget, [1, 4, np.inf])
    np.testing.assert_array_equal(m.gamma, [0.5, 1.0, 2.0])
    assert m.sigma_tau == 0.3
    m2 = nv.VesicleModel(path3, n_types=2, budget=3, gamma=0.25)
    np.testing.assert_array_equal(m2.budget, [3, 3])
    np.testing.assert_array_equal(m2.gamma, [0.25, 0.25])


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_types=0), "n_types"),
        (dict(n_types=1.5), "n_types"),
        (dict(n_types=True), "n_types"),
        (dict(content_dim=-1), "content_dim"),
        (dict(covariate_dim=-2), "covariate_dim"),
        (dict(lifetime="weibull"), "lifetime"),
        (dict(emission_link="probit"), "emission_link"),
        (dict(budget=0), "budget of type 0"),
        (dict(budget=[2, 1.5]), "budget of type 1"),
        (dict(budget=-np.inf), "budget of type 0"),
        (dict(gamma=[1.0, 2.0, 3.0]), "gamma"),
        (dict(gamma=np.inf), "gamma"),
        (dict(sigma_tau=-0.1, lifetime="countdown"), "sigma_tau"),
        (dict(sigma_tau=0.5), "sigma_tau.*countdown"),
        (dict(priors={"foo": 1.0}), r"unknown parameter name.*'foo'"),
    ],
)
def test_bad_options_refused(path3, kw, match):
    """Invalid options are a ValueError naming the option."""
    kw = {"n_types": 2, **kw}
    with pytest.raises(ValueError, match=match):
        nv.VesicleModel(path3, **kw)


def test_substrate_type_checked():
    """A networkx graph instead of a Substrate is a TypeError."""
    with pytest.raises(TypeError, match="Substrate"):
        nv.VesicleModel(nx.path_graph(3))


def test_budget_none_entry_is_infinite(path3):
    """A None entry in a per-type budget means an infinite budget for that type."""
    m = nv.VesicleModel(path3, n_types=2, budget=[2, None])
    np.testing.assert_array_equal(m.budget, [2, np.inf])


# ------------------------------------------------------------------- priors
def test_fixing_a_field_by_value(path3):
    """Passing a value fixes a field: not inferred, used by default_params (scalars broadcast)."""
    T = np.zeros((1, 3, 3))
    T[0, :, 0] = 1.0
    m = nv.VesicleModel(path3, n_types=1, priors={"a": 0.25, "T": T, "delta": [0.3]})
    assert "a" not in m.inferred and "T" not in m.inferred and "delta" not in m.inferred
    p = m.default_params()
    np.testing.assert_array_equal(p.a, [0.25, 0.25, 0.25])
    np.testing.assert_array_equal(p.T, T)
    np.testing.assert_array_equal(p.delta, [0.3])


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("a", np.zeros(2), r"'a' has shape \(2,\), expected \(3,\)"),
        ("delta", 1.5, r"'delta' at type 0 is 1.5, outside \[0, 1\]"),
        ("a", [0.0, -0.1, 0.0], r"'a' at node 'b' is -0.1"),
        ("u", np.nan, r"'u' is not finite at index \(0, 0\)"),
        ("r_max", 0.0, r"'r_max' at index \(0,\) is 0.0, must be > 0"),
    ],
)
def test_fixed_value_validated(path3, name, value, match):
    """A fixed value is checked like a parameter, naming field and index."""
    with pytest.raises(ValueError, match=match):
        nv.VesicleModel(path3, n_types=1, priors={name: value})


def test_fixed_T_validated(path3):
    """A fixed T off the simplex is refused naming type and node."""
    T = np.full((1, 3, 3), 0.3)
    T[0, [0, 2], 2] = 0.0
    with pytest.raises(ValueError, match=r"T\[type 0, node 'a'\]"):
        nv.VesicleModel(path3, n_types=1, priors={"T": T})


@pytest.mark.parametrize(
    "name, prior, kw, match",
    [
        ("v", dist.Normal(0.0, 1.0), dict(covariate_dim=1), r"'v'.*tilt=False"),
        ("Q", dist.Normal(0.0, 1.0), dict(content_dim=1), r"'Q'.*tilt=False"),
        ("delta", dist.Beta(1.0, 1.0), dict(lifetime="countdown"), r"'delta' is not a parameter of a 'countdown'"),
        ("delta", 0.1, dict(lifetime="countdown"), r"'delta' is not a parameter of a 'countdown'"),
        ("shape", dist.Gamma(2.0, 1.0), dict(), r"'shape' is not a parameter of a 'geometric'"),
        ("rate", 1.0, dict(), r"'rate' is not a parameter of a 'geometric'"),
        ("r_max", dist.Gamma(2.0, 1.0), dict(emission_link="log"), r"'r_max'.*emission_link='log'"),
        ("content_B", dist.Normal(0.0, 1.0), dict(content_dim=1), r"'content_B'.*shape is \(2, 0, 1\)"),
        ("w_c", dist.Normal(0.0, 1.0), dict(), r"'w_c'.*shape is \(2, 0\)"),
    ],
)
def test_prior_on_absent_field_refused(path3, name, prior, kw, match):
    """A prior (or value) for a field the model does not have is a ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        nv.VesicleModel(path3, n_types=2, priors={name: prior}, **kw)


@pytest.mark.parametrize(
    "name, prior, kw, match",
    [
        ("delta", dist.Normal(0.0, 1.0), {}, r"'delta' must have support in \[0, 1\]"),
        ("a", dist.HalfNormal(1.0), {}, r"'a' must have support in \[0, 1\]"),
        ("a", dist.Uniform(-1.0, 1.0), {}, r"'a' must have support in \[0, 1\]"),
        ("rate", dist.Normal(1.0, 1.0), dict(lifetime="countdown"), r"'rate' must have positive support"),
        ("shape", dist.Cauchy(0.0, 1.0), dict(lifetime="countdown"), r"'shape' must have positive support"),
        ("content_scale", dist.Normal(0.0, 1.0), dict(content_dim=1), r"'content_scale' must have positive"),
        ("r_max", dist.Normal(1.0, 1.0), {}, r"'r_max' must have positive support"),
        ("T", dist.Normal(0.0, 1.0), {}, r"'T' must be a numpyro Dirichlet"),
        ("T", dist.Dirichlet(np.ones(4)), {}, r"concentration for 'T' has shape \(4,\)"),
        ("u", dist.MultivariateNormal(np.zeros(2), np.eye(2)), {}, r"'u' must be a scalar.*event shape \(2,\)"),
        ("u", dist.Normal(np.zeros(5), 1.0), {}, r"'u' has batch shape \(5,\).*\(2, 1\)"),
    ],
)
def test_prior_support_and_shape_checked(path3, name, prior, kw, match):
    """Priors with the wrong support, family or shape are refused naming the field."""
    with pytest.raises(ValueError, match=match):
        nv.VesicleModel(path3, n_types=2, priors={name: prior}, **kw)


@pytest.mark.parametrize(
    "name, prior, kw",
    [("rate", dist.Uniform(-0.5, 2.0), dict(lifetime="countdown")),
     ("delta", dist.Uniform(0.0, 1.2), {}),
     ("delta", dist.Uniform(-0.2, 1.0), {})],
)
def test_prior_support_checked_everywhere(path3, name, prior, kw):
    """A prior whose support reaches outside the field's domain anywhere is refused."""
    with pytest.raises(ValueError, match=name):
        nv.VesicleModel(path3, n_types=1, priors={name: prior}, **kw)


def test_custom_priors_are_used(path3):
    """A user prior replaces the default and is expanded to the field's shape."""
    m = nv.VesicleModel(path3, n_types=2, priors={"u": dist.Normal(3.0, 0.1),
                                                  "T": dist.Dirichlet(np.full(3, 5.0))})
    assert m.priors["u"].event_shape == (2, 1)
    lp = float(m.priors["u"].log_prob(np.full((2, 1), 3.0)))
    assert lp == pytest.approx(2 * float(dist.Normal(3.0, 0.1).log_prob(3.0)))
    conc = m.priors["T"].concentration
    assert conc.shape == (2, 3, 3)
    assert conc[0, 0].tolist() == [5.0, 5.0, 0.0]  # padded slot of node 'a' is zero


def test_default_prior_families(path3):
    """Default priors: Normal(0, 1.5) weights, Beta(1, 1) probabilities, Gamma(2, 1) lifetimes."""
    m = nv.VesicleModel(path3, n_types=2, lifetime="countdown", content_dim=1)
    base = lambda name: m.priors[name].base_dist.base_dist  # noqa: E731
    assert isinstance(base("u"), dist.Normal) and float(base("u").scale) == 1.5
    assert isinstance(base("a"), dist.Beta)
    assert float(base("a").concentration1) == 1.0 and float(base("a").concentration0) == 1.0
    for name in ("shape", "rate"):
        assert isinstance(base(name), dist.Gamma)
        assert (float(base(name).concentration), float(base(name).rate)) == (2.0, 1.0)
    assert isinstance(base("content_scale"), dist.HalfNormal)
    np.testing.assert_array_equal(m.fixed["r_max"], [1.0, 1.0])


# ------------------------------------------------------------- prior draws
def test_sample_params_reproducible_and_valid(rich_model):
    """The same key gives the same draw, another key another; draws are valid Params."""
    p0, p0b, p1 = rich_model.sample_params(0), rich_model.sample_params(0), rich_model.sample_params(1)
    jkey = rich_model.sample_params(jax.random.PRNGKey(0))
    for name in rich_model.inferred:
        np.testing.assert_array_equal(getattr(p0, name), getattr(p0b, name))
        np.testing.assert_array_equal(getattr(p0, name), getattr(jkey, name))
        assert not np.array_equal(getattr(p0, name), getattr(p1, name)), name
    checked = rich_model.check_params(p1)
    assert checked.delta is None and checked.shape.shape == (2,)
    np.testing.assert_array_equal(p1.a, [0.0, 0.0, 0.0])  # fixed
    np.testing.assert_array_equal(p1.T[:, 2], 0.0)  # sink row
    np.testing.assert_allclose(p1.T[:, :2].sum(-1), 1.0)
    np.testing.assert_array_equal(p1.T[:, 1, 1], 0.0)  # padded slot of node 'b'
    np.testing.assert_array_equal(p1.T[:, 1, 0], 1.0)  # one candidate: all mass
    assert np.all(p1.shape > 0) and np.all(p1.rate > 0) and np.all(p1.content_scale > 0)


def test_sample_params_bad_key(rich_model):
    """A negative seed or a malformed key is refused."""
    with pytest.raises(ValueError, match="non-negative"):
        rich_model.sample_params(-1)
    with pytest.raises(TypeError, match="key"):
        rich_model.sample_params(np.zeros(3, np.uint32))


# -------------------------------------------------------------------- Params
def test_params_replace_and_immutability(path3):
    """replace returns a changed copy; unknown fields are a TypeError; fields are frozen."""
    p = nv.VesicleModel(path3, n_types=1).default_params()
    q = p.replace(delta=np.array([0.4]))
    np.testing.assert_array_equal(q.delta, [0.4])
    np.testing.assert_array_equal(p.delta, [0.05])
    assert q.T is p.T
    with pytest.raises(TypeError, match=r"unknown Params field.*'deltaa'"):
        p.replace(deltaa=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.delta = np.array([0.1])


def test_params_pytree_and_dict(path3):
    """Params is a JAX pytree; to_dict leaves out absent fields; to_numpy gives float64."""
    p = nv.VesicleModel(path3, n_types=1, lifetime="countdown").default_params()
    assert set(p.to_dict()) == {k for k in PARAM_FIELDS if k != "delta"}
    doubled = jax.tree.map(lambda x: 2 * x, p)
    assert isinstance(doubled, nv.Params)
    np.testing.assert_allclose(doubled.rate, 2 * p.rate)
    assert doubled.delta is None
    leaves = jax.tree.leaves(p)
    assert len(leaves) == len(PARAM_FIELDS) - 1
    q = nv.Params(u=[[1, 2]]).to_numpy()
    assert q.u.dtype == np.float64 and q.T is None


# ------------------------------------------------------------- check_params
@pytest.fixture(scope="module")
def ck_model(sink_sub):
    """K=2 geometric model on the sink graph, with one content and one covariate."""
    return nv.VesicleModel(sink_sub, n_types=2, content_dim=1, covariate_dim=1)


def _edit(params, name, fn):
    arr = np.array(getattr(params, name), dtype=float)
    fn(arr)
    return params.replace(**{name: arr})


@pytest.mark.parametrize(
    "name, fn, match",
    [
        ("T", lambda T: T.__setitem__((1, 0), [0.5, 0.4]), r"T\[type 1, node 'a'\] sums to 0.9.*must sum to 1"),
        ("T", lambda T: T.__setitem__((0, 1), [0.7, 0.3]),
         r"T\[type 0, node 'b'\] puts mass 0.3 on padded slot 1, off the graph"),
        ("T", lambda T: T.__setitem__((0, 2, 0), 0.5), r"T\[type 0, node 'c'\].*slot 0"),
        ("T", lambda T: T.__setitem__((1, 0), [1.2, -0.2]), r"T\[type 1, node 'a', slot 1\] = -0.2.* negative"),
        ("T", lambda T: T.__setitem__((0, 0, 1), np.nan), r"'T' is not finite at index \(0, 0, 1\)"),
        ("a", lambda a: a.__setitem__(1, 1.2), r"'a' at node 'b' is 1.2, outside \[0, 1\]"),
        ("a", lambda a: a.__setitem__(2, -0.01), r"'a' at node 'c' is -0.01, outside \[0, 1\]"),
        ("delta", lambda d: d.__setitem__(1, 1.5), r"'delta' at type 1 is 1.5, outside \[0, 1\]"),
        ("delta", lambda d: d.__setitem__(0, -0.5), r"'delta' at type 0 is -0.5"),
        ("r_max", lambda r: r.__setitem__(1, 0.0), r"'r_max' at index \(1,\) is 0.0, must be > 0"),
        ("content_scale", lambda s: s.__setitem__((1, 0), -2.0), r"'content_scale' at index \(1, 0\) is -2.0"),
        ("u", lambda u: u.__setitem__((1, 1), np.inf), r"'u' is not finite at index \(1, 1\)"),
        ("w", lambda w: w.__setitem__((0, 0), np.nan), r"'w' is not finite at index \(0, 0\)"),
        ("content_B", lambda b: b.__setitem__((1, 0, 0), -np.inf), r"'content_B' is not finite at index \(1, 0, 0\)"),
    ],
)
def test_check_params_errors(ck_model, name, fn, match):
    """Each invalid value is a ValueError naming the field and the index."""
    bad = _edit(ck_model.default_params(), name, fn)
    with pytest.raises(ValueError, match=match):
        ck_model.check_params(bad)


def test_check_params_countdown_rate(sink_sub):
    """A non-positive countdown rate or shape is refused naming field and type index."""
    m = nv.VesicleModel(sink_sub, n_types=2, lifetime="countdown")
    p = m.default_params()
    with pytest.raises(ValueError, match=r"'rate' at index \(0,\) is -1.0, must be > 0"):
        m.check_params(p.replace(rate=np.array([-1.0, 0.1])))
    with pytest.raises(ValueError, match=r"'shape' at index \(1,\) is 0.0"):
        m.check_params(p.replace(shape=np.array([2.0, 0.0])))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(w=None), r"'w' is missing \(expected shape \(2, 2\)\)"),
        (dict(u=np.zeros((2, 1))), r"'u' has shape \(2, 1\), expected \(2, 2\)"),
        (dict(T=np.zeros((2, 3, 3))), r"'T' has shape \(2, 3, 3\), expected \(2, 3, 2\)"),
        (dict(a=np.zeros(2)), r"'a' has shape \(2,\), expected \(3,\)"),
        (dict(delta=np.float64(0.1)), r"'delta' has shape \(\), expected \(2,\)"),
    ],
)
def test_check_params_structure(ck_model, change, match):
    """A missing field or a shape mismatch is a ValueError naming the field and shapes."""
    with pytest.raises(ValueError, match=match):
        ck_model.check_params(ck_model.default_params().replace(**change))


def test_check_params_type_and_success(ck_model):
    """Non-Params input is a TypeError; valid Params come back as float64 arrays."""
    with pytest.raises(TypeError, match="Params"):
        ck_model.check_params(ck_model.default_params().to_dict())
    p = ck_model.default_params().replace(a=[0.0, 1.0, 0.5], delta=[0.0, 1.0])
    out = ck_model.check_params(p)
    assert out.a.dtype == np.float64
    np.testing.assert_array_equal(out.a, [0.0, 1.0, 0.5])


# ------------------------------------------------------------ serialisation
def _spec_model(sub):
    return nv.VesicleModel(
        sub, n_types=2, content_dim=1, covariate_dim=1, lifetime="countdown", emission_link="log",
        tilt=True, budget=[3, np.inf], gamma=[0.5, 2.0], sigma_tau=0.2,
        priors={"u": dist.Normal(0.5, 2.0), "T": dist.Dirichlet(np.full(2, 3.0)), "a": [0.0, 0.1, 0.2],
                "rate": dist.Gamma(3.0, 2.0), "content_scale": dist.HalfNormal(0.5), "Q": 0.0})


def _prior_parts(d):
    """Family, shapes and parameter values of a (wrapped) NumPyro distribution."""
    shapes = (d.batch_shape, d.event_shape)
    while hasattr(d, "base_dist"):
        d = d.base_dist
    values = {k: np.asarray(getattr(d, k)).tolist() for k in d.arg_constraints}
    return type(d).__name__, shapes, values


def _assert_same_model(a, b):
    assert a.to_spec() == b.to_spec()
    assert a.inferred == b.inferred
    assert sorted(a.fixed) == sorted(b.fixed)
    for k in a.fixed:
        np.testing.assert_array_equal(a.fixed[k], b.fixed[k])
    pa, pb = a.default_params(), b.default_params()
    for k, v in pa.to_dict().items():
        np.testing.assert_array_equal(v, getattr(pb, k))
    for k in a.inferred:  # the same resolved priors
        if k == "T":
            np.testing.assert_array_equal(a.priors[k].concentration, b.priors[k].concentration)
        else:
            assert _prior_parts(a.priors[k]) == _prior_parts(b.priors[k]), k
    np.testing.assert_array_equal(a.budget, b.budget)
    np.testing.assert_array_equal(a.gamma, b.gamma)
    assert (a.lifetime, a.emission_link, a.tilt, a.sigma_tau) == (b.lifetime, b.emission_link, b.tilt, b.sigma_tau)


def test_spec_round_trip(sink_sub):
    """to_spec / from_spec keeps options, priors and fixed values; the spec is JSON."""
    m = _spec_model(sink_sub)
    spec = m.to_spec()
    assert spec["budget"] == [3, None]
    assert spec["priors"]["a"] == {"fixed": [0.0, 0.1, 0.2]}
    assert spec["priors"]["u"] == {"dist": "Normal", "loc": 0.5, "scale": 2.0}
    back = nv.VesicleModel.from_spec(sink_sub, json.loads(json.dumps(spec)))
    _assert_same_model(m, back)


def test_json_round_trip(sink_sub):
    """to_json / from_json also restores the substrate."""
    m = _spec_model(sink_sub)
    back = nv.VesicleModel.from_json(m.to_json())
    assert back.substrate.same_as(sink_sub)
    _assert_same_model(m, back)
    plain = nv.VesicleModel(sink_sub, n_types=1)
    _assert_same_model(plain, nv.VesicleModel.from_json(plain.to_json()))


def test_spec_errors(sink_sub):
    """Unknown options, unknown distributions and unwritable priors are ValueErrors naming them."""
    with pytest.raises(ValueError, match=r"unknown model option.*'colour'"):
        nv.VesicleModel.from_spec(sink_sub, {"colour": 1})
    with pytest.raises(ValueError, match=r"prior on 'u'.*'Wobbly'"):
        nv.VesicleModel.from_spec(sink_sub, {"priors": {"u": {"dist": "Wobbly"}}})
    with pytest.raises(ValueError, match=r"prior on 'u'.*Normal takes.*'mu'"):
        nv.VesicleModel.from_spec(sink_sub, {"priors": {"u": {"dist": "Normal", "mu": 0, "scale": 1}}})
    m = nv.VesicleModel(sink_sub, n_types=1, priors={"u": dist.Laplace(0.0, 1.0)})
    with pytest.raises(ValueError, match=re.escape("prior on 'u' (Laplace) cannot be written")):
        m.to_spec()


def test_params_cannot_switch_on_a_kernel_the_model_fixes_off():
    """A model that fixes w_c (or v, Q) at 0 has content-independent docking (no
    tilt); Params that set them non-zero are refused rather than honoured by one
    implementation and ignored by another."""
    import networkx as nx

    sub = nv.Substrate.from_networkx(nx.path_graph(3))
    model = nv.VesicleModel(sub, n_types=1, content_dim=1, priors={"w_c": 0.0})
    params = model.default_params()
    with pytest.raises(ValueError, match="'w_c' is non-zero, but the model fixes it at 0"):
        model.check_params(params.replace(w_c=np.array([[3.0]])))
    with pytest.raises(ValueError, match="'w_c' is non-zero"):
        nv.simulate(model, params.replace(w_c=np.array([[3.0]])), n_steps=3)
    tilted = nv.VesicleModel(sub, n_types=1, content_dim=1, priors={"w_c": 0.0, "Q": 0.5})
    assert tilted.check_params(tilted.default_params()).Q[0, 0, 0] == 0.5
