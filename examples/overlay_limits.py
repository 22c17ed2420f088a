"""FiLM, hypernetworks and attention as limits of many short-lived vesicles.

The paper's abstract claims that in the limit of many vesicles with short
lifetimes the Neuro-Vesicle release recovers FiLM, hypernetworks or attention.
``nvppl.overlay.limits`` runs the explicit vesicle population at a growing
number ``N̄`` of docking vesicles (each carrying ``1/N̄`` of the modulation) and
compares the release with its limit. This example draws the error against
``N̄`` beside the ``N̄^{-1/2}`` that the density predicts, and prints the
figures.

Written: ``overlay_limits.png``. ``python examples/overlay_limits.py --reps 40
--densities 4,16`` is a tiny run.
"""

import argparse

import matplotlib
import numpy as np

from nvppl.overlay import limits

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=400, help="replicates per density")
    parser.add_argument("--densities", default="2,4,8,16,32,64,128,256,512", help="expected docking vesicles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="overlay_limits.png", help="figure file")
    args = parser.parse_args(argv)
    dens = tuple(float(d) for d in args.densities.split(","))

    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6), sharey=False)
    out = {}
    for a, (name, fn) in zip(ax, (("FiLM", limits.film_limit), ("hypernetwork", limits.hypernetwork_limit),
                                  ("attention", limits.attention_limit))):
        r = fn(densities=dens, n_reps=args.reps, key=args.seed)
        out[name] = r
        a.loglog(r.density, r.error, "o-", label="Monte Carlo RMS error")
        a.loglog(r.density, r.predicted, "k--", label=r"predicted $\propto \bar N^{-1/2}$")
        a.set(title=name, xlabel=r"docking vesicles $\bar N$", ylabel="RMS error against the limit")
        a.legend(fontsize=8)
        slope = np.polyfit(np.log(r.density), np.log(r.error), 1)[0] if len(dens) > 1 else float("nan")
        print(f"{name:13s} limit {np.round(r.limit, 3)}  slope {slope:.3f}  error/predicted "
              f"{np.round(r.error / r.predicted, 3)}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print("wrote", args.plot)
    return out


if __name__ == "__main__":
    main()
