"""Importing nvppl: no side effects beyond those documented, lazy subpackages,
host devices on request, and parallel chains that use them."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import nvppl as nv


def _python(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_import_changes_no_environment_variable_and_loads_heavy_parts_lazily():
    out = _python("""
        import json, os, sys
        before = dict(os.environ)
        import nvppl as nv
        after = dict(os.environ)
        loaded = {m: m in sys.modules for m in ("nvppl.backend", "nvppl.diagnostics", "arviz", "matplotlib", "nir")}
        x64 = __import__("jax").config.jax_enable_x64
        backend = nv.backend.Emulator.__module__
        print(json.dumps({"same": before == after, "loaded": loaded, "x64": x64, "backend": backend}))
    """, env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["same"], "importing nvppl changed the environment"
    assert not any(res["loaded"].values()), res["loaded"]
    assert res["x64"] is True  # documented: likelihoods in 64-bit floats
    assert res["backend"].startswith("nvppl.backend")


def test_lazy_names_are_listed_and_unknown_names_raise():
    assert {"backend", "diagnostics"} <= set(dir(nv))
    assert set(nv.__all__) <= set(dir(nv))
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        nv.nonsense  # noqa: B018


def test_host_devices_on_request_before_any_computation():
    out = _python("""
        import jax, nvppl as nv
        nv.set_host_device_count(3)
        print(jax.local_device_count())
        nv.set_host_device_count(3)          # the same number again is fine
        try:
            nv.set_host_device_count(2)
        except RuntimeError as exc:
            print("refused:", exc)
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "3"
    assert lines[1].startswith("refused:") and "before any JAX computation" in lines[1]


def test_parallel_chains_on_host_devices_give_the_sequential_draws():
    out = _python("""
        import warnings, networkx as nx, numpy as np, nvppl as nv
        nv.set_host_device_count(2)
        model = nv.VesicleModel(nv.Substrate.from_networkx(nx.cycle_graph(4)), n_types=1, priors={"a": 0.0})
        traces = nv.simulate(model, model.default_params(), n_steps=30, n_runs=1, key=0)
        kw = dict(num_samples=50, num_warmup=50, num_chains=2, key=1, progress_bar=False,
                  posterior_predictive=False, log_likelihood=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # no fallback warning with two devices
            par = nv.infer.fit(model, traces, chain_method="parallel", **kw)
        seq = nv.infer.fit(model, traces, chain_method="sequential", **kw)
        print(np.array_equal(par.idata.posterior["delta"].values, seq.idata.posterior["delta"].values))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "True"
