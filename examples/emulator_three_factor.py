"""Reward-gated learning on the emulated chip: the three-factor rule.

A population of Poisson spike sources drives a population of LIF neurons
through a plastic :class:`~nvppl.backend.ThreeFactor` projection. A one-neuron
"reward" input population reaches only some of the LIF neurons, through a
projection of ``kind="reward"``: its spikes travel as REWARD_SPIKE packets and
drive the reward trace r_i of the neurons they reach (eq. 55–58). At every
learning tick a synapse j → i changes by
``shr(a_mod · ⌊⌊x_j · y_i / 128⌋ · r_i / 128⌋, shift)`` (eq. 60, mode MOD):
the pre- and postsynaptic traces x_j, y_i make the eligibility, and the reward
trace r_i gates it. Where no reward arrives r_i stays 0, so the weights into
the unrewarded neurons do not move although those neurons fire like the
others.

The network is compiled for the default chip and run on the event-driven
emulator. The script prints, for the rewarded and the unrewarded neurons, how
many incoming weights changed and by how much on average (in weight LSBs),
then the run's counters and the chip resources used. It exits with an error
when a weight into an unrewarded neuron changed.

Run ``python examples/emulator_three_factor.py`` or
``python examples/emulator_three_factor.py --ticks 40 --neurons 4`` for a tiny
run; ``--image DIR`` also writes the chip's configuration image to ``DIR``.
"""

import argparse
import sys

import numpy as np

from nvppl.backend import LIF, Emulator, Network, ThreeFactor, compile


def build(n_inputs, n_neurons, rng):
    """The network, and a boolean mask of the LIF neurons that receive reward."""
    net = Network()
    inp = net.add_input("in", n_inputs)
    reward = net.add_input("reward", 1)
    out = net.add_lif("out", n_neurons, LIF(tau_mem=8.0, v_th=1.0))
    net.connect(inp, out, rng.uniform(0.2, 0.6, (n_inputs, n_neurons)),
                plasticity=ThreeFactor(a_mod=64, shift=2, x=(2, 100), y=(2, 100), r=2))
    rewarded = np.arange(n_neurons) % 2 == 0
    net.connect(reward, out, np.where(rewarded, 100.0, 0.0)[None, :], kind="reward")
    return net, rewarded


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=200, help="ticks to run")
    parser.add_argument("--neurons", type=int, default=16, help="LIF neurons (every other one is rewarded)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (weights, input spikes, chip generators)")
    parser.add_argument("--image", metavar="DIR", help="write the chip's configuration image to DIR")
    args = parser.parse_args(argv)
    if args.neurons < 2:
        parser.error("--neurons must be at least 2 (rewarded and unrewarded neurons)")
    rng = np.random.default_rng(args.seed)

    # 1. the network: Poisson input --ThreeFactor--> LIF, and reward spikes into every other LIF neuron
    n_inputs = 20
    net, rewarded = build(n_inputs, args.neurons, rng)
    print(net)

    # 2. compiled for the default chip
    prog = compile(net)
    if args.image:
        prog.write(args.image)
        print(f"configuration image written to {args.image}/")
    emu = Emulator(prog)

    # 3. Poisson input at 20 % per tick, a reward spike every 5 ticks
    inputs = {"in": (rng.random((args.ticks, n_inputs)) < 0.2).astype(np.int8),
              "reward": (np.arange(args.ticks) % 5 == 4).astype(np.int8)[:, None]}
    w0 = emu.run(0).weights("in", "out").toarray()
    run = emu.run(args.ticks, key=args.seed, inputs=inputs)
    w1 = run.weights("in", "out").toarray()
    fired = run.raster("out").sum(axis=0)

    # 4. where the weights moved
    delta = w1 - w0
    for label, mask in (("rewarded", rewarded), ("unrewarded", ~rewarded)):
        d = delta[:, mask]
        print(f"{label:>10} neurons {np.flatnonzero(mask).tolist()}: {int(fired[mask].sum())} spikes, "
              f"{int(np.count_nonzero(d))} of {d.size} incoming weights changed, "
              f"mean change {d.mean():+.2f} LSB")

    c = run.counters
    print(f"counters: {c['synaptic_ops']} synaptic ops, {c['packets']} packets "
          f"({c['input_packets']} from the controller), {c['hops']} hops, {c['weight_updates']} weight updates, "
          f"energy {c['energy_pj'] / 1e6:.4f} µJ")
    print("resources:", prog.resources)

    if np.any(delta[:, ~rewarded] != 0):
        sys.exit("error: weights into unrewarded neurons changed")


if __name__ == "__main__":
    main()
