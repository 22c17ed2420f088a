"""Benchmark: compiled simulation against vectorised NumPy (docs/design.rst, "Performance targets").

The reference model of the performance targets (docs/design.rst): n = 1000 nodes, each with 8 distinct random
out-neighbours (fixed seed) plus stay, K = 1 type and ``model.default_params()``
(λ = 0.5 per node, p_dock = 0.2, δ = 0.05, infinite budget, no absorption,
uniform migration rows), 200 steps, 4 runs. It measures vesicle-steps per second
of

- ``nv.simulate(..., backend="compiled")`` with 1 and with 2 threads, end to end
  (the wall time of the call, which returns :class:`nvppl.Traces`), best of a few
  repeats; the cost of wrapping the same arrays in ``Traces`` (without and with
  validation) is reported beside it, to show what part of the call is
  bookkeeping, and the core's own split of a one-thread call into the
  simulation proper and the assembly of the int64 trace columns;
- a vectorised NumPy implementation of the same process (``numpy_simulate``
  below), over all runs at once, that records the step rows (vesicle, step,
  node before, node after, docked) and the vesicle table (run, birth step and
  node, death step and cause) as arrays, run in the same process.

Printed: both rates, the ratio compiled(1 thread) / NumPy (target ≥ 4), the
2-thread speed-up, the targets (≥ 50 M vesicle-steps/s on one thread), whether
1 and 2 threads give identical traces for the same key (docs/design.rst, "Randomness"), and a sanity
check that both implementations simulate the same model: their mean
vesicle-steps per run agree within a few standard errors, with the exact
expectation nλ Σ_s (1 − (1 − δ)^(T − s)) / δ beside them. The last line printed
is one JSON object with all figures. ``--quick`` runs a seconds-long version
(n = 100, 30 steps, 2 runs, one repeat; used by the tests).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import nvppl as nv
from bench_nuts import reference_graph  # the same graph generator as the NUTS benchmark
from nvppl.traces import Traces

TARGET_RATE = 50e6  # vesicle-steps/s, compiled, one thread
TARGET_RATIO = 4.0  # compiled (one thread) over NumPy


def reference_model(n: int, degree: int = 8, seed: int = 0):
    """The reference model on :func:`reference_graph` and its default parameters."""
    sub = nv.Substrate.from_networkx(reference_graph(n, degree, seed), allow_stay=True)
    model = nv.VesicleModel(sub, n_types=1)
    return model, model.default_params()


# ------------------------------------------------------------------ NumPy reference
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def alias_tables(P: np.ndarray):
    """Walker/Vose alias tables for each row of ``P`` (``n × M``, rows on the simplex).

    Drawing ``j`` uniform in ``0..M-1`` and ``f`` uniform in [0, 1), the outcome
    is ``j`` when ``f < prob[i, j]`` and ``alias[i, j]`` otherwise; this has
    exactly the law ``P[i]``. Zero-probability (padded) slots always redirect.
    It is the same categorical draw as inverting the cumulative row, in O(1)
    vectorised operations per draw instead of O(M).
    """
    n, M = P.shape
    prob = np.ones((n, M))
    alias = np.tile(np.arange(M), (n, 1))
    for i in range(n):
        q = P[i] * (M / P[i].sum())
        small = [j for j in range(M) if q[j] < 1.0]
        large = [j for j in range(M) if q[j] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            prob[i, s], alias[i, s] = q[s], g
            q[g] -= 1.0 - q[s]
            (small if q[g] < 1.0 else large).append(g)
        for j in small + large:  # leftovers are 1 up to rounding
            prob[i, j] = 1.0
    return prob, alias


def alias_law(prob, alias):
    """The row laws an alias table encodes (to check :func:`alias_tables`)."""
    n, M = prob.shape
    P = prob.copy()
    np.add.at(P, (np.repeat(np.arange(n), M), alias.ravel()), (1.0 - prob).ravel())
    return P / M


class NumpyKernel:
    """The reference model's per-step kernels as flat NumPy arrays (K = 1, no
    covariates, no content, geometric lifetimes, infinite budget)."""

    def __init__(self, model, params):
        if not (model.n_types == 1 and model.covariate_dim == 0 and model.content_dim == 0
                and model.lifetime == "geometric" and not model.tilt and np.isinf(model.budget).all()):
            raise ValueError("the NumPy reference covers K = 1, no covariates or content, geometric "
                             "lifetimes, no tilt and an infinite budget")
        sub = model.substrate
        self.n, self.M = sub.n_nodes, sub.max_candidates
        eta = np.asarray(params.u)[0, 0]
        self.lam = float(params.r_max[0] * _sigmoid(eta) if model.emission_link == "sigmoid" else np.exp(eta))
        self.p_dock = float(_sigmoid(np.asarray(params.w)[0, 0]))
        self.delta = float(params.delta[0])
        self.a = np.asarray(params.a, dtype=np.float64)
        self.absorb = bool(self.a.any())
        T = np.asarray(params.T[0], dtype=np.float64)
        if sub.is_sink.any():
            raise ValueError("the NumPy reference assumes no sinks")
        prob, alias = alias_tables(T)
        assert np.allclose(alias_law(prob, alias), T / T.sum(1, keepdims=True), atol=1e-12)
        cand = sub.candidates
        self.prob = prob.ravel()
        self.to_direct = cand.ravel().astype(np.int64)  # slot j of node i -> node
        self.to_alias = np.take_along_axis(cand, alias, 1).ravel().astype(np.int64)

    def migrate(self, loc, u):
        """Next node of vesicles at ``loc`` from uniforms ``u`` (eq. 15-16)."""
        x = u * self.M
        j = x.astype(np.int64)
        idx = loc * self.M + j
        return np.where(x - j < self.prob[idx], self.to_direct[idx], self.to_alias[idx])

    def removed(self, to, u):
        """Decay (and absorption when some ``a > 0``) from uniforms ``u``; returns
        the removal mask and, when absorption is on, the absorbed mask."""
        if not self.absorb:
            return u < self.delta, None
        absorbed = u < self.a[to]
        # conditionally on not being absorbed, (u - a) / (1 - a) is uniform
        return absorbed | ((u - self.a[to]) < self.delta * (1.0 - self.a[to])), absorbed


def numpy_simulate(kernel: NumpyKernel, n_steps: int, n_runs: int, seed: int) -> dict:
    """Simulate ``n_runs`` runs of the life cycle (docs/design.rst) at once, vectorised over vesicles.

    Per step: Poisson births per (run, node), migration of every vesicle (the
    new ones included) through alias tables of the rows of ``T``, Bernoulli
    docking, absorption (when some ``a > 0``) and Bernoulli decay. Records every
    step row and the vesicle table. Vesicle ids are global (run-major within a
    step, in order of birth).

    Returns
    -------
    dict
        ``steps``: ``vesicle, step, node_from, node_to, docked`` (step-major
        order); ``vesicles``: ``run, birth_step, birth_node, death_step,
        death_cause`` (codes of ``nvppl.traces.CAUSES``).
    """
    rng = np.random.default_rng(seed)
    n, R = kernel.n, n_runs
    cells = np.arange(R * n)
    vid = np.empty(0, np.int64)
    loc = np.empty(0, np.int64)
    rows = {"vesicle": [], "node_from": [], "node_to": [], "docked": []}
    per_step = np.empty(n_steps, np.int64)
    born_cell, born_count = [], np.empty(n_steps, np.int64)
    dead_vid, dead_count, dead_cause = [], np.empty(n_steps, np.int64), []
    next_id = 0
    for t in range(n_steps):
        new = np.repeat(cells, rng.poisson(kernel.lam, R * n))  # run * n + node, run-major
        nb = len(new)
        born_cell.append(new)
        born_count[t] = nb
        vid = np.concatenate([vid, np.arange(next_id, next_id + nb)])
        loc = np.concatenate([loc, new % n])
        next_id += nb
        N = len(vid)
        u = rng.random((3, N))
        to = kernel.migrate(loc, u[0])
        docked = u[1] < kernel.p_dock
        gone, absorbed = kernel.removed(to, u[2])
        rows["vesicle"].append(vid)
        rows["node_from"].append(loc)
        rows["node_to"].append(to)
        rows["docked"].append(docked)
        per_step[t] = N
        dead = vid[gone]
        dead_vid.append(dead)
        dead_count[t] = len(dead)
        dead_cause.append(np.where(absorbed[gone], 2, 1) if absorbed is not None else None)
        keep = ~gone
        vid, loc = vid[keep], to[keep]
    steps = {k: np.concatenate(a) for k, a in rows.items()}
    steps["step"] = np.repeat(np.arange(n_steps), per_step)
    cell = np.concatenate(born_cell)
    ves = {"run": cell // n, "birth_node": cell % n, "birth_step": np.repeat(np.arange(n_steps), born_count),
           "death_step": np.full(next_id, n_steps - 1), "death_cause": np.zeros(next_id, np.int64)}
    dead = np.concatenate(dead_vid)
    ves["death_step"][dead] = np.repeat(np.arange(n_steps), dead_count)
    ves["death_cause"][dead] = np.concatenate(dead_cause) if kernel.absorb else 1
    return {"steps": steps, "vesicles": ves}


def expected_vesicle_steps(kernel: NumpyKernel, n_steps: int) -> float:
    """Exact mean vesicle-steps per run when nothing but decay removes vesicles."""
    m = n_steps - np.arange(n_steps)  # steps left for a vesicle born at step s
    return float(kernel.n * kernel.lam * ((1.0 - (1.0 - kernel.delta) ** m) / kernel.delta).sum())


# ------------------------------------------------------------------ helpers
def vesicle_steps(traces) -> int:
    """Number of vesicle-steps of ``traces`` without building DataFrames."""
    if hasattr(type(traces), "n_vesicle_steps"):
        return int(traces.n_vesicle_steps)
    return len(traces._s["step"])


def per_run_vesicle_steps(traces) -> np.ndarray:
    return np.bincount(traces._v["run"][traces._s["vrow"]], minlength=traces.n_runs)


def wrap_time(traces) -> tuple[float, float]:
    """Seconds to wrap the arrays of ``traces`` in ``Traces`` without and with validation
    (the step arrays passed as they are, candidate slots included)."""
    v, s = dict(traces._v), dict(traces._s)
    out = []
    for validate in (False, True):
        t = time.perf_counter()
        Traces(traces.substrate, traces.n_steps, traces.n_runs, traces.n_types, v, s, None, validate=validate)
        out.append(time.perf_counter() - t)
    return out[0], out[1]


def json_safe(x):
    """``x`` with non-finite floats as None (strict JSON) and NumPy scalars as Python ones."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run")
    args = parser.parse_args(argv)
    n, steps, runs, repeats = (100, 30, 2, 1) if args.quick else (1000, 200, 4, 3)
    degree = 8

    model, params = reference_model(n, degree)
    kernel = NumpyKernel(model, params)
    expected = expected_vesicle_steps(kernel, steps)
    figures = {"n_nodes": n, "out_degree": degree, "n_types": 1, "n_steps": steps, "n_runs": runs,
               "repeats": repeats, "lambda": kernel.lam, "p_dock": kernel.p_dock, "delta": kernel.delta,
               "expected_vesicle_steps_per_run": expected}
    print(f"reference model: n={n}, out-degree {degree} + stay, K=1, lambda={kernel.lam:.3g}, "
          f"p_dock={kernel.p_dock:.3g}, delta={kernel.delta:.3g}; {steps} steps x {runs} runs; "
          f"expected {expected:,.0f} vesicle-steps per run")

    # compiled backend, 1 and 2 threads, the same keys (results must not depend on threads)
    compiled, first_call, last = {}, {}, {}
    for k in (1, 2):
        t = time.perf_counter()
        nv.simulate(model, params, n_steps=steps, n_runs=runs, key=10_000, backend="compiled", n_threads=k)
        first_call[k] = time.perf_counter() - t
        times, counts, per_run = [], [], []
        for r in range(repeats):
            last[k] = None  # free the previous call's traces before the next one
            t = time.perf_counter()
            last[k] = nv.simulate(model, params, n_steps=steps, n_runs=runs, key=r, backend="compiled", n_threads=k)
            times.append(time.perf_counter() - t)
            counts.append(vesicle_steps(last[k]))
            per_run.append(per_run_vesicle_steps(last[k]))
        compiled[k] = {"seconds": min(times), "vesicle_steps": counts, "per_run": np.concatenate(per_run),
                       "rate": max(c / s for c, s in zip(counts, times, strict=True))}
    wrap_s, validate_s = wrap_time(last[2])
    same = compiled[1]["vesicle_steps"] == compiled[2]["vesicle_steps"] and all(
        np.array_equal(last[1]._s[c], last[2]._s[c]) for c in ("vrow", "step", "node_from", "node_to", "docked"))
    for k in (1, 2):
        c = compiled[k]
        print(f"compiled, {k} thread(s): {c['rate'] / 1e6:.1f} M vesicle-steps/s "
              f"(best {c['seconds'] * 1e3:.1f} ms end to end for ~{np.mean(c['vesicle_steps']):,.0f} vesicle-steps; "
              f"first call {first_call[k] * 1e3:.1f} ms)")
    print(f"  wrapping the arrays of one call in Traces: {wrap_s * 1e3:.1f} ms without validation, "
          f"{validate_s * 1e3:.1f} ms with validation (part of a call if the backend does it)")
    print(f"  1 and 2 threads give the same step rows for the same keys: {same}")
    del last  # free the compiled traces before timing NumPy

    # where a one-thread call spends its time: the simulation proper and the assembly of the columns
    from nvppl._engine import bridge

    cm = bridge.core_model(model, params, np.zeros((runs, steps, n, 0)))
    phases = {"simulate": [], "assemble": []}
    for r in range(repeats):
        tm = {}
        v_cols, s_cols = bridge.engine("simulate").simulate(cm, r, runs, steps, 1, tm)
        n_core = len(s_cols["step"])
        del v_cols, s_cols
        for name in phases:
            phases[name].append(tm[name])
    sim_s, asm_s = min(phases["simulate"]), min(phases["assemble"])
    print(f"  one thread, inside the core: simulation {sim_s * 1e3:.1f} ms ({n_core / sim_s / 1e6:.1f} M "
          f"vesicle-steps/s), assembly of the int64 trace columns {asm_s * 1e3:.1f} ms")

    # NumPy reference, same process
    numpy_simulate(kernel, steps, runs, seed=99)  # warm-up (allocates the memory once)
    times, counts, per_run = [], [], []
    for r in range(repeats):
        t = time.perf_counter()
        out = numpy_simulate(kernel, steps, runs, seed=1000 + r)
        times.append(time.perf_counter() - t)
        st = out["steps"]
        counts.append(len(st["step"]))
        per_run.append(np.bincount(out["vesicles"]["run"][st["vesicle"]], minlength=runs))
        del out, st  # free before the next repeat
    np_rate = max(c / s for c, s in zip(counts, times, strict=True))
    best = min(times)
    np_per_run = np.concatenate(per_run)
    print(f"NumPy reference: {np_rate / 1e6:.1f} M vesicle-steps/s (best {best * 1e3:.1f} ms for "
          f"~{np.mean(counts):,.0f} vesicle-steps, step rows and vesicle table recorded)")

    r1, r2 = compiled[1]["rate"], compiled[2]["rate"]
    ratio, speedup = r1 / np_rate, r2 / r1
    c_mean, c_se = mean_se(compiled[1]["per_run"])
    n_mean, n_se = mean_se(np_per_run)
    z = (c_mean - n_mean) / np.hypot(c_se, n_se) if np.isfinite(c_se) and np.isfinite(n_se) else float("nan")
    agree = bool(np.isfinite(z) and abs(z) < 4.0)
    print(f"compiled(1 thread) / NumPy: {ratio:.2f}x (target >= {TARGET_RATIO:g}x); 2-thread speed-up "
          f"{speedup:.2f}x; one-thread rate {r1 / 1e6:.1f} M/s (target >= {TARGET_RATE / 1e6:g} M/s)")
    print(f"sanity: vesicle-steps per run, compiled {c_mean:,.0f} +- {c_se:,.0f}, NumPy {n_mean:,.0f} +- "
          f"{n_se:,.0f}, exact mean {expected:,.0f}; z = {z:.2f} ({'agree' if agree else 'DISAGREE'})")
    if not same:
        print("WARNING: the compiled backend gave different traces with 1 and 2 threads for the same key")

    figures.update({
        "compiled_1thread_rate": r1, "compiled_2thread_rate": r2,
        "compiled_1thread_s": compiled[1]["seconds"], "compiled_2thread_s": compiled[2]["seconds"],
        "compiled_first_call_s": first_call[1], "traces_wrap_s": wrap_s, "traces_validate_s": validate_s,
        "core_simulate_s": sim_s, "core_assemble_s": asm_s, "core_simulate_rate": n_core / sim_s,
        "compiled_vesicle_steps": compiled[1]["vesicle_steps"], "threads_identical": same,
        "numpy_rate": np_rate, "numpy_s": best, "numpy_vesicle_steps": counts,
        "compiled_over_numpy": ratio, "speedup_2_threads": speedup,
        "compiled_mean_per_run": c_mean, "compiled_se_per_run": c_se,
        "numpy_mean_per_run": n_mean, "numpy_se_per_run": n_se, "z_compiled_vs_numpy": z, "means_agree": agree,
        "target_rate": TARGET_RATE, "target_ratio": TARGET_RATIO,
        "meets_rate_target": bool(r1 >= TARGET_RATE), "meets_ratio_target": bool(ratio >= TARGET_RATIO),
    })
    print(json.dumps(json_safe(figures)))
    return figures


if __name__ == "__main__":
    main()
