"""Benchmark: HMN road-map P0, a contextual bandit learned by the HMN rule (``nvppl.snn.hmn``).

Task. 4 contexts × 10 arms with Bernoulli rewards. Per seed the reward
probabilities ``p[c, a] ~ Uniform(0, 1)`` (Beta(1, 1)), the context of every
trial (uniform) and a uniform ``u_t`` per trial (reward ``r = [u_t < p[c_t, a_t]]``)
are drawn from ``numpy.random.default_rng(seed)``; every method of a seed sees the
same contexts and the same ``u_t`` (common random numbers). Horizon 2000 trials
(``--quick``: 200). Figure: the cumulative pseudo-regret
``Σ_t max_a p[c_t, a] − p[c_t, a_t]`` at the horizon, mean ± sd (ddof 1) over the
evaluation seeds 0 … n−1 (10 full, 5 quick), and its curve over trials (``--plot``).

HMN agent (``nvppl.snn.hmn``, all components on). Input ``x`` = one-hot context
(4 units), output units = arms (10), 40 synapses context → arm, weights start
at 0, no bias. Per trial: ``z = relu(Σ w x + ε)`` (eq. 1, ε ~ N(0, σ²)); the arm
is drawn from ``softmax(z / T_π)``; the output layer is winner-take-all, so the
postsynaptic activity entering the eligibility (eq. 2) and the attention context
``c_j`` (eq. 9) is the one-hot of the chosen arm. Neuromodulators (eq. 6):
``E_reward = r − r̄_c`` (reward prediction error against a running mean reward
of the context, rate 0.1) and ``E_novel = 1/√(1 + N_ca)`` (``N_ca`` earlier choices
of the pair), weights ``(1, w_novel)``; the global attention (eq. 10–11) weighs
them by their surprise ``|E_k|/RMS_k``. The update is eq. 3–5 with the phase
gate (per-synapse random phases, period 1/freq trials) and the probabilistic
gate. Two deliveries of G′:

- ``global``: ``M = G′``, the same at every synapse;
- ``vesicle``: a ``VesicleModel`` on a 14-node graph (node per context and per
  arm, edges context → arm, stay allowed), one vesicle type with content
  dimension 1. The active context and the chosen arm "spike" (the ``rate``
  covariate over a 1-trial window is 1 there, 0 elsewhere); emission
  ``λ = exp(−6 + (6 + ln 4)·rate)`` (4 vesicles per active node, 0.0025
  elsewhere), content ``c ~ N(G′, 0.001²)`` (``content_B`` maps the global
  covariate ``"G"`` = G′ to the content), migration from a context node: stay
  0.9, each arm 0.01; docking 0.8, budget 1 (a dock releases and depletes), decay
  0.5 per trial. The field (``nv.snn.VesicleField``, ``which="docked"``,
  neighbourhood pre+post) is ``m_e = Σ α(c)`` over the vesicles docked at the two
  ends of synapse e, ``α(c) = c / (1.91 λ p_dock)`` (``alpha_c``): the expected
  number of docks at the two ends of the active pair is 1.91·λ·p_dock, so
  ``E[m] ≈ G′`` there and the variants differ by where and how noisily G′ lands,
  not by its scale. The field is advanced in the trial loop with the field
  module's jit-able step (``nvppl.snn.field._field_step``; the public
  ``field_step`` converts its key with NumPy and cannot be traced).

Meta-learning (eq. 7, ``nvppl.snn.spsa``, online two-point SPSA). The trials
run in windows of ``W = 10``: a window with ``η + Δ``, then one with ``η − Δ``;
``L± = −(mean reward in the window)``; then ``ĝ = (L₊ − L₋)/(2Δ)`` and the
clipped update, and a new ``Δ``. The two windows are consecutive trials, so there
are no common random numbers here (the environment cannot be replayed);
every trial counts in the regret. ``ε₀ = 0.05 η₀``, ``ε_t = ε₀/√t``,
``α_meta = η₀²`` per coordinate, ``η ∈ [0, 4 η₀]``. A reward difference of 0.1
between the two windows (typical noise for 10 Bernoulli trials) then moves η by
about η₀ at the first step and more later (ε_t shrinks), so with 100 SPSA steps
in 2000 trials the rates mostly random-walk between the bounds: the window
losses are far too noisy for a 5 % perturbation to be resolved. The ablation
(``bench_hmn_ablation.py``) measures what this meta-learning does.

Hyper-parameters (:data:`DEFAULT_HMN`, :class:`AgentConfig`) were chosen by
``--tune`` on the tuning seeds 1000–1009 (never on the evaluation seeds), global
delivery, 2000 trials, in two stages: (1) each component alone on top of the
plain three-factor rule (η_global 0.3, T_π 0.3, σ 0.1) with its parameters from
a small grid (:data:`STAGE1`), keeping the best; (2) all components on with
those choices and a grid over η_global and T_π (:data:`STAGE2`). Differences
between grid rows were mostly within one standard error, so the choices are
partly noise. The vesicle variant uses the same values.

Baselines. UCB1 per context (each arm once, then ``argmax μ̂ + √(2 ln n_c / n_ca)``),
Thompson sampling per context with Beta(1, 1) priors, and ``plain``: the same
agent with every HMN component off but the activation noise (the three-factor
rule ``Δw = η_global · E_reward · ψ_fast``, η fixed).

Output. Per method the regret mean ± sd, the final η of the HMN variants, the
plot, and a last JSON line with ``regret_global``, ``regret_vesicle``,
``regret_plain``, ``regret_ucb1``, ``regret_thompson`` (means), their ``*_sd``,
``seeds``, the paired vesicle − global difference and more.

Measured (seeds 0–9, 2000 trials; cumulative regret mean ± sd): Thompson
78 ± 14, plain three-factor rule 120 ± 67, HMN global 316 ± 140, HMN vesicle
332 ± 172, UCB1 347 ± 35. **The vesicle-routed G′ does not beat the global
G′** (difference +16 ± 48, paired standard error), and the full HMN loses to
Thompson sampling (4× its regret) and to its own plain three-factor core
(2.6×); it is level with UCB1 only. ``bench_hmn_ablation.py`` shows which
components cost reward here (the phase gate and the online meta-learning most).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# The trial loops are tiny: LLVM's expensive passes cost more compile time than they save at run time.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                               " --xla_llvm_disable_expensive_passes=true").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_simulate import json_safe  # noqa: E402

import nvppl as nv  # noqa: E402
from nvppl.snn import field as fieldmod  # noqa: E402
from nvppl.snn import hmn, spsa  # noqa: E402

N_CONTEXTS, N_ARMS = 4, 10
F32 = jnp.float32
TUNING_SEEDS = tuple(range(1000, 1010))

#: The HMN rule of the agent (every component on); chosen with --tune on TUNING_SEEDS.
DEFAULT_HMN = hmn.HMNConfig(activation="relu", sigma=0.1, tau_fast=0.5, slow=True, tau_slow=2.0,
                            phase_gate=True, freq=0.25, phase0=0.0, prob_gate=True, beta_p=200.0, theta_p=0.02,
                            local_attention=True, beta_a=1.0, global_attention=True, beta_g=0.3,
                            attention_scale=True, tau_context=100.0, meta=True, delivery="global",
                            eta_local=0.003, eta_global=0.3)


# ------------------------------------------------------------------------------------------------ environment
class Env(NamedTuple):
    """One bandit of a seed: probabilities (C, A), the context and the reward uniform of every trial."""

    probs: jax.Array
    contexts: jax.Array
    u: jax.Array


def make_env(seed: int, horizon: int, n_contexts: int = N_CONTEXTS, n_arms: int = N_ARMS) -> Env:
    """The bandit of ``seed``: ``p ~ U(0, 1)``, uniform contexts and reward uniforms from
    ``numpy.random.default_rng(seed)`` (in that order)."""
    rng = np.random.default_rng(int(seed))
    probs = rng.random((n_contexts, n_arms))
    contexts = rng.integers(0, n_contexts, size=int(horizon))
    u = rng.random(int(horizon))
    return Env(jnp.asarray(probs, F32), jnp.asarray(contexts, jnp.int32), jnp.asarray(u, F32))


@functools.lru_cache(maxsize=8)
def _envs(seeds: tuple, horizon: int) -> Env:
    envs = [make_env(s, horizon) for s in seeds]
    return Env(*(jnp.stack(parts) for parts in zip(*envs)))


def envs_for(seeds, horizon: int) -> Env:
    """The bandits of ``seeds`` stacked (computed once per seeds and horizon)."""
    return _envs(tuple(int(s) for s in seeds), int(horizon))


def agent_key(seed, method: int):
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(1), seed), method)


def agent_keys(seeds, method: int):
    """The agent keys of ``seeds`` for ``method`` (0 for every HMN agent)."""
    return jnp.stack([agent_key(int(s), method) for s in seeds])


def regret_of(env: Env, c, a):
    return jnp.max(env.probs[c]) - env.probs[c, a]


# ------------------------------------------------------------------------------------------------ baselines
def run_ucb1(env: Env, key):
    """UCB1 per context; returns per-trial (regret, reward)."""
    C, A = env.probs.shape

    def trial(carry, xs):
        n, s = carry
        c, u = xs
        nc, sc = n[c], s[c]
        tot = jnp.maximum(nc.sum(), 1.0)
        idx = sc / jnp.maximum(nc, 1.0) + jnp.sqrt(2.0 * jnp.log(tot) / jnp.maximum(nc, 1.0))
        idx = jnp.where(nc == 0, jnp.inf, idx)
        a = jnp.argmax(idx)
        r = (u < env.probs[c, a]).astype(F32)
        return (n.at[c, a].add(1.0), s.at[c, a].add(r)), (regret_of(env, c, a), r)

    z = jnp.zeros((C, A), F32)
    return jax.lax.scan(trial, (z, z), (env.contexts, env.u))[1]


def run_thompson(env: Env, key):
    """Thompson sampling per context with Beta(1, 1) priors; returns per-trial (regret, reward)."""
    C, A = env.probs.shape

    def trial(carry, xs):
        n, s = carry
        c, u, k = xs
        theta = jax.random.beta(k, 1.0 + s[c], 1.0 + n[c] - s[c])
        a = jnp.argmax(theta)
        r = (u < env.probs[c, a]).astype(F32)
        return (n.at[c, a].add(1.0), s.at[c, a].add(r)), (regret_of(env, c, a), r)

    z = jnp.zeros((C, A), F32)
    keys = jax.random.split(key, env.u.shape[0])
    return jax.lax.scan(trial, (z, z), (env.contexts, env.u, keys))[1]


# ------------------------------------------------------------------------------------------------ HMN agent
@dataclass(frozen=True)
class AgentConfig:
    """The HMN bandit agent (see the module docstring)."""

    hmn: hmn.HMNConfig = DEFAULT_HMN
    temperature: float = 0.3       # T_π of the softmax policy on z
    w_novel: float = 0.03          # weight of E_novel (E_reward has weight 1)
    rbar_rate: float = 0.1         # rate of the running mean reward per context
    window: int = 10               # SPSA window W (trials)
    alpha_frac: float = 1.0        # α_meta = alpha_frac · η₀²
    eta_max_frac: float = 4.0      # η_max = eta_max_frac · η₀


def _synapses():
    return hmn.Synapses.dense(N_CONTEXTS, N_ARMS)   # e = c·10 + a


def vesicle_field(n_contexts: int = N_CONTEXTS, n_arms: int = N_ARMS, lam: float = 4.0, p_dock: float = 0.8,
                  p_stay: float = 0.9, delta: float = 0.5, capacity: int = 64):
    """The VesicleField of the vesicle variant and its connectivity network (nodes: contexts, then arms)."""
    syn = _synapses()
    pre, post = np.asarray(syn.pre), np.asarray(syn.post)
    net = nv.snn.LIFNetwork(n_contexts, n_arms, pre, post, np.zeros(len(pre)), plastic=np.ones(len(pre), bool))
    n = n_contexts + n_arms
    sub = nv.Substrate.from_edges(range(n), [(c, n_contexts + a) for c in range(n_contexts) for a in range(n_arms)])
    model = nv.VesicleModel(sub, n_types=1, content_dim=1, covariate_dim=2, emission_link="log", budget=1)
    cand = np.asarray(sub.candidates)
    T = np.zeros((1,) + cand.shape)
    for i in range(n):
        if i < n_contexts:
            T[0, i, 0] = p_stay
            T[0, i, 1:1 + n_arms] = (1.0 - p_stay) / n_arms
        else:
            T[0, i, 0] = 1.0
    u0 = -6.0
    params = model.default_params().replace(
        u=np.array([[u0, math.log(lam) - u0, 0.0]]), T=T,
        w=np.array([[math.log(p_dock / (1 - p_dock)), 0.0, 0.0]]), delta=np.array([delta]),
        content_mean=np.zeros((1, 1)), content_B=np.array([[[0.0], [1.0]]]), content_scale=np.full((1, 1), 1e-3))
    expected_docks = lam * p_dock * (p_stay + 1.0 + (1.0 - p_stay) / n_arms)
    fld = nv.snn.VesicleField(model, params, np.arange(n), alpha=[0.0], alpha_c=[[1.0 / expected_docks]],
                              covariates=("rate", "G"), window=1, neighbourhood="pre_post", which="docked",
                              capacity=capacity)
    return fld, net


class _Meta(NamedTuple):
    st: spsa.SPSAState
    delta: jax.Array
    sums: jax.Array   # (2,) reward sums of the + and − windows
    key: jax.Array


def run_hmn(acfg: AgentConfig, env: Env, key, field=None, switches: hmn.Switches | None = None):
    """One HMN agent on one bandit; returns per-trial (regret, reward, η used (2,)) and the field overflow.

    ``field`` is ``(VesicleField, net)`` for ``delivery="vesicle"``; ``switches`` (possibly traced)
    turn components off at run time (``meta=False``: η stays at η₀).
    """
    cfg = acfg.hmn
    syn = _synapses()
    C, A = env.probs.shape
    vesicle = cfg.delivery == "vesicle"
    if vesicle != (field is not None):
        raise ValueError("delivery='vesicle' needs field=(VesicleField, net), and only it")
    eta0 = np.array([cfg.eta_local, cfg.eta_global])
    k_init, k_meta, k_run = jax.random.split(key, 3)
    if cfg.meta:
        scfg = spsa.SPSAConfig(alpha_meta=tuple(acfg.alpha_frac * eta0 ** 2), eta_min=0.0,
                               eta_max=tuple(acfg.eta_max_frac * eta0))
        delta0, sst = spsa.perturbation(scfg, spsa.init(scfg, eta0), k_meta)
        meta = _Meta(sst, delta0, jnp.zeros(2, F32), k_meta)
    else:
        meta = jnp.zeros(())
    W = acfg.window
    wk = jnp.asarray([1.0, acfg.w_novel], F32)
    if vesicle:
        fld, net = field
        prep = fieldmod._prepare(fld, net)
        fst0 = fieldmod.field_init(fld, net)
    else:
        fst0 = jnp.zeros(())

    def trial(carry, xs):
        w, st, rbar, counts, Cg, meta, fst = carry
        t, c, u, eps, u_pol, u_gate, k = xs
        x = jax.nn.one_hot(c, C, dtype=F32)
        z = hmn.activate(cfg, syn, w, x, eps=eps, switches=switches)
        pi = jax.nn.softmax(z / acfg.temperature)
        a = jnp.minimum(jnp.sum(jnp.cumsum(pi) < u_pol), A - 1)        # a ~ softmax(z / T_π)
        st = hmn.eligibility_step(cfg, syn, st, x, jax.nn.one_hot(a, A, dtype=F32))
        r = (u < env.probs[c, a]).astype(F32)
        E = jnp.stack([r - rbar[c], 1.0 / jnp.sqrt(1.0 + counts[c, a])])
        rbar = rbar.at[c].add(acfg.rbar_rate * (r - rbar[c]))
        counts = counts.at[c, a].add(1.0)
        _, Gp, _ = hmn.modulator(cfg, wk, E, Cg, switches)
        Cg = hmn.context_step(cfg, Cg, E)
        if vesicle:
            spikes = jnp.zeros(C + A, bool).at[c].set(True).at[C + a].set(True)
            fst = fieldmod.record_spikes(fld, prep, fst, spikes)
            fst, M, _ = fieldmod._field_step(fld, prep, fst, Gp[None], k, syn.n_synapses)
        else:
            M = Gp
        if cfg.meta:
            minus = (t // W) % 2 == 1
            eta = meta.st.eta + jnp.where(minus, -1.0, 1.0) * meta.delta
            if switches is not None:
                eta = jnp.where(jnp.asarray(switches.meta, bool), eta, jnp.asarray(eta0, F32))
        else:
            eta = jnp.asarray(eta0, F32)
        dw, st, _ = hmn.update(cfg, syn, st, M, eta=eta, uniforms=u_gate if cfg.prob_gate else None,
                               switches=switches)
        w = w + dw
        if cfg.meta:
            sums = meta.sums.at[minus.astype(jnp.int32)].add(r)
            end = (t % (2 * W)) == 2 * W - 1
            new_st, _ = spsa.apply(scfg, meta.st, meta.delta, -sums[0] / W, -sums[1] / W)
            new_delta, new_st = spsa.perturbation(scfg, new_st, jax.random.fold_in(meta.key, t))
            meta = _Meta(jax.tree.map(lambda a_, b_: jnp.where(end, a_, b_), new_st, meta.st),
                         jnp.where(end, new_delta, meta.delta), jnp.where(end, 0.0, sums), meta.key)
        return (w, st, rbar, counts, Cg, meta, fst), (regret_of(env, c, a), r, eta)

    T = env.u.shape[0]
    k_eps, k_pol, k_gate, k_fld = jax.random.split(k_run, 4)
    draws = (jax.random.normal(k_eps, (T, A), F32), jax.random.uniform(k_pol, (T,), F32),
             jax.random.uniform(k_gate, (T, syn.n_synapses), F32),
             jax.random.split(k_fld, T) if vesicle else jnp.zeros(T))
    carry = (jnp.zeros(syn.n_synapses, F32), hmn.init(cfg, syn, key=k_init), jnp.full(C, 0.5, F32),
             jnp.zeros((C, A), F32), hmn.context_init(2), meta, fst0)
    carry, out = jax.lax.scan(trial, carry, (jnp.arange(T), env.contexts, env.u) + draws)
    overflow = carry[-1].pop.overflow_step[0] if vesicle else jnp.asarray(-1)
    return out, overflow


# ------------------------------------------------------------------------------------------------ running
METHODS = ("global", "vesicle", "plain", "ucb1", "thompson")


def run_method(method: str, seeds, horizon: int, acfg: AgentConfig | None = None, switches=None):
    """Per-seed curves of ``method``: a dict with ``regret`` and ``reward`` (seeds, T) and, for the HMN
    agents, ``eta`` (seeds, T, 2).

    ``"global"`` and ``"vesicle"``: the HMN agent ``acfg`` (default :class:`AgentConfig`) with that delivery;
    ``"plain"``: the same agent with every HMN component but the activation noise off (the three-factor
    rule ``Δw = η_global·E_reward·ψ_fast``). Every HMN agent of a seed uses the same key. ``switches``, a
    list of :class:`nvppl.snn.hmn.Switches`, runs one variant per entry in the same compiled program
    (arrays get a leading variant axis).
    """
    seeds = [int(x) for x in seeds]
    envs = envs_for(seeds, horizon)
    if method in ("ucb1", "thompson"):
        keys = agent_keys(seeds, METHODS.index(method))
        fn = run_ucb1 if method == "ucb1" else run_thompson
        reg, rew = jax.jit(jax.vmap(fn))(envs, keys)
        return {"regret": np.asarray(reg, np.float64), "reward": np.asarray(rew, np.float64)}
    if method not in ("global", "vesicle", "plain"):
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    keys = agent_keys(seeds, 0)
    acfg = acfg or AgentConfig()
    if method == "plain":
        acfg = dataclasses.replace(acfg, hmn=dataclasses.replace(acfg.hmn, **PLAIN))
    field = None
    if method == "vesicle" or acfg.hmn.delivery == "vesicle":
        acfg = dataclasses.replace(acfg, hmn=dataclasses.replace(acfg.hmn, delivery="vesicle"))
        field = vesicle_field()
    if switches is None:
        fn = jax.vmap(lambda e, k: run_hmn(acfg, e, k, field))
        (reg, rew, eta), overflow = jax.jit(fn)(envs, keys)
    else:
        sw = hmn.Switches(*(jnp.asarray([bool(getattr(v, f)) for v in switches]) for f in hmn.Switches._fields))
        fn = jax.vmap(lambda s: jax.vmap(lambda e, k: run_hmn(acfg, e, k, field, s))(envs, keys))
        (reg, rew, eta), overflow = jax.jit(fn)(sw)
    if field is not None:
        over = np.asarray(overflow)
        bad = np.flatnonzero(over >= 0)
        if bad.size:
            fieldmod.check_overflow(field[0], [int(over[bad[0]]), 0])
    return {"regret": np.asarray(reg, np.float64), "reward": np.asarray(rew, np.float64),
            "eta": np.asarray(eta, np.float64)}


def summary(regret_curves):
    total = regret_curves.sum(axis=1)
    return float(total.mean()), float(total.std(ddof=1)) if len(total) > 1 else float("nan")


PLAIN = dict(slow=False, phase_gate=False, prob_gate=False, local_attention=False, global_attention=False,
             meta=False, eta_local=0.0)
#: Stage 1 of --tune: each component alone on top of the plain three-factor rule (eta_global 0.3, T_π 0.3).
STAGE1 = {
    "slow": [dict(slow=True, tau_slow=v) for v in (2.0, 5.0, 10.0)],
    "phase_gate": [dict(phase_gate=True, freq=v, eta_global=0.9) for v in (0.02, 0.1, 0.25)],
    "prob_gate": [dict(prob_gate=True, beta_p=b, theta_p=th) for b, th in ((50.0, 0.02), (200.0, 0.02), (20.0, 0.05))],
    "local_attention": [dict(local_attention=True, beta_a=v) for v in (1.0, 3.0, 10.0)],
    "global_attention": [dict(global_attention=True, beta_g=bg, w_novel=wn) for bg in (0.3, 1.0) for wn in (0.0, 0.03)],
    "meta": [dict(meta=True, eta_local=0.003, alpha_frac=v) for v in (0.05, 0.2, 1.0)],
}
#: Stage 2 of --tune: every component on with its stage-1 choice, then this grid.
STAGE2 = [dict(eta_global=eg, temperature=tp) for eg in (0.3, 1.0, 3.0) for tp in (0.1, 0.3)]


def agent_with(**kw) -> AgentConfig:
    """An AgentConfig from keyword values of HMNConfig and AgentConfig fields (the rest at their defaults)."""
    names = {f.name for f in dataclasses.fields(hmn.HMNConfig)}
    return AgentConfig(hmn=dataclasses.replace(DEFAULT_HMN, **{k: v for k, v in kw.items() if k in names}),
                       **{k: v for k, v in kw.items() if k not in names})


def tune(horizon: int):
    """The two-stage grid that chose the defaults, on TUNING_SEEDS (global delivery, the run's horizon).

    Prints every row and the choice; the defaults above hold its choice at 2000 trials (it does not change
    them).
    """
    def score(kw, label):
        m, s = summary(run_method("global", TUNING_SEEDS, horizon, agent_with(**kw))["regret"])
        print(f"tune: {label:<70} regret {m:7.1f} ± {s:5.1f}", flush=True)
        return m

    base = dict(PLAIN, eta_global=0.3, temperature=0.3, sigma=0.1, w_novel=0.0)
    score(base, "plain three-factor rule")
    chosen = {}
    for comp, options in STAGE1.items():
        results = [(score({**base, **o}, f"+ {o}"), i) for i, o in enumerate(options)]
        best = options[min(results)[1]]
        chosen.update({k: v for k, v in best.items() if k != "eta_global"})
    print(f"tune: stage 1 choices {chosen}")
    results = [(score({**base, **chosen, **o}, f"all on, {o}"), i) for i, o in enumerate(STAGE2)]
    final = {**chosen, **STAGE2[min(results)[1]]}
    print(f"tune: chosen {final}")
    return final


def plot(curves: dict, path: str, horizon: int, n_seeds: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    t = np.arange(1, horizon + 1)
    for name, reg in curves.items():
        cum = np.cumsum(reg, axis=1)
        m, s = cum.mean(0), cum.std(0, ddof=1)
        ax.plot(t, m, label=name)
        ax.fill_between(t, m - s, m + s, alpha=0.2)
    ax.set_xlabel("trial")
    ax.set_ylabel("cumulative regret")
    ax.set_title(f"contextual bandit 4×10, mean ± sd over {n_seeds} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 trials, 5 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="evaluation seeds 0..n-1 (default 10, quick 5)")
    parser.add_argument("--horizon", type=int, default=None, help="trials (default 2000, quick 200)")
    parser.add_argument("--plot", default="bench_bandit_p0.png", help="regret-vs-trial figure")
    parser.add_argument("--tune", action="store_true", help="rerun the hyper-parameter grid on the tuning seeds")
    args = parser.parse_args(argv)
    horizon = args.horizon or (200 if args.quick else 2000)
    n_seeds = args.seeds or (5 if args.quick else 10)
    if n_seeds < 2:
        parser.error("--seeds must be at least 2 (a standard deviation is reported)")
    if args.tune:
        tune(horizon)
    seeds = list(range(n_seeds))
    print(f"contextual bandit: {N_CONTEXTS} contexts × {N_ARMS} arms, horizon {horizon}, seeds {seeds}")
    curves, figures, etas, times = {}, {}, {}, {}
    for method in METHODS:
        t0 = time.perf_counter()
        out = run_method(method, seeds, horizon)
        times[method] = time.perf_counter() - t0
        curves[method] = out["regret"]
        figures[method] = summary(out["regret"])
        line = f"{method:>9}: cumulative regret {figures[method][0]:7.1f} ± {figures[method][1]:5.1f}"
        line += f"   mean reward {out['reward'].mean():.3f}   ({times[method]:.1f} s incl. compile)"
        if "eta" in out:
            etas[method] = out["eta"][:, -1].mean(0)
            line += f"   final η (mean over seeds) local {etas[method][0]:.4f} global {etas[method][1]:.3f}"
        print(line, flush=True)
    plot(curves, args.plot, horizon, n_seeds)
    g, v = figures["global"], figures["vesicle"]
    diff = curves["vesicle"].sum(1) - curves["global"].sum(1)
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    verdict = "beats" if diff.mean() + 2 * se < 0 else ("is worse than" if diff.mean() - 2 * se > 0 else
                                                          "does not differ (within 2 paired SE) from")
    print(f"vesicle-routed G′ {verdict} global G′: regret difference vesicle − global {diff.mean():+.1f} "
          f"± {se:.1f} (paired SE)")
    best_base = min(figures["ucb1"][0], figures["thompson"][0])
    print(f"HMN (global) regret / best baseline regret: {g[0] / best_base:.2f}; "
          f"UCB1 {figures['ucb1'][0]:.1f}, Thompson {figures['thompson'][0]:.1f}, plain three-factor rule "
          f"{figures['plain'][0]:.1f}")
    print(f"plot: {args.plot}")
    result = {"horizon": horizon, "seeds": seeds, "n_contexts": N_CONTEXTS, "n_arms": N_ARMS,
              "tuning_seeds": list(TUNING_SEEDS)}
    for name in METHODS:
        key = "regret_" + name
        result[key], result[key + "_sd"] = figures[name]
        result["seconds_" + name] = times[name]
    result["vesicle_minus_global"] = float(diff.mean())
    result["vesicle_minus_global_se"] = float(se)
    result["final_eta_global_variant"] = [float(x) for x in etas["global"]]
    result["final_eta_vesicle_variant"] = [float(x) for x in etas["vesicle"]]
    print(json.dumps(json_safe(result)))


if __name__ == "__main__":
    main()
