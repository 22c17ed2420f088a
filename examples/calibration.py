"""Simulation-based calibration of NUTS on a small vesicle model.

Draws parameters from the prior, simulates, fits and ranks the truth among the
posterior draws, many times; uniform ranks mean the sampler and the likelihood
are calibrated. Writes an ECDF plot of the ranks.

``python examples/calibration.py --sims 20 --samples 99 --warmup 100`` is a tiny run.
"""

import argparse
from pathlib import Path

import networkx as nx

import nvppl as nv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=200, help="simulations")
    parser.add_argument("--steps", type=int, default=25, help="steps per simulated data set")
    parser.add_argument("--samples", type=int, default=400, help="NUTS draws per simulation")
    parser.add_argument("--warmup", type=int, default=300, help="NUTS warm-up per simulation")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", type=Path, default=Path("sbc.png"), help="ECDF plot file")
    args = parser.parse_args(argv)

    sub = nv.Substrate.from_networkx(nx.DiGraph([(0, 1), (1, 2), (2, 0), (1, 0)]))
    model = nv.VesicleModel(sub, n_types=1, priors={"a": 0.0, "delta": nv.model.dist.Beta(2.0, 20.0)})
    result = nv.diagnostics.sbc(model, n_sims=args.sims, n_steps=args.steps, num_samples=args.samples,
                                num_warmup=args.warmup, n_draws=min(99, args.samples), key=args.seed,
                                batch_size=min(20, args.sims))
    print(result.uniformity().round(3))
    result.plot(args.out)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
