"""Random small spiking networks for the backend tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nvppl.backend import LIF, STDP, ChipConfig, Network, ThreeFactor


def random_network(seed: int, *, plastic: bool = True, bias: bool = True) -> Network:
    """Input + three LIF populations with random, mixed-sign, sparse weights.

    Includes recurrence, an STDP projection, a three-factor projection with a
    reward projection, and (when ``bias``) a population that never rests.
    """
    rng = np.random.default_rng(seed)
    net = Network()
    inp = net.add_input("in", int(rng.integers(4, 10)))
    rew = net.add_input("reward", 3)
    pops = []
    for k in range(3):
        tau_syn = [None, 2.0, 4.0][int(rng.integers(3))]
        b = float(rng.uniform(0.01, 0.05)) if (bias and k == 2) else 0.0
        pops.append(net.add_lif(f"p{k}", int(rng.integers(3, 9)), LIF(
            tau_mem=float(2 ** rng.integers(1, 5)), tau_syn=tau_syn, v_th=float(rng.uniform(0.6, 1.4)),
            v_reset=float(rng.uniform(-0.3, 0.0)), bias=b)))

    def weights(pre, post, density, lo, hi):
        mask = rng.random((pre.size, post.size)) < density
        w = rng.uniform(lo, hi, size=mask.shape) * mask
        return sp.csr_matrix(w)

    stdp = STDP(a_pre=int(rng.integers(4, 40)), a_post=-int(rng.integers(4, 40)), shift=int(rng.integers(2, 6)),
                x=(int(rng.integers(1, 5)), int(rng.integers(20, 100))), y=(int(rng.integers(1, 5)), 60))
    three = ThreeFactor(a_mod=int(rng.integers(20, 120)), shift=int(rng.integers(1, 4)),
                        x=(2, int(rng.integers(40, 120))), y=(2, 80), r=int(rng.integers(1, 4)))
    net.connect(inp, pops[0], weights(inp, pops[0], 0.7, 0.2, 0.9), plasticity=stdp if plastic else None)
    net.connect(pops[0], pops[1], weights(pops[0], pops[1], 0.6, -0.4, 0.9), plasticity=three if plastic else None)
    net.connect(pops[1], pops[2], weights(pops[1], pops[2], 0.8, 0.1, 1.0))
    net.connect(pops[2], pops[0], weights(pops[2], pops[0], 0.4, -0.5, 0.5))
    net.connect(pops[1], pops[1], weights(pops[1], pops[1], 0.3, -0.6, 0.3))
    if plastic:
        R = np.zeros((rew.size, pops[1].size))
        R[rng.integers(rew.size, size=pops[1].size), np.arange(pops[1].size)] = rng.integers(20, 90, pops[1].size)
        R[:, : pops[1].size // 2] = 0  # half the neurons never receive reward
        net.connect(rew, pops[1], sp.csr_matrix(R), kind="reward")
    return net


def random_inputs(net: Network, n_ticks: int, seed: int, rate: float = 0.3) -> dict:
    rng = np.random.default_rng(seed)
    return {p.name: (rng.random((n_ticks, p.size)) < rate).astype(np.int8)
            for p in net.populations if p.kind == "input"}


def small_chip(**changes) -> ChipConfig:
    """A 5 × 4 mesh with 4 neurons per core, so populations spread over several cores."""
    base = dict(width=5, height=4, controller=(2, 1), neurons_per_core=4)
    base.update(changes)
    return ChipConfig(**base)


def random_vesicle_params(model, seed):
    """Random parameters drawn with NumPy (Dirichlet rows of T over each node's candidates)."""
    rng = np.random.default_rng(seed)
    K, n = model.n_types, model.n_nodes
    ncand = (model.substrate.candidates >= 0).sum(axis=1)
    T = np.zeros((K, n, model.substrate.candidates.shape[1]))
    for k in range(K):
        for i in range(n):
            if ncand[i]:
                T[k, i, :ncand[i]] = rng.dirichlet(np.ones(ncand[i]))
    return model.default_params().replace(
        T=T, u=rng.normal(0, 1, (K, 1)), w=rng.normal(0, 1.5, (K, 1)), a=rng.uniform(0, 0.1, n),
        delta=rng.uniform(0.02, 0.3, K))
