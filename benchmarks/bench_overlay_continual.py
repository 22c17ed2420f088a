"""Benchmark: split-digits continual learning with the vesicle overlay (nv.overlay) against baselines.

Data. scikit-learn's bundled ``load_digits`` (1797 8×8 images, read from the
package, nothing downloaded), one fixed stratified 70/30 train/test split
(``random_state=0``), inputs standardised with the train split's per-pixel mean
and standard deviation (constant pixels get scale 1). Five tasks of two classes
each, {0,1}, {2,3}, …, {8,9}, learned in that order. So that every task's
training arrays have the same shape (the compiled steps are then reused from
task to task), each task keeps the same, fixed, ``n_min`` of its training rows
(``n_min`` = the smallest task, ~250 rows; a few rows of the larger tasks are
dropped by a fixed permutation, the same for every seed and method). The test
split is used only to report; nothing is tuned on it.

Base network and training. ``eqx.nn.MLP(64, 10, width, depth=2)`` (ReLU, float32),
one 10-way head, softmax cross-entropy over all ten classes, ``optax.adam(1e-3)``,
minibatches of 32, ``--steps-per-task`` steps per task, tasks in sequence; the
optimiser state carries over from task to task. Every method of a seed starts
from the same initial network and reads the same minibatches in the same order
(``nv.overlay.batch_indices`` with the key of ``nv.overlay.train``).

Scenarios. Each method is trained once per seed and evaluated two ways after
every task on all five test sets: *class-incremental* (argmax over the ten
logits, no task id) and *task-incremental* (the task id is given: argmax over
the task's two logits only). Figures per scenario: the final average accuracy
over the five tasks after the last task, and the average forgetting, the mean
over tasks 1–4 of (the best accuracy on that task at the end of it or of a later
task before the last) − (its final accuracy). Mean ± sd (ddof = 1) over
``--seeds`` seeds; a seed sets the network's initialisation, the minibatch order
and the vesicles (and the overlay's release maps); the split stays fixed.

Methods.

1. ``finetune`` — plain sequential training.
2. ``ewc`` — elastic weight consolidation: after each task the diagonal
   empirical Fisher ``F = mean over the task's training rows of (∂ℓ_n/∂θ)²``
   (per-example gradients, true labels, ``jax.vmap(jax.grad)``) at the task's end
   point ``θ*``; the penalty ``λ/2 Σ_tasks Σ_i F_i (θ_i − θ*_i)²`` summed over all
   earlier tasks is added to the loss (computed as ``λ/2 Σ_i A_i (θ_i − M_i)²``
   with ``A = Σ_tasks F`` and ``M`` the F-weighted mean of the anchors, equal up
   to a constant and free of cancellation in float32). ``λ = 10⁵`` (``--ewc-lambda``) was chosen
   once from {1, 10, …, 10⁸} on a validation split carved from the training
   split (25 %, stratified, ``random_state=1``; seeds 0–2, width 64, 300 steps
   per task) by the mean of the two scenarios' final validation accuracies
   (10⁵ was best in both); ``--select-ewc-lambda`` repeats that selection and
   prints it. This is the only setting of the benchmark chosen from data.
3. ``film_taskid`` — an upper reference that is *given the task id* both in
   training and at test (also in the class-incremental evaluation): a FiLM
   ``h ← (1 + γ_t) ⊙ h + β_t`` on both hidden layers' pre-activations, with one
   learned ``(γ_t, β_t)`` per task (zero at the start), trained jointly with the
   network; the FiLM of earlier tasks is frozen (its updates are masked).
4. ``nv_density`` — ``nv.overlay`` in ``mode="density"``, no task id anywhere.
5. ``nv_explicit`` — the same overlay in ``mode="explicit"``.

The overlay (both NV methods, fixed up front; nothing tuned on a score):
sites are the two hidden layers (``sites=["layers[0]", "layers[1]"]``, where the
FiLM reference acts), layer granularity, ``n_types=2``, ``content_dim=4``, the
release operators ``("act", "memory")`` (FiLM and memory read on the hidden
pre-activations), ``act_tau=1``, ``memory_dim=8``, ``memory_retain=0.9``, 512
vesicle slots. The vesicle parameters are ``ov.model.default_params()``
(emission ``r_max σ(·)`` = 0.5 per node and type at average covariates, uniform
migration over stay/forward, docking 0.2, decay 0.05, content scale 1) except
that (a) emission depends on the covariates: type 0 is emitted more when the
standardised training loss is high (weight +1: a burst at each task switch),
type 1 when the node's standardised log-RMS gradient is high (weight +1); (b)
the content's mean at birth is the emitting node's standardised covariates
(``content_B`` = identity), so that the vesicles carry the state of the
network they left: with the default zero content mean the density mode's
expected content sums are zero, and its memory release (which is linear in
the content, without a bias) would be identically zero. The ``"param"`` and
``"rule"`` operators are left out: the rank-one changes and the rule's shift
``β`` are added to the weights at every step, at a scale unrelated to Adam's
~1e-3 steps, and the weights drift during training (seen on the training data
only, seed 0, all four operators: the largest second-layer weight was 2–4
after the first task instead of ~0.2, and the training loss at the first step
of the second task 20–90 instead of ~10, with ``β`` frozen as ``train`` does by
default in the current nvppl; ~40 and 1500–3200 with ``β`` trained);
``--nv-release act,param,rule,memory`` puts them back. No user covariate:
the loss *change* we would have used needs state from step to step, which a
covariate function ``fn(x, y, loss)`` does not carry, and the built-in loss
covariate already jumps at each task switch. The release maps are trained by
the gradient of the training loss (``train``'s default, ``adam(1e-3)``); the
vesicle parameters are not trained; vesicles, memories, release maps and
optimiser states carry over from task to task (``resume=``). Evaluation uses
``res.modulated_net`` (the network with the activation release of the vesicles
docked so far installed).

Output: a table per scenario, a plain statement of which method is best and
whether the NV variants beat fine-tuning and EWC (by the mean final accuracy;
"beats" or "is worse than" when the mean paired difference over seeds is more
than 2 standard errors from zero, "does not clearly differ" otherwise), a
figure (``--out``, default ``bench_overlay_continual.png``: bars of mean ± sd of
final accuracy and forgetting per method, both scenarios), and, as the last
line, one JSON object with all figures. Defaults: 10 seeds, 300 steps per
task, width 64 (about a minute on 2 cores). ``--quick`` runs 2 seeds, 30 steps
per task and width 16 (used by the tests); as most of its time is compilation,
it also asks XLA for a lower backend optimisation level (``XLA_FLAGS``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "--quick" in sys.argv[1:]:  # before jax is imported: the quick run is mostly compilation, halve it
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import nvppl as nv  # noqa: E402
from bench_simulate import json_safe  # noqa: E402  (the same strict-JSON helper)

METHODS = ("finetune", "ewc", "film_taskid", "nv_density", "nv_explicit")
SCENARIOS = ("class_incremental", "task_incremental")
N_TASKS = 5
BATCH = 32
LR = 1e-3
EWC_LAMBDA = 1e5
EWC_GRID = tuple(10.0 ** k for k in range(0, 9))  # 1 … 1e8
OV_SITES = ["layers[0]", "layers[1]"]
NV_RELEASE = ("act", "memory")


# ------------------------------------------------------------------ data
def load_split(validation: bool = False):
    """Standardised ``(tasks, X_eval, y_eval)``: ``tasks[t] = (X, y)`` training arrays of equal shape.

    ``validation=True`` carves a stratified 25 % validation split out of the training
    split and returns it as the evaluation set (the test split is not touched)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X, y = d.data.astype(np.float64), d.target.astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    if validation:
        Xtr, Xte, ytr, yte = train_test_split(Xtr, ytr, test_size=0.25, stratify=ytr, random_state=1)
    mu, sd = Xtr.mean(0), Xtr.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    rng = np.random.default_rng(0)
    rows = [np.flatnonzero(ytr // 2 == t) for t in range(N_TASKS)]
    n_min = min(len(r) for r in rows)
    tasks = []
    for r in rows:
        keep = np.sort(rng.permutation(r)[:n_min])
        tasks.append((jnp.asarray(Xtr[keep], jnp.float32), jnp.asarray(ytr[keep], jnp.int32)))
    return tasks, jnp.asarray(Xte, jnp.float32), np.asarray(yte)


def task_key(seed: int, t: int):
    """The key of task ``t`` of a seed: vesicles and minibatches (and, for task 0, the release maps)."""
    return jax.random.PRNGKey(1000 * seed + t)


def batches(n: int, steps: int, seed: int, t: int):
    """The minibatch indices ``nv.overlay.train(..., key=task_key(seed, t))`` reads (task ``t``
    resumes the run at step ``t · steps``)."""
    k = jax.random.fold_in(task_key(seed, t), 3)
    return jnp.asarray(nv.overlay.batch_indices(n, steps, BATCH, k, start=t * steps))


def accuracies(logits, y):
    """Per task (class-incremental, task-incremental) accuracy from ``(N, 10)`` logits."""
    logits = np.asarray(logits)
    task = y // 2
    ci = np.argmax(logits, 1) == y
    pair = logits[np.arange(len(y))[:, None], 2 * task[:, None] + np.arange(2)[None, :]]
    ti = 2 * task + np.argmax(pair, 1) == y
    return (np.array([ci[task == t].mean() for t in range(N_TASKS)]),
            np.array([ti[task == t].mean() for t in range(N_TASKS)]))


def ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def loss_fn(net, x, y):
    return ce(jax.vmap(net)(x), y)


@eqx.filter_jit
def predict(net, X):
    return jax.vmap(net)(X)


def new_net(width: int, seed: int):
    return eqx.nn.MLP(64, 10, width, depth=2, key=jax.random.key(seed), dtype=jnp.float32)


# ------------------------------------------------------------------ fine-tuning and EWC
def ewc_update(ewc, F, theta):
    """``(A, M)`` after a task with Fisher ``F`` and end point ``theta``: ``A + F`` and the
    F-weighted mean of the anchors (``theta`` where no Fisher mass)."""
    A, M = ewc
    A2 = jax.tree.map(jnp.add, A, F)

    def anchor(a, m, f, p, a2):
        return jnp.where(a2 > 0, (a * m + f * p) / jnp.where(a2 > 0, a2, 1.0), p)

    return A2, jax.tree.map(anchor, A, M, F, theta, A2)


class Plain:
    """Fine-tuning (``lam = 0``) and EWC, one compiled scan over a task's steps."""

    def __init__(self, opt):
        self.opt = opt

        @eqx.filter_jit
        def run(theta, static, opt_state, ewc, lam, X, Y, idx):
            A, M = ewc  # Σ_tasks F and the F-weighted mean of the anchors θ*: Σ F(θ − θ*)² = A(θ − M)² + const

            def objective(th, x, y):
                pen = sum(jnp.sum(a * (p - m) ** 2) for a, m, p in
                          zip(jax.tree.leaves(A), jax.tree.leaves(M), jax.tree.leaves(th)))
                return loss_fn(eqx.combine(th, static), x, y) + 0.5 * lam * pen

            def body(carry, ib):
                th, os = carry
                loss, g = jax.value_and_grad(objective)(th, X[ib], Y[ib])
                u, os = self.opt.update(g, os, th)
                return (eqx.apply_updates(th, u), os), loss

            (theta, opt_state), losses = jax.lax.scan(body, (theta, opt_state), idx)
            return theta, opt_state, losses

        @eqx.filter_jit
        def fisher(theta, static, X, Y):
            def one(th, x, y):
                return ce(eqx.combine(th, static)(x)[None], y[None])
            g = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(theta, X, Y)
            return jax.tree.map(lambda a: jnp.mean(a * a, axis=0), g)

        self.run, self.fisher = run, fisher

    def train(self, width, seed, tasks, X_eval, y_eval, steps, lam):
        theta, static = eqx.partition(new_net(width, seed), eqx.is_inexact_array)
        opt_state = self.opt.init(theta)
        ewc = (jax.tree.map(jnp.zeros_like, theta), theta)
        R = np.zeros((2, N_TASKS, N_TASKS))
        for t, (X, Y) in enumerate(tasks):
            idx = batches(X.shape[0], steps, seed, t)
            theta, opt_state, _ = self.run(theta, static, opt_state, ewc, jnp.float32(lam), X, Y, idx)
            if lam > 0:
                ewc = ewc_update(ewc, self.fisher(theta, static, X, Y), theta)
            R[:, t] = accuracies(predict(eqx.combine(theta, static), X_eval), y_eval)
        return R


# ------------------------------------------------------------------ FiLM with the task id
def film_forward(net, film, x, t):
    """The MLP with ``h ← (1 + γ_t) ⊙ h + β_t`` on its hidden layers' pre-activations."""
    h = x
    for i, layer in enumerate(net.layers[:-1]):
        h = layer(h)
        h = (1.0 + film["g"][t, i]) * h + film["b"][t, i]
        h = net.activation(h)
    return net.final_activation(net.layers[-1](h))


class FilmTaskId:
    def __init__(self, opt):
        self.opt = opt

        @eqx.filter_jit
        def run(params, static, opt_state, t, X, Y, idx):
            def objective(p, x, y):
                net = eqx.combine(p["net"], static)
                return ce(jax.vmap(film_forward, (None, None, 0, None))(net, p["film"], x, t), y)

            mask = (jnp.arange(N_TASKS) == t)[:, None, None]

            def body(carry, ib):
                p, os = carry
                loss, g = jax.value_and_grad(objective)(p, X[ib], Y[ib])
                u, os = self.opt.update(g, os, p)
                u = {"net": u["net"], "film": jax.tree.map(lambda a: jnp.where(mask, a, 0.0), u["film"])}
                return (eqx.apply_updates(p, u), os), loss

            (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), idx)
            return params, opt_state, losses

        @eqx.filter_jit
        def logits(params, static, X, tid):
            net = eqx.combine(params["net"], static)
            return jax.vmap(film_forward, (None, None, 0, 0))(net, params["film"], X, tid)

        self.run, self.logits = run, logits

    def train(self, width, seed, tasks, X_eval, y_eval, steps):
        theta, static = eqx.partition(new_net(width, seed), eqx.is_inexact_array)
        film = {"g": jnp.zeros((N_TASKS, 2, width), jnp.float32), "b": jnp.zeros((N_TASKS, 2, width), jnp.float32)}
        params = {"net": theta, "film": film}
        opt_state = self.opt.init(params)
        tid = jnp.asarray(y_eval // 2, jnp.int32)
        R = np.zeros((2, N_TASKS, N_TASKS))
        for t, (X, Y) in enumerate(tasks):
            idx = batches(X.shape[0], steps, seed, t)
            params, opt_state, _ = self.run(params, static, opt_state, jnp.int32(t), X, Y, idx)
            R[:, t] = accuracies(self.logits(params, static, X_eval, tid), y_eval)
        return R


# ------------------------------------------------------------------ the NV overlay
class Overlay:
    def __init__(self, mode, width, opt, release=NV_RELEASE):
        self.ov = nv.overlay.Overlay.from_network(
            new_net(width, 0), sites=OV_SITES, n_types=2, content_dim=4, granularity="layer",
            release=release, mode=mode, capacity=512, act_tau=1.0, memory_dim=8, memory_retain=0.9)
        names = self.ov.covariate_names
        p = self.ov.model.default_params()
        u = np.array(p.u, dtype=np.float64)  # (K, 1 + p): intercept, then the covariates
        u[0, 1 + names.index("loss")] = 1.0
        u[1, 1 + names.index("log_rms_grad")] = 1.0
        B = np.zeros(np.shape(p.content_B))  # (K, p, d_c): content at birth = the node's covariates + noise
        for i in range(min(B.shape[1:])):
            B[:, i, i] = 1.0
        self.params = p.replace(u=u, content_B=B)
        self.opt = opt

    def train(self, width, seed, tasks, X_eval, y_eval, steps):
        net = new_net(width, seed)
        R = np.zeros((2, N_TASKS, N_TASKS))
        res, alive = None, []
        for t, (X, Y) in enumerate(tasks):
            res = nv.overlay.train(self.ov, net, self.opt, loss_fn, (X, Y), n_steps=steps, batch_size=BATCH,
                                   key=task_key(seed, t), params=None if res is not None else self.params,
                                   progress=False, resume=res)
            alive.append(float(np.mean(res.metrics["alive"])))
            R[:, t] = accuracies(predict(res.modulated_net, X_eval), y_eval)
        return R, float(np.mean(alive))


# ------------------------------------------------------------------ figures
def summarise(R):
    """``R (seeds, T, T)``, accuracy on task j after task i -> final accuracy and forgetting per seed."""
    final = R[:, -1].mean(1)
    best = np.array([[R[s, j:N_TASKS - 1, j].max() for j in range(N_TASKS - 1)] for s in range(len(R))])
    forget = (best - R[:, -1, :N_TASKS - 1]).mean(1)
    return final, forget


def msd(x):
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def compare(a, b):
    """Mean difference a − b over seeds and its size in standard errors of the (paired) difference."""
    d = np.asarray(a) - np.asarray(b)
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return float(d.mean()), float(d.mean() / se) if se > 0 else float("nan")


def plot(figs, out, n_seeds, steps):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    x = np.arange(len(METHODS))
    for ax, sc in zip(axes, SCENARIOS):
        f = figs[sc]
        ax.bar(x - 0.2, [f[m]["acc_mean"] for m in METHODS], 0.4, yerr=[f[m]["acc_sd"] for m in METHODS],
               capsize=3, label="final average accuracy")
        ax.bar(x + 0.2, [f[m]["forget_mean"] for m in METHODS], 0.4, yerr=[f[m]["forget_sd"] for m in METHODS],
               capsize=3, label="average forgetting")
        ax.set_xticks(x, METHODS, rotation=20)
        ax.set_title(sc.replace("_", "-"))
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.2)
    axes[0].legend(loc="upper center", ncol=2, fontsize=8)
    fig.suptitle(f"split digits, 5 tasks: mean ± sd over {n_seeds} seeds, {steps} steps per task "
                 "(film_taskid is given the task id)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def verdict(per_seed, figs):
    lines, outcome = [], {}
    for sc in SCENARIOS:
        f = figs[sc]
        best = max(METHODS, key=lambda m: f[m]["acc_mean"])
        best_noid = max((m for m in METHODS if m != "film_taskid"), key=lambda m: f[m]["acc_mean"])
        lines.append(f"{sc}: best final accuracy: {best} ({f[best]['acc_mean']:.3f}); best excluding the "
                     f"film_taskid reference: {best_noid} ({f[best_noid]['acc_mean']:.3f}).")
        for nvm in ("nv_density", "nv_explicit"):
            for base in ("finetune", "ewc"):
                d, z = compare(per_seed[nvm][sc][0], per_seed[base][sc][0])
                word = "beats" if d > 0 and z > 2 else ("is worse than" if d < 0 and z < -2 else
                                                       "does not clearly differ from")
                lines.append(f"  {nvm} {word} {base}: final accuracy {d:+.3f} ({z:+.1f} SE of the paired "
                             f"difference over seeds)")
                outcome[(sc, nvm, base)] = word
    for base in ("finetune", "ewc"):
        for word in ("beats", "is worse than", "does not clearly differ from"):
            where = [f"{nvm} in {sc.split('_')[0]}-incremental" for (sc, nvm, b), w in outcome.items()
                     if b == base and w == word]
            if where:
                verb = {"beats": "beat", "is worse than": "are worse than",
                        "does not clearly differ from": "do not clearly differ from"}[word]
                lines.append(f"Overall: the NV variants {verb} {base} for " + ", ".join(where) + ".")
    return lines


# ------------------------------------------------------------------ λ selection for EWC (validation only)
def select_ewc_lambda(width, steps, seeds):
    tasks, Xv, yv = load_split(validation=True)
    plain = Plain(optax.adam(LR))
    scores = {}
    for lam in EWC_GRID:
        R = np.stack([plain.train(width, s, tasks, Xv, yv, steps, lam) for s in range(seeds)])  # (S, 2, T, T)
        ci, ti = summarise(R[:, 0])[0].mean(), summarise(R[:, 1])[0].mean()
        scores[lam] = (ci + ti) / 2
        print(f"lambda={lam:g}: validation final accuracy class-incremental {ci:.3f}, task-incremental {ti:.3f}")
    best = max(scores, key=scores.get)
    print(f"selected lambda = {best:g}")
    return best, scores


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long run (2 seeds, 30 steps, width 16)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10; quick 2)")
    parser.add_argument("--steps-per-task", type=int, default=None, help="steps per task (default 300; quick 30)")
    parser.add_argument("--width", type=int, default=None, help="hidden width (default 64; quick 16)")
    parser.add_argument("--ewc-lambda", type=float, default=EWC_LAMBDA, help=f"EWC strength (default {EWC_LAMBDA:g})")
    parser.add_argument("--out", default="bench_overlay_continual.png", help="the figure's file")
    parser.add_argument("--nv-release", default=",".join(NV_RELEASE),
                        help=f"the overlay's release operators, comma-separated (default {','.join(NV_RELEASE)})")
    parser.add_argument("--select-ewc-lambda", action="store_true",
                        help="only choose λ for EWC on a validation split carved from train, and print it")
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 10)
    steps = args.steps_per_task or (30 if args.quick else 300)
    width = args.width or (16 if args.quick else 64)
    if seeds < 1 or steps < 1 or width < 1:
        parser.error("--seeds, --steps-per-task and --width must be positive")

    t0 = time.perf_counter()
    if args.select_ewc_lambda:
        best, scores = select_ewc_lambda(width, steps, min(seeds, 3))
        print(json.dumps(json_safe({"ewc_lambda": best, "validation_score": {f"{k:g}": v for k, v in scores.items()},
                                    "seconds": time.perf_counter() - t0})))
        return

    tasks, Xte, yte = load_split()
    print(f"split digits: {N_TASKS} tasks, {tasks[0][0].shape[0]} training rows per task, {len(yte)} test rows; "
          f"{seeds} seeds, {steps} steps per task, width {width}, batch {BATCH}, adam({LR:g}), "
          f"EWC lambda {args.ewc_lambda:g}, NV release {args.nv_release}")
    opt = optax.adam(LR)  # one object: the overlay's compiled steps are reused across seeds and tasks
    plain, film = Plain(opt), FilmTaskId(opt)
    release = tuple(r.strip() for r in args.nv_release.split(",") if r.strip())
    ovs = {"nv_density": Overlay("density", width, opt, release),
           "nv_explicit": Overlay("explicit", width, opt, release)}
    R = {m: [] for m in METHODS}
    alive = {m: [] for m in ovs}
    timing = {m: 0.0 for m in METHODS}
    for s in range(seeds):
        for m in METHODS:
            t = time.perf_counter()
            if m == "finetune":
                r = plain.train(width, s, tasks, Xte, yte, steps, 0.0)
            elif m == "ewc":
                r = plain.train(width, s, tasks, Xte, yte, steps, args.ewc_lambda)
            elif m == "film_taskid":
                r = film.train(width, s, tasks, Xte, yte, steps)
            else:
                r, a = ovs[m].train(width, s, tasks, Xte, yte, steps)
                alive[m].append(a)
            timing[m] += time.perf_counter() - t
            R[m].append(r)
        print(f"seed {s}: done ({time.perf_counter() - t0:.0f} s)", flush=True)

    per_seed, figs = {}, {sc: {} for sc in SCENARIOS}
    for m in METHODS:
        Rm = np.stack(R[m])  # (S, 2, T, T)
        per_seed[m] = {}
        for k, sc in enumerate(SCENARIOS):
            final, forget = summarise(Rm[:, k])
            per_seed[m][sc] = (final, forget)
            am, asd = msd(final)
            fm, fsd = msd(forget)
            figs[sc][m] = {"acc_mean": am, "acc_sd": asd, "forget_mean": fm, "forget_sd": fsd,
                           "final_acc_per_task": Rm[:, k, -1].mean(0).round(4).tolist()}

    for sc in SCENARIOS:
        print(f"\n{sc.replace('_', '-')} (mean ± sd over {seeds} seeds)")
        print(f"  {'method':<13} {'final avg acc':>16} {'avg forgetting':>16}   final acc per task")
        for m in METHODS:
            f = figs[sc][m]
            per_task = " ".join(f"{a:.2f}" for a in f["final_acc_per_task"])
            print(f"  {m:<13} {f['acc_mean']:>8.3f} ± {f['acc_sd']:<5.3f} {f['forget_mean']:>8.3f} ± "
                  f"{f['forget_sd']:<5.3f}   {per_task}")
    print("\n(film_taskid is given the task id in training and at test, in both scenarios: a reference, "
          "not a competitor)")
    for line in verdict(per_seed, figs):
        print(line)
    print("mean vesicles alive per step: " + ", ".join(f"{m} {np.mean(a):.1f}" for m, a in alive.items()))

    plot(figs, args.out, seeds, steps)
    print(f"figure: {args.out}")
    seconds = time.perf_counter() - t0
    out = {sc: figs[sc] for sc in SCENARIOS}
    out.update(seeds=seeds, steps_per_task=steps, width=width, batch_size=BATCH, ewc_lambda=args.ewc_lambda,
               nv_release=list(release), nvppl_version=nv.__version__,
               train_rows_per_task=int(tasks[0][0].shape[0]), test_rows=int(len(yte)),
               method_seconds={m: round(v, 2) for m, v in timing.items()},
               nv_mean_alive={m: float(np.mean(a)) for m, a in alive.items()}, figure=args.out, seconds=seconds)
    print(json.dumps(json_safe(out)))


if __name__ == "__main__":
    main()
