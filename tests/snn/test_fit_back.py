"""The chain's middle link: the vesicles of a field that drove learning come back as Traces with the spiking
covariates that emitted them, and ``nv.infer.fit`` recovers the kernels from them."""

import numpy as np
import pytest

import nvppl as nv


@pytest.mark.slow
def test_field_traces_recover_the_emission_and_decay_kernels():
    """A field on 5 groups of a spiking network, emitted from the window rate (u₁ = 4), recorded for 600 ticks of
    alternating quiet and busy input, then fitted by NUTS: the true u and δ lie within 4 posterior standard
    deviations of the posterior means, and the rate coefficient is resolved (posterior sd < 0.5, prior sd 1.5).
    Catches traces whose covariates are shifted by a tick or taken from the wrong node (the rate coefficient
    would be biased towards 0) and a field whose births are not those recorded."""
    net = nv.snn.LIFNetwork.random(30, 0.15, key=2, n_input=8, input_p=0.4, input_weight=0.9)
    sub, node_of = nv.snn.group_substrate(net, np.arange(30) % 5)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=1)
    truth = model.default_params().replace(u=np.array([[-1.0, 4.0]]), r_max=np.array([1.0]),
                                           delta=np.array([0.2]))
    fld = nv.snn.VesicleField(model, truth, node_of, alpha=[1.0], window=10, capacity=512)
    rng = np.random.default_rng(0)
    T = 600
    busy = (np.arange(T) // 100 % 2 == 1)[:, None]
    inputs = rng.random((T, 8)) < np.where(busy, 0.4, 0.05)
    res = nv.snn.learn(net, nv.snn.Plasticity(eta=0.0), inputs=inputs, signals=np.zeros(T), key=1,
                       modulation=fld, record_vesicles=True)
    tr = res.traces
    X = np.asarray(tr.covariates)          # the design (1, F): intercept and the window rate
    assert tr.n_steps == T and X.shape == (1, T, 5, 2) and np.all(X[..., 0] == 1)
    assert X[0, :, :, 1].min() >= 0 and X[0, 150:200, :, 1].mean() > 2 * X[0, 50:100, :, 1].mean()
    assert int(res.docks.sum()) == int(tr.steps["docked"].sum())
    fit = nv.infer.fit(model, tr, method="nuts", num_samples=300, num_warmup=300, num_chains=1, key=0,
                       progress_bar=False, identifiability=False)
    post = fit.idata.posterior
    for name, true in (("u", truth.u), ("delta", truth.delta)):
        m = post[name].mean(("chain", "draw")).values
        s = post[name].std(("chain", "draw")).values
        z = np.abs(m - true) / s
        assert z.max() < 4, f"{name}: posterior mean {m} vs truth {true} ({z.max():.1f} sd)"
    assert float(post["u"].std(("chain", "draw")).values[0, 1]) < 0.5
