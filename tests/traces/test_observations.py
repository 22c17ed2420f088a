"""Tests of nvppl.Observations: construction, validation and model checks."""

import networkx as nx
import numpy as np
import pytest

import nvppl as nv


def counts(shape=(2, 4, 3, 2), seed=0):
    return np.random.default_rng(seed).integers(0, 5, size=shape)


def test_valid_counts_and_docks():
    """Valid arrays are kept as read-only int64 arrays with the documented shape properties."""
    y, D = counts(), counts(seed=1)
    obs = nv.Observations(counts=y, docks=D, detection="binomial", p_det=0.8)
    assert (obs.n_runs, obs.n_steps, obs.n_nodes, obs.n_types) == (2, 4, 3, 2)
    assert obs.shape == (2, 4, 3, 2)
    assert obs.counts.dtype == np.int64 and obs.docks.dtype == np.int64
    np.testing.assert_array_equal(obs.counts, y)
    np.testing.assert_array_equal(obs.docks, D)
    assert obs.detection == "binomial" and obs.p_det == 0.8
    with pytest.raises(ValueError):
        obs.counts[0, 0, 0, 0] = 7
    y[0, 0, 0, 0] = 99  # the caller's array is not shared
    assert obs.counts[0, 0, 0, 0] != 99


def test_only_docks_and_unknown_p_det():
    """Docks alone are enough; binomial p_det may be unknown; integral floats are accepted."""
    obs = nv.Observations(docks=counts().astype(float), detection="binomial")
    assert obs.counts is None and obs.p_det is None
    assert obs.shape == (2, 4, 3, 2) and obs.docks.dtype == np.int64
    pois = nv.Observations(counts=counts(), detection="poisson", floor=0.5)
    assert pois.floor == 0.5 and pois.detection == "poisson"
    assert nv.Observations(counts=counts(), p_det=1.0).detection == "exact"


def test_no_data_refused():
    """Neither counts nor docks is an ObservationError."""
    with pytest.raises(nv.ObservationError, match="counts and/or docks"):
        nv.Observations()


@pytest.mark.parametrize(
    "where, value, what",
    [((1, 2, 0, 1), -1, r"is -1, must be >= 0"),
     ((0, 3, 2, 0), 1.5, r"is 1.5, not an integer"),
     ((1, 0, 1, 1), np.nan, r"is nan, not finite"),
     ((0, 1, 2, 1), np.inf, r"is inf, not finite")],
)
@pytest.mark.parametrize("name", ["counts", "docks"])
def test_bad_entries_name_run_step_node_type(name, where, value, what):
    """A negative, fractional or non-finite entry names the array, run, step, node and type."""
    arr = counts().astype(float if isinstance(value, float) else np.int64)
    arr[where] = value
    r, t, i, k = where
    with pytest.raises(nv.ObservationError, match=rf"{name} at node index {i}, type {k} {what}") as info:
        nv.Observations(**{name: arr})
    err = info.value
    assert isinstance(err, nv.TraceError) and isinstance(err, ValueError)
    assert (err.run, err.step, err.vesicle) == (r, t, None)
    assert str(err).startswith(f"run {r}, step {t}: ")


@pytest.mark.parametrize("shape", [(4, 3, 2), (2, 4, 3, 2, 1), ()])
def test_wrong_number_of_dimensions(shape):
    """Arrays without exactly 4 dimensions are refused naming the shape."""
    with pytest.raises(nv.ObservationError, match=r"counts must have 4 dimensions.*got shape"):
        nv.Observations(counts=np.zeros(shape, dtype=int))


@pytest.mark.parametrize("arr", [np.zeros((1, 1, 1, 1), dtype=bool), np.full((1, 1, 1, 1), "3"),
                                 np.zeros((1, 1, 1, 1), dtype=complex)])
def test_non_numeric_dtype_refused(arr):
    """Boolean, text or complex arrays are not counts."""
    with pytest.raises(nv.ObservationError, match="must be integer counts"):
        nv.Observations(counts=arr)


def test_shapes_must_match():
    """counts and docks of different shapes are refused naming both shapes."""
    with pytest.raises(nv.ObservationError, match=r"\(2, 4, 3, 2\).*\(2, 5, 3, 2\)"):
        nv.Observations(counts=counts(), docks=counts((2, 5, 3, 2)))


@pytest.mark.parametrize(
    "kw, match",
    [(dict(detection="gaussian"), "detection must be one of"),
     (dict(detection="binomial", p_det=0.0), r"p_det must lie in \(0, 1\]"),
     (dict(detection="binomial", p_det=1.2), r"p_det must lie in \(0, 1\]"),
     (dict(detection="binomial", p_det=-0.5), r"p_det must lie in \(0, 1\]"),
     (dict(detection="exact", p_det=0.5), "exact detection takes no p_det"),
     (dict(detection="poisson", floor=0.0), "floor must be a positive number"),
     (dict(detection="poisson", floor=np.nan), "floor must be a positive number")],
)
def test_detection_checked(kw, match):
    """Unknown detection models and out-of-range parameters are ObservationErrors."""
    with pytest.raises(nv.ObservationError, match=match):
        nv.Observations(counts=counts(), **kw)


def test_check_model():
    """check_model accepts matching shapes and names node or type mismatches."""
    sub = nv.Substrate.from_networkx(nx.path_graph(3))
    model = nv.VesicleModel(sub, n_types=2)
    nv.Observations(counts=counts()).check_model(model)
    with pytest.raises(nv.ObservationError, match="observations cover 4 nodes but the model's graph has 3"):
        nv.Observations(counts=counts((2, 4, 4, 2))).check_model(model)
    with pytest.raises(nv.ObservationError, match="3 types but the model has 2; type index 2 is unknown"):
        nv.Observations(counts=counts((2, 4, 3, 3))).check_model(model)
    with pytest.raises(nv.ObservationError, match="1 types but the model has 2"):
        nv.Observations(docks=counts((2, 4, 3, 1))).check_model(model)
