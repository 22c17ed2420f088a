"""The density relaxation (docs/design.rst, :mod:`nvppl.density`) against simulation
and against closed forms.

Statistical comparisons use fixed seeds. A per-cell comparison of a simulated
mean with the density is a z-score whose standard error comes from the sample
variance over runs, floored at the least variance the cell's value can have
(see :func:`tests._support.density.z_scores`); cells pass at |z| ≤ 4. Other tolerances
are stated where they are used.
"""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from tests._support.density import (
    cell_sums,
    compound_poisson_floor,
    content_case,
    dense_transpose,
    random_digraph_substrate,
    random_T,
    z_scores,
)
from scipy import stats
from scipy.special import logsumexp

import nvppl as nv
from nvppl.density import (Density, accuracy, composite_log_likelihood, exact_in_mean, expected_release,
                           predicted_mean, relax)
from nvppl.kernels.release import activation_release

Z_MAX = 4.0


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- exact in the mean
def mean_case(lifetime, budget, content_dim=0, n_steps=14):
    """A 24-node sparse random digraph without stays (two sinks, two nodes without
    in-edges), K = 2 with the given budgets, absorption on some nodes and one
    time-varying covariate in emission and docking; geometric lifetimes also get
    a covariate migration tilt ``v`` (content-independent, so still exact in the
    mean)."""
    sub = random_digraph_substrate()
    tilt = lifetime == "geometric" and content_dim == 0
    priors = {"w_c": 0.0} if content_dim else None  # content-independent kernels: exact in the mean
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, budget=budget, lifetime=lifetime, tilt=tilt,
                            content_dim=content_dim, priors=priors)
    rng = np.random.default_rng(0)
    F = rng.normal(size=(n_steps, sub.n_nodes, 1))
    changes = dict(u=np.array([[-0.5, 1.0], [-1.0, -0.8]]), T=random_T(sub, 2, rng),
                   w=np.array([[-1.0, 0.7], [-0.5, 0.0]]), a=np.where(rng.uniform(size=sub.n_nodes) < 0.3, 0.15, 0.0))
    if lifetime == "geometric":
        changes["delta"] = np.array([0.1, 0.2])
    else:
        changes.update(shape=np.array([2.0, 4.0]), rate=np.array([0.5, 0.8]))
    if tilt:
        changes["v"] = np.array([[0.8], [-0.6]])
    if content_dim:
        # contents kept away from 0 so that the compound-Poisson floor C²/ρ is informative
        changes.update(content_mean=np.array([[2.0, -1.5], [1.0, 3.0]]),
                       content_B=np.array([[[0.5, 0.0]], [[0.0, -0.4]]]), content_scale=np.full((2, 2), 0.5))
    params = model.default_params().replace(**changes)
    assert 0 < params.a.sum() and sub.is_sink.any()
    return model, params, F


def max_abs_z(obs, dens):
    z_c, _ = z_scores(obs.counts, np.asarray(dens.rho), np.asarray(dens.rho))
    z_d, _ = z_scores(obs.docks, np.asarray(dens.expected_docks), np.asarray(dens.expected_docks))
    return max(np.abs(z_c).max(), np.abs(z_d).max())


def check_exact_in_mean(model, params, F, backend, n_runs, key):
    """Counts and docks: |mean over runs − density| ≤ 4 SE in every (t, node, type).

    1344 cells (672 counts + 672 docks); the floored z-score has nearly normal
    tails, so the family-wise false-alarm rate at |z| ≤ 4 is a few percent
    (measured: 0–5% per case over 20–80 seeds of this comparison); the seeds
    are fixed.
    """
    assert exact_in_mean(model)
    T = F.shape[0]
    dens = relax(model, params, T, covariates=F)
    traces = nv.simulate(model, params, n_steps=T, n_runs=n_runs, key=key, covariates=F, backend=backend)
    obs = traces.observe(counts=True, docks=True, detection="exact")
    R = n_runs
    for name, y, m in (("counts", obs.counts, dens.rho), ("docks", obs.docks, dens.expected_docks)):
        m = np.asarray(m)
        assert y.shape == (R,) + m.shape and np.all(np.isfinite(m)) and m.min() >= 0
        # Poisson cell: the variance is ρ
        z, var = z_scores(y, m, m)
        worst = np.unravel_index(np.abs(z).argmax(), z.shape)
        assert np.abs(z).max() <= Z_MAX, (name, worst, y[(slice(None),) + worst].mean(), m[worst])
        # no vesicle in any run: P = exp(-Rρ) must not be negligible (Rρ ≤ 10)
        assert np.all(m[var == 0] <= 10.0 / R), name
    # nodes without in-edges: nothing arrives, and without stays nothing remains (structural zeros, exactly)
    G = model.substrate
    no_in = np.setdiff1d(np.arange(G.n_nodes), G.candidates[G.candidates >= 0])
    assert len(no_in) > 0
    assert np.all(np.asarray(dens.rho)[:, no_in] == 0) and np.all(np.asarray(dens.arrivals)[:, no_in] == 0)
    assert np.all(obs.counts[:, :, no_in] == 0)
    return obs, dens


# budgets of 1 and ∞ only (one budget level), and a budget of 2 (two levels)
CASES = {"geometric-1-inf": ("geometric", [1, None]), "geometric-1-2": ("geometric", [1, 2]),
         "countdown-inf-2": ("countdown", [None, 2])}


@pytest.mark.parametrize("case", list(CASES))
def test_exact_in_the_mean_compiled(case):
    """ρ and the expected docks against 4000 runs of the compiled core."""
    model, params, F = mean_case(*CASES[case])
    obs, dens = check_exact_in_mean(model, params, F, "compiled", n_runs=4000, key=1)
    # the docks identity: expected docks = arrivals × p_dock, p_dock = σ(X·w) (eq. 18)
    X = np.concatenate([np.ones(F.shape[:-1] + (1,)), F], -1)
    np.testing.assert_allclose(np.asarray(dens.expected_docks), np.asarray(dens.arrivals) * sigmoid(X @ params.w.T),
                               rtol=1e-12, atol=1e-300)
    # power: ignoring absorption (a = 0) is detected by the same comparison
    assert max_abs_z(obs, relax(model, params.replace(a=np.zeros_like(params.a)), F.shape[0], covariates=F)) > 2 * Z_MAX


@pytest.mark.slow
@pytest.mark.parametrize("case", ["geometric-1-2", "countdown-inf-2"])
def test_exact_in_the_mean_numpyro(case):
    """ρ and the expected docks against 800 runs of the NumPyro program (mostly compile time)."""
    model, params, F = mean_case(*CASES[case])
    check_exact_in_mean(model, params, F, "numpyro", n_runs=800, key=2)


@pytest.fixture(scope="module", params=[[1, None], [1, 2]], ids=["budget-1-inf", "budget-1-2"])
def content_run(request):
    """Content d_c = 2 with content-independent kernels, its density and 3000 compiled runs."""
    model, params, F = mean_case("geometric", request.param, content_dim=2)
    dens = relax(model, params, F.shape[0], covariates=F)
    traces = nv.simulate(model, params, n_steps=F.shape[0], n_runs=3000, key=3, covariates=F, backend="compiled")
    return model, params, F, dens, traces


def test_content_total_is_exact_in_the_mean(content_run):
    """The summed content of the vesicles present (C, eq. 47) and of those docking,
    per (t, node, type, dim), within 4 SE of the simulated sums.

    2 × 1344 cells; with the compound-Poisson variance floor the family-wise
    false-alarm rate at |z| ≤ 4 is a few percent (measured: 3 in 70 seeds); fixed seed."""
    model, params, _, dens, traces = content_run
    assert exact_in_mean(model)
    sub, R = model.substrate, traces.n_runs
    # the cell sums count what Traces.observe counts
    obs = traces.observe(counts=True, docks=True, detection="exact")
    np.testing.assert_array_equal(cell_sums(traces, sub, 2), obs.counts)
    np.testing.assert_array_equal(cell_sums(traces, sub, 2, docked=True), obs.docks)
    cols = ["content_0", "content_1"]
    for docked, C, rate in ((False, dens.content_total, dens.rho), (True, dens.docked_content, dens.expected_docks)):
        C, rate = np.asarray(C), np.asarray(rate)[..., None]
        y = cell_sums(traces, sub, 2, values=cols, docked=docked)
        assert y.shape == (R,) + C.shape
        # contents at birth have variance content_scale² around their location
        z, _ = z_scores(y, C, compound_poisson_floor(C, rate, params.content_scale ** 2))
        assert np.abs(z).max() <= Z_MAX, ("docked" if docked else "present", np.abs(z).max())
    # the mean content C/ρ: finite where ρ > 0, NaN where ρ = 0
    cm, rho = np.asarray(dens.content_mean), np.asarray(dens.rho)
    assert cm.shape == rho.shape + (2,) and (rho == 0).any() and (rho > 0).any()
    assert np.all(np.isnan(cm[rho == 0])) and np.all(np.isfinite(cm[rho > 0]))
    np.testing.assert_allclose(cm[rho > 0] * rho[rho > 0][:, None], np.asarray(dens.content_total)[rho > 0],
                               rtol=1e-12)


@pytest.mark.parametrize("budget", [[1, None], [1, 2]], ids=["budget-1-inf", "budget-1-2"])
def test_per_run_covariates_give_a_run_axis(budget):
    """Covariates (R, T, n, p): one density per run, each equal to relaxing that run alone."""
    model, params, F = mean_case("geometric", budget, n_steps=6)
    F_runs = np.stack([F, -F, 0.5 * F])
    dens = relax(model, params, 6, covariates=F_runs)
    assert isinstance(dens, Density) and dens.n_steps == 6
    for name in Density._fields:
        assert getattr(dens, name).shape[:4] == (3, 6, model.n_nodes, 2), name
    for r in range(3):
        one = relax(model, params, 6, covariates=F_runs[r])
        for name in Density._fields:
            np.testing.assert_allclose(getattr(dens, name)[r], getattr(one, name), rtol=1e-12, atol=1e-300,
                                       err_msg=name)
    # static covariates (n, p) equal the same covariates repeated over time
    np.testing.assert_allclose(relax(model, params, 6, covariates=F[0]).rho,
                               relax(model, params, 6, covariates=np.repeat(F[:1], 6, 0)).rho, rtol=1e-12)


# --------------------------------------------------------------------------- Poisson one-time marginals
def poisson_gof_pvalue(y, mu):
    """Chi-square goodness of fit of the integer sample ``y`` to Poisson(mu), both
    tails pooled so that every bin expects at least 5."""
    R = len(y)
    hi = int(max(y.max(), stats.poisson.ppf(1 - 1e-9, mu))) + 1
    k = np.arange(hi + 1)
    observed = np.bincount(np.minimum(y, hi), minlength=hi + 1).astype(float)
    expected = R * stats.poisson.pmf(k, mu)
    expected[-1] = R * stats.poisson.sf(hi - 1, mu)  # the last bin is "≥ hi"
    bins = []  # groups of consecutive values, closed when they expect ≥ 5
    cur_o = cur_e = 0.0
    for o, e in zip(observed, expected):
        cur_o, cur_e = cur_o + o, cur_e + e
        if cur_e >= 5:
            bins.append([cur_o, cur_e])
            cur_o = cur_e = 0.0
    bins[-1][0] += cur_o  # the upper tail left over joins the last bin
    bins[-1][1] += cur_e
    o, e = np.array(bins).T
    assert len(o) >= 4 and e.min() >= 5
    return stats.chi2.sf(((o - e) ** 2 / e).sum(), len(o) - 1)


def test_one_time_marginals_are_poisson():
    """Geometric lifetimes without budgets: the count present and the number of docks
    at a fixed (t, node, type) are Poisson(ρ) and Poisson(expected_docks).

    Four chi-square tests at level 0.001 each (family-wise 0.4%), 6000 runs, fixed
    seed; each also rejects Poisson(1.3·mean), which shows the test has power."""
    G = nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 1), (4, 5), (5, 0)])
    sub = nv.Substrate.from_networkx(G)
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1)
    rng = np.random.default_rng(1)
    n_steps, R = 25, 6000
    F = rng.normal(size=(n_steps, sub.n_nodes, 1))
    params = model.default_params().replace(
        u=np.array([[0.0, 0.7], [-0.5, -0.5]]), r_max=np.array([1.5, 1.0]), T=random_T(sub, 2, rng),
        w=np.array([[-1.0, 0.5], [0.0, 0.0]]), a=np.array([0.0, 0.1, 0.0, 0.0, 0.2, 0.0]), delta=np.array([0.08, 0.15]))
    dens = relax(model, params, n_steps, covariates=F)
    traces = nv.simulate(model, params, n_steps=n_steps, n_runs=R, key=7, covariates=F, backend="compiled")
    obs = traces.observe(counts=True, docks=True, detection="exact")
    for t, i, k in ((n_steps - 1, 2, 0), (6, 4, 1)):
        for y, mu in ((obs.counts[:, t, i, k], float(dens.rho[t, i, k])),
                      (obs.docks[:, t, i, k], float(dens.expected_docks[t, i, k]))):
            assert mu > 0.3
            assert poisson_gof_pvalue(y, mu) > 1e-3, (t, i, k, mu, y.mean())
            assert poisson_gof_pvalue(y, 1.3 * mu) < 1e-3, (t, i, k, mu, y.mean())


# --------------------------------------------------------------------------- gradients
SMALL_GRAPH = nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 1), (4, 5), (1, 6), (6, 0), (3, 6)])  # 5: a sink


def gradient_case(name):
    sub = nv.Substrate.from_networkx(SMALL_GRAPH, allow_stay=False)
    rng = np.random.default_rng(1)
    common = dict(u=rng.normal(size=(2, 2)) * 0.5, r_max=np.array([1.5, 0.8]), T=random_T(sub, 2, rng),
                  w=rng.normal(size=(2, 2)) * 0.5, a=rng.uniform(0.0, 0.2, sub.n_nodes))
    if name == "geometric-tilt-content":  # content classes on one grid spanning the birth means: tilt Q, docking w_c
        model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, content_dim=1, tilt=True, budget=[1, 2])
        params = model.default_params().replace(
            v=np.array([[0.5], [-0.3]]), Q=rng.normal(size=(2, sub.n_nodes, 1)) * 0.5, w_c=np.array([[0.6], [-0.4]]),
            delta=np.array([0.1, 0.2]), content_mean=np.array([[1.0], [-0.5]]), content_B=np.array([[[0.3]], [[-0.2]]]),
            **common)
        assert not exact_in_mean(model)
    elif name == "geometric-exact":  # content carried but not steering; covariate tilt v fixed non-zero
        model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, content_dim=2, budget=[1, None],
                                priors={"w_c": 0.0, "v": [[0.5], [-0.3]]})
        params = model.default_params().replace(
            delta=np.array([0.1, 0.2]), content_mean=np.array([[1.0, 0.2], [-0.5, 0.3]]),
            content_B=np.array([[[0.3, -0.1]], [[-0.2, 0.4]]]), **common)
        assert exact_in_mean(model) and model.tilted
    elif name == "geometric-docking-content":  # classes along w_c (d_c = 2), split by birth node (static F)
        model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, content_dim=2, budget=[1, None])
        params = model.default_params().replace(
            w_c=np.array([[0.8, -0.5], [0.3, 0.9]]), delta=np.array([0.1, 0.2]),
            content_mean=np.array([[1.0, 0.2], [-0.5, 0.3]]), content_B=np.array([[[0.3, -0.1]], [[-0.2, 0.4]]]),
            content_scale=np.array([[1.0, 0.5], [0.7, 1.2]]), **common)
    else:
        model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, lifetime="countdown")
        params = model.default_params().replace(shape=np.array([2.0, 3.5]), rate=np.array([0.6, 0.9]), **common)
    F = rng.normal(size=(6, sub.n_nodes, 1))
    if name == "geometric-docking-content":
        F = np.repeat(F[:1], 6, axis=0)  # constant over time
        assert accuracy(model, 6, F) == f"quadrature ({sub.n_nodes * 48} classes)"
    elif name == "geometric-tilt-content":
        assert "spanning" in accuracy(model, 6, F)
    return model, params, F


@pytest.mark.parametrize("name", ["geometric-tilt-content", "geometric-docking-content", "geometric-exact",
                                  pytest.param("countdown", marks=pytest.mark.slow)])  # ~9 s, mostly compiling
def test_gradients_match_finite_differences(name):
    """jax.grad of a weighted sum of every density output, with respect to every
    Params field, equals central differences (float64).

    Differences are taken through a jitted function, whose traced Params are not
    validated, so that single entries of T can be moved off the simplex. With
    steps of 1e-6 (relative) the truncation error is ~1e-12 and the rounding
    error ~1e-16/1e-6 = 1e-10 relative to f, so a relative tolerance of 1e-5
    (with a floor at 1e-2 of the largest gradient entry, for entries near 0)
    leaves a wide margin while catching any wrong derivative."""
    model, params, F = gradient_case(name)
    n_steps = F.shape[0]
    dens = relax(model, params, n_steps, covariates=F)
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=np.shape(x)) for x in dens]

    def functional(p):
        d = relax(model, p, n_steps, covariates=F)
        return sum(jnp.sum(w * x) for w, x in zip(weights, d))

    p_jax = jax.tree.map(jnp.asarray, params)
    f_jit = jax.jit(functional)
    assert float(f_jit(p_jax)) == pytest.approx(float(functional(params)), rel=1e-13)  # concrete = traced
    grad = jax.grad(functional)(p_jax)
    leaves = {k: np.asarray(v) for k, v in grad.to_dict().items()}
    assert all(np.all(np.isfinite(g)) for g in leaves.values())
    gmax = max(np.abs(g).max(initial=0.0) for g in leaves.values())
    mask = {"T": np.broadcast_to(model.substrate.candidate_mask, params.T.shape)}
    checked = []
    for field, value in params.to_dict().items():
        value = np.asarray(value, dtype=float)
        if value.size == 0:
            continue
        candidates = np.argwhere(mask.get(field, np.ones(value.shape, bool)))
        for idx in map(tuple, candidates[rng.choice(len(candidates), min(3, len(candidates)), replace=False)]):
            eps = 1e-6 * max(1.0, abs(value[idx]))
            up, down = value.copy(), value.copy()
            up[idx] += eps
            down[idx] -= eps
            fd = (float(f_jit(p_jax.replace(**{field: jnp.asarray(up)})))
                  - float(f_jit(p_jax.replace(**{field: jnp.asarray(down)})))) / (2 * eps)
            g = leaves[field][idx]
            assert abs(g - fd) <= 1e-5 * max(abs(fd), 1e-2 * gmax), (field, idx, g, fd)
            checked.append(field)
    expected = {"u", "r_max", "T", "w", "a"} | {
        "geometric-tilt-content": {"v", "Q", "w_c", "delta", "content_mean", "content_B", "content_scale"},
        "geometric-docking-content": {"w_c", "delta", "content_mean", "content_B", "content_scale"},
        "geometric-exact": {"v", "delta", "content_mean", "content_B"},
        "countdown": {"shape", "rate"}}[name]
    assert expected <= set(checked)
    # the content noise scale enters the density only through content-dependent kernels (which select on it)
    if "content_scale" in leaves:
        assert np.all(leaves["content_scale"] == 0) == exact_in_mean(model)


# --------------------------------------------------------------------------- long horizons
def test_long_horizon_reaches_the_fixed_point():
    """T = 3000 steps: ρ tends to the solution of ρ = S ⊙ Tᵀ(ρ + λ), computed here
    with a dense linear solve (budget 1 on one type, ∞ on the other, absorption,
    stays). The slowest contraction is ≤ 1 − δ = 0.98 per step, so after 3000
    steps the transient is ~1e-26: the only error left is rounding (tolerance
    1e-9 relative)."""
    sub = nv.Substrate.from_networkx(SMALL_GRAPH)
    model = nv.VesicleModel(sub, n_types=2, budget=[1, None])
    rng = np.random.default_rng(2)
    params = model.default_params().replace(
        u=np.array([[0.3], [-0.5]]), r_max=np.array([2.0, 1.0]), T=random_T(sub, 2, rng),
        w=np.array([[-1.0], [0.5]]), a=np.where(np.arange(sub.n_nodes) % 3 == 0, 0.1, 0.0),
        delta=np.array([0.03, 0.02]))
    dens = relax(model, params, 3000)
    for out in dens:
        assert np.all(np.isfinite(np.asarray(out)))
    n = sub.n_nodes
    for k in range(2):
        lam = np.full(n, params.r_max[k] * sigmoid(params.u[k, 0]))
        p_dock = sigmoid(params.w[k, 0])
        S = (1 - params.a) * (1 - params.delta[k]) * (1 - p_dock * (model.budget[k] == 1))
        Tt = dense_transpose(sub, params.T[k])
        rho_star = np.linalg.solve(np.eye(n) - S[:, None] * Tt, S * (Tt @ lam))
        np.testing.assert_allclose(np.asarray(dens.rho[-1, :, k]), rho_star, rtol=1e-9)
        # the docks at the fixed point: p_dock times what arrives
        np.testing.assert_allclose(np.asarray(dens.expected_docks[-1, :, k]), p_dock * Tt @ (rho_star + lam), rtol=1e-9)


def test_no_loss_means_linear_growth():
    """δ = 0, no absorption, no sinks, no budgets: nothing leaves, so the total mass
    after step t is exactly (t + 1)·Σλ, finite after 3000 steps (relative 1e-12)."""
    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3), (3, 1)]), allow_stay=False)
    assert not sub.is_sink.any()
    model = nv.VesicleModel(sub, n_types=2, priors={"a": 0.0})
    params = model.default_params().replace(delta=np.zeros(2), u=np.array([[0.3], [-0.5]]),
                                            T=random_T(sub, 2, np.random.default_rng(3)))
    dens = relax(model, params, 3000)
    rho = np.asarray(dens.rho)
    assert np.all(np.isfinite(rho))
    lam_total = sub.n_nodes * sigmoid(params.u[:, 0])
    np.testing.assert_allclose(rho.sum(1), np.arange(1, 3001)[:, None] * lam_total, rtol=1e-12)


# --------------------------------------------------------------------------- mean-field content
def mean_field_case(w_c, scale):
    sub = nv.Substrate.from_networkx(SMALL_GRAPH)
    model = nv.VesicleModel(sub, n_types=1, content_dim=1, budget=1, priors={"w_c": np.array([[w_c]])})
    params = model.default_params().replace(
        T=random_T(sub, 1, np.random.default_rng(2)), u=np.array([[1.0]]), r_max=np.array([2.0]), w=np.array([[-1.0]]),
        delta=np.array([0.05]), content_mean=np.array([[0.5]]), content_scale=np.array([[scale]]))
    return model, params


def test_exact_in_mean_flags_content_dependence():
    """Exact unless a vesicle's own content steers its migration (Q) or docking (w_c)."""
    sub = nv.Substrate.from_networkx(SMALL_GRAPH)
    assert exact_in_mean(nv.VesicleModel(sub, n_types=1))
    assert exact_in_mean(nv.VesicleModel(sub, n_types=1, covariate_dim=1, tilt=True))  # covariate tilt only
    assert exact_in_mean(nv.VesicleModel(sub, n_types=1, content_dim=2, priors={"w_c": 0.0}))
    assert not exact_in_mean(nv.VesicleModel(sub, n_types=1, content_dim=2))  # w_c inferred
    assert not exact_in_mean(nv.VesicleModel(sub, n_types=1, content_dim=2, priors={"w_c": [[0.0, 0.5]]}))
    assert not exact_in_mean(nv.VesicleModel(sub, n_types=1, content_dim=1, tilt=True, priors={"w_c": 0.0}))  # Q


def test_content_free_docking_equals_the_content_free_recursion():
    """w_c fixed at 0: carrying content changes nothing in ρ, the docks and the arrivals."""
    model, params = mean_field_case(0.0, 1.0)
    assert exact_in_mean(model)
    plain = nv.VesicleModel(model.substrate, n_types=1, budget=1)
    plain_params = params.replace(w_c=np.zeros((1, 0)), Q=np.zeros((1, model.n_nodes, 0)),
                                  content_mean=np.zeros((1, 0)), content_B=np.zeros((1, 0, 0)),
                                  content_scale=np.zeros((1, 0)))
    with_content, without = relax(model, params, 40), relax(plain, plain_params, 40)
    for name in ("rho", "expected_docks", "arrivals"):
        np.testing.assert_array_equal(getattr(with_content, name), getattr(without, name), err_msg=name)
    assert without.content_total.shape == (40, model.n_nodes, 1, 0)
    # the mean content never changes: content-independent kernels do not select vesicles
    cm = np.asarray(with_content.content_mean)
    np.testing.assert_allclose(cm[np.isfinite(cm)], 0.5, rtol=1e-12)


def test_mean_field_content_docking_is_close_for_small_weights():
    """The mean-field recursion of eq. 53 (``classes=1``: kernels at the mean
    content) with content-dependent docking and budget 1: vesicles whose content
    favours docking are depleted first, which it ignores; its error is of second
    order in w_c σ_c and accumulates over a lifetime.

    A loose check of the approximation, not of exactness: with w_c σ_c = 0.1 every
    cell with ρ > 0.5 is within 3% + 4 SE of the simulated mean (60 000 runs put
    the error within ±1%, their resolution); with w_c σ_c = 1 the same check
    fails (errors up to ~50% in the counts), which shows it can. The default
    content classes pass the second case as well."""
    def worst_excess(w_c, scale, classes=1):
        model, params = mean_field_case(w_c, scale)
        assert not exact_in_mean(model)
        dens = relax(model, params, 20, classes=classes)
        traces = nv.simulate(model, params, n_steps=20, n_runs=3000, key=4, backend="compiled")
        obs = traces.observe(counts=True, docks=True, detection="exact")
        excess = []
        for y, m in ((obs.counts, np.asarray(dens.rho)), (obs.docks, np.asarray(dens.expected_docks))):
            se = np.sqrt(np.maximum(y.var(0, ddof=1), m) / y.shape[0])
            big = m > 0.5
            excess.append(((np.abs(y.mean(0) - m) - 0.03 * m - 4 * se)[big]).max())
        return max(excess)

    assert worst_excess(0.2, 0.5) <= 0
    assert worst_excess(1.0, 1.0) > 0
    assert worst_excess(1.0, 1.0, classes=None) <= 0


# --------------------------------------------------------------------------- content classes
CONTENT_CASES = ["docking", "tilt", "countdown-2d", "covariates", "covariates-static"]
N_CONTENT_RUNS = 4000


@pytest.fixture(scope="module", params=CONTENT_CASES)
def content_sim(request):
    """A content case of :func:`tests._support.density.content_case`, its density (default
    classes), the mean-field density (``classes=1``) and 4000 compiled runs."""
    model, params, F = content_case(request.param)
    T = 12
    dens = relax(model, params, T, covariates=F)
    mean_field = relax(model, params, T, covariates=F, classes=1)
    traces = nv.simulate(model, params, n_steps=T, n_runs=N_CONTENT_RUNS, key=11, covariates=F, backend="compiled")
    return request.param, model, params, F, dens, mean_field, traces


def test_content_classes_follow_content_dependent_kernels(content_sim):
    """Docking and migration that select on content (w_c·σ_c = 5; a tilt Q·σ_c = ±5;
    two content dimensions with countdown lifetimes and a budget of 2; birth means
    that depend on covariates): the expected counts and docks of the content
    classes are within 4 SE of 4000 simulated runs in every (t, node) cell, and
    the summed content of the vesicles present too.

    96 count and dock cells (48 content cells) per case; with the floored z-score
    (nearly normal tails) the chance of any |z| > 4 in a case is about 1%; fixed
    seeds. The quadrature error is far below the SE (≤ 6e-4 relative here, see
    test_quadrature_error_is_small). The same comparison rejects the mean-field
    recursion of eq. 53 in every case by a wide margin (|z| > 20, measured 26–161:
    its errors reach 23–250% of the simulated means here), which shows that the
    test can fail."""
    name, model, params, F, dens, mean_field, traces = content_sim
    assert not exact_in_mean(model) and accuracy(model, 12, F).startswith("quadrature")
    obs = traces.observe(counts=True, docks=True, detection="exact")
    for kind, y, m, mf in (("counts", obs.counts, dens.rho, mean_field.rho),
                           ("docks", obs.docks, dens.expected_docks, mean_field.expected_docks)):
        m, mf = np.asarray(m), np.asarray(mf)
        assert y.shape == (N_CONTENT_RUNS,) + m.shape and np.all(m > 0)
        z, _ = z_scores(y, m, m)
        assert np.abs(z).max() <= Z_MAX, (name, kind, np.unravel_index(np.abs(z).argmax(), z.shape), np.abs(z).max())
        z_mf, _ = z_scores(y, mf, mf)
        assert np.abs(z_mf).max() > 5 * Z_MAX, (name, kind, np.abs(z_mf).max())
    # summed content of the vesicles present: compound Poisson, floor C²/ρ (selection changes the spread)
    cols = [f"content_{d}" for d in range(model.content_dim)]
    y = cell_sums(traces, model.substrate, 1, values=cols)
    C = np.asarray(dens.content_total)
    z, _ = z_scores(y, C, compound_poisson_floor(C, np.asarray(dens.rho)[..., None]))
    assert np.abs(z).max() <= Z_MAX, (name, "content", np.abs(z).max())


def test_quadrature_error_is_small():
    """The default classes against a grid four to eight times finer (200 nodes per
    dimension; 24 for two dimensions): relative differences in ρ and the expected
    docks below 1e-4 for docking (steepness w_c σ_c = 5) and below 2e-3 for the
    tilt (γ σ_c range(Q) = 10, the hardest case; measured 5.5e-4). With birth
    means that depend on covariates, one grid spanning all birth means agrees with
    the split by birth cohort (1e-4 at σ_c = 1 and 0.3, measured 1e-6 and 2e-7)."""
    def rel(a, b):
        return max(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.asarray(y))
                   for x, y in ((a.rho, b.rho), (a.expected_docks, b.expected_docks)))

    for name, tol, fine in (("docking", 1e-4, 200), ("tilt", 2e-3, 200), ("countdown-2d", 1e-4, 200)):
        model, params, F = content_case(name)
        assert rel(relax(model, params, 12, covariates=F), relax(model, params, 12, covariates=F, classes=fine)) < tol
    from nvppl.density import classes
    model, params, F = content_case("covariates")
    assert accuracy(model, 5, F[:5]) == "quadrature (960 classes)"  # 5 steps: split by birth step and node
    assert "spanning" in accuracy(model, 12, F)  # 12 steps: 2304 classes would be too many
    for scale in (1.0, 0.3):
        p = params.replace(content_scale=np.array([[scale]]))
        span = relax(model, p, 12, covariates=F)
        cap = classes.MAX_COHORT_CLASSES
        try:
            classes.MAX_COHORT_CLASSES = 10 ** 6
            nv.density.relaxer.cache_clear()
            cohorts = relax(model, p, 12, covariates=F)
        finally:
            classes.MAX_COHORT_CLASSES = cap
            nv.density.relaxer.cache_clear()
        assert rel(span, cohorts) < 1e-4


def test_accuracy_states_what_is_exact():
    """``accuracy``: exact in the mean without content-dependent kernels, quadrature with
    them (the number of classes), mean-field for ``classes=1`` and where no grid fits."""
    sub = nv.Substrate.from_networkx(SMALL_GRAPH)
    n = sub.n_nodes
    assert accuracy(nv.VesicleModel(sub, n_types=1)) == "exact in the mean"
    assert accuracy(nv.VesicleModel(sub, n_types=1, content_dim=2, priors={"w_c": 0.0})) == "exact in the mean"
    docking = nv.VesicleModel(sub, n_types=2, content_dim=3)  # w_c inferred: one dimension along w_c
    assert accuracy(docking) == "quadrature (48 classes)"
    assert accuracy(docking, classes=10) == "quadrature (10 classes)"
    assert accuracy(docking, classes=1) == "mean-field approximation"
    assert accuracy(nv.VesicleModel(sub, n_types=1, content_dim=2, tilt=True)) == "quadrature (256 classes)"
    assert accuracy(nv.VesicleModel(sub, n_types=1, content_dim=3, tilt=True)) == "quadrature (216 classes)"
    assert accuracy(nv.VesicleModel(sub, n_types=1, content_dim=9, tilt=True)) == "mean-field approximation"
    covs = nv.VesicleModel(sub, n_types=1, content_dim=1, covariate_dim=2)  # content_B inferred
    assert accuracy(covs) == f"quadrature ({n * 48} classes)"  # split by birth node
    F = np.random.default_rng(0).normal(size=(30, n, 2))
    assert accuracy(covs, 30, F) == "quadrature (48 classes on one grid spanning the birth means F·B)"
    assert accuracy(nv.VesicleModel(sub, n_types=1, content_dim=1, covariate_dim=2, priors={"content_B": 0.0}),
                    30, F) == "quadrature (48 classes)"
    with pytest.raises(ValueError, match="classes must be a positive integer"):
        relax(docking, docking.default_params(), 5, classes=0)


# --------------------------------------------------------------------------- expected release (eq. 53)
def film_operator(K, H, d_c, seed=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=H), rng.normal(size=(K, 2 * H, d_c)) * 0.5, rng.normal(size=(K, 2 * H)) * 0.5


def release_sums(traces, sub, n_types, h, W_act, b_act):
    """Σ over the vesicles docking at (run, t, node) of γ(c) ⊙ h + β(c) (eq. 21–22, 36): (R, T, n, H)."""
    cols = [c for c in traces.vesicles.columns if c.startswith("content_")]

    def per_dock(s):
        k = s.type.to_numpy()
        return np.asarray(activation_release(jnp.asarray(h), jnp.asarray(s[cols].to_numpy()),
                                             jnp.asarray(W_act[k]), jnp.asarray(b_act[k])))

    return cell_sums(traces, sub, n_types, values=per_dock, docked=True).sum(3)


def test_expected_release_matches_simulated_release(content_run):
    """The expected summed FiLM release per (t, node) (eq. 53 with the density of
    docking vesicles) is within 4 SE of the Monte Carlo mean of Σ_docked γ(c)⊙h + β(c).

    14 × 24 × 3 = 1008 cells; standard error from the sample variance floored at
    the least variance of a compound-Poisson sum (per-dock release affine in c,
    c with variance content_scale² around its location); family-wise false-alarm
    rate a few percent (none in 30 seeds), fixed seed. The literal reading of
    eq. 53, every vesicle present releasing, is rejected by the same check."""
    model, params, F, dens, traces = content_run
    H = 3
    h, W_act, b_act = film_operator(2, H, 2)
    expected = np.asarray(dens.expected_release(h, W_act, b_act))
    np.testing.assert_array_equal(expected, np.asarray(expected_release(dens, h, W_act, b_act)))
    assert expected.shape == (F.shape[0], model.n_nodes, H)
    y = release_sums(traces, model.substrate, 2, h, W_act, b_act)
    # floor: D_tot·E[x²] ≥ E[Σx]²/D_tot + Σ_κ D_κ Σ_d (A_κ[:, d] σ_κd)², A_κ = diag(h) W_γ + W_β
    D = np.asarray(dens.expected_docks)  # (T, n, K)
    A = h[None, :, None] * W_act[:, :H] + W_act[:, H:]  # (K, H, d_c)
    noise = np.einsum("khd,kd->kh", A ** 2, params.content_scale ** 2)  # (K, H)
    floor = compound_poisson_floor(expected, D.sum(-1)[..., None]) + np.einsum("tnk,kh->tnh", D, noise)
    z, _ = z_scores(y, expected, floor)
    assert np.abs(z).max() <= Z_MAX, np.abs(z).max()
    # power: eq. 53 read with every vesicle present releasing (ρ and C instead of the docks) is rejected
    wrong = (np.einsum("khd,tnkd->tnh", W_act, np.asarray(dens.content_total))
             + np.einsum("kh,tnk->tnh", b_act, np.asarray(dens.rho)))
    wrong = wrong[..., :H] * h + wrong[..., H:]
    assert np.abs(z_scores(y, wrong, floor)[0]).max() > Z_MAX


def test_film_limit_of_many_short_lived_vesicles():
    """Dense, short-lived vesicles recover a FiLM layer (paper §1 and Table 1; eq. 21–22).

    Refine the time axis by m: a fixed window of 20 units becomes 20·m steps.
    Vesicles live one step (geometric δ = 1), i.e. 1/m time units, while the
    emission per step stays fixed, so emission rate × lifetime is constant and
    the number of vesicles docking at a node within the window grows like m.
    Their activation changes γ(c)⊙h + β(c) are i.i.d. given their number and
    affine in c, so the per-dock average Σ_docked Δh / N_docked tends (law of
    large numbers) to the FiLM output γ(c̄)⊙h + β(c̄) at the mean docking content
    c̄ = Σ_t docked_content / Σ_t expected_docks given by the density, with a
    root-mean-square error over runs falling like 1/√m (like 1/√N_docks).

    Checks (400 runs per m): the RMSE ratio from m to 4m is below 0.7 (its
    expectation is 0.5, and the RMSE itself is estimated to ~2%); RMSE·√N_docks
    stays within a factor 2 over m = 1, 4, 16; and at m = 16 the mean over runs
    of the per-dock average equals the FiLM output within 4 SE.
    """
    G = nx.DiGraph([(0, 1), (1, 2), (2, 0), (0, 2)])
    sub = nv.Substrate.from_networkx(G)
    model = nv.VesicleModel(sub, n_types=1, content_dim=2, covariate_dim=1, priors={"w_c": 0.0})
    F = np.array([[-0.5], [0.0], [1.0]])  # static: the nodes differ in emission, docking and content
    rng = np.random.default_rng(7)
    params = model.default_params().replace(
        T=random_T(sub, 1, rng), delta=np.array([1.0]), u=np.array([[0.0, 0.5]]), r_max=np.array([3.0]),
        w=np.array([[1.0, 0.3]]), content_mean=np.array([[1.0, -0.5]]), content_B=np.array([[[0.8, -0.6]]]),
        content_scale=np.array([[0.7, 0.5]]))
    H = 3
    h, W_act, b_act = film_operator(1, H, 2, seed=8)
    window, R = 20, 400
    rmse, n_docks = [], []
    for m in (1, 4, 16):
        n_steps = window * m
        dens = relax(model, params, n_steps, covariates=F)
        c_bar = np.asarray(dens.docked_content).sum((0, 2)) / np.asarray(dens.expected_docks).sum((0, 2))[:, None]
        gb = np.einsum("hd,nd->nh", W_act[0], c_bar) + b_act[0]  # eq. 21 at c̄: (n, 2H)
        film = gb[:, :H] * h + gb[:, H:]  # eq. 22
        traces = nv.simulate(model, params, n_steps=n_steps, n_runs=R, key=10 + m, covariates=F, backend="compiled")
        total = release_sums(traces, sub, 1, h, W_act, b_act).sum(1)  # (R, n, H)
        N = cell_sums(traces, sub, 1, docked=True).sum((1, 3))  # (R, n)
        assert N.min() > 0
        err = total / N[..., None] - film
        rmse.append(np.sqrt((err ** 2).mean()))
        n_docks.append(N.mean())
        if m == 16:
            se = err.std(0, ddof=1) / np.sqrt(R)
            assert np.all(np.abs(err.mean(0)) <= Z_MAX * se)
    rmse, n_docks = np.array(rmse), np.array(n_docks)
    assert np.all(rmse[1:] / rmse[:-1] < 0.7), rmse
    scaled = rmse * np.sqrt(n_docks)
    assert scaled.max() / scaled.min() < 2.0, scaled


# --------------------------------------------------------------------------- composite likelihood
@pytest.fixture(scope="module")
def likelihood_case():
    sub = nv.Substrate.from_networkx(SMALL_GRAPH)
    model = nv.VesicleModel(sub, n_types=2, covariate_dim=1, budget=[1, None])
    rng = np.random.default_rng(4)
    params = model.default_params().replace(u=np.array([[0.0, 0.5], [-0.5, 0.0]]), r_max=np.array([2.0, 1.0]),
                                            T=random_T(sub, 2, rng))
    F = rng.normal(size=(3, 8, sub.n_nodes, 1))  # per-run covariates: the density has a run axis
    dens = relax(model, params, 8, covariates=F)
    traces = nv.simulate(model, params, n_steps=8, n_runs=3, key=5, covariates=F, backend="compiled")
    return dens, traces


def direct_sum(logpmf_cells):
    """Sum over node and type of per-cell terms (R, T, n, K) → (R, T)."""
    return logpmf_cells.sum((-1, -2))


@pytest.mark.parametrize("detection", ["exact", "binomial"])
def test_composite_log_likelihood_is_a_sum_of_poisson_terms(likelihood_case, detection):
    """Exact detection: Σ log Poisson(y; ρ) + Σ log Poisson(D; E[D]); binomial
    thinning: the same with means p_det·ρ and p_det·E[D] (rtol 1e-10)."""
    dens, traces = likelihood_case
    p_det = 0.7 if detection == "binomial" else None
    obs = traces.observe(counts=True, docks=True, detection=detection, p_det=p_det, key=6)
    scale = 1.0 if p_det is None else p_det
    rho, docks = np.asarray(dens.rho), np.asarray(dens.expected_docks)
    assert rho.shape == obs.counts.shape
    want = direct_sum(stats.poisson.logpmf(obs.counts, scale * rho) + stats.poisson.logpmf(obs.docks, scale * docks))
    got = np.asarray(composite_log_likelihood(dens, obs))
    assert got.shape == (3, 8) and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(predicted_mean(dens, "docks", detection, p_det)), scale * docks, rtol=1e-15)
    # counts only; and a density without a run axis is shared by all runs
    counts_only = nv.Observations(counts=obs.counts, detection=detection, p_det=p_det)
    np.testing.assert_allclose(np.asarray(composite_log_likelihood(dens, counts_only)),
                               direct_sum(stats.poisson.logpmf(obs.counts, scale * rho)), rtol=1e-10)
    shared = jax.tree.map(lambda x: x[0], dens)
    np.testing.assert_allclose(np.asarray(composite_log_likelihood(Density(*shared), counts_only)),
                               direct_sum(stats.poisson.logpmf(obs.counts, scale * rho[:1])), rtol=1e-10)
    if detection == "binomial":  # an unknown p_det must be given
        unknown = nv.Observations(counts=obs.counts, detection="binomial")
        np.testing.assert_allclose(np.asarray(composite_log_likelihood(dens, unknown, p_det=0.7)),
                                   direct_sum(stats.poisson.logpmf(obs.counts, 0.7 * rho)), rtol=1e-10)
        with pytest.raises(ValueError, match="p_det"):
            composite_log_likelihood(dens, unknown)


def poisson_mixture_logpmf(y, rho, floor, n_max=400):
    """log Σ_N Poisson(N; ρ) Poisson(y; N + floor), summed directly over N < n_max."""
    N = np.arange(n_max)
    terms = stats.poisson.logpmf(N, np.asarray(rho)[..., None]) + stats.poisson.logpmf(np.asarray(y)[..., None],
                                                                                         N + floor)
    return logsumexp(terms, axis=-1)


def test_composite_log_likelihood_with_poisson_detection(likelihood_case):
    """Poisson detection: each term is the mixture Σ_N Poisson(N; ρ)·Poisson(y; N + floor),
    compared with a direct sum over N < 400 (the neglected terms are < 1e-100; rtol 1e-10)."""
    dens, traces = likelihood_case
    obs = traces.observe(counts=True, docks=True, detection="poisson", floor=0.3, key=2)
    want = direct_sum(poisson_mixture_logpmf(obs.counts, dens.rho, 0.3)
                      + poisson_mixture_logpmf(obs.docks, dens.expected_docks, 0.3))
    # the reference itself: y = 0 has the closed form log E[exp(-(N + f))] = -f - ρ(1 - 1/e)
    rho = np.array([0.0, 0.5, 3.0, 8.0])
    np.testing.assert_allclose(poisson_mixture_logpmf(np.zeros(4), rho, 0.3), -0.3 - rho * (1 - np.exp(-1)),
                               rtol=1e-12)
    assert (obs.counts == 0).any() and (obs.counts > 3).any()
    got = np.asarray(composite_log_likelihood(dens, obs))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_poisson_detection_mixture_is_not_truncated_when_rho_exceeds_the_counts():
    """y = 0 observed where ρ = 100: the mixture's largest terms are near N = ρ/e ≈ 37 and
    its value is exp(-f - ρ(1 - 1/e)) (closed form)."""
    rho = jnp.full((1, 1, 1), 100.0)
    dens = Density(rho, rho * 0, rho * 0, jnp.zeros((1, 1, 1, 0)), jnp.zeros((1, 1, 1, 0)))
    obs = nv.Observations(counts=np.zeros((1, 1, 1, 1), int), detection="poisson", floor=0.1)
    np.testing.assert_allclose(np.asarray(composite_log_likelihood(dens, obs))[0, 0], -0.1 - 100 * (1 - np.exp(-1)),
                               rtol=1e-9)


# --------------------------------------------------------------------------- max_age and errors
def test_max_age_pools_only_older_vesicles():
    """Countdown lifetimes: max_age ≥ T is the exact default; a smaller max_age
    changes nothing before the first vesicles pass that age, and afterwards only
    a little, since the discretised Gamma hazards change slowly beyond age 6
    (0.5% here; checked loosely at 10%)."""
    model, params, F = mean_case("countdown", [None, 2], n_steps=10)
    exact = np.asarray(relax(model, params, 10, covariates=F).rho)
    np.testing.assert_array_equal(np.asarray(relax(model, params, 10, covariates=F, max_age=50).rho), exact)
    pooled = np.asarray(relax(model, params, 10, covariates=F, max_age=6).rho)
    np.testing.assert_allclose(pooled[:6], exact[:6], rtol=1e-12, atol=1e-300)
    assert not np.allclose(pooled, exact, rtol=1e-6)
    np.testing.assert_allclose(pooled, exact, rtol=0.1, atol=1e-3)


def test_errors_name_the_problem():
    """Invalid arguments raise ValueError with a message naming the problem."""
    sub = nv.Substrate.from_networkx(nx.cycle_graph(3))
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    params = model.default_params()
    F = np.zeros((5, 3, 1))
    for bad in (0, -2, 2.5, True, "5"):
        with pytest.raises(ValueError, match="n_steps must be a positive integer"):
            relax(model, params, bad, covariates=F)
    noisy = nv.VesicleModel(sub, n_types=1, lifetime="countdown", sigma_tau=0.3)
    with pytest.raises(ValueError, match="sigma_tau"):
        relax(noisy, noisy.default_params(), 5)
    for cov in (np.zeros((5, 3, 2)), np.zeros((6, 3, 1)), np.zeros((5, 4, 1)), np.zeros((2, 6, 3, 1)), np.zeros(3)):
        with pytest.raises(ValueError, match="covariates must have shape"):
            relax(model, params, 5, covariates=cov)
    with pytest.raises(ValueError, match="covariate_dim=1"):
        relax(model, params, 5)  # covariates needed
    with pytest.raises(ValueError, match=r"T\[type 0, node 0\] sums to 2"):
        relax(model, params.replace(T=params.T * 2), 5, covariates=F)
    with pytest.raises(ValueError, match=r"'delta' at type 0 is 1.5"):
        relax(model, params.replace(delta=np.array([1.5])), 5, covariates=F)
    countdown = nv.VesicleModel(sub, n_types=1, lifetime="countdown")
    with pytest.raises(ValueError, match="max_age must be a positive integer"):
        relax(countdown, countdown.default_params(), 5, max_age=0)
