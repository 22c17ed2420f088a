"""Benchmark: the cost of one coupled overlay step over a plain training step (docs/design.rst, "Performance targets").

Target: "overlay, MLP 784-256-256-10 float32, batch 128, capacity 4096 vesicles:
coupled step ≤ 1.5× the plain training step (explicit mode), ≤ 1.3× (density mode)".

The base network is ``eqx.nn.MLP(784, 10, 256, depth=2, dtype=float32)`` trained
with ``optax.adam(1e-3)`` on random inputs of that shape (4096 rows, 10 classes,
softmax cross-entropy), minibatches of 128 read from the same index array by
both loops. The overlay has one node per layer (3 sites), K = 2 types, content
dimension 4, all four release operators on (FiLM, rank-one, rule after Adam,
memory), emission with the log link at ``exp(u₀) = 12`` per node and type (so
about 2300 vesicles are alive in 4096 slots at δ = 0.03), docking 0.2, content
mean 0.5. Measured after a compiling call, as the best of a few repeats of a
run of ``steps`` steps divided by ``steps`` (for the coupled steps this is a whole
call of ``nv.overlay.train``, its fixed cost — batch indices, checks, building
the result — included, as a user meets it):

- the plain step: ``eqx.filter_value_and_grad`` of the loss, Adam, apply;
- the coupled step of ``nv.overlay.train`` in explicit mode and in density mode;
- their ratios, ``explicit_overhead`` and ``density_overhead``;
- the vesicle population step alone (``nvppl.population.step`` jit-compiled,
  4096 slots, the same parameters and covariates) against a vectorised NumPy
  version of the same step (``numpy_population_step`` below), the reference of
  this benchmark: their ratio shows what the JAX step costs against NumPy.

The base network stays float32 (checked). The last line printed is one JSON
object with all figures. ``--quick`` runs a small version (MLP 64-32-32-10,
batch 16, capacity 512, 20 steps).
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nvppl as nv
from nvppl import population
from nvppl.kernels import emission

TARGET_EXPLICIT, TARGET_DENSITY = 1.5, 1.3


def _best(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return min(times), out


def loss_fn(net, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(net)(x), y).mean()


def vesicle_params(ov, rate, delta):
    p = ov.model.default_params()
    u = np.zeros_like(p.u)
    u[:, 0] = np.log(rate)
    return p.replace(u=u, delta=np.full_like(p.delta, delta), content_mean=np.full_like(p.content_mean, 0.5))


# ------------------------------------------------------------------ NumPy reference
def numpy_population_step(rng, model, p, st, X):
    """One step of §1.3 for one run in ``C`` slots, vectorised NumPy (geometric lifetimes,
    infinite budget, no absorption, untilted migration; content drawn at birth)."""
    alive, node, vtype, content = st
    n, K = model.n_nodes, model.n_types
    lam = np.exp(X @ p.u.T)  # (n, K) log link
    births = rng.poisson(lam).reshape(-1)
    free = np.flatnonzero(~alive)
    total = int(births.sum())
    if total > len(free):
        raise RuntimeError("capacity")
    cell = np.repeat(np.arange(n * K), births)
    slots = free[:total]
    node[slots], vtype[slots] = cell // K, cell % K
    loc = p.content_mean[vtype[slots]] + np.einsum("cp,cpd->cd", X[node[slots], 1:], p.content_B[vtype[slots]])
    content[slots] = loc + p.content_scale[vtype[slots]] * rng.standard_normal(loc.shape)
    alive[slots] = True
    idx = np.flatnonzero(alive)
    cand = model.substrate.candidates
    cdf = np.cumsum(p.T[vtype[idx], node[idx]], axis=1)
    slot = (cdf < rng.random(len(idx))[:, None] * cdf[:, -1:]).sum(1)
    dest = cand[node[idx], slot]
    z = np.einsum("cd,cd->c", X[dest], p.w[vtype[idx]])
    docked = rng.random(len(idx)) < 1.0 / (1.0 + np.exp(-z))
    expired = rng.random(len(idx)) < p.delta[vtype[idx]]
    node[idx] = dest
    alive[idx[expired]] = False
    D = np.zeros((n, K))
    np.add.at(D, (dest[docked], vtype[idx[docked]]), 1.0)
    return (alive, node, vtype, content), D


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a seconds-long run")
    ap.add_argument("--steps", type=int, default=400, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.quick:
        d_in, width, batch, capacity, steps, repeats, rate = 64, 32, 16, 512, 20, 2, 1.5
    else:
        d_in, width, batch, capacity, steps, repeats, rate = 784, 256, 128, 4096, args.steps, args.repeats, 12.0
    delta = 0.03
    key = jax.random.key(0)
    net = eqx.nn.MLP(d_in, 10, width, depth=2, key=key, dtype=jnp.float32)
    N = 4096 if not args.quick else 256
    X = jax.random.normal(jax.random.key(1), (N, d_in), jnp.float32)
    Y = jax.random.randint(jax.random.key(2), (N,), 0, 10)
    idx = jnp.asarray(nv.overlay.batch_indices(N, steps, batch, 0))
    opt = optax.adam(1e-3)
    figures = {"mlp": [d_in, width, width, 10], "batch": batch, "capacity": capacity, "steps": steps}

    # plain training step
    params, static = eqx.partition(net, eqx.is_inexact_array)

    @jax.jit
    def plain(params, opt_state, idx):
        def body(c, ib):
            pr, st = c
            loss, g = jax.value_and_grad(lambda q: loss_fn(eqx.combine(q, static), X[ib], Y[ib]))(pr)
            u, st = opt.update(g, st, pr)
            return (eqx.apply_updates(pr, u), st), loss
        return jax.lax.scan(body, (params, opt_state), idx)

    st0 = opt.init(params)
    jax.block_until_ready(plain(params, st0, idx))
    t, ((p_end, _), _) = _best(lambda: plain(params, st0, idx), repeats)
    t_plain = t / steps
    figures["plain_ms_per_step"] = 1e3 * t_plain
    figures["plain_float32"] = bool(jax.tree.leaves(p_end)[0].dtype == jnp.float32)

    for mode in ("explicit", "density"):
        ov = nv.overlay.Overlay.from_network(net, n_types=2, content_dim=4, release=nv.overlay.OPERATORS,
                                             mode=mode, capacity=capacity, emission_link="log")
        vp = vesicle_params(ov, rate, delta)
        kw = dict(n_steps=steps, batch_size=batch, params=vp, progress=False, chunk=steps)
        nv.overlay.train(ov, net, opt, loss_fn, (X, Y), key=0, **kw)  # compiles
        t, _ = _best(lambda: nv.overlay.train(ov, net, opt, loss_fn, (X, Y), key=1, **kw).net, repeats)
        res_full = nv.overlay.train(ov, net, opt, loss_fn, (X, Y), key=1, **kw)
        t = t / steps
        figures[f"{mode}_ms_per_step"] = 1e3 * t
        figures[f"{mode}_overhead"] = t / t_plain
        figures[f"{mode}_alive_mean"] = float(np.mean(res_full.metrics["alive"][steps // 2:]))
        figures[f"{mode}_float32"] = bool(all(a.dtype == jnp.float32 for a in jax.tree.leaves(eqx.filter(
            res_full.net, eqx.is_inexact_array))))

    # the population step alone, JAX against NumPy
    ov = nv.overlay.Overlay.from_network(net, n_types=2, content_dim=4, release=(), capacity=capacity,
                                         emission_link="log")
    model, vp = ov.model, vesicle_params(ov, rate, delta)
    pj = jax.tree.map(jnp.asarray, vp)
    consts = population.constants(model)
    F = np.zeros((model.n_nodes, model.covariate_dim))
    Xd = np.asarray(emission.design_matrix(F))

    @jax.jit
    def jax_steps(state, key):
        def body(s, t):
            s, rec, _ = population.step(model, pj, consts, s, t, jnp.asarray(Xd)[None], jnp.asarray(F)[None],
                                        population.keyed_draw(jax.random.fold_in(key, t)))
            return s, rec.docked.sum()
        return jax.lax.scan(body, state, jnp.arange(steps))

    s0 = population.init_state(1, capacity, model.content_dim)
    warm, _ = jax_steps(s0, jax.random.key(3))  # compiles; start the timing from a filled population
    jax.block_until_ready(warm)
    t_pop, _ = _best(lambda: jax_steps(warm, jax.random.key(4)), repeats)
    rng = np.random.default_rng(0)
    st = (np.zeros(capacity, bool), np.zeros(capacity, np.int64), np.zeros(capacity, np.int64),
          np.zeros((capacity, model.content_dim)))
    for _ in range(steps):
        st, _ = numpy_population_step(rng, model, vp, st, Xd)
    t0 = time.perf_counter()
    for _ in range(steps):
        st, _ = numpy_population_step(rng, model, vp, st, Xd)
    t_np = time.perf_counter() - t0
    figures["population_jax_us_per_step"] = 1e6 * t_pop / steps
    figures["population_numpy_us_per_step"] = 1e6 * t_np / steps
    figures["population_jax_over_numpy_speed"] = t_np / t_pop
    figures["population_alive_numpy"] = int(st[0].sum())

    print(f"MLP {figures['mlp']}, batch {batch}, capacity {capacity}, {steps} steps per scan, best of {repeats}")
    print(f"  plain step            {figures['plain_ms_per_step']:8.3f} ms")
    for mode, target in (("explicit", TARGET_EXPLICIT), ("density", TARGET_DENSITY)):
        r = figures[f"{mode}_overhead"]
        print(f"  coupled ({mode:8s})   {figures[f'{mode}_ms_per_step']:8.3f} ms   overhead {r:5.2f}x "
              f"(target <= {target}: {'met' if r <= target else 'NOT met'}), "
              f"{figures[f'{mode}_alive_mean']:.0f} vesicles alive")
    print(f"  population step alone: JAX {figures['population_jax_us_per_step']:.1f} us, NumPy "
          f"{figures['population_numpy_us_per_step']:.1f} us (JAX {figures['population_jax_over_numpy_speed']:.2f}x "
          f"NumPy's speed)")
    print(f"  base network float32 after training: plain {figures['plain_float32']}, explicit "
          f"{figures['explicit_float32']}, density {figures['density_float32']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
