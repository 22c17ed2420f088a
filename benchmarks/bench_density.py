"""Benchmark: density relaxation, its gradient and density SVI (docs/design.rst, "Performance targets").

Target: "density SVI, n = 1000, T = 500: 2000 steps in under 30 s". The model is
``nv.VesicleModel(sub, n_types=2)`` on ``reference_graph(1000, 8)`` (8 distinct
random out-neighbours per node plus stay, so |E| = 9000 candidate moves) with
``model.default_params()`` (emission 0.5, docking 0.2, δ = 0.05, uniform
migration rows, no absorption, infinite budget), T = 500 steps. It measures

- ``nv.density.relax(model, params, n_steps=T)``: wall time (best of a few after
  a compiling warm-up call) and edge-steps per second ``|E|·T·K / time``;
- the gradient of a scalar functional of the density (a Poisson log-likelihood
  of fixed pseudo-counts under ``rho`` and ``expected_docks``) with respect to
  every field of ``Params``, ``jax.jit(jax.grad(f))``, best of a few;
- a NumPy reference of the same relaxation (``NumpyRelax`` below):
  ``ρ_t = S ⊙ Tᵀ(ρ_{t−1} + λ)`` with ``S = (1 − a)(1 − δ)``, expected docks
  ``p_dock ⊙ arrivals``; the migration ``Tᵀ x`` as one vectorised step over the
  candidate table per time step, in two forms: ``np.bincount`` with weights over
  (type, destination), and a ``scipy.sparse`` CSR matrix-vector product with a
  block-diagonal (one block per type) transposed migration matrix built once.
  Both are checked against ``relax`` (relative 1e-10, elementwise on ``rho``,
  ``expected_docks`` and ``arrivals``); the ratio relax/NumPy uses the faster;
- SVI (``nv.infer.fit(..., method="svi")``) on counts and docks of one run
  simulated by the compiled backend and seen with binomial detection
  (p_det = 0.8): the wall time of a 2000-step fit (first call, compilation
  included), of a second identical call (compiled programs are cached per model
  specification), and the time per optimisation step from the warm calls of 200
  and 2000 steps (difference / 1800; the composite MAP search that starts every
  fit is the same in both and cancels), for the full model and for one with the
  migration rows fixed (``priors={"T": ...}``: u, w, a, δ inferred); also the
  length of that MAP search (L-BFGS iterations and evaluations) and the cost of
  one evaluation of the potential and its gradient.

The last line printed is one JSON object with all figures. ``--quick`` runs a
short version (n = 50, T = 40, fits of 20 and 10 SVI steps, the model with fixed T
only with 20; used by the tests), most of its time spent compiling.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

import nvppl as nv
from bench_nuts import reference_graph  # the graph of the other benchmarks
from bench_simulate import json_safe
from nvppl.infer.svi import latent_dim

TARGET_SVI_S = 30.0  # 2000 SVI steps, n = 1000, T = 500


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------ NumPy reference
class NumpyRelax:
    """The exact-mean density recursion of a model without covariates or content,
    with geometric lifetimes and infinite budgets, in NumPy (float64)."""

    def __init__(self, model, params):
        if not (model.covariate_dim == 0 and model.content_dim == 0 and model.lifetime == "geometric"
                and not model.tilt and np.isinf(model.budget).all() and model.emission_link == "sigmoid"):
            raise ValueError("the NumPy reference covers no covariates or content, geometric lifetimes, "
                             "no tilt, an infinite budget and the sigmoid emission link")
        sub = model.substrate
        n, K = sub.n_nodes, model.n_types
        self.n, self.K = n, K
        cand = np.asarray(sub.candidates)
        valid = cand >= 0
        src = np.broadcast_to(np.arange(n)[:, None], cand.shape)[valid]  # (E,) source node of each move
        dst = cand[valid]  # (E,) destination
        Tm = np.asarray(params.T, dtype=np.float64)[:, valid]  # (K, E) move probabilities
        self.E = int(valid.sum())
        self.lam = np.asarray(params.r_max, np.float64) * _sigmoid(np.asarray(params.u, np.float64)[:, 0])  # (K,)
        self.p_dock = _sigmoid(np.asarray(params.w, np.float64)[:, 0])  # (K,)
        a = np.asarray(params.a, np.float64)
        delta = np.asarray(params.delta, np.float64)
        self.S = (1.0 - delta)[:, None] * (1.0 - a)[None, :]  # (K, n)
        # bincount form: flat (type, destination) bins, gathered sources
        self.bins = (np.arange(K)[:, None] * n + dst[None, :]).ravel()  # (K·E,)
        self.src_flat = (np.arange(K)[:, None] * n + src[None, :]).ravel()  # (K·E,) into x.ravel() of (K, n)
        self.w_flat = Tm.ravel()
        # CSR form: A[κ n + j, κ n + i] = T[κ, i → j], block-diagonal over types
        self.A = sp.csr_matrix((self.w_flat, (self.bins, self.src_flat)), shape=(K * n, K * n))
        self.A.sum_duplicates()

    def run(self, n_steps: int, form: str = "bincount"):
        """``(rho, expected_docks, arrivals)``, each ``(T, n, K)``."""
        K, n = self.K, self.n
        arr = np.empty((n_steps, K, n))
        lam = self.lam[:, None]
        rho = np.zeros((K, n))
        if form == "bincount":
            bins, src, w, size = self.bins, self.src_flat, self.w_flat, K * n
            for t in range(n_steps):
                x = (rho + lam).ravel()
                a = np.bincount(bins, weights=w * x[src], minlength=size).reshape(K, n)
                arr[t] = a
                rho = self.S * a
        elif form == "csr":
            A = self.A
            for t in range(n_steps):
                a = (A @ (rho + lam).ravel()).reshape(K, n)
                arr[t] = a
                rho = self.S * a
        else:
            raise ValueError(form)
        arrivals = arr.transpose(0, 2, 1)  # (T, n, K)
        return self.S.T * arrivals, self.p_dock * arrivals, arrivals


# ------------------------------------------------------------------ helpers
def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        out = None
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def max_rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def time_svi(model, obs, long_steps: int, short_steps: int | None, num_samples: int) -> dict:
    """Wall times of SVI fits: ``long_steps`` twice (the first call compiles), then, unless
    ``short_steps`` is None, ``short_steps`` twice (a new number of steps compiles again);
    the time per step from the two warm calls."""

    def run(steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a not-converged warning is reported through the figures
            t = time.perf_counter()
            fit = nv.infer.fit(model, obs, method="svi", num_steps=steps, num_samples=num_samples,
                               progress_bar=False, log_likelihood=False, key=0)
            return time.perf_counter() - t, fit

    first, fit = run(long_steps)
    second, fit2 = run(long_steps)
    short_first = short_second = step_s = None
    if short_steps is not None:
        short_first, _ = run(short_steps)
        short_second, _ = run(short_steps)
        step_s = (second - short_second) / (long_steps - short_steps)  # may come out negative on tiny problems
    elbo = np.asarray(fit2.extra["elbo"])
    post = fit2.idata.posterior
    # the composite MAP search (L-BFGS on the potential) that starts every fit: its length, and
    # the cost of one potential-and-gradient evaluation at the MAP
    res, comp = fit2.extra["map_result"], fit2.extra["composite"]
    z = jnp.asarray(fit2.extra["map_latent"])
    pot_s, _ = best_of(lambda: jax.block_until_ready(comp.potential(z, comp.data)), 3)
    means = {k: float(post[k].mean()) for k in ("delta",) if k in post}
    means.update({f"{k}_mean": float(post[k].mean()) for k in ("u", "w", "a") if k in post})
    return {
        "svi_total_first_s": first, "svi_total_second_s": second,
        "svi_short_steps": short_steps, "svi_short_first_s": short_first, "svi_short_second_s": short_second,
        "svi_step_ms": None if step_s is None else 1e3 * step_s,
        "svi_steps_s": None if step_s is None else long_steps * step_s,
        "svi_fixed_cost_s": None if step_s is None else second - long_steps * step_s,
        "latent_dim": latent_dim(model), "guide": str(post.attrs["guide"]),
        "elbo_len": len(elbo), "elbo_first": float(elbo[0]), "elbo_last": float(elbo[-1]),
        "converged": bool(fit2.extra["converged"]), "posterior_means": means,
        "same_elbo_both_calls": bool(np.array_equal(np.asarray(fit.extra["elbo"]), elbo)),
        "map_iterations": int(res.nit) if res is not None else 0,
        "map_evaluations": int(res.nfev) if res is not None else 0,
        "map_message": str(res.message) if res is not None else "no MAP search",
        "potential_grad_ms": 1e3 * pot_s, "map_search_est_s": (int(res.nfev) if res is not None else 0) * pot_s,
    }


def report_svi(label: str, r: dict, long_steps: int, full: bool) -> None:
    print(f"SVI, {label}: unconstrained dimension {r['latent_dim']}, guide {r['guide']}")
    print(f"  {long_steps} steps: first call {r['svi_total_first_s']:.2f} s (compilation included), second "
          f"call {r['svi_total_second_s']:.2f} s")
    print(f"  composite MAP search: {r['map_iterations']} L-BFGS iterations, {r['map_evaluations']} evaluations "
          f"of the potential and its gradient ({r['potential_grad_ms']:.1f} ms each at the MAP) -> about "
          f"{r['map_search_est_s']:.1f} s per call; {r['map_message']}")
    if r["svi_step_ms"] is None:
        print(f"  ELBO {r['elbo_first']:.6g} -> {r['elbo_last']:.6g} over {r['elbo_len']} steps")
        return
    print(f"  {r['svi_short_steps']} steps: first call {r['svi_short_first_s']:.2f} s, second call "
          f"{r['svi_short_second_s']:.2f} s")
    print(f"  per step {r['svi_step_ms']:.2f} ms -> {long_steps} x per step = {r['svi_steps_s']:.2f} s; "
          f"fixed cost per warm call (composite MAP, set-up, draws) {r['svi_fixed_cost_s']:.2f} s")
    print(f"  ELBO {r['elbo_first']:.6g} -> {r['elbo_last']:.6g} over {r['elbo_len']} steps, converged "
          f"{r['converged']}; posterior means {', '.join(f'{k} {v:.4g}' for k, v in r['posterior_means'].items())}")
    if full:
        print(f"  target {long_steps} steps < {TARGET_SVI_S:g} s: by {long_steps} x per step "
              f"{'MET' if r['svi_steps_s'] < TARGET_SVI_S else 'NOT met'} ({r['svi_steps_s']:.1f} s), by the "
              f"second call's total {'MET' if r['svi_total_second_s'] < TARGET_SVI_S else 'NOT met'} "
              f"({r['svi_total_second_s']:.1f} s)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run")
    args = parser.parse_args(argv)
    if args.quick:
        n, T, long_steps, short_steps, repeats, num_samples = 50, 40, 20, 10, 2, 20
    else:
        n, T, long_steps, short_steps, repeats, num_samples = 1000, 500, 2000, 200, 5, 100
    degree, K = 8, 2

    sub = nv.Substrate.from_networkx(reference_graph(n, degree), allow_stay=True)
    model = nv.VesicleModel(sub, n_types=K)
    params = model.default_params()
    E = int(np.asarray(sub.n_candidates).sum())
    work = E * T * K
    figures = {"n_nodes": n, "out_degree": degree, "n_types": K, "n_steps": T, "n_edges": E,
               "edge_steps": work, "repeats": repeats, "svi_num_steps": long_steps, "svi_num_samples": num_samples,
               "target_svi_s": TARGET_SVI_S, "fast_path": bool(nv.density.fast_path(model))}
    print(f"model: n={n}, out-degree {degree} + stay (|E| = {E} candidate moves), K={K}, T={T}, default "
          f"parameters; compiled linear recursion: {figures['fast_path']}")

    # 1. relaxation
    def relax():
        return jax.block_until_ready(nv.density.relax(model, params, n_steps=T))

    t0 = time.perf_counter()
    dens = relax()
    relax_first = time.perf_counter() - t0
    relax_s, dens = best_of(relax, repeats)
    relax_jit = jax.jit(lambda p: nv.density.relax(model, p, n_steps=T))
    pj = jax.tree.map(jnp.asarray, params)
    jax.block_until_ready(relax_jit(pj))
    relax_jit_s, _ = best_of(lambda: jax.block_until_ready(relax_jit(pj)), repeats)
    print(f"relax: {relax_s * 1e3:.2f} ms (best of {repeats}; first call {relax_first * 1e3:.0f} ms), "
          f"{work / relax_s / 1e6:.0f} M edge-steps/s (|E|·T·K = {work:,}); inside jax.jit (no argument "
          f"checks) {relax_jit_s * 1e3:.2f} ms, {work / relax_jit_s / 1e6:.0f} M edge-steps/s")

    # 2. gradient of a scalar functional of the density w.r.t. every Params field
    rng = np.random.default_rng(0)
    y_rho = jnp.asarray(rng.poisson(np.asarray(dens.rho)), dtype=jnp.float64)
    y_dock = jnp.asarray(rng.poisson(np.asarray(dens.expected_docks)), dtype=jnp.float64)

    def f(p):
        d = nv.density.relax(model, p, n_steps=T)
        return (jnp.sum(y_rho * jnp.log(d.rho) - d.rho) + jnp.sum(y_dock * jnp.log(d.expected_docks)
                                                                  - d.expected_docks))

    grad = jax.jit(jax.grad(f))
    t0 = time.perf_counter()
    g = jax.block_until_ready(grad(pj))
    grad_first = time.perf_counter() - t0
    grad_s, g = best_of(lambda: jax.block_until_ready(grad(pj)), repeats)
    g_leaves = jax.tree.leaves(g)
    grad_finite = bool(all(np.all(np.isfinite(np.asarray(x))) for x in g_leaves))
    grad_fields = [k for k, v in g.to_dict().items() if v is not None]
    print(f"gradient (jit(grad) of a Poisson log-likelihood of the density, all Params fields: "
          f"{', '.join(grad_fields)}): {grad_s * 1e3:.2f} ms (best of {repeats}; first call {grad_first:.2f} s), "
          f"{grad_s / relax_s:.2f}x one relaxation; finite: {grad_finite}")

    # 3. NumPy reference
    ref = NumpyRelax(model, params)
    np_times, errs = {}, {}
    for form in ("bincount", "csr"):
        ref.run(min(T, 3), form)  # warm-up
        np_times[form], out = best_of(lambda form=form: ref.run(T, form), repeats)
        errs[form] = max(max_rel_err(a, b) for a, b in zip((dens.rho, dens.expected_docks, dens.arrivals), out,
                                                           strict=True))
    fastest = min(np_times, key=np_times.get)
    numpy_s = np_times[fastest]
    agree = bool(max(errs.values()) <= 1e-10)
    ratio = numpy_s / relax_s
    for form, label in (("bincount", "np.bincount over (type, destination)"),
                        ("csr", "scipy.sparse CSR matvec, block-diagonal over types")):
        print(f"NumPy reference ({label}): {np_times[form] * 1e3:.2f} ms, {work / np_times[form] / 1e6:.0f} M "
              f"edge-steps/s; max relative difference to relax {errs[form]:.2e}")
    print(f"speed of relax / speed of NumPy ({fastest}, the faster form): {ratio:.2f} (relax "
          f"{'faster' if ratio >= 1 else 'slower'} by {max(ratio, 1 / ratio):.2f}x; inside jax.jit "
          f"{numpy_s / relax_jit_s:.2f}); agree to relative 1e-10: {agree}")
    if not agree:
        print("WARNING: relax and the NumPy reference disagree")

    figures.update({
        "relax_s": relax_s, "relax_first_call_s": relax_first, "relax_edge_steps_per_s": work / relax_s,
        "relax_jit_s": relax_jit_s, "relax_jit_edge_steps_per_s": work / relax_jit_s,
        "grad_s": grad_s, "grad_first_call_s": grad_first, "grad_over_relax": grad_s / relax_s,
        "grad_finite": grad_finite, "grad_fields": grad_fields,
        "numpy_relax_s": numpy_s, "numpy_relax_form": fastest,
        "numpy_bincount_relax_s": np_times["bincount"], "numpy_csr_relax_s": np_times["csr"],
        "numpy_bincount_max_rel_err": errs["bincount"], "numpy_csr_max_rel_err": errs["csr"],
        "relax_agrees_with_numpy": agree, "ratio_relax_vs_numpy": ratio,
        "ratio_relax_jit_vs_numpy": numpy_s / relax_jit_s,
    })

    # 4. SVI on simulated counts and docks
    obs = nv.simulate(model, params, n_steps=T, n_runs=1, key=0).observe(counts=True, docks=True,
                                                                        detection="binomial", p_det=0.8, key=1)
    print(f"observations: one run of {T} steps, binomial detection p_det=0.8, {int(obs.counts.sum()):,} counted "
          f"vesicle-steps, {int(obs.docks.sum()):,} docks")
    full = time_svi(model, obs, long_steps, None if args.quick else short_steps, num_samples)
    report_svi("full model (u, T, w, a, delta inferred)", full, long_steps, not args.quick)

    # 5. the same with the migration rows fixed
    model_fixed = nv.VesicleModel(sub, n_types=K, priors={"T": model.default_params().T})
    # (--quick: no short fits, each new number of steps compiles anew)
    fixed = time_svi(model_fixed, obs, long_steps, None if args.quick else short_steps, num_samples)
    report_svi("T fixed (u, w, a, delta inferred)", fixed, long_steps, not args.quick)

    for k, v in full.items():  # keys of the full model: svi_..., latent_dim, guide
        figures[k if k.startswith("svi_") or k in ("latent_dim", "guide") else f"svi_{k}"] = v
    figures["svi_2000_steps_s"] = figures.pop("svi_steps_s")  # long_steps x per step (20 steps with --quick)
    figures.update({f"fixed_T_{k}": v for k, v in fixed.items()})
    figures.update({
        "observed_counts_total": int(obs.counts.sum()), "observed_docks_total": int(obs.docks.sum()),
        "meets_target_by_steps": bool(full["svi_steps_s"] is not None and full["svi_steps_s"] < TARGET_SVI_S),
        "meets_target_by_second_call": bool(full["svi_total_second_s"] < TARGET_SVI_S),
        "fixed_T_meets_target_by_steps": bool(fixed["svi_steps_s"] is not None
                                              and fixed["svi_steps_s"] < TARGET_SVI_S),
        "fixed_T_meets_target_by_second_call": bool(fixed["svi_total_second_s"] < TARGET_SVI_S),
    })
    print(json.dumps(json_safe(figures)))
    return figures


if __name__ == "__main__":
    main()
