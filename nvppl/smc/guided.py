r"""The guided particle filter: never-seen vesicles as one Poisson population,
seen vesicles as particles, proposals that look at the observation.

For geometric lifetimes, content that does not act on the dynamics and a
release budget of 1 or infinity, observed through binomial (or exact)
detection, the thinning and displacement theorems of Poisson processes give:

* the vesicles never seen so far form a Poisson population whose intensity
  :math:`\mu_t` evolves by the density recursion thinned by detection — the
  same for every particle, computed once (:func:`unseen_rates`);
* at node :math:`j` the first sightings in step :math:`t` are independent
  Poisson counts: :math:`A` (dock and count seen), :math:`B` (dock seen only)
  and :math:`C` (count seen only), with rates :math:`\nu_t(j)` times

  ======================  =========================================  ===============================
  budget                  infinite                                   one release
  ======================  =========================================  ===============================
  :math:`A`               :math:`q p_D s p_c`                        0
  :math:`B`               :math:`q p_D (1 - s p_c)`                  :math:`q p_D`
  :math:`C`               :math:`s p_c (1 - q p_D)`                  :math:`(1 - q) s p_c`
  never seen, alive       :math:`s (1 - p_c)(1 - q p_D)`             :math:`(1 - q) s (1 - p_c)`
  ======================  =========================================  ===============================

  where :math:`\nu_t(j) = \sum_i (\mu_{t-1}(i) + \lambda_t(i)) P_t(i \to j)`
  is the never-seen mass arriving at :math:`j`, :math:`q` the dock
  probability there, :math:`s = (1 - a_j)(1 - \delta)` the survival and
  :math:`p_c, p_D` the detection probabilities of counts and docks (0 for
  what is not observed);
* particles carry only the seen vesicles, as counts per node and type (they
  are exchangeable). The probability of a node's observation is a binomial
  (seen vesicles detected again) convolved with these Poisson counts, which is
  never zero for data the model can produce under binomial detection.

Each seen vesicle's move, dock and survival are proposed one vesicle at a time
with the step's observation in view (the compiled :mod:`nvppl._engine.guided`),
and the weights carry the exact ratio of prior to proposal, so
:math:`\hat Z` stays unbiased.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .._engine.bridge import engine
from .._validate import seed64

__all__ = ["guided_supported", "filter_name", "life_tables", "unseen_rates", "guided_runs"]


def guided_supported(model, obs, p_det=None) -> str | None:
    """``None`` when the guided filter applies to ``model`` and ``obs``, else why not.

    Examples
    --------
    >>> import networkx as nx, numpy as np, nvppl as nv
    >>> model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(3)), n_types=1)
    >>> obs = nv.Observations(counts=np.zeros((1, 4, 3, 1), int), detection="binomial", p_det=0.8)
    >>> guided_supported(model, obs) is None
    True
    >>> guided_supported(model, nv.Observations(counts=np.zeros((1, 4, 3, 1), int), detection="poisson"))
    'Poisson detection is not a thinning of the vesicles'
    """
    if model.lifetime != "geometric":
        return "countdown lifetimes carry an age per vesicle"
    if model.content_dependent_docking:
        return "docking depends on content"
    if model.content_dim and model.tilted and ("Q" in model.priors or np.any(model.fixed["Q"] != 0)):
        return "migration depends on content (Q)"
    budget = np.asarray(model.budget, dtype=float)
    if np.any(np.isfinite(budget) & (budget != 1)):
        return "a release budget of 2 or more carries the releases left per vesicle"
    if obs.detection == "poisson":
        return "Poisson detection is not a thinning of the vesicles"
    if obs.detection == "binomial" and obs.p_det is None and p_det is None:
        return "binomial detection with an unknown p_det"
    return None


def filter_name(model, obs, custom=None) -> str:
    """Which filter :func:`nvppl.smc.particle_filter` runs by default for
    ``model`` and ``obs``: ``"guided"`` or ``"bootstrap"`` (``"custom"`` when
    ``custom``, a user's filter, is given)."""
    if custom is not None:
        return "custom"
    return "guided" if guided_supported(model, obs) is None else "bootstrap"


def life_tables(model, params, F: np.ndarray) -> dict:
    """One vesicle's life cycle as tables over (run, step): emission rates,
    move probabilities (tilted where the model tilts), dock and survival
    probabilities.

    Returns
    -------
    dict
        ``lam, pd (R', T', n, K)``, ``P (R', T', K, n, M)``, ``sv (n, K)``,
        ``b1 (K,)``, ``cand (n, M)``, ``ncand (n,)``; ``R'``/``T'`` are 1 where
        the covariates do not vary over runs or steps.
    """
    from .._engine.bridge import _shared_axes

    p = params
    sub = model.substrate
    K = model.n_types
    F = np.asarray(F, dtype=np.float64)
    F = F[:1, :1] if F.shape[-1] == 0 else _shared_axes(F)
    X = np.concatenate([np.ones(F.shape[:-1] + (1,)), F], axis=-1)
    z = np.einsum("rtnd,kd->rtnk", X, np.asarray(p.u, dtype=np.float64))
    lam = np.asarray(p.r_max) * expit(z) if model.emission_link == "sigmoid" else np.exp(z)
    pd = expit(np.einsum("rtnd,kd->rtnk", X, np.asarray(p.w, dtype=np.float64)))
    cand = np.asarray(sub.candidates, dtype=np.int32)
    ncand = np.asarray(sub.n_candidates, dtype=np.int32)
    T = np.asarray(p.T, dtype=np.float64)  # (K, n, M)
    valid = cand >= 0
    if model.tilted and model.covariate_dim:
        score = np.einsum("rtnp,kp->rtnk", F, np.asarray(p.v, dtype=np.float64))  # (R', T', n, K)
        dest = np.where(valid, cand, 0)
        with np.errstate(divide="ignore"):
            logit = np.log(T)[None, None] + np.asarray(model.gamma)[None, None, :, None, None] \
                * np.moveaxis(score, -1, 2)[:, :, :, dest]  # (R', T', K, n, M)
        logit = np.where(valid, logit, -np.inf)
        mx = logit.max(-1, keepdims=True) if cand.shape[1] else np.zeros(logit.shape[:-1] + (1,))
        P = np.where(valid, np.exp(logit - np.where(np.isfinite(mx), mx, 0.0)), 0.0)
        P /= np.where(ncand[:, None] > 0, P.sum(-1, keepdims=True), 1.0)
    else:
        P = T[None, None]
    delta = np.asarray(p.delta, dtype=np.float64)
    absorb = np.asarray(p.a, dtype=np.float64) if p.a is not None else np.zeros(model.n_nodes)
    sv = (1.0 - absorb)[:, None] * (1.0 - delta)[None, :]
    b1 = (np.asarray(model.budget, dtype=float) == 1).astype(np.int32)
    return {"lam": lam, "pd": pd, "P": np.ascontiguousarray(P), "sv": sv, "b1": b1, "cand": cand, "ncand": ncand}


def _run(x: np.ndarray, r: int) -> np.ndarray:
    return x[r if x.shape[0] > 1 else 0]


def unseen_rates(tabs: dict, run: int, n_steps: int, p_count: float, p_dock: float) -> dict:
    """Rates of first sightings and the never-seen intensity of one run.

    Returns
    -------
    dict of ndarray, each ``(T, n, K)``
        ``nuA, nuB, nuC`` (first sightings, see the module docstring), ``fB``
        (share of dock-only sightings still alive) and ``mu`` (never-seen
        vesicles alive after step ``t``).
    """
    lam, pd, P = _run(tabs["lam"], run), _run(tabs["pd"], run), _run(tabs["P"], run)
    sv, b1, cand = tabs["sv"], tabs["b1"].astype(bool), tabs["cand"]
    n, K = sv.shape
    valid = cand >= 0
    dest = cand[valid]
    out = {name: np.zeros((n_steps, n, K)) for name in ("nuA", "nuB", "nuC", "fB", "mu")}
    mu = np.zeros((n, K))
    pc, pD = float(p_count), float(p_dock)
    for t in range(n_steps):
        m = mu + lam[t if lam.shape[0] > 1 else 0]
        Pt = P[t if P.shape[0] > 1 else 0]  # (K, n, M)
        nu = np.empty((n, K))
        for k in range(K):
            flows = (m[:, k, None] * Pt[k])[valid]
            nu[:, k] = np.bincount(dest, weights=flows, minlength=n)
        q = pd[t if pd.shape[0] > 1 else 0]
        s = sv
        A = np.where(b1, 0.0, q * pD * s * pc)
        B = np.where(b1, q * pD, q * pD * (1.0 - s * pc))
        C = np.where(b1, (1.0 - q) * s * pc, s * pc * (1.0 - q * pD))
        U = np.where(b1, (1.0 - q) * s * (1.0 - pc), s * (1.0 - pc) * (1.0 - q * pD))
        den = 1.0 - s * pc
        fB = np.where(b1 | (den <= 0), 0.0, s * (1.0 - pc) / np.where(den > 0, den, 1.0))
        out["nuA"][t], out["nuB"][t], out["nuC"][t], out["fB"][t] = nu * A, nu * B, nu * C, fB
        mu = nu * U
        out["mu"][t] = mu
    return out


def guided_runs(model, params, obs, F, n_particles: int, key, n_threads: int, ess_threshold: float,
                p_det: float | None, run_keys=None) -> list[dict]:
    """Run the compiled guided filter over every run of ``obs``.

    ``run_keys`` (one 64-bit seed per run) replaces ``key`` when given, so that
    the random numbers of one run can be renewed alone (block pseudo-marginal
    MCMC). Returns one dict per run (see :func:`nvppl._engine.guided.guided_run`)
    with ``filtered`` (seen plus never-seen mean, ``(T, n, K)``) added.
    """
    gd = engine("guided")
    tabs = life_tables(model, params, F)
    if obs.detection == "exact":
        pdet = 1.0
    else:
        pdet = float(obs.p_det if p_det is None else p_det)
    pc = pdet if obs.counts is not None else 0.0
    pD = pdet if obs.docks is not None else 0.0
    base = seed64(key)
    out = []
    for r in range(obs.n_runs):
        rates = unseen_rates(tabs, r, obs.n_steps, pc, pD)
        run_tabs = {"cand": tabs["cand"], "ncand": tabs["ncand"], "P": _run(tabs["P"], r),
                    "pd": _run(tabs["pd"], r), "sv": tabs["sv"], "b1": tabs["b1"], **rates}
        seed = base if run_keys is None else int(run_keys[r])
        res = gd.guided_run(run_tabs, seed, r, obs.n_steps,
                            None if obs.counts is None else obs.counts[r],
                            None if obs.docks is None else obs.docks[r],
                            pc, pD, int(n_particles), float(ess_threshold), int(n_threads))
        if "error" not in res:
            res["filtered"] = res["seen"] + rates["mu"]
        out.append(res)
    return out
