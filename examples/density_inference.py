"""Density relaxation and inference from counts: SVI, then importance sampling.

Relaxes the vesicle process on a ring to its density (the exact expected
counts and docks), compares it with simulated counts, draws the density over
time, fits the emission intercept and the decay probability to Poisson-detected
counts with density SVI (fast, approximate), and corrects the fit with
importance sampling weighted by the particle filter (exact, checked by the
Pareto k̂; refused when the weights cannot be trusted).

Run ``python examples/density_inference.py`` (about a minute) or
``python examples/density_inference.py --steps 10 --svi-steps 50 --draws 30
--particles 64`` for a tiny run. Figures go to ``--out`` (default ``density/``).
"""

import argparse
from pathlib import Path

import networkx as nx
import numpy as np

import nvppl as nv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=6, help="nodes of the ring")
    parser.add_argument("--steps", type=int, default=40, help="steps per run")
    parser.add_argument("--runs", type=int, default=3, help="independent runs")
    parser.add_argument("--svi-steps", type=int, default=1000, help="SVI optimisation steps")
    parser.add_argument("--draws", type=int, default=400, help="importance-sampling draws")
    parser.add_argument("--particles", type=int, default=1024, help="particles of the filter")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="density", help="directory for the figures")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. a ring; migration, docking and absorption fixed, decay and emission inferred
    sub = nv.Substrate.from_networkx(nx.cycle_graph(args.nodes))
    model = nv.VesicleModel(sub, n_types=1, emission_link="log",
                            priors={"a": 0.0, "w": -1.5, "T": np.full((1, args.nodes, 3), 1 / 3)})
    truth = model.default_params().replace(u=np.array([[np.log(0.4)]]), delta=np.array([0.15]))

    # 2. the density: exact expected counts, against the mean of simulated runs
    dens = nv.density.relax(model, truth, n_steps=args.steps)
    traces = nv.simulate(model, truth, n_steps=args.steps, n_runs=args.runs, key=args.seed)
    many = nv.simulate(model, truth, n_steps=args.steps, n_runs=500, key=args.seed + 1).counts()
    err = np.abs(many.mean(0) - np.asarray(dens.rho)).max()
    print(f"density vs the mean of 500 simulated runs: largest difference {err:.3f} vesicles")
    nv.diagnostics.plot_density_heatmap(dens, sub, path=out / "density.png")
    nv.diagnostics.plot_density_graph(sub, dens, path=out / "density_graph.png")

    # 3. counts seen with Poisson noise; SVI on the density's composite likelihood
    obs = traces.observe(counts=True, detection="poisson", key=args.seed + 2)
    svi = nv.infer.fit(model, obs, method="svi", num_steps=args.svi_steps, key=args.seed + 3, progress_bar=False)
    print("SVI (approximate, too narrow):")
    print(svi.summary()[["mean", "sd"]])
    nv.diagnostics.plot_counts(obs, nv.density.relax(model, svi.posterior_mean(), args.steps),
                               path=out / "counts.png")

    # 4. importance sampling with particle-filter weights, or the reason it was refused
    try:
        fit = nv.infer.fit(model, obs, method="is", init=svi, num_draws=args.draws, n_particles=args.particles,
                           key=args.seed + 4, progress_bar=False)
    except nv.ImportanceSamplingError as err:
        print(f"importance sampling refused (k̂ = {err.khat:.2f}); use method='pmmh' with init=svi instead")
        return
    post = fit.idata.posterior
    print(f"importance sampling: k̂ = {post.attrs['khat']:.2f}, effective sample size {post.attrs['ess']:.0f}")
    print(fit.summary()[["mean", "sd", "hdi_3%", "hdi_97%"]])
    print(f"truth: u = {truth.u.ravel()[0]:.3f}, delta = {truth.delta[0]:.3f}")


if __name__ == "__main__":
    main()
