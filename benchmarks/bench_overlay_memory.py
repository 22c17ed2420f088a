"""Benchmark: recall across training steps through the overlay's memory release (nv.overlay, DESIGN §7).

The overlay's time is the training step, and its ``memory`` operator keeps a
vector per node across steps (``M ← ρ_M M + W_write Σ c``, read into the node's
pre-activation as ``h̃ = h + R M``). This benchmark poses a task that only such a
memory can solve: recall, at a query step, of a value shown ``k`` training steps
earlier.

Task. Training runs in episodes of ``k + 1`` steps, one minibatch of ``B = 16``
rows per step; every row of a step's batch is the same kind of step (the memory
is per node, shared by the batch). Inputs have ``V + 3`` channels (``V = 4``):
a one-hot value part and three cue flags (show, distractor, query), plus
Normal(0, 0.1²) noise on every channel.

- step 0, *show*: a value ``v ∈ {0..V−1}`` (uniform, new each episode) is shown —
  ``x = onehot(v) ⊕ (1, 0, 0)``; no target (the loss is 0);
- steps 1 … k−1, *distractors*: ``x = 0 ⊕ (0, 1, 0)``; no target;
- step k, *query*: ``x = 0 ⊕ (0, 0, 1)`` — no value information — target ``v``.

Only the query step has a loss (cross-entropy, masked elsewhere). There is no
target at the show step on purpose: a show-step gradient towards ``v`` would let
plain optax training store ``v`` in the weights (the update moves the output
bias towards ``v``, and Adam's momentum keeps moving it through the distractor
steps), a memory that is not the overlay's; ``--show-target`` puts that target
back (then the table shows how much the weight updates alone recall).

Vesicles. The overlay (``Overlay.from_network`` on ``eqx.nn.MLP(V+3, V, 32,
depth=1)``, two sites and two nodes ``L0 → L1`` with stay, one vesicle type,
``content_dim = V``, explicit mode, ``emission_link="log"``, release budget 1)
has five user covariates, each a scalar per step broadcast to both nodes:
``v_j = mean(x[:, j])`` for ``j < V`` and ``show = mean(x[:, V])``. Covariates are
standardised by running statistics pooled over nodes and steps, so at the
stationary rates a column that is 1 in a fraction ``q`` of the steps and 0 else
reads ``z₁ = √((1−q)/q)`` or ``z₀ = −√(q/(1−q))``. The vesicle parameters are set
by hand (the explicit mode samples and is not trained by gradient) from these
values: emission ``λ = exp(u₀ + u_show z_show)`` ≈ 20 per node at show steps and
0.01 at the other steps (the input noise moves the show rate by about ±20 %,
and it is lower over the first ~10 episodes, while the running statistics
settle); docking logit 6 (probability 0.9975) so a vesicle
docks in the step it is emitted, and with budget 1 it is spent by that dock;
decay 0.9 for the rare vesicle that does not dock; content ``c ~ Normal(F·B,
0.05²)`` with ``B[v_j, j] = 1/z₁`` (``q = 1/(V(k+1))``), so a show-step vesicle
carries ``c ≈ onehot(v)``. The docks of the show step enter the memory, which is
read from the next step on; the query's forward pass reads ``ρ_M^{k−1}`` of them
(``memory_retain = ρ_M = 0.5`` by default, ``memory_dim = 8``). The release maps
``W_write`` and ``R`` and the network are trained by the query loss (Adam 1e-2
each), exactly through the memory.

Methods, on the same data and network initialisation per seed:

- ``memory``: the overlay with ``release=("memory",)``;
- ``no_release``: the same overlay and vesicles with ``release=()`` — vesicles
  are emitted and dock, but act on nothing;
- ``plain``: the network trained with optax alone (no overlay);
- chance: accuracy ``1/V``, cross-entropy ``ln V``.

Measured per seed, over the query steps of the last 30 % of episodes: recall
accuracy (fraction of the batch rows whose argmax is ``v``) and cross-entropy.
For the overlays both come from ``res.modulated_net`` evaluated on the query
batch right before the query step — training runs one ``train(..., resume=)``
call per episode, each stopping before its query — and the cross-entropy is
checked against the training loss that the query step itself reports
(``metrics["loss"]``, the loss before that step's update; reported as
``ce_check_max_abs_diff``). The plain network is trained by a compiled
``lax.scan`` that records each step's logits before the update. The table gives
mean ± sd over seeds; "beats" means every seed's paired difference is positive
and the mean difference exceeds two standard errors (one-sided paired t-test
p-values are reported as well). Training in one ``train`` call per episode is the
same run as in one call: the query losses of the first 20 episodes of seed 0,
trained in a single call, are compared with those of the segmented run
(``segmented_vs_single_call_max_abs_diff``; the step's key is folded from
``key`` and the step number kept in the state). A sweep over the delay ``k``
(``--delays``, memory release and the plain network only; the overlay without
release trains exactly like the plain network, which the table checks at the
main ``k``) shows the horizon that ``ρ_M`` and the training budget set.

What to expect (full run, 5 seeds, 200 episodes): the memory release recalls
every query once trained (accuracy 1.00, cross-entropy near 0, learnt within
about 25 episodes) for ``k = 1 … 8``; both baselines stay at chance. At
``k = 16`` with ``ρ_M = 0.5`` the show docks reach the query scaled by
``0.5^15 ≈ 3·10⁻⁵`` and recall stays at chance within 200 episodes, while
``--retain 0.8`` recalls at ``k = 16`` as well: the horizon is that of
``memory_retain``. With ``--show-target`` the baselines rise only slightly
above chance (about +0.02 at ``k = 4``).

Figure (``--out``): query accuracy and cross-entropy over episodes (10-episode
moving average, mean ± sd over seeds) for the three methods against chance,
and late accuracy against the delay ``k``.

The last line printed is one JSON object with all figures. ``--quick`` runs 2
seeds of 40 episodes at ``k = 4`` without the delay sweep (used by the tests),
most of its time spent compiling.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nvppl as nv
from bench_simulate import json_safe

V = 4            # values to recall
BATCH = 16       # rows per training step
HIDDEN = 32
NOISE = 0.1      # input noise sd
LAM_SHOW = 20.0  # vesicles per node at a show step
LAM_OFF = 0.01   # ... at any other step
DOCK_LOGIT = 6.0
LATE = 0.3       # fraction of episodes (the last ones) that are scored
SMOOTH = 10      # moving average of the curves, episodes

# one object each, so that the overlay's compiled step is reused across seeds and delays
OPT = optax.adam(1e-2)
RELEASE_OPT = optax.adam(1e-2)


# ------------------------------------------------------------------ task
def loss_fn(net, x, y):
    """Cross-entropy of the rows with a target (``y >= 0``); 0 for a step without one."""
    logits = jax.vmap(net)(x)
    m = (y >= 0).astype(logits.dtype)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
    return jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0)


@eqx.filter_jit
def evaluate(net, x, y):
    """Accuracy and cross-entropy of ``net`` on one query batch."""
    logits = jax.vmap(net)(x)
    return jnp.mean(jnp.argmax(logits, -1) == y), loss_fn(net, x, y)


def make_episodes(n_episodes: int, k: int, rng, show_target: bool):
    """``(X (E, k+1, B, V+3) float32, Y (E, k+1, B) int32, values (E,))``."""
    X = (NOISE * rng.standard_normal((n_episodes, k + 1, BATCH, V + 3))).astype(np.float32)
    Y = np.full((n_episodes, k + 1, BATCH), -1, np.int32)
    values = rng.integers(0, V, n_episodes)
    e = np.arange(n_episodes)
    X[e, 0, :, values] += 1.0   # the value, at the show step
    X[:, 0, :, V] += 1.0        # show flag
    X[:, 1:k, :, V + 1] += 1.0  # distractor flag
    X[:, k, :, V + 2] += 1.0    # query flag
    Y[:, k] = values[:, None]
    if show_target:
        Y[:, 0] = values[:, None]
    return X, Y, values


def make_net(seed: int):
    return eqx.nn.MLP(V + 3, V, HIDDEN, depth=1, key=jax.random.key(seed), dtype=jnp.float32)


def make_overlay(release, retain: float):
    covs = {f"v{j}": (lambda x, y, loss, j=j: jnp.mean(x[:, j])) for j in range(V)}
    covs["show"] = lambda x, y, loss: jnp.mean(x[:, V])
    return nv.overlay.Overlay.from_network(make_net(0), n_types=1, content_dim=V, release=release,
                                           mode="explicit", capacity=256, memory_dim=8, memory_retain=retain,
                                           covariates=covs, emission_link="log", budget=1.0)


def vesicle_params(ov, k: int):
    """Hand-set vesicle parameters for delay ``k`` (see the module docstring)."""
    names = list(ov.covariate_names)
    P = len(names)

    def z(q):  # standardised value of a 0/1 column that is 1 in a fraction q of the steps
        return math.sqrt((1 - q) / q), -math.sqrt(q / (1 - q))

    z1, z0 = z(1.0 / (k + 1))
    u_show = math.log(LAM_SHOW / LAM_OFF) / (z1 - z0)
    u = np.zeros((1, 1 + P))
    u[0, 0] = math.log(LAM_SHOW) - u_show * z1
    u[0, 1 + names.index("show")] = u_show
    w = np.zeros((1, 1 + P))
    w[0, 0] = DOCK_LOGIT
    zv1, _ = z(1.0 / (V * (k + 1)))
    B = np.zeros((1, P, V))
    for j in range(V):
        B[0, names.index(f"v{j}"), j] = 1.0 / zv1
    return ov.model.default_params().replace(u=u, w=w, delta=np.array([0.9]), content_B=B,
                                             content_mean=np.zeros((1, V)), content_scale=np.full((1, V), 0.05))


# ------------------------------------------------------------------ runs
def single_call_check(ov, seed: int, k: int, X, Y, query_loss, n: int = 20) -> float:
    """Max |difference| of the query losses of the first ``n`` episodes trained in one ``train`` call
    and in the one-call-per-episode run (``query_loss``)."""
    n = min(n, X.shape[0])
    flat = [(jnp.asarray(X[e, s]), jnp.asarray(Y[e, s])) for e in range(n) for s in range(k + 1)]
    res = nv.overlay.train(ov, make_net(seed), OPT, loss_fn, flat, n_steps=len(flat), key=seed,
                           params=vesicle_params(ov, k), release_optimizer=RELEASE_OPT, progress=False)
    return float(np.max(np.abs(res.metrics["loss"].reshape(n, k + 1)[:, k] - query_loss[:n])))


def run_overlay(ov, seed: int, k: int, X, Y) -> dict:
    """Train episode by episode; score each query with ``modulated_net`` before its step."""
    E = X.shape[0]
    params = vesicle_params(ov, k)
    net = make_net(seed)
    batches = [[(jnp.asarray(X[e, s]), jnp.asarray(Y[e, s])) for s in range(k + 1)] for e in range(E)]
    acc, ce, loss_at_query, docks = np.zeros(E), np.zeros(E), np.zeros(E), []
    res = None
    for e in range(E):
        seg = ([batches[e - 1][k]] if e else []) + batches[e][:k]  # last query, then this episode up to its query
        res = nv.overlay.train(ov, net, OPT, loss_fn, seg, n_steps=len(seg), key=seed,
                               params=params if res is None else None, release_optimizer=RELEASE_OPT,
                               progress=False, resume=res)
        if e:
            loss_at_query[e - 1] = res.metrics["loss"][0]
        docks.append(res.metrics["docks"].sum(1)[-k:])
        a, c = evaluate(res.modulated_net, *batches[e][k])
        acc[e], ce[e] = float(a), float(c)
    res = nv.overlay.train(ov, net, OPT, loss_fn, [batches[E - 1][k]], n_steps=1, key=seed,
                           release_optimizer=RELEASE_OPT, progress=False, resume=res)
    loss_at_query[E - 1] = res.metrics["loss"][0]
    docks = np.stack(docks)  # (E, k): show step, distractors
    return {"acc": acc, "ce": ce, "ce_check": float(np.max(np.abs(ce - loss_at_query))), "query_loss": loss_at_query,
            "docks_show": float(docks[:, 0].mean()), "docks_other": float(docks[:, 1:].sum(1).mean())}


@eqx.filter_jit
def _plain_scan(net, Xs, Ys):
    params, static = eqx.partition(net, eqx.is_inexact_array)

    def body(carry, xy):
        p, s = carry
        x, y = xy

        def f(p):
            n = eqx.combine(p, static)
            logits = jax.vmap(n)(x)
            return loss_fn(n, x, y), logits

        (loss, logits), g = jax.value_and_grad(f, has_aux=True)(p)
        upd, s = OPT.update(g, s, p)
        return (eqx.apply_updates(p, upd), s), (loss, logits)

    _, (loss, logits) = jax.lax.scan(body, (params, OPT.init(params)), (Xs, Ys))
    return loss, logits


def run_plain(seed: int, k: int, X, Y) -> dict:
    E = X.shape[0]
    Xs, Ys = jnp.asarray(X.reshape(E * (k + 1), BATCH, -1)), jnp.asarray(Y.reshape(E * (k + 1), BATCH))
    loss, logits = _plain_scan(make_net(seed), Xs, Ys)
    logits = np.asarray(logits).reshape(E, k + 1, BATCH, V)[:, k]
    y = Y[:, k]
    acc = np.mean(np.argmax(logits, -1) == y, axis=1)
    return {"acc": acc, "ce": np.asarray(loss).reshape(E, k + 1)[:, k]}


# ------------------------------------------------------------------ statistics
def mean_sd(x) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def beats(a, b) -> dict:
    """Paired comparison over seeds of ``a`` against ``b`` (arrays, or a number)."""
    from scipy import stats

    a = np.asarray(a, np.float64)
    d = a - np.broadcast_to(np.asarray(b, np.float64), a.shape)
    m, sd = mean_sd(d)
    se = sd / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    p = float("nan")
    if len(d) > 1 and sd > 0:
        p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    ok = bool(np.all(d > 0) and (sd == 0 or (np.isfinite(se) and m > 2 * se)))
    return {"mean_diff": m, "sd_diff": sd, "p_one_sided": p, "beats": ok}


def late(x, E):
    return float(np.mean(x[E - max(1, int(round(LATE * E))):]))


def smooth(x, w=SMOOTH):
    w = max(1, min(w, len(x)))
    c = np.cumsum(np.insert(np.asarray(x, np.float64), 0, 0.0))
    out = np.empty(len(x))
    for i in range(len(x)):
        lo = max(0, i + 1 - w)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


# ------------------------------------------------------------------ figure
def figure(path, curves, sweep, k, E, n_seeds, retain):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"memory": "C0", "no_release": "C1", "plain": "C2"}
    labels = {"memory": 'overlay, release=("memory",)', "no_release": "overlay, release=() (= plain)",
              "plain": "plain network (optax)"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ep = np.arange(1, E + 1)
    for ax, key, chance, ylab in ((axes[0], "acc", 1.0 / V, "query accuracy"),
                                  (axes[1], "ce", math.log(V), "query cross-entropy")):
        for m, runs in curves.items():
            s = np.stack([smooth(r[key]) for r in runs])
            mu, sd = s.mean(0), s.std(0, ddof=1) if len(s) > 1 else np.zeros(E)
            ax.plot(ep, mu, color=colors[m], label=labels[m], ls="--" if m == "plain" else "-")
            ax.fill_between(ep, mu - sd, mu + sd, color=colors[m], alpha=0.2)
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance")
        ax.axvspan(E - max(1, int(round(LATE * E))) + 0.5, E, color="0.9", zorder=0)
        ax.set_xlabel("episode")
        ax.set_ylabel(ylab)
        if key == "acc":
            ax.set_ylim(-0.02, 1.05)
        ax.set_title(f"k = {k}; {SMOOTH}-episode average, mean ± sd over {n_seeds} seeds", fontsize=9)
    axes[0].legend(fontsize=8)
    ax = axes[2]
    ks = sorted(sweep)
    for m in ("memory", "plain"):
        mu = [sweep[kk][m]["acc_mean"] for kk in ks]
        sd = [sweep[kk][m]["acc_sd"] or 0.0 for kk in ks]
        ax.errorbar(ks, mu, yerr=sd, marker="o", capsize=3, color=colors[m], label=labels[m],
                    ls="--" if m == "plain" else "-")
    if k in sweep and "no_release" in sweep[k]:
        ax.errorbar([k], [sweep[k]["no_release"]["acc_mean"]], yerr=[sweep[k]["no_release"]["acc_sd"] or 0.0],
                    marker="s", capsize=3, color=colors["no_release"], ls="none", label=labels["no_release"])
    ax.axhline(1.0 / V, color="k", ls="--", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(kk) for kk in ks])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("delay k (training steps from show to query)")
    ax.set_ylabel(f"query accuracy, last {int(LATE * 100)}% of episodes")
    ax.set_title(f"memory_retain = {retain:g}; mean ± sd over seeds", fontsize=9)
    ax.legend(fontsize=8, loc="center right")
    fig.suptitle("Recall of a value shown k training steps earlier (nvppl overlay, memory release)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run (2 seeds, 40 episodes, no sweep)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds (default 5)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per run (default 200)")
    parser.add_argument("--k", type=int, default=4, help="delay from show to query, in training steps (default 4)")
    parser.add_argument("--delays", type=str, default="1,2,4,8,16",
                        help="comma-separated delays of the sweep (memory release and plain network); '' for none")
    parser.add_argument("--retain", type=float, default=0.5, help="memory_retain of the overlay (default 0.5)")
    parser.add_argument("--show-target", action="store_true",
                        help="also train on the target v at the show step (lets weight updates carry v)")
    parser.add_argument("--out", type=str, default="bench_overlay_memory.png", help="figure path")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.episodes, args.delays = 2, 40, ""
    if args.k < 1 or args.seeds < 1 or args.episodes < 2:
        parser.error("need k >= 1, seeds >= 1, episodes >= 2")
    delays = sorted({int(s) for s in args.delays.split(",") if s.strip()} | {args.k})
    k, E, seeds = args.k, args.episodes, list(range(args.seeds))
    t_start = time.perf_counter()

    ov_mem = make_overlay(("memory",), args.retain)
    ov_none = make_overlay((), args.retain)
    print(f"task: V={V} values, delay k={k} (episodes of k+1 steps), {E} episodes, batch {BATCH}, {len(seeds)} "
          f"seeds; target at the show step: {args.show_target}; scored: the last {int(LATE * 100)}% of episodes")
    print(f"overlay: {ov_mem}; covariates {ov_mem.covariate_names}; memory_retain {args.retain}, memory_dim "
          f"{ov_mem.memory_dim}; emission ~{LAM_SHOW:g}/node at show steps, {LAM_OFF:g} otherwise")

    runs = {kk: {"memory": [], "no_release": [], "plain": []} for kk in delays}
    timing = {"memory": 0.0, "no_release": 0.0, "plain": 0.0}
    first_call = {}
    for kk in delays:
        for seed in seeds:
            X, Y, _ = make_episodes(E, kk, np.random.default_rng([seed, kk]), args.show_target)
            if kk == k and seed == seeds[0]:
                X0, Y0 = X, Y
            methods = [("memory", ov_mem), ("plain", None)] + ([("no_release", ov_none)] if kk == k else [])
            for m, ov in methods:
                t = time.perf_counter()
                r = run_plain(seed, kk, X, Y) if ov is None else run_overlay(ov, seed, kk, X, Y)
                dt = time.perf_counter() - t
                timing[m] += dt
                first_call.setdefault(m, dt)
                runs[kk][m].append(r)
        print(f"  k={kk}: done at {time.perf_counter() - t_start:.0f} s")

    def summary(rs):
        acc = [late(r["acc"], E) for r in rs]
        ce = [late(r["ce"], E) for r in rs]
        (am, asd), (cm, csd) = mean_sd(acc), mean_sd(ce)
        return {"acc_mean": am, "acc_sd": asd, "ce_mean": cm, "ce_sd": csd, "acc_per_seed": acc,
                "ce_per_seed": ce}

    sweep = {kk: {m: summary(rs) for m, rs in runs[kk].items() if rs} for kk in delays}
    main_s = sweep[k]
    chance_acc, chance_ce = 1.0 / V, math.log(V)
    print()
    print(f"query recall at k={k}, last {int(LATE * 100)}% of {E} episodes, mean ± sd over {len(seeds)} seeds")
    print(f"{'method':<34} {'accuracy':>17} {'cross-entropy':>17} {'chance acc / CE':>17}")
    for m, label in (("memory", 'overlay, release=("memory",)'), ("no_release", "overlay, release=()"),
                     ("plain", "plain network (optax only)")):
        s = main_s[m]
        print(f"{label:<34} {s['acc_mean']:8.3f} ± {s['acc_sd']:<6.3f} {s['ce_mean']:8.3f} ± {s['ce_sd']:<6.3f} "
              f"{chance_acc:8.3f} / {chance_ce:.3f}")
    acc = {m: np.array(main_s[m]["acc_per_seed"]) for m in main_s}
    ce = {m: np.array(main_s[m]["ce_per_seed"]) for m in main_s}
    comp = {
        "memory_vs_no_release_acc": beats(acc["memory"], acc["no_release"]),
        "memory_vs_plain_acc": beats(acc["memory"], acc["plain"]),
        "memory_vs_chance_acc": beats(acc["memory"], chance_acc),
        "no_release_vs_chance_acc": beats(acc["no_release"], chance_acc),
        "plain_vs_chance_acc": beats(acc["plain"], chance_acc),
        "memory_vs_no_release_ce": beats(-ce["memory"], -ce["no_release"]),  # lower cross-entropy is better
        "memory_vs_chance_ce": beats(-ce["memory"], -chance_ce),
    }
    yes = lambda b: "YES" if b else "NO"  # noqa: E731

    def pv(c):
        return f"p = {c['p_one_sided']:.2g}" if np.isfinite(c["p_one_sided"]) else "p undefined: no spread over seeds"

    c = comp["memory_vs_no_release_acc"]
    print(f"memory release beats no release (accuracy): {yes(c['beats'])} (paired difference {c['mean_diff']:+.3f} "
          f"± {c['sd_diff']:.3f}, one-sided {pv(c)})")
    c = comp["memory_vs_chance_acc"]
    print(f"memory release beats chance (accuracy): {yes(c['beats'])} ({c['mean_diff']:+.3f} ± {c['sd_diff']:.3f} "
          f"above {chance_acc:.2f}, {pv(c)}); cross-entropy below ln V: "
          f"{yes(comp['memory_vs_chance_ce']['beats'])}")
    for m in ("no_release", "plain"):
        c = comp[f"{m}_vs_chance_acc"]
        print(f"{m.replace('_', ' ')} beats chance (accuracy): {yes(c['beats'])} ({c['mean_diff']:+.3f} ± "
              f"{c['sd_diff']:.3f}, {pv(c)})")
    seg_check = single_call_check(ov_mem, seeds[0], k, X0, Y0, runs[k]["memory"][0]["query_loss"])
    check = max(r["ce_check"] for m in ("memory", "no_release") for r in runs[k][m])
    docks_show = float(np.mean([r["docks_show"] for r in runs[k]["memory"]]))
    docks_other = float(np.mean([r["docks_other"] for r in runs[k]["memory"]]))
    same = max(float(np.max(np.abs(a["ce"] - b["ce"]))) for a, b in zip(runs[k]["no_release"], runs[k]["plain"]))
    print(f"no release vs plain network: per-episode query cross-entropy differs by at most {same:.1e} (the "
          "vesicles act on nothing, and training is otherwise the same)")
    print(f"vesicles: {docks_show:.1f} docks per show step, {docks_other:.3f} per episode at the other steps")
    print(f"checks: query cross-entropy of modulated_net vs the query step's own training loss, max |diff| "
          f"{check:.2e}; query losses of one train call per episode vs a single call (seed {seeds[0]}, first 20 "
          f"episodes), max |diff| {seg_check:.2e}")
    if len(delays) > 1:
        print(f"delay sweep (last {int(LATE * 100)}% accuracy, mean ± sd): " + "; ".join(
            f"k={kk}: memory {sweep[kk]['memory']['acc_mean']:.3f} ± {sweep[kk]['memory']['acc_sd']:.3f}, plain "
            f"{sweep[kk]['plain']['acc_mean']:.3f} ± {sweep[kk]['plain']['acc_sd']:.3f}" for kk in delays))
    figure(args.out, runs[k], sweep, k, E, len(seeds), args.retain)
    total = time.perf_counter() - t_start
    print(f"figure: {args.out}; run time {total:.0f} s (memory {timing['memory']:.0f} s, no release "
          f"{timing['no_release']:.0f} s, plain {timing['plain']:.1f} s; first memory run, compile included, "
          f"{first_call['memory']:.1f} s)")

    figures = {
        "V": V, "k": k, "episodes": E, "seeds": len(seeds), "batch": BATCH, "late_fraction": LATE,
        "memory_retain": args.retain, "show_target": args.show_target, "delays": delays,
        "chance_acc": chance_acc, "chance_ce": chance_ce,
        **{f"{m}_{q}": main_s[m][q] for m in main_s for q in ("acc_mean", "acc_sd", "ce_mean", "ce_sd",
                                                               "acc_per_seed", "ce_per_seed")},
        "comparisons": comp,
        "memory_beats_no_release": comp["memory_vs_no_release_acc"]["beats"],
        "memory_beats_chance": comp["memory_vs_chance_acc"]["beats"],
        "sweep": {str(kk): {m: {q: sweep[kk][m][q] for q in ("acc_mean", "acc_sd", "ce_mean", "ce_sd")}
                            for m in sweep[kk]} for kk in delays},
        "ce_check_max_abs_diff": check, "segmented_vs_single_call_max_abs_diff": seg_check,
        "no_release_vs_plain_ce_max_abs_diff": same, "docks_per_show_step": docks_show,
        "docks_per_episode_other_steps": docks_other,
        "time_total_s": total, "time_memory_s": timing["memory"], "time_no_release_s": timing["no_release"],
        "time_plain_s": timing["plain"], "time_first_memory_run_s": first_call["memory"], "figure": args.out,
    }
    print(json.dumps(json_safe(figures)))
    return figures


if __name__ == "__main__":
    main()
