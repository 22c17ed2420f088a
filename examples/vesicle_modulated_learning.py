r"""Vesicle-modulated learning: only synapses at nodes where vesicles dock learn.

A vesicle model and a spiking base network share the emulated chip. Every node
ℓ of the substrate owns a group of LIF neurons; all of them are driven by the
same Poisson inputs through plastic three-factor synapses. The vesicles are
the third factor:

- **eq. 57** — the modulatory field at synapse j → i is made by the vesicles
  docking at the node ℓ(i) that owns neuron i:
  m_ij(t) = Σ_κ α_κ · D_κ(ℓ(i), t − 1), with D_κ(ℓ, t) the docks of type κ at
  ℓ in tick t and α_κ the release amplitude of the type. On the chip each
  (node, type) with α_κ ≠ 0 is a *release port*: a relay of the input
  population ``"vesicle_release"`` that fires at every tick with a dock of type
  κ at ℓ, and whose reward projection reaches the neurons of ℓ one tick later
  with weight α_κ. There it drives the reward trace
  r_i ← clamp(r_i − shr(r_i, k_r) + Σ α, 0, 127).
- **eq. 58** — the weight change is Δw_ij = η · e_ij · m_ij, with the
  eligibility e_ij made of the pre- and postsynaptic traces x_j, y_i.
- **eq. 60** — in chip arithmetic (7-bit traces, mode MOD):
  Δw_ij = shr(a_mod · ⌊⌊x_j · y_i / 128⌋ · r_i / 128⌋, shift).

Where no vesicle docks, r_i stays 0 and Δw_ij = 0 however much the neurons
fire. So the vesicle process decides *where* the network learns.

The task. The substrate is a directed *comb*: a route (the spine)
0 → 1 → … → R−1 from a source to a target, whose nodes hold a vesicle with
probability ``--stay`` or pass it on (the target holds it for good), and
feeder nodes R, …, n−1 hanging below the first spine nodes, each draining into
one of them. Every node emits vesicles (emission is a per-type rate, the same
at every node), but no vesicle ever moves *into* a feeder: the rows of the
migration kernel T send the feeders' vesicles onto the route at their first
step. Docks therefore concentrate on the route, growing toward the target
where the stream piles up, and the feeders see none. The parameters T, u
(emission), w (docking) and δ (decay) are set explicitly below.

The script deploys the model and the network, runs them, and prints per node
its role, the docks there, the tick of its first dock and the tick at which a
weight onto its neurons first moved (the reward spike of a dock at tick t
reaches the neurons at t + 1, so never earlier; later when the eligibility is
still 0 because the neurons have not fired yet), the spikes of its neurons and
the mean weight change of the synapses onto them (in weight LSBs). It checks
that the weights changed exactly at the neurons of nodes with a dock before the
last tick (the reward spike of a dock in the last tick would arrive after the
run) and exits with an error otherwise.

Run ``python examples/vesicle_modulated_learning.py`` or, for a tiny run,
``python examples/vesicle_modulated_learning.py --ticks 40 --nodes 5
--neurons-per-node 2``. ``--image DIR`` also writes the chip's configuration
image to DIR, ``--plot FILE`` draws the comb coloured by docks next to the
weight changes.
"""

import argparse
import sys

import networkx as nx
import numpy as np

import nvppl as nv
from nvppl.backend import LIF, Emulator, Network, ThreeFactor, compile

N_INPUTS = 16


def comb(n_nodes):
    """The comb's DiGraph (self-candidates only as explicit self-loops) and its spine length."""
    spine = (n_nodes + 1) // 2
    G = nx.DiGraph()
    G.add_nodes_from(range(n_nodes))
    G.add_edges_from((s, s) for s in range(spine))                   # a spine node may hold its vesicles
    G.add_edges_from((s, s + 1) for s in range(spine - 1))           # ... or pass them on toward the target
    G.add_edges_from((f, f - spine) for f in range(spine, n_nodes))  # feeders drain into the spine
    return G, spine


def vesicle_params(model, spine, stay):
    """T, u, w, δ of one vesicle type on the comb (rows of T over the sorted candidates)."""
    sub = model.substrate
    T = np.zeros((1,) + sub.candidates.shape)
    for node in range(model.n_nodes):
        cand = sub.candidates[node, :sub.n_candidates[node]].tolist()
        if node == spine - 1:
            T[0, node, cand.index(node)] = 1.0                       # the target holds its vesicles
        elif node < spine:
            T[0, node, cand.index(node)] = stay
            T[0, node, cand.index(node + 1)] = 1.0 - stay
        else:
            T[0, node, cand.index(node - spine)] = 1.0               # a feeder's vesicle moves onto the spine
    return model.default_params().replace(
        T=T,
        u=np.array([[0.0]]),         # emission λ = r_max σ(u) = 0.5 per node and tick
        w=np.array([[0.0]]),         # docking probability σ(w) = 0.5 per step
        delta=np.array([0.15]),      # a vesicle lives 1/δ ≈ 7 ticks on average
        a=np.zeros(model.n_nodes))   # no absorption


def base_network(n_neurons, rng):
    """Poisson inputs --ThreeFactor--> LIF neurons (weights of 5–15 LSB: room to grow up to the 8-bit 127)."""
    net = Network()
    inp = net.add_input("in", N_INPUTS)
    out = net.add_lif("out", n_neurons, LIF(tau_mem=8.0, v_th=1.0, scale=0.01))
    net.connect(inp, out, rng.uniform(0.05, 0.15, (N_INPUTS, n_neurons)),
                plasticity=ThreeFactor(a_mod=64, shift=2, x=(3, 100), y=(3, 100), r=3))
    return net


def plot(path, G, spine, docks, mean_dw):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = G.number_of_nodes()
    pos = {s: (s, 1.0) for s in range(spine)}
    pos.update({f: (f - spine, 0.0) for f in range(spine, n)})
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    nodes = list(range(n))
    drawn = nx.draw_networkx_nodes(G, pos, nodelist=nodes, node_color=[docks[v] for v in nodes], cmap="viridis",
                                   ax=ax0)
    nx.draw_networkx_edges(G, pos, edgelist=[e for e in G.edges if e[0] != e[1]], ax=ax0, arrows=True)
    nx.draw_networkx_labels(G, pos, ax=ax0, font_color="white")
    fig.colorbar(drawn, ax=ax0, label="docks")
    ax0.set_title("the comb: route on top, feeders below")
    ax0.set_axis_off()
    ax1.bar(nodes, mean_dw, color=["tab:blue" if v < spine else "tab:grey" for v in nodes])
    ax1.set_xlabel("node")
    ax1.set_ylabel("mean weight change onto its neurons (LSB)")
    ax1.set_title("learning follows the docks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=300, help="ticks to run")
    parser.add_argument("--nodes", type=int, default=12, help="graph nodes (half route, half feeders)")
    parser.add_argument("--neurons-per-node", type=int, default=4, help="LIF neurons owned by each node")
    parser.add_argument("--stay", type=float, default=0.5, help="probability that a route node holds a vesicle")
    parser.add_argument("--nodes-per-core", type=int, default=4, help="graph nodes per node core")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (weights, input spikes, the chip's generators)")
    parser.add_argument("--image", metavar="DIR", help="write the chip's configuration image to DIR")
    parser.add_argument("--plot", metavar="FILE", help="save a figure of docks and weight changes to FILE")
    args = parser.parse_args(argv)
    if args.nodes < 3:
        parser.error("--nodes must be at least 3 (a route of two nodes and a feeder)")
    if args.neurons_per_node < 1 or args.ticks < 2:
        parser.error("--neurons-per-node must be at least 1 and --ticks at least 2")
    if not 0.0 < args.stay < 1.0:
        parser.error("--stay must lie strictly between 0 and 1")
    rng = np.random.default_rng(args.seed)
    k = args.neurons_per_node

    # 1. the vesicle model on the comb, with explicit parameters
    G, spine = comb(args.nodes)
    model = nv.VesicleModel(nv.Substrate.from_networkx(G, allow_stay=False), n_types=1)
    params = vesicle_params(model, spine, args.stay)

    # 2. the base network: node ℓ owns LIF neurons ℓk … ℓk + k − 1
    net = base_network(args.nodes * k, rng)
    release = {node: ("out", range(node * k, (node + 1) * k)) for node in range(args.nodes)}
    print(model.substrate)
    print(net)

    # 3. deployed together: a dock at node ℓ is a reward spike of amplitude α = 100 to ℓ's neurons
    prog = compile(model, params, network=net, release=release, release_amplitude=[100],
                   nodes_per_core=args.nodes_per_core)
    if args.image:
        prog.write(args.image)
        print(f"configuration image written to {args.image}/")
    emu = Emulator(prog)
    inputs = {"in": (rng.random((args.ticks, N_INPUTS)) < 0.4).astype(np.int8)}
    w0 = emu.run(0).weights("in", "out").toarray()
    run = emu.run(args.ticks, key=args.seed, inputs=inputs, record=("weights",))
    dw = run.weights("in", "out").toarray() - w0
    post = run.weights("in", "out").tocoo().col // k                 # the node owning each synapse's target
    moved = run.weight_history("in", "out") != w0.reshape(-1)[None, :]   # (ticks, synapses), row-major CSR

    # 4. per node: docks, and the weight change onto its neurons
    steps = run.traces.steps
    docked = steps[steps["docked"]]
    docks = np.bincount(docked["node_to"].to_numpy(dtype=np.int64), minlength=args.nodes)
    early = np.bincount(docked.loc[docked["step"] < args.ticks - 1, "node_to"].to_numpy(dtype=np.int64),
                        minlength=args.nodes)
    per_node = dw.reshape(N_INPUTS, args.nodes, k)
    mean_dw = per_node.mean(axis=(0, 2))
    changed = (per_node != 0).any(axis=(0, 2))
    fired = run.raster("out").sum(axis=0).reshape(args.nodes, k).sum(axis=1)
    print(f"\n{'node':>4} {'role':>7} {'docks':>6} {'first dock':>10} {'first Δw':>8} {'spikes':>7} "
          f"{'mean Δw (LSB)':>14}  synapses changed")
    for node in range(args.nodes):
        role = "target" if node == spine - 1 else "source" if node == 0 else "route" if node < spine else "feeder"
        n_changed = int(np.count_nonzero(per_node[:, node]))
        at = docked.loc[docked["node_to"] == node, "step"]
        first_dock = str(int(at.min())) if len(at) else "-"
        ticks_moved = np.flatnonzero(moved[:, post == node].any(axis=1))
        first_dw = str(int(ticks_moved[0])) if len(ticks_moved) else "-"
        print(f"{node:>4} {role:>7} {docks[node]:>6} {first_dock:>10} {first_dw:>8} {fired[node]:>7} "
              f"{mean_dw[node]:>+14.2f}  {n_changed}/{per_node[:, node].size}")

    c = run.counters
    print(f"\nvesicles: {c['vesicle_births']} born, {c['vesicle_docks']} docks, "
          f"{c['vesicle_migration_packets']} migration packets, {c['vesicle_release_packets']} release packets")
    print(f"traffic: {c['packets']} packets ({c['vesicle_packets']} vesicle, {c['spike_packets']} spike), "
          f"energy {c['energy_pj'] / 1e6:.4f} µJ ({c['vesicle_energy_pj'] / 1e6:.4f} vesicle, "
          f"{c['spike_energy_pj'] / 1e6:.4f} spike)")
    print("resources:", prog.resources)
    if args.plot:
        plot(args.plot, G, spine, docks, mean_dw)
        print(f"figure written to {args.plot}")

    # 5. the conclusion, checked
    with_docks = np.flatnonzero(early > 0).tolist()
    learned = np.flatnonzero(changed).tolist()
    if learned != with_docks:
        sys.exit(f"error: weights changed at nodes {learned}, vesicles docked (before the last tick) at "
                 f"{with_docks}")
    print(f"\nweights changed exactly at the neurons of the nodes where vesicles docked: {learned}; "
          f"the {int(np.count_nonzero(early == 0))} nodes without a dock kept every weight.")


if __name__ == "__main__":
    main()
