"""``particle_filter``: the likelihood of partial observations by a bootstrap
particle filter over explicit vesicle populations (compiled engine)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._engine.bridge import core_model, engine
from .._validate import choice, positive_int, probability, seed64, thread_count
from ..covariates import model_features
from ..errors import CapacityError, ObservationError
from ..programs import default_capacity
from ..traces import Observations, Traces
from .guided import guided_runs, guided_supported

__all__ = ["particle_filter", "ParticleFilterResult", "DETECTION_CODES"]

#: particles × capacity below which the default is one thread (the result is the same either way)
_PARALLEL_MIN_WORK = 200_000

#: detection model codes of the compiled core
DETECTION_CODES = {"exact": 0, "binomial": 1, "poisson": 2}


@dataclass(frozen=True)
class ParticleFilterResult:
    """What :func:`particle_filter` returns.

    Attributes
    ----------
    log_evidence : float
        ``log Ẑ``: the log of the filter's unbiased estimate of
        ``p(observations | params)``, summed over runs.
    log_evidence_runs : ndarray, shape (R,)
        The same per run.
    log_increments : ndarray, shape (R, T)
        ``log p̂(y_t | y_<t)`` per run and step; they sum to ``log_evidence``.
    ess : ndarray, shape (R, T)
        Effective sample size of the weights after step ``t``'s observation.
    resampled : ndarray of bool, shape (R, T)
        Whether the particles were resampled after step ``t``.
    filtered_counts : ndarray, shape (R, T, n, K)
        ``E[N_t | y_≤t]``: filtered mean of the number of vesicles present after
        step ``t`` per node and type.
    trajectory : Traces or None
        One trajectory per run drawn from the particle approximation of the
        smoothing distribution ``p(x_0:T | y_0:T)`` (genealogy tracing).
    n_particles : int
    particle_vesicle_steps : int
        Vesicle-steps propagated, summed over particles, steps and runs.
    proposal : {"guided", "bootstrap"}
        The filter that ran (see :func:`particle_filter`).
    """

    log_evidence: float
    log_evidence_runs: np.ndarray
    log_increments: np.ndarray
    ess: np.ndarray
    resampled: np.ndarray
    filtered_counts: np.ndarray
    trajectory: Traces | None
    n_particles: int
    particle_vesicle_steps: int
    proposal: str = "bootstrap"


def particle_filter(model, params, obs: Observations, n_particles: int = 1024, key=0, n_threads: int | None = None,
                    ess_threshold: float = 0.5, covariates=None, capacity: int | None = None,
                    trajectory: bool | None = None, p_det: float | None = None, proposal: str = "auto",
                    run_keys=None) -> ParticleFilterResult:
    r"""Particle filter for partial observations: guided where the model allows, bootstrap otherwise.

    **Guided** (``proposal="guided"``, :mod:`nvppl.smc.guided`): for geometric
    lifetimes, content that does not act on the dynamics, a release budget of 1
    or infinity and binomial or exact detection, the vesicles never seen form
    one Poisson population computed once by the density recursion thinned by
    detection, particles carry only the seen vesicles (as counts per node and
    type), each seen vesicle's move, dock and survival is proposed with the
    step's observation in view, and a node's observation has the probability
    of a binomial (seen vesicles detected again) convolved with a Poisson
    (first sightings), which is never zero for data the model can produce.
    ``trajectory`` is not available from it (``None``).

    **Bootstrap** (``proposal="bootstrap"``): each particle is a whole
    population of vesicles. At step ``t`` every
    particle is advanced by the life cycle of :ref:`design-model` (emission, migration,
    docking, absorption, decay: eq. 9-19, 37-38) and weighted by the detection
    model of the observations (:class:`~nvppl.Observations`),

    .. math::

        g_t(x) = \prod_{i,\kappa} p(y_{t,i,\kappa} \mid N_{t,i,\kappa}(x))
                 \, p(D^{obs}_{t,i,\kappa} \mid D_{t,i,\kappa}(x)),

    with exact, binomial (``Binomial(N, p_det)``) or Poisson
    (``Poisson(N + floor)``) detection. The estimate of the likelihood,
    :math:`\hat Z = \prod_t \sum_j \bar W^j_{t-1} g_t(x^j_t)`, is unbiased.
    Particles are resampled (systematic resampling) after a step whose
    effective sample size falls below ``ess_threshold · n_particles``.

    Parameters
    ----------
    model : VesicleModel
    params : Params
    obs : Observations
        Counts and/or dock counts, ``run × step × node × type``.
    n_particles : int, default 1024
    key : int or jax key
        Seed; each (run, step, particle) has its own random stream, so the
        result is the same for any ``n_threads``.
    n_threads : int, optional
        OpenMP threads over particles (default: every core, or one for a small
        filter whose steps are too short to share).
    ess_threshold : float in [0, 1], default 0.5
    covariates : array, optional
        User covariates ``F`` as for :func:`nvppl.simulate`.
    capacity : int, optional
        Vesicles a particle may hold at once (default: from the parameters with
        a wide margin). More is an error (:class:`~nvppl.errors.CapacityError`),
        never a truncation.
    trajectory : bool, optional
        Draw one smoothed trajectory per run (:attr:`ParticleFilterResult.trajectory`);
        only the bootstrap filter can, so ``True`` makes ``proposal="auto"``
        take it. Default: a trajectory whenever the bootstrap filter runs.
    p_det : float, optional
        Detection probability when ``obs.p_det`` is unknown (binomial detection).
    proposal : {"auto", "guided", "bootstrap"}, default "auto"
        ``"auto"`` takes the guided filter wherever it applies
        (:func:`nvppl.smc.guided.guided_supported` says why not otherwise).
    run_keys : sequence of int, optional
        One seed per run instead of ``key``: renewing one run's seed leaves the
        other runs' estimates unchanged (block pseudo-marginal MCMC).

    Both estimates of the likelihood are unbiased.

    Returns
    -------
    ParticleFilterResult

    Raises
    ------
    ObservationError
        Observations that do not fit the model, or that every particle gives
        probability zero (naming the run, step, node and type).
    CapacityError
        A particle needs more than ``capacity`` vesicles.

    Examples
    --------
    >>> import networkx as nx, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1)
    >>> params = model.default_params()
    >>> traces = nv.simulate(model, params, n_steps=20, n_runs=1, key=0)
    >>> obs = traces.observe(counts=True, detection="binomial", p_det=0.8, key=1)
    >>> pf = nv.smc.particle_filter(model, params, obs, n_particles=256, key=0)
    >>> pf.log_increments.shape, pf.filtered_counts.shape
    ((1, 20), (1, 20, 4, 1))
    >>> bool(pf.log_evidence < 0), pf.proposal
    (True, 'guided')
    """
    if not isinstance(obs, Observations):
        raise TypeError(f"obs must be nvppl.Observations, got {type(obs).__name__}")
    obs.check_model(model)
    params = model.check_params(params)
    N = positive_int(n_particles, "n_particles")
    ess_threshold = probability(ess_threshold, "ess_threshold")
    detection = obs.detection
    pd = obs.p_det if p_det is None else float(p_det)
    if p_det is not None:
        Observations.check_detection(detection, p_det, obs.floor)
    if detection == "binomial" and pd is None:
        raise ObservationError("binomial detection with an unknown p_det: pass p_det=... to the filter "
                               "(or build the Observations with p_det)")
    R, T = obs.n_runs, obs.n_steps
    F = model_features(model, covariates, R, T)
    proposal = choice(proposal, ("auto", "guided", "bootstrap"), "proposal")
    if run_keys is not None and len(run_keys) != R:
        raise ValueError(f"run_keys must hold one seed per run ({R}), got {len(run_keys)}")
    if proposal == "guided" and trajectory:
        raise ValueError("the guided filter draws no trajectory; use proposal='bootstrap' for trajectory=True")
    if proposal == "guided" or (proposal == "auto" and not trajectory):
        why = guided_supported(model, obs, p_det)
        if why is None:
            return _guided(model, params, obs, F, N, key, n_threads, ess_threshold, pd, run_keys)
        if proposal == "guided":
            raise ValueError(f"the guided filter does not apply here: {why}; use proposal='bootstrap'")
    trajectory = True if trajectory is None else bool(trajectory)
    pf = engine("filter")
    C = default_capacity(model, params, F, T) if capacity is None else positive_int(capacity, "capacity")
    cm = core_model(model, params, F)
    seed = seed64(key)
    # one parallel region per step: below ~2e5 particle-vesicle slots its cost exceeds the work
    nt = thread_count(n_threads) if n_threads is not None or N * C >= _PARALLEL_MIN_WORK else 1
    runs = []
    for r in range(R):
        y = None if obs.counts is None else obs.counts[r]
        d = None if obs.docks is None else obs.docks[r]
        out = pf.pf_run(cm, seed if run_keys is None else seed64(int(run_keys[r])), r, T, y, d, DETECTION_CODES[detection], 1.0 if pd is None else pd,
                           obs.floor, N, C, float(ess_threshold), nt, bool(trajectory))
        if "error" in out:
            _raise(out, r, model, C)
        runs.append(out)
    log_inc = np.stack([o["log_inc"] for o in runs])
    traj = _trajectories(pf, cm, seed, model, runs, T, C, F) if trajectory else None
    return ParticleFilterResult(
        log_evidence=float(log_inc.sum()), log_evidence_runs=log_inc.sum(1), log_increments=log_inc,
        ess=np.stack([o["ess"] for o in runs]), resampled=np.stack([o["resampled"] for o in runs]),
        filtered_counts=np.stack([o["filtered"] for o in runs]), trajectory=traj, n_particles=N,
        particle_vesicle_steps=int(sum(o["work"] for o in runs)),
    )


def _guided(model, params, obs, F, N, key, n_threads, ess_threshold, p_det, run_keys) -> ParticleFilterResult:
    nt = thread_count(n_threads) if n_threads is not None or N * model.n_nodes >= _PARALLEL_MIN_WORK // 8 else 1
    runs = guided_runs(model, params, obs, F, N, key, nt, ess_threshold, p_det,
                       None if run_keys is None else [seed64(int(k)) for k in run_keys])
    for r, out in enumerate(runs):
        if "error" in out:
            raise ObservationError(
                "every particle of the guided filter gives the observations probability zero (the likelihood "
                "estimate is zero): under these parameters the observations of this step cannot be produced "
                "(with exact detection, a count or dock count that the vesicles present cannot give)",
                run=r, step=out["step"])
    log_inc = np.stack([o["log_inc"] for o in runs])
    return ParticleFilterResult(
        log_evidence=float(log_inc.sum()), log_evidence_runs=log_inc.sum(1), log_increments=log_inc,
        ess=np.stack([o["ess"] for o in runs]), resampled=np.stack([o["resampled"] for o in runs]),
        filtered_counts=np.stack([o["filtered"] for o in runs]), trajectory=None, n_particles=N,
        particle_vesicle_steps=int(sum(o["work"] for o in runs)), proposal="guided")


def _raise(out, run, model, capacity):
    step = out["step"]
    if out["error"] == "capacity":
        raise CapacityError(
            f"run {run}, step {step}: particle {out['particle']} holds more than {capacity} vesicles at once; "
            f"nothing was truncated. Pass a larger capacity, e.g. particle_filter(..., capacity={2 * capacity})")
    label = model.substrate.labels[out["node"]]
    what = "count" if out["kind"] == "counts" else "dock count"
    raise ObservationError(
        f"every particle gives the observations probability zero (the likelihood estimate is zero): the observed "
        f"{what} {out['observed']} at node {label!r}, type {out['type']} is impossible for {out['n_conflict']} of "
        f"the {out['n_particles']} particles (they hold {out['true_min']}..{out['true_max']} there). More "
        "particles, other parameters, or detection='binomial'/'poisson' instead of 'exact' may help",
        run=run, step=step)


def _trajectories(pf, cm, seed, model, runs, T, C, F) -> Traces:
    """Replay each run's drawn ancestral line and assemble the events as Traces."""
    K, dc = model.n_types, model.content_dim
    v_parts, s_parts, offset = [], [], 0
    for r, out in enumerate(runs):
        births, content, moves, deaths = pf.pf_replay(cm, seed, r, T, out["lineage"], C)
        nv = len(births)
        death_step = np.full(nv, T - 1, np.int64)
        cause = np.zeros(nv, np.int64)
        death_step[deaths["vid"]] = deaths["step"]
        cause[deaths["vid"]] = deaths["cause"]
        v_parts.append({"run": np.full(nv, r, np.int64), "vesicle": births["vid"].astype(np.int64),
                        "type": births["type"].astype(np.int64), "birth_step": births["step"].astype(np.int64),
                        "birth_node": births["node"].astype(np.int64), "death_step": death_step,
                        "death_cause": cause, "content": content.reshape(nv, dc), "tau0": births["tau0"]})
        order = np.argsort(moves["vid"], kind="stable")
        mv = moves[order]
        s_parts.append({"vrow": mv["vid"].astype(np.int64) + offset, "step": mv["step"].astype(np.int64),
                        "node_from": mv["node_from"].astype(np.int64), "node_to": mv["node_to"].astype(np.int64),
                        "docked": mv["docked"].astype(bool)})
        offset += nv
    v = {k: np.concatenate([p[k] for p in v_parts]) for k in v_parts[0]}
    s = {k: np.concatenate([p[k] for p in s_parts]) for k in s_parts[0]}
    v["budget"] = model.budget[v["type"]]
    if model.lifetime != "countdown":
        del v["tau0"]
    return Traces(model.substrate, T, len(runs), K, v, s, F if model.covariate_dim else None)
