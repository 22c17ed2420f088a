"""A compiled NUTS driver for the trace likelihood (pure ``init``/``run`` functions).

NumPyro's NUTS kernel (``numpyro.infer.hmc.hmc``) is run inside one jitted
function per model, settings and data shapes, cached for the process: repeated
fits (simulation-based calibration, coverage studies, the CLI in a notebook)
compile once, and many data sets can be fitted at once with ``jax.vmap``.
Chains run one after the other, vectorised (``vmap``), or in parallel with one
thread per host device.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_median
from numpyro.infer.hmc import hmc
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import find_valid_initial_params, get_potential_fn

from ..programs import ModelKey, trace_model
from ._progress import CURRENT, ChainProgress

__all__ = ["NUTSSettings", "SamplerInfo", "compiled_nuts", "run_chains"]


class NUTSSettings(NamedTuple):
    """Static settings of a NUTS run."""

    num_warmup: int = 1000
    num_samples: int = 1000
    thinning: int = 1
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    dense_mass: bool | None = None  # None: dense when the unconstrained dimension is at most DENSE_MAX


#: Up to this many unconstrained dimensions NUTS adapts a dense mass matrix by default.
DENSE_MAX = 300


class SamplerInfo(NamedTuple):
    """Per-draw sampler statistics."""

    diverging: jax.Array
    num_steps: jax.Array
    accept_prob: jax.Array
    step_size: jax.Array
    potential_energy: jax.Array
    energy: jax.Array


def _shape_signature(data) -> tuple:
    return tuple((k, tuple(np.shape(v))) for k, v in data._asdict().items())


def _prototype(model_fn, data) -> dict:
    """Zeros shaped like the unconstrained latent sites (found by abstract
    evaluation, so nothing runs op by op)."""
    found = {}

    def trace_sites(data):
        tr = handlers.trace(handlers.seed(model_fn, jax.random.PRNGKey(0))).get_trace(data)
        for name, site in tr.items():
            if site["type"] == "sample" and not site["is_observed"]:
                found[name] = (site["fn"].support, jnp.shape(site["value"]))
        return 0

    jax.eval_shape(trace_sites, data)
    return {name: jnp.zeros(biject_to(support).inverse_shape(shape))
            for name, (support, shape) in found.items()}


@functools.lru_cache(maxsize=16)
def _build(key: ModelKey, settings: NUTSSettings, signature: tuple, template, progress: bool):
    model_fn = functools.partial(trace_model, model=key.model)
    init_strategy = init_to_median(num_samples=25)
    prototype = _prototype(model_fn, template.data)
    dense = settings.dense_mass
    if dense is None:
        dense = sum(int(np.size(v)) for v in prototype.values()) <= DENSE_MAX
    pe_gen, post_gen = get_potential_fn(model_fn, {}, replay_model=True, dynamic_args=True)
    init_kernel, sample_kernel = hmc(potential_fn_gen=pe_gen, algo="NUTS")
    total = settings.num_warmup + settings.num_samples * settings.thinning
    every = max(total // 100, 1)

    def run(key, data):
        """One chain: warm-up then sampling; returns constrained draws and info."""
        k_init, k_hmc = jax.random.split(key)
        (z0, _, _), valid = find_valid_initial_params(k_init, model_fn, init_strategy=init_strategy,
                                                      model_args=(data,), prototype_params=prototype)
        state = init_kernel(z0, settings.num_warmup, target_accept_prob=settings.target_accept_prob,
                            max_tree_depth=settings.max_tree_depth, dense_mass=dense,
                            model_args=(data,), rng_key=k_hmc)

        def advance(i, s):
            s = sample_kernel(s, model_args=(data,))
            if progress:
                jax.lax.cond(((i + 1) % every == 0) | (i + 1 == total),
                             lambda: jax.debug.callback(functools.partial(_report, every=every, total=total), i),
                             lambda: None)
            return s

        def step(s, i):
            s = advance(i, s)
            info = SamplerInfo(s.diverging, s.num_steps, s.accept_prob, s.adapt_state.step_size,
                               s.potential_energy, s.energy)
            return s, (s.z, info)

        # one loop over warm-up and sampling, so the tree builder is compiled once
        _, (zs, info) = jax.lax.scan(step, state, jnp.arange(total))
        keep = slice(settings.num_warmup + settings.thinning - 1, None, settings.thinning)
        zs, info = jax.tree.map(lambda x: x[keep], (zs, info))
        post = jax.vmap(post_gen(data))(zs)
        return post, info, valid

    return run


class _Template(NamedTuple):
    """Carries example data into the cache without taking part in its key."""

    data: object

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, _Template)


@functools.lru_cache(maxsize=32)
def _executor(key: ModelKey, settings, signature, template, mode: str, progress: bool):
    run = _build(key, settings, signature, template, progress)
    if mode == "single":
        return jax.jit(run)
    if mode == "chains":
        return jax.jit(jax.vmap(run, in_axes=(0, None)))
    if mode == "datasets":
        return jax.jit(jax.vmap(run, in_axes=(0, 0)))
    raise ValueError(mode)


def compiled_nuts(model, settings: NUTSSettings, data, mode: str = "single", progress: bool = False):
    """The compiled NUTS program for ``model`` and data of this shape.

    ``mode``: ``"single"`` — ``run(key, data)``, one chain; ``"chains"`` —
    ``run(keys, data)``, chains vectorised; ``"datasets"`` — ``run(keys, datas)``,
    one chain per data set (stacked on a leading axis). Each returns
    ``(draws, info, valid)``; built once per process.
    """
    example = data if mode != "datasets" else jax.tree.map(lambda x: x[0], data)
    return _executor(ModelKey(model), settings, _shape_signature(example), _Template(example), mode, progress)


def _report(i, every, total):
    """Called from compiled code every ``every`` iterations of each chain."""
    bar = CURRENT[0]
    if bar is not None:
        last = int(np.max(i)) + 1 == total
        step = (total % every or every) if last else every
        bar.add(step * int(np.size(i)))


def run_chains(model, data, key, num_chains: int, settings: NUTSSettings, chain_method: str = "auto",
               progress_bar: bool = True, heavy: bool = False):
    """Run ``num_chains`` NUTS chains on one data set.

    ``chain_method``: ``"parallel"`` (one thread per host device, each running
    the single-chain program of ``"sequential"``, so both give the same draws),
    ``"vectorized"``, ``"sequential"`` or ``"auto"``: parallel when there are
    several devices and a gradient is ``heavy`` (the likelihood runs over many
    vesicle-steps), otherwise sequential, which compiles fastest (on sufficient
    statistics a chain of 2000 iterations runs in well under a second, so
    compilation dominates). JAX sees one host device unless
    :func:`nvppl.set_host_device_count` was called first; parallel chains on one
    device run one after the other, with a warning.

    Returns
    -------
    draws : dict
        Constrained sample sites, arrays ``(chain, draw, ...)``.
    info : SamplerInfo
        Arrays ``(chain, draw)``.
    valid : ndarray of bool, ``(chain,)``
        Whether a finite initial point was found.
    """
    if chain_method not in ("auto", "parallel", "vectorized", "sequential"):
        raise ValueError(f"chain_method must be 'auto', 'parallel', 'vectorized' or 'sequential', "
                         f"got {chain_method!r}")
    total = settings.num_warmup + settings.num_samples * settings.thinning
    keys = jax.random.split(key, num_chains)
    n_dev = jax.local_device_count()
    if chain_method == "auto":
        chain_method = "parallel" if num_chains > 1 and heavy else "sequential"
    if chain_method == "parallel" and num_chains > 1 and n_dev == 1:
        warnings.warn(
            f"parallel chains need several host devices, but JAX sees one: the {num_chains} chains run one after "
            "the other. Call nv.set_host_device_count(n) at the start of the program (before any JAX "
            "computation) to run them in parallel", UserWarning, stacklevel=4)
    if chain_method == "parallel" and (n_dev == 1 or num_chains == 1):
        chain_method = "sequential"
    bar = ChainProgress(total * num_chains, f"NUTS, {num_chains} chain(s)") if progress_bar else None
    with bar if bar is not None else contextlib.nullcontext():
        if chain_method == "sequential":
            run = compiled_nuts(model, settings, data, "single", progress_bar)
            outs = [run(k, data) for k in keys]
            draws, info, valid = jax.tree.map(lambda *x: jnp.stack(x), *outs)
        elif chain_method == "vectorized":
            draws, info, valid = compiled_nuts(model, settings, data, "chains", progress_bar)(keys, data)
        else:
            run = compiled_nuts(model, settings, data, "single", progress_bar)
            devices = jax.local_devices()

            def chain(i):
                k, d = jax.device_put((keys[i], data), devices[i % len(devices)])
                return jax.block_until_ready(run(k, d))

            # one thread per host device; each chain is the same program as in "sequential"
            with ThreadPoolExecutor(min(len(devices), num_chains)) as pool:
                outs = list(pool.map(chain, range(num_chains)))
            draws, info, valid = jax.tree.map(lambda *x: np.stack([np.asarray(a) for a in x]), *outs)
    return ({k: np.asarray(v) for k, v in draws.items()}, jax.tree.map(np.asarray, info), np.asarray(valid))
