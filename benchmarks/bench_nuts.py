"""Benchmark: NUTS on fully observed traces (docs/design.rst, "Performance targets").

Fully observed traces on a graph of n = 100 nodes (out-degree 4 plus stay) with
K = 2 types, at about 10⁵ and 10⁶ vesicle-steps. For each size it measures

- the time to build the sufficient statistics,
- the time of one log-likelihood evaluation on the sufficient statistics
  (JAX, compiled) and of a vectorised NumPy evaluation over the vesicle-steps
  (the reference), and their ratio,
- the time of 4 chains × 1000 draws (1000 warm-up) of NUTS, compilation
  reported separately.

The claim checked: once the statistics are built, NUTS time does not grow with
the number of vesicle-steps. The last line printed is one JSON object with all
figures. ``--quick`` runs a seconds-long version (used by the tests).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import networkx as nx
import numpy as np

import nvppl as nv
from nvppl import likelihood
from nvppl.infer._hmc import NUTSSettings, run_chains
from nvppl.infer.nuts import likelihood_data
from nvppl.traces.suffstats import trace_data


def reference_graph(n: int, degree: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    for i in range(n):
        for j in rng.choice(np.delete(np.arange(n), i), size=degree, replace=False):
            G.add_edge(i, int(j))
    return G


def numpy_log_likelihood(model, params, traces) -> float:
    """The same log-likelihood, vectorised in NumPy over vesicle-steps (the reference)."""
    from scipy.special import gammaln

    v, s = traces._v, traces._s
    R, T, n, K = traces.n_runs, traces.n_steps, model.n_nodes, model.n_types
    lam = params.r_max / (1.0 + np.exp(-params.u[:, 0]))  # no covariates: (K,)
    births = np.bincount(((v["run"] * T + v["birth_step"]) * n + v["birth_node"]) * K + v["type"],
                         minlength=R * T * n * K).reshape(-1, K)
    total = float((births * np.log(lam) - lam - gammaln(births + 1.0)).sum())
    k = v["type"][s["vrow"]]
    total += float(np.log(params.T[k, s["node_from"], s["slot"]]).sum())
    p = 1.0 / (1.0 + np.exp(-params.w[k, 0]))
    total += float(np.where(s["docked"], np.log(p), np.log1p(-p)).sum())
    last = s["step"] == v["death_step"][s["vrow"]]
    cause = np.where(last, v["death_cause"][s["vrow"]], 0)
    a = params.a[s["node_to"]]
    absorbed = cause == 2
    total += float(np.where(absorbed, np.log(np.maximum(a, 1e-300)), np.log1p(-a)).sum())
    delta = params.delta[k]
    at_risk = ~absorbed
    total += float(np.where(cause == 1, np.log(delta), np.log1p(-delta))[at_risk].sum())
    return total


def timed(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run")
    args = parser.parse_args(argv)
    if not args.quick:  # parallel chains need host devices, exposed before any JAX computation
        nv.set_host_device_count(4)
    n, K, degree = (20, 2, 3) if args.quick else (100, 2, 4)
    draws = 50 if args.quick else 1000
    sizes = {"1e5": (1, 78), "1e6": (4, 150)} if not args.quick else {"small": (1, 10), "large": (2, 25)}

    sub = nv.Substrate.from_networkx(reference_graph(n, degree))
    model = nv.VesicleModel(sub, n_types=K)
    params = model.default_params().replace(delta=np.array([0.05, 0.05]))
    settings = NUTSSettings(num_warmup=draws, num_samples=draws)
    figures = {"n_nodes": n, "n_types": K, "chains": 4, "draws": draws, "warmup": draws}

    for label, (runs, steps) in sizes.items():
        t_sim, traces = timed(lambda: nv.simulate(model, params, n_steps=steps, n_runs=runs, key=1))
        t_stats, data = timed(lambda: trace_data(model, traces))
        nuts_data = likelihood_data(data, model)
        jit_ll = jax.jit(lambda p, d: likelihood.log_likelihood(p, d, model))
        jit_ll(params, nuts_data).block_until_ready()
        t_ll, value = timed(lambda: jit_ll(params, nuts_data).block_until_ready(), repeat=20)
        t_np, ref = timed(lambda: numpy_log_likelihood(model, params, traces), repeat=3)
        assert np.isclose(float(value), ref, rtol=1e-9), (float(value), ref)
        t_first, _ = timed(lambda: run_chains(model, nuts_data, jax.random.PRNGKey(0), 4, settings,
                                              "sequential", False))
        t_nuts, (sites, info, _) = timed(lambda: run_chains(model, nuts_data, jax.random.PRNGKey(1), 4,
                                                            settings, "sequential", False))
        row = {
            "vesicle_steps": len(traces), "simulate_s": t_sim, "sufficient_statistics_s": t_stats,
            "loglik_suffstats_ms": 1e3 * t_ll, "loglik_numpy_ms": 1e3 * t_np,
            "numpy_over_suffstats": t_np / t_ll, "nuts_first_call_s": t_first, "nuts_s": t_nuts,
            "nuts_compile_s": max(t_first - t_nuts, 0.0), "mean_leapfrog_steps": float(info.num_steps.mean()),
            "us_per_leapfrog": 1e6 * t_nuts / (4 * 2 * draws * float(info.num_steps.mean())),
        }
        figures[label] = row
        print(f"{label}: {len(traces):,} vesicle-steps | statistics {t_stats:.2f} s | log-lik "
              f"{1e3 * t_ll:.3f} ms (NumPy over vesicle-steps {1e3 * t_np:.1f} ms, ratio {t_np / t_ll:.0f}x) | "
              f"NUTS 4x{draws} {t_nuts:.1f} s (+{row['nuts_compile_s']:.1f} s compile, "
              f"{row['us_per_leapfrog']:.0f} us per leapfrog step)")
    small, large = (figures[k] for k in sizes)
    if not args.quick:  # chains in threads, one per host device (compiles once per device)
        t_par, _ = timed(lambda: run_chains(model, nuts_data, jax.random.PRNGKey(2), 4, settings, "parallel", False))
        t_par2, _ = timed(lambda: run_chains(model, nuts_data, jax.random.PRNGKey(3), 4, settings, "parallel",
                                             False))
        figures["nuts_parallel_s"] = t_par2
        figures["nuts_parallel_compile_s"] = max(t_par - t_par2, 0.0)
        print(f"parallel chains over {jax.local_device_count()} host device(s): {t_par2:.1f} s "
              f"(+{figures['nuts_parallel_compile_s']:.1f} s compile)")
    figures["nuts_time_ratio_large_over_small"] = large["nuts_s"] / small["nuts_s"]
    figures["us_per_leapfrog_ratio_large_over_small"] = large["us_per_leapfrog"] / small["us_per_leapfrog"]
    figures["vesicle_steps_ratio"] = large["vesicle_steps"] / small["vesicle_steps"]
    print(f"NUTS time ratio {figures['nuts_time_ratio_large_over_small']:.2f} (per leapfrog step "
          f"{figures['us_per_leapfrog_ratio_large_over_small']:.2f}) for {figures['vesicle_steps_ratio']:.1f}x "
          "the vesicle-steps; target: 4 chains x 1000 draws < 60 s")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
