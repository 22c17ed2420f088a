"""Vesicles acting on an MLP while it learns to read digits (nvppl.overlay).

The MLP (64-64-64-10, float32) learns scikit-learn's bundled 8×8 digits with
Adam. An overlay puts one graph node on each of its three layers; vesicles are
emitted there from the layers' activity and gradients (the online covariates),
migrate forward, dock, and act on the network through FiLM on activations,
modulation of the learning rule and a memory per layer. The same training runs
without the overlay, with the same minibatches, for comparison. Then the
vesicles recorded during training are fitted back with NUTS, which recovers the
emission and docking kernels that ran.

Written: ``overlay_digits.png`` (loss, vesicles alive, docks and modulation per
layer). ``python examples/overlay_digits.py --steps 30 --samples 30 --warmup 30``
is a tiny run.
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import nvppl as nv

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(seed):
    from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing is downloaded

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    X, y = X[order] / 16.0, y[order]
    n_test = len(y) // 4
    mean, sd = X[n_test:].mean(0), X[n_test:].std(0) + 1e-3
    X = (X - mean) / sd
    f = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return (f(X[n_test:]), jnp.asarray(y[n_test:])), (f(X[:n_test]), jnp.asarray(y[:n_test]))


def loss_fn(net, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(net)(x), y).mean()


def accuracy(net, X, y):
    return float(jnp.mean(jnp.argmax(jax.vmap(net)(X), axis=1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--batch", type=int, default=64, help="minibatch size")
    parser.add_argument("--samples", type=int, default=300, help="NUTS draws per chain for the re-fit")
    parser.add_argument("--warmup", type=int, default=300, help="NUTS warm-up per chain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="overlay_digits.png", help="figure file")
    args = parser.parse_args(argv)

    (Xtr, ytr), (Xte, yte) = load(args.seed)
    net = eqx.nn.MLP(64, 10, 64, depth=2, key=jax.random.key(args.seed), dtype=jnp.float32)
    ov = nv.overlay.Overlay.from_network(net, n_types=2, content_dim=4, release=("act", "rule", "memory"),
                                         capacity=2048)
    print(ov)
    print("covariates:", ov.covariate_names)
    truth = ov.model.default_params().replace(
        u=np.array([[0.0, 0.8, 0.0, -0.5, 0.0], [-1.0, 0.0, 0.8, 0.5, 0.0]]),  # type 0 follows activity, 1 gradients
        w=np.array([[-1.4, 0.0, 0.0, 0.0, 0.0], [-0.5, 0.0, 0.5, 0.0, 0.0]]), delta=np.array([0.05, 0.1]))
    opt = optax.adam(3e-3)
    res = nv.overlay.train(ov, net, opt, loss_fn, (Xtr, ytr), n_steps=args.steps, batch_size=args.batch,
                           key=args.seed, params=truth, record=True)
    plain = nv.overlay.Overlay.from_network(net, n_types=1, content_dim=1, release=())
    ref = nv.overlay.train(plain, net, opt, loss_fn, (Xtr, ytr), n_steps=args.steps, batch_size=args.batch,
                           key=args.seed, progress=False)  # no release: plain Adam on the same minibatches
    print(f"test accuracy: with vesicles {accuracy(res.modulated_net, Xte, yte):.3f}, "
          f"plain Adam {accuracy(ref.net, Xte, yte):.3f}")
    print(res.traces)

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    ax[0].plot(ref.metrics["loss"], label="plain Adam", alpha=0.7)
    ax[0].plot(res.metrics["loss"], label="with vesicles", alpha=0.7)
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log")
    ax[0].legend()
    ax[1].plot(res.metrics["alive"])
    ax[1].set(xlabel="step", ylabel="vesicles alive")
    for s, site in enumerate(ov.sites):
        ax[2].plot(np.cumsum(res.metrics["docks"][:, s]), label=f"docks at {site.name}")
    ax[2].set(xlabel="step", ylabel="cumulative docks")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print("wrote", args.plot)

    fit = nv.infer.fit(ov.model, res.traces, method="nuts", num_samples=args.samples, num_warmup=args.warmup,
                       num_chains=1, key=args.seed, identifiability=False, posterior_predictive=False)
    post = fit.posterior_mean()
    for name in ("u", "w", "delta"):
        print(f"{name:5s} ran {np.ravel(getattr(truth, name)).round(2)}\n      fit {np.ravel(getattr(post, name)).round(2)}")
    return res, fit


if __name__ == "__main__":
    main()
