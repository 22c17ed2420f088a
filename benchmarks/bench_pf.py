"""Benchmark: compiled particle filter against a vectorised NumPy one (docs/design.rst, "Performance targets").

The reference model of the performance targets (see ``bench_simulate.py``: n = 1000 nodes,
out-degree 8 plus stay, K = 1, ``model.default_params()``), observed through the
counts of vesicles present after each step in one run of 200 steps simulated by
the compiled backend. It measures particle-vesicle-steps per second (vesicles
propagated, summed over particles and steps) of

- ``nvppl.smc.particle_filter`` (the compiled core) with 1 and with 2 threads,
  best of a few repeats, the 2/1 speed-up (target ≥ 1.7×) and the rate per
  thread (target ≥ 20 M), and whether 1 and 2 threads give the same result;
- a bootstrap particle filter of the same model in NumPy (``numpy_particle_filter``
  below), vectorised over all particles' vesicles at once, run on the same
  observations in the same process, and the ratio of the rates.

Detection. The target asks for binomial counts (p_det = 0.8), but a bootstrap
proposal ignores the observations: on a graph of more than a handful of nodes
every particle soon holds fewer vesicles at some node than were seen there, so
the likelihood estimate is zero from the first steps (the NumPy filter reports
the step; the compiled filter raises ``ObservationError``). The throughput
problem therefore uses Poisson detection (``Poisson(N + floor)``, never zero) on
the same run by default, a full workload with resampling at almost every step;
the step at which binomial counts lose every particle is printed, and
``--detection binomial`` runs the throughput problem on them anyway.

Both filters' log-evidence estimates are printed. They are checked against each
other on a small problem (n = 4, out-degree 2, 10 steps; 10 000 particles and 8
seeds, quick: 2000 particles and 4 seeds), with binomial (p_det = 0.8) and with
Poisson counts: the mean estimates must agree within max(3, 4 standard errors).
The last line printed is one JSON object with all figures. ``--quick`` runs a
seconds-long version (n = 50, 20 steps, 16 particles; used by the tests).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.special import gammaln, logsumexp

import nvppl as nv
from bench_simulate import NumpyKernel, json_safe, reference_model
from nvppl.errors import ObservationError
from nvppl.smc import particle_filter

TARGET_RATE_PER_THREAD = 20e6  # particle-vesicle-steps/s
TARGET_SPEEDUP = 1.7  # 2 threads over 1


# ------------------------------------------------------------------ NumPy reference
def systematic_resample(weights: np.ndarray, rng) -> np.ndarray:
    """Ancestor indices by systematic resampling of normalised ``weights``."""
    N = len(weights)
    c = np.cumsum(weights)
    c[-1] = 1.0
    return np.searchsorted(c, (rng.random() + np.arange(N)) / N, side="right")


def numpy_particle_filter(kernel: NumpyKernel, counts: np.ndarray, detection: str, p_det: float | None,
                          floor: float, n_particles: int, seed: int, threshold: float = 0.5) -> dict:
    """Bootstrap particle filter for one run of detected counts.

    Each particle carries an explicit vesicle population, all particles' vesicles
    in two flat arrays (particle, node). Per step: Poisson births per (particle,
    node), migration through alias tables of ``T``, Bernoulli docking, absorption
    (when some ``a > 0``) and decay (docs/design.rst, "The model"), then counts per particle and
    node (``bincount``), the log-weights of the detection model (:class:`nvppl.Observations`:
    binomial, ``log C(c, y) + y log p + (c - y) log(1 - p)``, ``-inf`` when
    ``c < y``; Poisson, ``y log(c + floor) - (c + floor) - log y!``), and
    systematic resampling when the ESS falls below ``threshold · N``.

    Parameters
    ----------
    counts : int array (n_steps, n_nodes)
        Detected counts of one run and type.
    detection : {"binomial", "poisson"}
    p_det, floor : float
        Detection probability (binomial) and rate floor (Poisson).

    Returns
    -------
    dict
        ``log_evidence`` (float, ``-inf`` once every particle is incompatible),
        ``ess`` (n_steps,), ``particle_vesicle_steps`` (vesicles propagated,
        summed over particles and steps), ``resamples``, ``collapse_step``
        (first step at which no particle could explain the counts, or None).
    """
    rng = np.random.default_rng(seed)
    N, n = n_particles, kernel.n
    T = counts.shape[0]
    cells = np.arange(N * n)
    pid = np.empty(0, np.int64)
    loc = np.empty(0, np.int64)
    logW = np.full(N, -np.log(N))
    if detection == "binomial":
        log_q = np.log1p(-p_det) if p_det < 1 else 0.0
        y_term = (counts * np.log(p_det) - gammaln(counts + 1.0)).sum(1)  # the part free of the particles
    elif detection == "poisson":
        y_term = -gammaln(counts + 1.0).sum(1)
    else:
        raise ValueError(f"detection must be 'binomial' or 'poisson', got {detection!r}")
    ess = np.empty(T)
    log_evidence, work, resamples, collapse = 0.0, 0, 0, None
    for t in range(T):
        new = np.repeat(cells, rng.poisson(kernel.lam, N * n))  # particle * n + node
        pid = np.concatenate([pid, new // n])
        loc = np.concatenate([loc, new % n])
        M = len(pid)
        work += M
        u = rng.random((3, M))
        to = kernel.migrate(loc, u[0])
        _docked = u[1] < kernel.p_dock  # part of the model; counts do not depend on it (infinite budget)
        gone, _ = kernel.removed(to, u[2])
        keep = ~gone
        pid, loc = pid[keep], to[keep]

        c = np.bincount(pid * n + loc, minlength=N * n).reshape(N, n)
        y = counts[t]
        if detection == "binomial":
            d = c - y  # undetected vesicles per node
            ok = (d >= 0).all(1) if p_det < 1 else (d == 0).all(1)
            dpos = np.maximum(d, 0)
            ll = (gammaln(c + 1.0) - gammaln(dpos + 1.0)).sum(1) + (dpos.sum(1) * log_q if p_det < 1 else 0.0)
            ll = np.where(ok, ll + y_term[t], -np.inf)
        else:
            rate = c + floor
            ll = (y * np.log(rate) - rate).sum(1) + y_term[t]
        a = logW + ll
        inc = logsumexp(a)
        if not np.isfinite(inc):  # every particle incompatible: the estimate is -inf from here on
            log_evidence = -np.inf
            collapse = t if collapse is None else collapse
            logW = np.full(N, -np.log(N))
            ess[t] = 0.0
            continue
        log_evidence += inc
        logW = a - inc
        W = np.exp(logW)
        ess[t] = 1.0 / np.sum(W * W)
        if ess[t] < threshold * N:
            anc = systematic_resample(W, rng)
            pid, loc = _copy_populations(pid, loc, anc, N)
            logW = np.full(N, -np.log(N))
            resamples += 1
    return {"log_evidence": float(log_evidence), "ess": ess, "particle_vesicle_steps": int(work),
            "resamples": resamples, "collapse_step": collapse}


def _copy_populations(pid, loc, anc, N):
    """Populations after resampling: particle ``j`` gets a copy of ancestor ``anc[j]``'s."""
    order = np.argsort(pid.astype(np.int16 if N < 2**15 else np.int64), kind="stable")  # radix sort
    loc_sorted = loc[order]
    size = np.bincount(pid, minlength=N)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    lens = size[anc]
    total = int(lens.sum())
    out_start = np.cumsum(lens) - lens
    src = np.repeat(start[anc] - out_start, lens) + np.arange(total)
    return np.repeat(np.arange(N), lens), loc_sorted[src]


# ------------------------------------------------------------------ benchmark
def observations(model, params, n_steps: int, detection: str, key: int = 0, p_det: float = 0.8):
    """Detected counts of one run simulated by the compiled backend."""
    traces = nv.simulate(model, params, n_steps=n_steps, n_runs=1, key=key, backend="compiled", n_threads=1)
    return traces.observe(counts=True, detection=detection, p_det=p_det if detection == "binomial" else None, key=1)


def run_numpy(kernel, obs, n_particles, seed, n_steps=None):
    return numpy_particle_filter(kernel, obs.counts[0, :n_steps, :, 0], obs.detection, obs.p_det, obs.floor,
                                 n_particles, seed)


def time_compiled(model, params, obs, n_particles, n_threads, repeats, key=0):
    times, pf = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        pf = particle_filter(model, params, obs, n_particles=n_particles, key=key, n_threads=n_threads,
                             trajectory=False, proposal="bootstrap")
        times.append(time.perf_counter() - t)
    work = int(pf.particle_vesicle_steps)
    return {"seconds": min(times), "particle_vesicle_steps": work, "rate": work / min(times),
            "log_evidence": float(pf.log_evidence), "ess_min": float(np.min(pf.ess)),
            "ess_mean": float(np.mean(pf.ess))}


def time_numpy(kernel, obs, n_particles, repeats, seed=0):
    times, out = [], None
    for _ in range(repeats):
        out = None
        t = time.perf_counter()
        out = run_numpy(kernel, obs, n_particles, seed)
        times.append(time.perf_counter() - t)
    work = out["particle_vesicle_steps"]
    return {"seconds": min(times), "particle_vesicle_steps": work, "rate": work / min(times),
            "log_evidence": out["log_evidence"], "ess_min": float(out["ess"].min()),
            "ess_mean": float(out["ess"].mean()), "resamples": out["resamples"], "collapse_step": out["collapse_step"]}


SMALL = {"n": 4, "degree": 2, "n_steps": 10}  # small enough for a bootstrap filter with binomial counts


def agreement(detection: str, n_seeds: int, n_particles: int):
    """Log-evidence of both filters on the small problem over a few seeds, and whether they agree."""
    model, params = reference_model(SMALL["n"], SMALL["degree"])
    kernel = NumpyKernel(model, params)
    obs = observations(model, params, SMALL["n_steps"], detection, key=3)
    lc = np.array([float(particle_filter(model, params, obs, n_particles=n_particles, key=s, n_threads=1,
                                         trajectory=False, proposal="bootstrap").log_evidence)
                   for s in range(n_seeds)])
    ln = np.array([run_numpy(kernel, obs, n_particles, 100 + s)["log_evidence"] for s in range(n_seeds)])
    finite = bool(np.isfinite(lc).all() and np.isfinite(ln).all())
    with np.errstate(invalid="ignore"):
        diff = float(np.mean(lc) - np.mean(ln))
        se = float(np.hypot(np.std(lc, ddof=1), np.std(ln, ddof=1)) / np.sqrt(n_seeds))
    agree = bool(finite and abs(diff) < max(3.0, 4.0 * se))
    print(f"small problem, {detection} counts (n={SMALL['n']}, out-degree {SMALL['degree']}, {SMALL['n_steps']} "
          f"steps, {n_particles} particles, {n_seeds} seeds): log-evidence compiled {np.mean(lc):.2f} "
          f"(sd {np.std(lc, ddof=1):.2f}), NumPy {np.mean(ln):.2f} (sd {np.std(ln, ddof=1):.2f}); difference "
          f"{diff:.2f} +- {se:.2f} ({'agree' if agree else 'DISAGREE'}: within max(3, 4 se))")
    return {"compiled": lc.tolist(), "numpy": ln.tolist(), "difference": diff, "se": se, "agree": agree}


def _spread(model, params, obs, n_particles, seeds, proposal, n_threads=1):
    """log-evidence over seeds (-inf where the filter failed) and seconds per call."""
    out, t = [], time.perf_counter()
    for s in range(seeds):
        try:
            out.append(float(particle_filter(model, params, obs, n_particles=n_particles, key=s, n_threads=n_threads,
                                             trajectory=False, proposal=proposal).log_evidence))
        except ObservationError:
            out.append(-np.inf)
    ll = np.asarray(out)
    fin = ll[np.isfinite(ll)]
    return {"n_particles": n_particles, "failures": int((~np.isfinite(ll)).sum()), "mean": float(np.mean(fin))
            if len(fin) else None, "sd": float(np.std(fin, ddof=1)) if len(fin) > 1 else None,
            "seconds_per_call": (time.perf_counter() - t) / seeds}


def guided_figures(quick: bool) -> dict:
    """The guided filter against the bootstrap filter where the bootstrap collapses: a 6-node
    cycle, 20 steps, 2 runs, counts and docks seen with p_det = 0.8, at the true parameters
    (model.default_params()); and binomial counts on 50 nodes (random 4-regular graph) over
    200 steps (full run only: 256 particles, 3 seeds)."""
    import networkx as nx

    out = {}
    sub = nv.Substrate.from_networkx(nx.cycle_graph(6))
    model = nv.VesicleModel(sub, n_types=1)
    params = model.default_params()
    obs = nv.simulate(model, params, n_steps=20, n_runs=2, key=3).observe(
        counts=True, docks=True, detection="binomial", p_det=0.8, key=4)
    seeds = 3 if quick else 20
    sizes = (64,) if quick else (64, 256, 1024, 4096)
    out["cycle6"] = {"guided": [_spread(model, params, obs, n, seeds, "guided") for n in sizes],
                     "bootstrap": [_spread(model, params, obs, n, min(seeds, 5), "bootstrap") for n in sizes]}
    for g, b in zip(out["cycle6"]["guided"], out["cycle6"]["bootstrap"]):
        print(f"6-node cycle, counts and docks (p_det 0.8), {g['n_particles']} particles: guided sd(log Z) "
              f"{g['sd'] if g['sd'] is None else round(g['sd'], 3)} ({g['failures']} failures of {seeds}, "
              f"{g['seconds_per_call'] * 1e3:.0f} ms per call); bootstrap: {b['failures']} failures of "
              f"{min(seeds, 5)}")
    if not quick:
        G = nx.random_regular_graph(4, 50, seed=0)
        model = nv.VesicleModel(nv.Substrate.from_networkx(G), n_types=1)
        params = model.default_params()
        obs = nv.simulate(model, params, n_steps=200, n_runs=1, key=3).observe(
            counts=True, detection="binomial", p_det=0.8, key=4)
        out["regular50"] = {"guided": [_spread(model, params, obs, n, 3, "guided", n_threads=2) for n in (256,)]}
        for g in out["regular50"]["guided"]:
            print(f"50 nodes, 200 steps, binomial counts, {g['n_particles']} particles: guided sd(log Z) "
                  f"{g['sd']:.2f} ({g['failures']} failures, {g['seconds_per_call']:.1f} s per call, 2 threads)")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run")
    parser.add_argument("--detection", choices=("poisson", "binomial"), default="poisson",
                        help="detection model of the throughput problem (binomial: see above)")
    args = parser.parse_args(argv)
    if args.quick:
        n, steps, particles, repeats, seeds, small_particles = 50, 20, 16, 1, 4, 2000
    else:
        n, steps, particles, repeats, seeds, small_particles = 1000, 200, 64, 2, 8, 10000
    degree, p_det, detection = 8, 0.8, args.detection

    model, params = reference_model(n, degree)
    kernel = NumpyKernel(model, params)
    obs = observations(model, params, steps, detection, key=0, p_det=p_det)
    figures = {"n_nodes": n, "out_degree": degree, "n_steps": steps, "n_particles": particles,
               "detection": detection, "p_det": obs.p_det, "floor": obs.floor, "repeats": repeats,
               "observed_total": int(obs.counts.sum())}
    print(f"reference model: n={n}, out-degree {degree} + stay, K=1; one run of {steps} steps, {detection} counts "
          f"({f'p_det={p_det}' if detection == 'binomial' else f'floor={obs.floor}'}, "
          f"{int(obs.counts.sum()):,} counted); {particles} particles")

    # how soon a bootstrap filter loses every particle on binomial counts of this size (NumPy, first steps)
    if detection == "poisson":
        b_obs = observations(model, params, steps, "binomial", key=0, p_det=p_det)
        collapse = run_numpy(kernel, b_obs, particles, 0, n_steps=min(steps, 5))["collapse_step"]
        figures["binomial_collapse_step"] = collapse
        print(f"  binomial counts (p_det={p_det}) instead: every one of {particles} bootstrap particles is "
              f"incompatible with the counts " + (f"from step {collapse}" if collapse is not None else
                                                   "not within the first 5 steps"))

    particle_filter(model, params, obs, n_particles=2, key=0, n_threads=1, trajectory=False,
                    proposal="bootstrap")  # warm-up
    c1 = time_compiled(model, params, obs, particles, 1, repeats)
    c2 = time_compiled(model, params, obs, particles, 2, repeats)
    same = c1["log_evidence"] == c2["log_evidence"] and c1["particle_vesicle_steps"] == c2["particle_vesicle_steps"]
    speedup = c2["rate"] / c1["rate"]
    for k, c in ((1, c1), (2, c2)):
        print(f"compiled PF, {k} thread(s): {c['rate'] / 1e6:.1f} M particle-vesicle-steps/s "
              f"({c['seconds']:.2f} s for {c['particle_vesicle_steps']:,}); log-evidence {c['log_evidence']:.2f}, "
              f"ESS min {c['ess_min']:.1f} mean {c['ess_mean']:.1f}")
    print(f"  2-thread speed-up {speedup:.2f}x (target >= {TARGET_SPEEDUP:g}x); per thread with 2 threads "
          f"{c2['rate'] / 2e6:.1f} M/s, one thread {c1['rate'] / 1e6:.1f} M/s (target >= "
          f"{TARGET_RATE_PER_THREAD / 1e6:g} M/s); same result with 1 and 2 threads: {same}")
    if not same:
        print("WARNING: the compiled particle filter gave different results with 1 and 2 threads for the same key")

    run_numpy(kernel, obs, 2, 0, n_steps=min(steps, 3))  # warm-up
    ref = time_numpy(kernel, obs, particles, repeats)
    ratio = c1["rate"] / ref["rate"]
    print(f"NumPy bootstrap PF: {ref['rate'] / 1e6:.1f} M particle-vesicle-steps/s ({ref['seconds']:.2f} s for "
          f"{ref['particle_vesicle_steps']:,}); log-evidence {ref['log_evidence']:.2f}, ESS min "
          f"{ref['ess_min']:.1f} mean {ref['ess_mean']:.1f}, {ref['resamples']} resamplings"
          + ("" if ref["collapse_step"] is None else f", every particle incompatible from step {ref['collapse_step']}"))
    print(f"compiled(1 thread) / NumPy: {ratio:.2f}x; log-evidence compiled {c1['log_evidence']:.1f}, NumPy "
          f"{ref['log_evidence']:.1f} (on a problem this large both are very noisy)")

    small = {det: agreement(det, seeds, small_particles) for det in ("binomial", "poisson")}
    guided = guided_figures(args.quick)

    figures.update({
        "compiled_1thread_rate": c1["rate"], "compiled_2thread_rate": c2["rate"],
        "compiled_1thread_s": c1["seconds"], "compiled_2thread_s": c2["seconds"],
        "compiled_particle_vesicle_steps": c1["particle_vesicle_steps"],
        "speedup_2_threads": speedup, "per_thread_rate_2_threads": c2["rate"] / 2,
        "threads_identical": same, "compiled_log_evidence": c1["log_evidence"],
        "compiled_ess_min": c1["ess_min"], "compiled_ess_mean": c1["ess_mean"],
        "numpy_rate": ref["rate"], "numpy_s": ref["seconds"],
        "numpy_particle_vesicle_steps": ref["particle_vesicle_steps"],
        "numpy_log_evidence": ref["log_evidence"], "numpy_ess_min": ref["ess_min"], "numpy_ess_mean": ref["ess_mean"],
        "numpy_resamples": ref["resamples"], "numpy_collapse_step": ref["collapse_step"],
        "compiled_over_numpy": ratio, "small_problem": SMALL, "small_particles": small_particles,
        "small_log_evidence": small, "small_log_evidence_agree": all(v["agree"] for v in small.values()),
        "target_rate_per_thread": TARGET_RATE_PER_THREAD, "target_speedup": TARGET_SPEEDUP,
        "meets_rate_target": bool(c1["rate"] >= TARGET_RATE_PER_THREAD),
        "meets_speedup_target": bool(speedup >= TARGET_SPEEDUP), "guided": guided,
    })
    print(json.dumps(json_safe(figures)))
    return figures


if __name__ == "__main__":
    main()
