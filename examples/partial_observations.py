"""Partial observations: counts without identities, a particle filter and PMMH.

Simulates vesicles on a small ring with the compiled core, keeps only the
number of vesicles seen at each node after each step (Poisson detection
noise around the true count; binomial detection works the same way but needs
more particles when few vesicles are missed),
estimates the likelihood with the bootstrap particle filter, and samples the
posterior of the decay probability and the emission intercept with
particle-marginal Metropolis-Hastings.

Run ``python examples/partial_observations.py`` (about a minute) or
``python examples/partial_observations.py --steps 10 --samples 50 --warmup 50
--particles 64`` for a tiny run.
"""

import argparse

import networkx as nx
import numpy as np

import nvppl as nv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4, help="nodes of the ring")
    parser.add_argument("--steps", type=int, default=30, help="steps per run")
    parser.add_argument("--runs", type=int, default=3, help="independent runs")
    parser.add_argument("--particles", type=int, default=256, help="particles of the filter")
    parser.add_argument("--samples", type=int, default=1000, help="PMMH draws per chain")
    parser.add_argument("--warmup", type=int, default=1000, help="PMMH warm-up iterations per chain")
    parser.add_argument("--chains", type=int, default=2, help="PMMH chains")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)

    # 1. a ring; migration, docking and absorption fixed, decay and emission inferred
    sub = nv.Substrate.from_networkx(nx.cycle_graph(args.nodes))
    model = nv.VesicleModel(sub, n_types=1, emission_link="log",
                            priors={"a": 0.0, "w": -1.5, "T": np.full((1, args.nodes, 3), 1 / 3)})
    truth = model.default_params().replace(u=np.array([[np.log(0.4)]]), delta=np.array([0.2]))

    # 2. simulate, then observe counts only
    traces = nv.simulate(model, truth, n_steps=args.steps, n_runs=args.runs, key=args.seed)
    obs = traces.observe(counts=True, detection="poisson", key=args.seed + 1)
    print(f"{traces.n_vesicles} vesicles, {traces.n_vesicle_steps} vesicle-steps; observed {obs}")

    # 3. the particle filter at the truth: log-likelihood estimate, its spread, filtered means
    runs = [nv.smc.particle_filter(model, truth, obs, n_particles=args.particles, key=k) for k in range(5)]
    logz = np.array([r.log_evidence for r in runs])
    print(f"log-likelihood at the truth: {logz.mean():.2f} (sd {logz.std(ddof=1):.2f} over 5 filters)")
    pf = runs[0]
    err = np.abs(pf.filtered_counts - traces.counts()).mean()
    print(f"filtered counts vs the hidden truth: mean absolute error {err:.2f} vesicles per node and step")
    print(f"a smoothed trajectory: {pf.trajectory.n_vesicles} vesicles")

    # 4. PMMH on the counts
    fit = nv.infer.fit(model, obs, method="pmmh", num_samples=args.samples, num_warmup=args.warmup,
                       num_chains=args.chains, n_particles=args.particles, key=args.seed + 2,
                       progress_bar=False)
    print(fit.summary())
    mean = fit.posterior_mean()
    print(f"delta: true {truth.delta[0]:.3f}, posterior mean {mean.delta[0]:.3f}; "
          f"lambda: true {np.exp(truth.u[0, 0]):.3f}, posterior mean of exp(u) "
          f"{float(np.exp(fit.idata.posterior['u']).mean()):.3f}")
    return fit


if __name__ == "__main__":
    main()
