"""The distal reward problem (Izhikevich 2007) with a global and a vesicle-carried dopamine.

A recurrent LIF network (80 % excitatory, 20 % inhibitory neurons, 10 %
connectivity, a Poisson input unit per neuron) learns with STDP eligibility
traces (τ_c = 1 s) and a third factor (paper eq. 55–58). One excitatory synapse
j → i is chosen; whenever i fires 1–10 ms after j, a reward arrives 1–3 s later
(a closed loop: ``nv.snn.learn(..., signal_fn=...)``). With a *global* dopamine
(``modulation="global"``) every synapse sees the reward; with a *vesicle*
field (``nv.snn.VesicleField``, eq. 57) vesicles are emitted while the reward is
on, more at recently active neurons, wander along the synapses and modulate only
the synapses whose pre- or postsynaptic neuron holds one.

The example prints, for both modulations, the chosen synapse's final weight,
the fraction of the other plastic synapses that moved by more than 10 % of
w_max, and the rewards earned, and plots the chosen weight over time against
the others. ``benchmarks/bench_distal_reward.py`` runs the same setting over
several seeds with a calibrated α; ``--alpha`` here defaults to its value
(α hardly depends on the network size: the vesicles per reward and the
synapses per neuron both grow with it). A few seconds of simulated time are
far too short to learn anything; try ``--neurons 1000 --seconds 60``.

Run: ``python examples/snn_distal_reward.py --neurons 1000 --seconds 60 --plot distal.png``
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import nvppl as nv

W_MAX = 0.2


def build(n, seed):
    """Inputs 0..n-1 (one per neuron, fixed), then n LIF neurons; plastic E→any synapses in [0, W_MAX]."""
    n_exc = int(0.8 * n)
    rec = nv.snn.LIFNetwork.random(n, 0.1, key=seed)
    pre, post = np.asarray(rec.pre), np.asarray(rec.post)
    exc = pre < n_exc
    net = nv.snn.LIFNetwork(
        n_input=n, n=n, pre=np.concatenate([np.arange(n), pre + n]), post=np.concatenate([np.arange(n), post]),
        weights=np.concatenate([np.full(n, 0.5), np.where(exc, 0.05, -0.5)]),
        plastic=np.concatenate([np.zeros(n, bool), exc]), w_min=0.0, w_max=W_MAX,
        neuron=nv.snn.Neuron(tau_mem=20.0, refractory=2), max_spikes=max(64, n // 8), max_events=max(2048, 2 * n))
    exc_to_exc = np.asarray(net.plastic) & (np.asarray(net.post) < n_exc)
    chosen = int(np.random.default_rng(seed).choice(np.flatnonzero(exc_to_exc)))
    return net, chosen


def reward_loop(j, i):
    """signal_fn: a pairing j → i (i 1–10 ticks after j) schedules a 20-tick reward 1000–3000 ticks later."""
    never = jnp.int32(-10 ** 8)

    def signal_fn(t, spikes, carry, key):
        last_j, pending, rewards, dropped = carry         # pending: up to 16 reward times (−1: free)
        lag = (t - 1) - last_j
        pair = spikes[i] & (lag >= 1) & (lag <= 10)
        last_j = jnp.where(spikes[j], t - 1, jnp.where(pair, never, last_j))
        free = pending < 0
        delay = jax.random.randint(key, (), 1000, 3001, dtype=jnp.int32)
        pending = jnp.where(pair & free & (jnp.arange(16) == jnp.argmax(free)), t + delay, pending)
        dropped = dropped + (pair & ~free.any())           # counted, and refused after the run
        rewards = rewards + jnp.sum(pending == t, dtype=jnp.int32)
        pulse = jnp.any((pending >= 0) & (pending <= t) & (t < pending + 20))   # overlapping pulses merge
        pending = jnp.where((pending >= 0) & (t + 1 >= pending + 20), -1, pending)
        sig = jnp.stack([pulse, rewards, dropped]).astype(jnp.float32)
        return sig, (last_j, pending, rewards, dropped)

    return signal_fn, (never, jnp.full(16, -1, jnp.int32), jnp.int32(0), jnp.int32(0))


def vesicle_field(net, alpha):
    """One vesicle type on the neurons: emitted while the reward is on, stay 0.9 per tick, mean life 200 ticks."""
    sub, node_of = nv.snn.neuron_substrate(net)
    model = nv.VesicleModel(sub, n_types=1, covariate_dim=2)
    cand, n_cand = sub.candidates, sub.n_candidates[:, None]
    stay = cand == np.arange(sub.n_nodes)[:, None]
    T = np.where(stay, np.where(n_cand > 1, 0.9, 1.0), np.where(cand >= 0, 0.1 / np.maximum(n_cand - 1, 1), 0.0))
    params = model.default_params().replace(u=np.array([[-19.2, 100.0, 12.0]]),   # (1, rate, reward)
                                            T=T[None], delta=np.array([0.005]))
    return nv.snn.VesicleField(model, params, node_of, alpha=[alpha], covariates=("rate", "reward"), window=100,
                               which="alive", capacity=256)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds (1 tick = 1 ms)")
    parser.add_argument("--eta", type=float, default=2e-5)
    parser.add_argument("--alpha", type=float, default=300.0, help="strength of a vesicle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="snn_distal_reward.png")
    args = parser.parse_args()

    n, ticks = args.neurons, int(args.seconds * 1000)
    net, chosen = build(n, args.seed)
    signal_fn, carry0 = reward_loop(int(net.pre[chosen]), n + int(net.post[chosen]))
    rule = nv.snn.Plasticity(eligibility="stdp", a_plus=1.0, a_minus=-1.2, tau_fast=1000.0, eta=args.eta)
    inputs = np.random.default_rng(args.seed).random((ticks, n)) < 0.05    # 50 Hz Poisson input
    plastic = np.flatnonzero(np.asarray(net.plastic))
    k = int(np.searchsorted(plastic, chosen))
    others = np.delete(np.arange(len(plastic)), k)
    w0 = np.asarray(net.weights)[plastic]
    traces = {}
    for name, modulation in (("global", "global"), ("vesicle", vesicle_field(net, args.alpha))):
        res = nv.snn.learn(net, rule, inputs, key=args.seed, modulation=modulation, signal_fn=signal_fn,
                           env_state=carry0, n_signals=3, tau_mod=200.0, record_synapses=plastic,
                           record_every=max(1, ticks // 50))
        if res.signals[-1, 2] > 0:
            raise SystemExit(f"{name}: {int(res.signals[-1, 2])} pairings found all 16 reward slots taken")
        w = res.w[plastic]
        moved = np.mean(np.abs(w[others] - w0[others]) > 0.1 * W_MAX)
        print(f"{name:7s}: chosen w/w_max {w[k] / W_MAX:.3f} (above {np.mean(w[others] < w[k]):.0%} of the others), "
              f"others moved > 10 % of w_max: {moved:.3f}, rewards {int(res.signals[-1, 1])}, "
              f"mean modulation {res.modulation.mean():.3f}, rate {res.spikes.mean() * 1000:.1f} Hz")
        traces[name] = np.concatenate([w0[None], res.weights]) / W_MAX

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (name, tr) in zip(axes, traces.items()):
        t = np.linspace(0, args.seconds, len(tr))
        lo, med, hi = np.percentile(tr[:, others], [5, 50, 95], axis=1)
        ax.fill_between(t, lo, hi, color="0.85", label="others 5–95 %")
        ax.plot(t, med, color="0.4", label="others median")
        ax.plot(t, tr[:, k], color="C3", label="chosen synapse")
        ax.set(title=f"{name} modulation", xlabel="simulated time (s)")
    axes[0].set_ylabel("w / w_max")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
