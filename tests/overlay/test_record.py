"""Recording and re-fitting: the vesicle kernels that acted while a network trained are
recovered by nv.infer.fit from the recorded traces (coverage of the 95 % intervals)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nvppl as nv


def _loss(net, x, y):
    return jnp.mean((jax.vmap(net)(x) - y) ** 2)


@pytest.mark.slow
def test_refit_of_recorded_traces_covers_the_kernels_that_ran():
    """Five training runs (Adam, FiLM release, 300 steps each, different keys) with
    emission and docking that follow the online covariates; NUTS on each run's traces.
    Over the 5 × 11 scalar parameters (emission u: 4, docking w: 4, decay: 1, the free
    migration probability of the two non-final sites: 2) the 95 % intervals must cover
    the truth at least 48 times: the binomial expectation 52.25 minus 3 standard
    deviations (1.6). The posteriors must also be informative: every posterior sd at
    most half the prior's (1.5 for u and w)."""
    net = eqx.nn.MLP(3, 2, 8, depth=2, key=jax.random.key(0), dtype=jnp.float32)
    ov = nv.overlay.Overlay.from_network(net, content_dim=1, release=("act",), capacity=1024)
    p = ov.model.default_params().replace(u=np.array([[0.5, 0.8, -0.6, 0.4]]),
                                           w=np.array([[-1.0, 0.5, 0.7, -0.3]]), delta=np.array([0.1]))
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(256, 3)), jnp.float32)
    Y = jnp.asarray(rng.normal(size=(256, 2)), jnp.float32)
    opt = optax.adam(1e-2)
    covered, total = 0, 0
    for rep in range(5):
        res = nv.overlay.train(ov, net, opt, _loss, (X, Y), n_steps=300, batch_size=16, params=p, record=True,
                               key=rep, progress=False)
        assert res.traces.covariate_dim == 3 and res.traces.n_vesicles > 200
        fit = nv.infer.fit(ov.model, res.traces, method="nuts", num_samples=300, num_warmup=300, num_chains=2,
                           key=rep, identifiability=False)
        post = fit.idata.posterior
        for name, sel in (("u", np.s_[0, :]), ("w", np.s_[0, :]), ("delta", np.s_[:]), ("T", np.s_[0, :2, 0])):
            draws = post[name].values.reshape((-1,) + post[name].shape[2:])[(slice(None),) + np.index_exp[sel]]
            lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
            truth = np.asarray(getattr(p, name))[sel]
            covered += int(np.sum((lo <= truth) & (truth <= hi)))
            total += truth.size
            if name in ("u", "w"):
                assert np.all(draws.std(0) < 0.75), (name, draws.std(0))
    assert total == 55
    assert covered >= 48, covered
