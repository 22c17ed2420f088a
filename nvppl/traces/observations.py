"""Partially observed data: counts and dock counts without identities."""

from __future__ import annotations

import numpy as np

from ..errors import ObservationError

__all__ = ["Observations", "DETECTIONS", "check_fit_data"]

DETECTIONS = ("exact", "binomial", "poisson")


class Observations:
    """Counts of vesicles present after each step and/or dock counts, per run,
    step, node and type, seen through a detection model.

    Parameters
    ----------
    counts : array of int, shape (n_runs, n_steps, n_nodes, n_types), optional
        ``y[r, t, i, κ]``: vesicles of type ``κ`` seen at node ``i`` after step ``t``.
    docks : array of int, same shape, optional
        ``D[r, t, i, κ]``: docks seen at node ``i`` during step ``t``.
    detection : {"exact", "binomial", "poisson"}
        ``"exact"``: the true counts; ``"binomial"``: each vesicle seen with
        probability ``p_det``; ``"poisson"``: ``Poisson(true + floor)``.
    p_det : float, optional
        Detection probability of the binomial model; ``None`` means it is unknown
        (to be inferred).
    floor : float, default 0.1
        Rate floor of the Poisson model.

    Raises
    ------
    ObservationError
        Neither array given, wrong shape or dimension, shapes that differ,
        non-integer, negative or non-finite entries (naming run, step, node and
        type), an unknown detection model or a ``p_det`` outside (0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> obs = Observations(counts=np.zeros((1, 5, 3, 2), int), detection="binomial", p_det=0.8)
    >>> obs.n_runs, obs.n_steps, obs.n_nodes, obs.n_types
    (1, 5, 3, 2)
    >>> Observations(counts=-np.ones((1, 1, 1, 1), int))
    Traceback (most recent call last):
    ...
    nvppl.errors.ObservationError: run 0, step 0: counts at node index 0, type 0 is -1, must be >= 0
    """

    def __init__(self, counts=None, docks=None, detection: str = "exact", p_det=None, floor: float = 0.1):
        if counts is None and docks is None:
            raise ObservationError("give counts and/or docks")
        self.check_detection(detection, p_det, floor)
        self.detection = detection
        self.p_det = None if p_det is None else float(p_det)
        self.floor = float(floor)
        self.counts = None if counts is None else self._check(counts, "counts")
        self.docks = None if docks is None else self._check(docks, "docks")
        if self.counts is not None and self.docks is not None and self.counts.shape != self.docks.shape:
            raise ObservationError(f"counts have shape {self.counts.shape} but docks have shape {self.docks.shape}")

    @staticmethod
    def check_detection(detection, p_det, floor):
        """Validate a detection model's name and parameters."""
        if detection not in DETECTIONS:
            raise ObservationError(f"detection must be one of {DETECTIONS}, got {detection!r}")
        if p_det is not None and not (0.0 < float(p_det) <= 1.0):
            raise ObservationError(f"p_det must lie in (0, 1], got {p_det!r}")
        if detection == "exact" and p_det not in (None, 1, 1.0):
            raise ObservationError("exact detection takes no p_det (use detection='binomial')")
        if not (np.isfinite(floor) and floor > 0):
            raise ObservationError(f"floor must be a positive number, got {floor!r}")

    @staticmethod
    def _check(values, name):
        arr = np.asarray(values)
        if arr.ndim != 4:
            raise ObservationError(f"{name} must have 4 dimensions (run, step, node, type), got shape {arr.shape}")
        if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
            raise ObservationError(f"{name} must be integer counts, got dtype {arr.dtype}")
        for bad, what in ((~np.isfinite(arr) if arr.dtype.kind == "f" else None, "not finite"),
                          (arr != np.round(arr) if arr.dtype.kind == "f" else None, "not an integer"),
                          (arr < 0, "negative")):
            if bad is None:
                continue
            where = np.argwhere(bad)
            if len(where):
                r, t, i, k = (int(x) for x in where[0])
                detail = "must be >= 0" if what == "negative" else what
                raise ObservationError(f"{name} at node index {i}, type {k} is {arr[r, t, i, k].item()!r}, {detail}",
                                       run=r, step=t)
        out = arr.astype(np.int64)
        out.setflags(write=False)
        return out

    @property
    def shape(self) -> tuple:
        """``(n_runs, n_steps, n_nodes, n_types)``."""
        return (self.counts if self.counts is not None else self.docks).shape

    n_runs = property(lambda self: self.shape[0], doc="Number of runs.")
    n_steps = property(lambda self: self.shape[1], doc="Number of steps.")
    n_nodes = property(lambda self: self.shape[2], doc="Number of nodes.")
    n_types = property(lambda self: self.shape[3], doc="Number of types.")

    def check_model(self, model) -> None:
        """Raise :class:`ObservationError` unless the shape matches ``model``
        (nodes and types)."""
        if self.n_nodes != model.n_nodes:
            raise ObservationError(f"observations cover {self.n_nodes} nodes but the model's graph has {model.n_nodes}")
        if self.n_types != model.n_types:
            raise ObservationError(f"observations have {self.n_types} types but the model has {model.n_types}; "
                                   f"type index {model.n_types if self.n_types > model.n_types else self.n_types} "
                                   "is unknown to one of them")

    def __repr__(self) -> str:
        kinds = [k for k in ("counts", "docks") if getattr(self, k) is not None]
        return (f"Observations(shape={self.shape}, observed={kinds}, detection={self.detection!r}, "
                f"p_det={self.p_det})")


def check_fit_data(model, obs, method: str, p_det_reason: str) -> None:
    """Validate observations for a fitting method: an :class:`Observations` that
    matches ``model``, and a known ``p_det`` under binomial detection (the
    reason why the method needs it is ``p_det_reason``)."""
    if not isinstance(obs, Observations):
        raise TypeError(f"method={method!r} fits partial observations (nvppl.Observations, e.g. from "
                        f"traces.observe(...)), got {type(obs).__name__}"
                        + ("; fit fully observed Traces with method='nuts'" if type(obs).__name__ == "Traces"
                           else ""))
    obs.check_model(model)
    if obs.detection == "binomial" and obs.p_det is None:
        raise ValueError(f"binomial detection with an unknown p_det (p_det=None) is not supported by "
                         f"method={method!r}: {p_det_reason}; pass p_det to Observations")
