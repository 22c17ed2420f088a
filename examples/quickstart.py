"""Quickstart: from a networkx graph to simulated traces, a NUTS fit and its checks.

Run ``python examples/quickstart.py`` (about a minute, most of it compilation) or
``python examples/quickstart.py --steps 20 --samples 50 --warmup 50 --chains 1``
for a tiny run. Writes ``trace.png`` and ``ppc.png`` into ``--out``.
"""

import argparse
from pathlib import Path

import networkx as nx
import numpy as np

import nvppl as nv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=8, help="nodes of the ring graph with chords")
    parser.add_argument("--steps", type=int, default=100, help="steps per run")
    parser.add_argument("--runs", type=int, default=2, help="independent runs")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws per chain")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warm-up iterations per chain")
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", type=Path, default=Path("quickstart-out"), help="folder for the plots")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    # 1. a graph: a directed ring with a few chords
    G = nx.DiGraph()
    G.add_edges_from((i, (i + 1) % args.nodes) for i in range(args.nodes))
    G.add_edges_from((i, (i + 3) % args.nodes) for i in range(0, args.nodes, 2))
    sub = nv.Substrate.from_networkx(G)

    # 2. a model with two vesicle types; absorption is fixed at zero (not inferred)
    model = nv.VesicleModel(sub, n_types=2, priors={"a": 0.0})
    truth = model.default_params().replace(delta=np.array([0.05, 0.15]), w=np.array([[-2.0], [0.0]]))

    # 3. simulate, fit, summarise
    traces = nv.simulate(model, truth, n_steps=args.steps, n_runs=args.runs, key=args.seed)
    print(traces)
    fit = nv.infer.fit(model, traces, num_samples=args.samples, num_warmup=args.warmup,
                       num_chains=args.chains, key=args.seed + 1, progress_bar=not args.no_progress)
    print(fit.summary(var_names=["u", "w", "delta"]))
    print("true delta:", truth.delta, " posterior mean:", fit.posterior_mean().delta.round(3))

    # 4. diagnostics to PNG
    args.out.mkdir(parents=True, exist_ok=True)
    nv.diagnostics.plot_trace(fit, args.out / "trace.png", var_names=["u", "w", "delta"])
    check = nv.diagnostics.ppc(fit, traces, path=args.out / "ppc.png")
    print(f"{len(check.outside(0.9))} of {len(check.table)} summary statistics outside their 90% predictive interval")
    print(f"wrote {args.out / 'trace.png'} and {args.out / 'ppc.png'}")
    return fit


if __name__ == "__main__":
    main()
