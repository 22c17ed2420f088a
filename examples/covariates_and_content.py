"""Covariates, content, tilted migration and countdown lifetimes in one model.

Vesicles carry a one-dimensional content; nodes carry a time-varying covariate
(say, a local activity level). Emission and docking depend on the covariate,
docking and migration also on the content (the tilt of eq. 17), and lifetimes
are a countdown drawn from a Gamma distribution. The example simulates, fits
with NUTS and compares the posterior with the truth.

``python examples/covariates_and_content.py --steps 15 --samples 50 --warmup 50``
is a tiny run.
"""

import argparse

import networkx as nx
import numpy as np

import nvppl as nv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="steps per run")
    parser.add_argument("--runs", type=int, default=2, help="independent runs")
    parser.add_argument("--samples", type=int, default=400, help="NUTS draws per chain")
    parser.add_argument("--warmup", type=int, default=400, help="NUTS warm-up iterations per chain")
    parser.add_argument("--chains", type=int, default=1, help="NUTS chains")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    sub = nv.Substrate.from_networkx(nx.grid_2d_graph(3, 3))  # tuple labels, undirected: both directions
    model = nv.VesicleModel(sub, n_types=1, content_dim=1, covariate_dim=1, tilt=True,
                            lifetime="countdown", budget=3,
                            priors={"a": 0.0, "shape": nv.model.dist.Gamma(8.0, 2.0),
                                    "rate": nv.model.dist.Gamma(4.0, 20.0)})
    rng = np.random.default_rng(args.seed)
    activity = rng.normal(size=(args.runs, args.steps, sub.n_nodes, 1))
    truth = model.default_params().replace(
        u=np.array([[-0.5, 1.0]]), w=np.array([[-1.5, 0.8]]), w_c=np.array([[0.7]]),
        v=np.array([[0.6]]), Q=rng.normal(size=(1, sub.n_nodes, 1)),
        shape=np.array([4.0]), rate=np.array([0.25]), content_mean=np.array([[1.0]]))
    traces = nv.simulate(model, truth, n_steps=args.steps, n_runs=args.runs, key=args.seed, covariates=activity)
    print(traces)
    print(traces.vesicles.death_cause.value_counts().to_string())
    fit = nv.infer.fit(model, traces, num_samples=args.samples, num_warmup=args.warmup,
                       num_chains=args.chains, key=args.seed + 1, progress_bar=not args.no_progress,
                       posterior_predictive=False)
    table = fit.summary(var_names=["u", "w", "w_c", "v", "shape", "rate"])
    print(table[["mean", "sd", "hdi_3%", "hdi_97%"]])
    for name in ("u", "w", "w_c", "v", "shape", "rate"):
        print(f"{name:6s} true {np.ravel(getattr(truth, name))}  posterior mean "
              f"{np.ravel(getattr(fit.posterior_mean(), name)).round(3)}")
    return fit


if __name__ == "__main__":
    main()
