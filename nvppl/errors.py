"""Exceptions raised by nvppl.

Every error about data names the offending item so that it can be found in the
input: the run, vesicle and step for traces; the field and index for parameters.
"""

from __future__ import annotations


class TraceError(ValueError):
    """Invalid vesicle traces or observations.

    Parameters
    ----------
    message : str
        What is wrong.
    run, vesicle, step : int, optional
        The offending run, vesicle id and step; included in the message.

    Examples
    --------
    >>> err = TraceError("node 'z' is not in the graph", run=0, vesicle=3, step=7)
    >>> str(err)
    "run 0, vesicle 3, step 7: node 'z' is not in the graph"
    """

    def __init__(self, message: str, *, run=None, vesicle=None, step=None):
        self.run, self.vesicle, self.step = run, vesicle, step
        where = [
            f"{name} {value}"
            for name, value in (("run", run), ("vesicle", vesicle), ("step", step))
            if value is not None
        ]
        super().__init__(", ".join(where) + ": " + message if where else message)


class ObservationError(TraceError):
    """Invalid partial observations (counts or dock counts)."""


class SpecError(ValueError):
    """An invalid model specification: a spec file, a model section or a prior
    that cannot be read (the message names the file, section and key)."""


class CapacityError(RuntimeError):
    """A fixed-size program ran out of room; nothing was truncated."""


class ImportanceSamplingError(RuntimeError):
    """Importance sampling was refused: the Pareto-smoothed weights are unreliable.

    Attributes
    ----------
    khat : float
        Pareto shape estimate of the largest weights (reliable below 0.7).
    result : ImportanceResult or None
        The weighted draws, for inspection.
    """

    def __init__(self, message: str, *, khat: float, result=None):
        self.khat = khat
        self.result = result
        super().__init__(message)


class ApproximationWarning(UserWarning):
    """A result rests on an approximation whose error is not controlled (for
    example a mean-field density, or a composite likelihood that could not be
    adjusted); the message says which and, where known, by how much."""


class WeakIdentificationWarning(UserWarning):
    """The data barely inform some parameter combinations: the posterior along
    them is close to the prior or strongly correlated; the message names them."""
