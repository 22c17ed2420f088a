"""Training a base network with its vesicles: :func:`train` (DESIGN §7)."""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import as_jax_key, positive_int, seed64
from ..errors import CapacityError
from ..infer._progress import progress_bar
from ..simulate import records_to_traces
from .step import init_state, make_step, modulated_network

__all__ = ["TrainResult", "train", "batch_indices"]

_VESICLE_FIELDS = ("u", "w", "v", "content_mean", "content_B")
# one object each, so that the compiled steps are reused from call to call
_DEFAULTS = {"release": optax.adam(1e-3), "vesicle": optax.adam(1e-2), "frozen": optax.set_to_zero()}


class TrainResult(NamedTuple):
    """The outcome of :func:`train`.

    Attributes
    ----------
    net : equinox.Module
        The trained network (with the parameter release baked in).
    release_params : ReleaseParams
        The trained release maps.
    params : Params
        The vesicle parameters (trained ones too, in density mode).
    metrics : dict of ndarray
        Per step: ``loss`` (T,), ``alive`` (T,), ``docks`` (T, n_sites),
        ``modulation`` (T, n_sites), and ``aux`` (``has_aux``).
    traces : Traces or None
        The vesicles that acted, with the covariates that drove them (``record=True``).
    modulated_net : equinox.Module
        ``net`` with the activation release that its next forward pass would get
        (FiLM and memory read of the vesicles docked so far): evaluate with it.
    state : State
        Everything the coupled step carries; pass the result as ``resume=`` to go on
        training (a new task, say) with the same vesicles, memories and optimiser.
    """

    net: object
    release_params: object
    params: object
    metrics: dict
    traces: object
    modulated_net: object
    state: object


def batch_indices(n_data: int, n_steps: int, batch_size: int, key, start: int = 0) -> np.ndarray:
    """Minibatch indices ``(n_steps, batch_size)`` of steps ``start, …, start + n_steps − 1``.

    The data are read in a fresh random permutation each epoch (epoch ``e`` from the
    key and ``e``; an epoch's tail joins the next permutation), so that the batches
    of a step do not depend on how a run was split into calls.

    Examples
    --------
    >>> a = batch_indices(10, 6, 4, key=0)
    >>> b = batch_indices(10, 3, 4, key=0, start=3)
    >>> bool((a[3:] == b).all()), sorted(a.ravel()[:10].tolist()) == list(range(10))
    (True, True)
    """
    seed = seed64(key)
    first, last = start * batch_size, (start + n_steps) * batch_size
    epochs = range(first // n_data, -(-last // n_data))
    order = np.concatenate([np.random.default_rng([seed, e]).permutation(n_data) for e in epochs])
    off = first - epochs[0] * n_data
    return order[off:off + n_steps * batch_size].reshape(n_steps, batch_size)


class _Runner(NamedTuple):
    scan: Callable   # (state, X, Y, idx (m, B), vkey) -> (state, outputs)
    one: Callable    # (state, (x, y), vkey) -> (state, output)


def _build_runner(ov, static, loss_fn, optimizer, release_optimizer, vesicle_optimizer, train_vesicles, record,
                  has_aux):
    step = make_step(ov, static, loss_fn, optimizer, release_optimizer, vesicle_optimizer, train_vesicles, record,
                     has_aux)

    def scan(st, X, Y, idx, vkey):
        def body(s, ib):
            return step(s, (X[ib], Y[ib]), jax.random.fold_in(vkey, s.t))
        return jax.lax.scan(body, st, idx)

    def one(st, batch, vkey):
        return step(st, batch, jax.random.fold_in(vkey, st.t))

    return _Runner(jax.jit(scan), jax.jit(one))


@functools.lru_cache(maxsize=16)
def _cached_runner(*args):
    return _build_runner(*args)


def _runner(*args):
    """The compiled steps, reused across calls of :func:`train` with the same overlay,
    network structure, loss function and optimiser objects (so that training task
    after task compiles once)."""
    try:
        return _cached_runner(*args)
    except TypeError:  # something unhashable: no reuse
        return _build_runner(*args)


_RULE_SHIFT = ("W_beta", "b_beta")


def _trained_fields(train_release) -> tuple:
    from .release import ReleaseParams

    if train_release is True:
        return tuple(f for f in ReleaseParams._fields if f not in _RULE_SHIFT)
    if train_release is False:
        return ()
    fields = tuple(train_release)
    for f in fields:
        if f not in ReleaseParams._fields:
            raise ValueError(f"train_release: unknown release map {f!r}; maps are {ReleaseParams._fields}")
    return fields


_MASKED: dict = {}


def _masked(optimizer, fields: tuple, phi):
    """``optimizer`` on the release maps in ``fields``, the others frozen (one object per
    combination, so that the compiled steps are reused)."""
    from .release import ReleaseParams

    if set(fields) == set(ReleaseParams._fields):
        return optimizer
    if not fields:
        return _DEFAULTS["frozen"]
    key = (id(optimizer), tuple(sorted(fields)), jax.tree.structure(phi))
    if key not in _MASKED:
        labels = ReleaseParams(**{f: jax.tree.map(lambda _, f=f: "train" if f in fields else "frozen",
                                                  getattr(phi, f)) for f in ReleaseParams._fields})
        _MASKED[key] = (optimizer, optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()},
                                                         labels))
    return _MASKED[key][1]


def _as_params(model, params):
    if params is None:
        params = model.default_params()
    return model.check_params(params)


def train(ov, net, optimizer, loss_fn: Callable, data, n_steps: int, batch_size: int = 128, key=0,
          record: bool = False, params=None, release_params=None, release_optimizer=None,
          train_release: bool = True, train_vesicles=(), vesicle_optimizer=None, chunk: int = 50,
          progress: bool = True, resume: TrainResult | None = None, has_aux: bool = False) -> TrainResult:
    """Train ``net`` with ``optimizer`` while the overlay's vesicles act on it.

    Each step is the coupled step of :mod:`nvppl.overlay.step` (eq. 39–45),
    jit-compiled; ``chunk`` steps at a time run in one ``lax.scan``.

    Parameters
    ----------
    ov : Overlay
    net : equinox.Module
        The base network (its float dtype is kept: build it with ``dtype=jnp.float32``
        for single precision, since importing nvppl turns on 64-bit JAX).
    optimizer : optax.GradientTransformation
    loss_fn : callable
        ``loss_fn(net, x, y) -> scalar`` (the equinox convention; vmap inside), or
        ``-> (scalar, aux)`` with ``has_aux=True``: ``aux`` (say, the batch accuracy)
        is returned per step in ``metrics["aux"]``.
    data : (X, Y) arrays, or an iterable of (x, y) batches
        Arrays are read in minibatches of ``batch_size`` (:func:`batch_indices`);
        an iterable gives one batch per step.
    n_steps : int
    key : int or JAX key
        Vesicles and minibatches; the same key gives the same run.
    record : bool
        Return the vesicles as :class:`nvppl.Traces` (explicit mode), with the
        standardised covariates that drove them, for :func:`nvppl.infer.fit`.
    params : Params, optional
        The vesicle model's parameters (default: ``ov.model.default_params()``).
    release_params : ReleaseParams, optional
        Default: ``ov.init_release(key)``.
    release_optimizer : optax.GradientTransformation, optional
        For the release maps (default ``optax.adam(1e-3)``).
    train_release : bool or sequence of str
        Train the release maps by the gradient of the training loss: ``True`` (the
        default) trains every map except the rule's additive shift (``W_beta``,
        ``b_beta``), ``False`` none, or the :class:`ReleaseParams` field names to
        train. The shift is left out by default because the one-step lookahead
        gradient only ever pushes it along the mean gradient of a row, while every
        dock adds it to every weight of the row again: on the digits example it
        took the training loss from 2.3 to 18 in 300 steps (the multiplier ``α``
        trains stably — its lookahead gradient is the hypergradient of the step
        size).
    train_vesicles : sequence of str
        Density mode: vesicle parameters trained by the gradient of the loss
        through the expected release (any of ``u, w, v, content_mean, content_B``).
    vesicle_optimizer : optax.GradientTransformation, optional
        For ``train_vesicles`` (default ``optax.adam(1e-2)``).
    chunk : int
        Steps per compiled scan (progress and capacity are checked between chunks).
    progress : bool
        Show a progress bar.
    has_aux : bool
        ``loss_fn`` returns ``(loss, aux)``.
    resume : TrainResult, optional
        Go on from the end of an earlier run of the same overlay: its network,
        vesicles, release state, optimiser states and covariate statistics (then
        ``net`` only gives the network's structure, and ``params`` and
        ``release_params`` are taken from ``resume``). Pass the same optimisers, and
        the same ``key`` to go on with the same random streams and minibatches
        (a split run then equals one long run).

    Returns
    -------
    TrainResult

    Raises
    ------
    CapacityError
        More vesicles alive than ``ov.capacity`` (explicit mode), naming the step
        and the site; nothing is truncated.

    Examples
    --------
    >>> import equinox as eqx, jax, jax.numpy as jnp, optax, nvppl as nv
    >>> net = eqx.nn.MLP(4, 2, 8, depth=1, key=jax.random.key(0), dtype=jnp.float32)
    >>> ov = nv.overlay.Overlay.from_network(net, content_dim=2, capacity=256)
    >>> def loss_fn(net, x, y):
    ...     return jnp.mean((jax.vmap(net)(x) - y) ** 2)
    >>> X, Y = jnp.ones((32, 4), jnp.float32), jnp.zeros((32, 2), jnp.float32)
    >>> res = nv.overlay.train(ov, net, optax.sgd(0.1), loss_fn, (X, Y), n_steps=20, batch_size=8,
    ...                        progress=False)
    >>> res.metrics["loss"].shape
    (20,)
    """
    n_steps = positive_int(n_steps, "n_steps")
    chunk = positive_int(chunk, "chunk")
    if record and ov.mode != "explicit":
        raise ValueError("record=True needs mode='explicit': the density mode has no vesicles to record")
    train_vesicles = tuple(train_vesicles)
    for name in train_vesicles:
        if name not in _VESICLE_FIELDS:
            raise ValueError(f"train_vesicles: {name!r} is not a real-valued vesicle parameter "
                             f"(choose from {_VESICLE_FIELDS})")
        if ov.model.field_shape(name) is None:
            raise ValueError(f"train_vesicles: the model has no parameter {name!r}")
    if train_vesicles and ov.mode != "density":
        raise ValueError("train_vesicles needs mode='density' (the explicit mode samples; use nvppl.rl there)")
    if resume is not None and (params is not None or release_params is not None):
        raise ValueError("resume carries the vesicle parameters and release maps of the run it continues; "
                         "do not pass params or release_params with it")
    params = _as_params(ov.model, params)
    if ov.mode == "density" and ov.model.content_dim and {"memory", "param"} & set(ov.release) \
            and not np.any(params.content_mean) and not np.any(params.content_B):
        warnings.warn("mode='density' with content of mean zero (content_mean and content_B are zero): the expected "
                      "memory and rank-one releases are zero and FiLM acts through b_act alone; give the content a "
                      "mean, e.g. params.replace(content_B=...) to carry the covariates", UserWarning, stacklevel=2)
    jkey = as_jax_key(key)
    if resume is not None:
        if not isinstance(resume, TrainResult):
            raise TypeError(f"resume must be the TrainResult of an earlier train(), got {type(resume).__name__}")
        phi = resume.state.phi
    else:
        phi = ov.init_release(jax.random.fold_in(jkey, 1)) if release_params is None else release_params
    release_optimizer = _DEFAULTS["release"] if release_optimizer is None else release_optimizer
    release_optimizer = _masked(release_optimizer, _trained_fields(train_release), phi)
    vesicle_optimizer = _DEFAULTS["vesicle"] if vesicle_optimizer is None else vesicle_optimizer
    if resume is None:
        state, static = init_state(ov, net, optimizer, phi, release_optimizer, params, vesicle_optimizer,
                                   train_vesicles)
        # strong dtypes, so that a resumed state (a scan's output) reuses the compiled steps
        state = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype), state)
    else:
        theta, static = eqx.partition(net, eqx.is_inexact_array)
        if jax.tree.structure(resume.state.theta) != jax.tree.structure(theta):
            raise ValueError("resume: the network's structure differs from that of the run being resumed")
        state = resume.state
    runner = _runner(ov, static, loss_fn, optimizer, release_optimizer, vesicle_optimizer, train_vesicles, record,
                     bool(has_aux))
    vkey = jax.random.fold_in(jkey, 2)

    arrays = isinstance(data, tuple) and len(data) == 2 and all(hasattr(a, "shape") for a in data)
    if arrays:
        Xd, Yd = jnp.asarray(data[0]), jnp.asarray(data[1])
        if Xd.shape[0] != Yd.shape[0] or Xd.shape[0] == 0:
            raise ValueError(f"data: X and Y must have the same positive number of rows, got {Xd.shape[0]} "
                             f"and {Yd.shape[0]}")
        batch_size = positive_int(batch_size, "batch_size")
        idx = jnp.asarray(batch_indices(Xd.shape[0], n_steps, batch_size, jax.random.fold_in(jkey, 3),
                                        start=int(state.t)))
    else:
        it = iter(data)

    outs = []
    bar = progress_bar(progress, n_steps, f"overlay ({ov.mode})")
    try:
        done = 0
        while done < n_steps:
            m = min(chunk, n_steps - done)
            if arrays:
                state, out = runner.scan(state, Xd, Yd, idx[done:done + m], vkey)
            else:
                seq = []
                for _ in range(m):
                    try:
                        b = next(it)
                    except StopIteration:
                        raise ValueError(f"data ran out after {done + len(seq)} batches; n_steps={n_steps}") from None
                    state, o = runner.one(state, tuple(b), vkey)
                    seq.append(o)
                out = jax.tree.map(lambda *a: jnp.stack(a), *seq)
            out = jax.device_get(out)
            ov_step = np.asarray(out.overflow)[:, 0]
            if (ov_step >= 0).any():
                j = int(np.flatnonzero(ov_step >= 0)[0])
                node = int(np.asarray(out.overflow)[j, 1])
                raise CapacityError(
                    f"step {int(ov_step[j])}, site {ov.substrate.labels[node]!r}: the vesicles emitted do not fit "
                    f"in the {ov.capacity} slots; nothing was truncated. Build the overlay with a larger capacity, "
                    f"e.g. capacity={2 * ov.capacity}, or lower the emission rate")
            if not np.all(np.isfinite(out.loss)):
                j = int(np.flatnonzero(~np.isfinite(out.loss))[0])
                raise FloatingPointError(f"step {done + j}: the training loss is {out.loss[j]}; lower the "
                                         "learning rates or the release scale")
            outs.append(out)
            done += m
            if bar is not None:
                bar.update(m)
                bar.set_postfix(loss=f"{float(out.loss[-1]):.4g}", alive=f"{float(out.alive[-1]):.0f}")
    finally:
        if bar is not None:
            bar.close()
    out = jax.tree.map(lambda *a: np.concatenate(a), *outs)
    metrics = {"loss": out.loss, "alive": out.alive, "docks": out.docks, "modulation": out.modulation}
    if has_aux:
        metrics["aux"] = out.aux
    net_out = eqx.combine(state.theta, static)
    modulated = modulated_network(ov, state, static)
    vp = ov.model.check_params(jax.tree.map(np.asarray, state.vparams))
    traces = None
    if record:
        rec = out.record
        features = out.features[None]  # (1, T, n, p)
        traces = records_to_traces(ov.model, jax.tree.map(lambda a: np.asarray(a)[:, None], rec), features)
    return TrainResult(net_out, state.phi, vp, metrics, traces, modulated, state)


