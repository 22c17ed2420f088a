"""Benchmark: HMN road-map P3, ablation of the HMN rule's components on the P0 contextual bandit.

Task and agent: those of ``bench_bandit_p0.py`` (imported from it, not copied):
4 contexts × 10 arms, Bernoulli rewards with ``p ~ U(0, 1)`` per seed, horizon
2000 trials (``--quick``: 200), the HMN agent with every component on and the
hyper-parameters chosen there on the tuning seeds 1000–1009 (nothing is tuned
here), delivery of G′ global (``--delivery vesicle`` for the vesicle field).

Variants: the full HMN, and the full HMN with one component switched off
(the others on, nothing retuned). The switches are ``nvppl.snn.hmn.Switches``
(run-time booleans, identical in effect to the ``HMNConfig`` switches), so all
eight variants × seeds run in one compiled program:

- ``stochastic_activation``: σ = 0 in eq. 1 (the softmax policy still explores);
- ``slow_trace``: e = ψ_fast (eq. 2);
- ``phase_gate``: no max(0, cos(Φ − φ)) factor (eq. 4);
- ``prob_gate``: every Δw† applied (eq. 5);
- ``local_attention``: ẽ = e (eq. 8–9);
- ``global_attention``: G′ = G (eq. 10–11);
- ``meta_learning``: η fixed at η₀ (no SPSA, eq. 7).

Score: the mean reward per trial of a seed (also shown: the cumulative regret).
Δ-score of a component = score(ablated) − score(full), per seed on the same
bandit and the same agent key (paired), then mean ± sd and standard error over
the seeds 0 … n−1 (20 full, 5 quick). A positive Δ means the component *hurts*
on this task (the agent does better without it). The bar plot (``--plot``) shows
mean Δ with ± 1 standard-error bars. Last line: one JSON object with every
Δ-score (``delta_<component>``, ``*_sd``, ``*_se``), the full model's score and
the seeds.

Measured (global G′, seeds 0–19, 2000 trials; Δ mean reward ± SE, full HMN
0.755 ± 0.077): stochastic activation −0.001 ± 0.012, slow trace
+0.019 ± 0.018, phase gate +0.059 ± 0.020, probabilistic gate −0.005 ± 0.010,
local attention −0.001 ± 0.021, global attention +0.026 ± 0.012, meta-learning
+0.044 ± 0.015. **No component helps on this bandit by more than two standard
errors**; the phase gate, the global attention and the online SPSA
meta-learning hurt (the agent is better without them). A bandit has no temporal
structure for the phase gate or the slow trace to exploit, and the SPSA window
losses are too noisy to resolve a 5 % perturbation (see ``bench_bandit_p0.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_bandit_p0 as p0  # noqa: E402  (sets the XLA flags before JAX starts)
from bench_simulate import json_safe  # noqa: E402

import numpy as np  # noqa: E402

from nvppl.snn import hmn  # noqa: E402

#: Component → the run-time switch (``nvppl.snn.hmn.Switches``) that turns it off.
ABLATIONS = {
    "stochastic_activation": "noise",
    "slow_trace": "slow",
    "phase_gate": "phase_gate",
    "prob_gate": "prob_gate",
    "local_attention": "local_attention",
    "global_attention": "global_attention",
    "meta_learning": "meta",
}


def plot(deltas: dict, path: str, n_seeds: int, horizon: int, delivery: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(deltas)
    m = np.array([deltas[k][0] for k in names])
    se = np.array([deltas[k][2] for k in names])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.bar(range(len(names)), m, yerr=se, capsize=4, color=["tab:red" if v > 0 else "tab:blue" for v in m])
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("Δ mean reward (ablated − full)")
    ax.set_title(f"HMN ablation, bandit 4×10, {horizon} trials, {delivery} G′, mean ± SE over {n_seeds} seeds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 trials, 5 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="evaluation seeds 0..n-1 (default 20, quick 5)")
    parser.add_argument("--horizon", type=int, default=None, help="trials (default 2000, quick 200)")
    parser.add_argument("--delivery", choices=("global", "vesicle"), default="global")
    parser.add_argument("--plot", default="bench_hmn_ablation.png", help="bar plot of the Δ-scores")
    args = parser.parse_args(argv)
    horizon = args.horizon or (200 if args.quick else 2000)
    n_seeds = args.seeds or (5 if args.quick else 20)
    if n_seeds < 2:
        parser.error("--seeds must be at least 2 (a standard error is reported)")
    seeds = list(range(n_seeds))
    print(f"HMN ablation on the contextual bandit ({p0.N_CONTEXTS}×{p0.N_ARMS}), horizon {horizon}, "
          f"delivery {args.delivery}, seeds {seeds}")
    t0 = time.perf_counter()
    variants = [hmn.Switches()] + [hmn.Switches.without(sw) for sw in ABLATIONS.values()]
    out = p0.run_method(args.delivery, seeds, horizon, switches=variants)
    score_full = out["reward"][0].mean(1)
    regret_full = out["regret"][0].sum(1)
    print(f"{'full HMN':>24}: mean reward {score_full.mean():.4f} ± {score_full.std(ddof=1):.4f}   "
          f"regret {regret_full.mean():7.1f} ± {regret_full.std(ddof=1):5.1f}")
    deltas, regrets = {}, {}
    for v, name in enumerate(ABLATIONS, start=1):
        d = out["reward"][v].mean(1) - score_full
        sd = float(d.std(ddof=1))
        deltas[name] = (float(d.mean()), sd, sd / math.sqrt(len(d)))
        reg = out["regret"][v].sum(1)
        regrets[name] = (float(reg.mean()), float(reg.std(ddof=1)))
        mark = "  (better without it)" if d.mean() - 2 * deltas[name][2] > 0 else (
            "  (worse without it)" if d.mean() + 2 * deltas[name][2] < 0 else "")
        print(f"{'no ' + name:>24}: Δ mean reward {d.mean():+.4f} ± {sd:.4f} (SE {deltas[name][2]:.4f})   "
              f"regret {reg.mean():7.1f} ± {reg.std(ddof=1):5.1f}{mark}", flush=True)
    seconds = time.perf_counter() - t0
    helps = [k for k, v in deltas.items() if v[0] + 2 * v[2] < 0]
    hurts = [k for k, v in deltas.items() if v[0] - 2 * v[2] > 0]
    print(f"components whose removal lowers the reward by > 2 SE (they help): {helps or 'none'}")
    print(f"components whose removal raises the reward by > 2 SE (they hurt): {hurts or 'none'}")
    plot(deltas, args.plot, n_seeds, horizon, args.delivery)
    print(f"plot: {args.plot}   ({seconds:.1f} s)")
    result = {"horizon": horizon, "seeds": seeds, "delivery": args.delivery, "score": "mean reward per trial",
              "score_full": float(score_full.mean()), "score_full_sd": float(score_full.std(ddof=1)),
              "regret_full": float(regret_full.mean()), "regret_full_sd": float(regret_full.std(ddof=1)),
              "seconds": seconds}
    for name, (m, sd, se) in deltas.items():
        result[f"delta_{name}"], result[f"delta_{name}_sd"], result[f"delta_{name}_se"] = m, sd, se
        result[f"regret_no_{name}"] = regrets[name][0]
    print(json.dumps(json_safe(result)))


if __name__ == "__main__":
    main()
