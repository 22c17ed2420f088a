"""End-to-end tests of ``nvppl deploy`` and ``nvppl emulate``."""

from __future__ import annotations

import errno
import os
import re

import arviz as az
import networkx as nx
import numpy as np
import pytest

import nvppl as nv
from nvppl.cli import main
from tests.cli.test_cli import assert_error, run
from nvppl.infer.fit import Fit

N_TICKS = 40


def ring_model(**options):
    sub = nv.Substrate.from_networkx(nx.cycle_graph(6))
    return nv.VesicleModel(sub, n_types=1, priors={"a": 0.0}, **options)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One tiny NUTS fit on a 6-ring, deployed with the CLI and emulated with the CLI."""
    d = tmp_path_factory.mktemp("deploy")
    model = ring_model()
    traces = nv.simulate(model, model.default_params(), n_steps=30, n_runs=2, key=0)
    fit = nv.infer.fit(model, traces, num_samples=30, num_warmup=30, num_chains=1, key=1,
                       progress_bar=False, posterior_predictive=False)
    fit_path, image, out = d / "fit.nc", d / "image", d / "out" / "traces.nc"
    fit.to_netcdf(fit_path)
    deployed = run(["deploy", fit_path, "-o", image, "--nodes-per-core", 2])
    assert deployed[0] == 0, deployed[2]
    emulated = run(["emulate", image, "--ticks", N_TICKS, "--runs", 2, "--seed", 3, "-o", out])
    assert emulated[0] == 0, emulated[2]
    return {"dir": d, "fit_path": fit_path, "fit": nv.load_fit(fit_path), "image": image, "traces": out,
            "deployed": deployed, "emulated": emulated}


def value(text, name):
    """The number printed after ``name`` at the start of a report line."""
    m = re.search(rf"^\s*{re.escape(name)}\s+([-+0-9.e]+)", text, flags=re.MULTILINE)
    assert m, (name, text)
    return float(m[1])


# -------------------------------------------------------------- end to end
def test_deploy_writes_image_and_reports(work):
    _, out, _ = work["deployed"]
    image = work["image"]
    prog = nv.backend.read_image(image)
    res = prog.resources
    assert (image / "manifest.yaml").is_file()
    assert sorted(p.name for p in image.glob("core_*.txt")) == sorted(
        f"core_{c.x}_{c.y}.txt" for c in prog.vesicles.cores)
    assert res["node_cores"] == 3 and res["nodes_max_per_core"] == 2
    assert "posterior mean of a nuts fit (30 draws)" in out
    for name in ("node_cores", "graph_nodes", "mailbox_words", "table_words", "nodes_max_per_core"):
        assert value(out, name) == res[name]
    used, capacity = res["table_words_max_per_core"]
    assert re.search(rf"table_words_max_per_core\s+{used} of {capacity}", out)
    assert re.search(rf"cores\s+{res['cores']} of {res['cores_available']}", out)
    hops = float(re.search(r"expected tile hops per migration step: ([0-9.e-]+)", out)[1])
    assert hops == pytest.approx(prog.vesicles.expected_hops(prog.chip), rel=1e-3)
    for kernel in ("emission", "migration", "docking", "absorption", "decay", "worst", "typical"):
        assert kernel in out


def test_emulate_writes_traces_and_reports(work):
    _, out, _ = work["emulated"]
    prog = nv.backend.read_image(work["image"])
    traces = nv.Traces.from_netcdf(work["traces"], prog.vesicles.model.substrate)
    assert (traces.n_runs, traces.n_steps, traces.n_types) == (2, N_TICKS, 1)
    m = re.search(r"2 run\(s\) x (\d+) ticks on 6 nodes, (\d+) vesicles, (\d+) vesicle-steps", out)
    assert m, out
    assert int(m[1]) == N_TICKS and int(m[2]) == traces.n_vesicles > 0
    steps = int(m[3])
    assert steps == len(traces) > 0
    for name in ("vesicle_packets", "vesicle_hops", "vesicle_docks", "spike_packets", "spike_hops",
                 "energy_pj", "vesicle_energy_pj", "spike_energy_pj", "per vesicle-step",
                 "node_cores", "table_words", "mailbox_words"):
        assert re.search(rf"^\s*{re.escape(name)}\s", out, flags=re.MULTILINE), name
    assert value(out, "vesicle_docks") == int(traces.steps["docked"].sum())
    assert value(out, "spike_packets") == 0 and value(out, "spike_energy_pj") == 0
    assert value(out, "per vesicle-step") == pytest.approx(value(out, "vesicle_energy_pj") / steps, rel=1e-3)
    # the same seed gives the same traces
    again = work["dir"] / "again.nc"
    assert run(["emulate", work["image"], "--ticks", N_TICKS, "--runs", 2, "--seed", 3, "-o", again])[0] == 0
    other = nv.Traces.from_netcdf(again, prog.vesicles.model.substrate)
    assert other.vesicles.equals(traces.vesicles) and other.steps.equals(traces.steps)


def test_image_equals_compiled_program(work, tmp_path):
    fit = work["fit"]
    prog = nv.backend.compile(fit.model, fit, nodes_per_core=2)
    assert nv.backend.read_image(work["image"]).equals(prog)
    # a chip file and one posterior draw
    chip = nv.backend.ChipConfig(width=4, height=3, seed=5)
    chip.to_yaml(tmp_path / "chip.yaml")
    image = tmp_path / "img"
    status, out, err = run(["deploy", work["fit_path"], "--chip", tmp_path / "chip.yaml", "-o", image,
                            "--draw", 4])
    assert status == 0, err
    assert "draw 4 of chain 0" in out and "4 x 3 chip" in out
    read = nv.backend.read_image(image)
    assert read.chip == chip
    assert read.equals(nv.backend.compile(fit.model, fit, chip=chip, draw=4))
    assert not read.equals(nv.backend.compile(fit.model, fit, chip=chip))


def test_draws_write_one_image_per_draw(work, tmp_path):
    fit = work["fit"]
    post = fit.idata.posterior
    assert not np.array_equal(post["delta"].values[0, 3], post["delta"].values[0, 7])
    status, out, err = run(["deploy", work["fit_path"], "-o", tmp_path / "imgs", "--draws", "3,7",
                            "--nodes-per-core", 3])
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == ["draw_3", "draw_7"]
    assert out.count("wrote ") == 2 and out.count("quantisation error per kernel") == 2
    images = {d: nv.backend.read_image(tmp_path / "imgs" / f"draw_{d}") for d in (3, 7)}
    for d, prog in images.items():
        assert prog.equals(nv.backend.compile(fit.model, fit, nodes_per_core=3, draw=d))
    assert not images[3].equals(images[7])
    assert (tmp_path / "imgs" / "draw_3" / "manifest.yaml").read_text() != \
        (tmp_path / "imgs" / "draw_7" / "manifest.yaml").read_text()


# ---------------------------------------------------------------- refusals
def test_deploy_refuses_countdown_model(work, tmp_path):
    """A model feature the chip cannot express: an error naming it, nothing written."""
    model = ring_model(lifetime="countdown")
    params = model.default_params()
    # a posterior of two draws at the default parameters (NUTS on a countdown model is slow)
    posterior = {name: np.broadcast_to(np.asarray(getattr(params, name)), (1, 2) + np.shape(getattr(params, name)))
                 for name in model.inferred}
    fit = Fit(az.from_dict(posterior=posterior), model, "nuts")
    path = tmp_path / "countdown.nc"
    fit.to_netcdf(path)
    out = tmp_path / "img"
    assert_error(run(["deploy", path, "-o", out]), "countdown.nc", "countdown", "nothing was written")
    assert not out.exists()


def test_deploy_refuses_too_small_chip(work, tmp_path):
    nv.backend.ChipConfig(width=2, height=1).to_yaml(tmp_path / "small.yaml")
    out = tmp_path / "img"
    for extra in ([], ["--draws", "1,2"]):
        assert_error(run(["deploy", work["fit_path"], "--chip", tmp_path / "small.yaml", "-o", out,
                          "--nodes-per-core", 1] + extra), "does not fit the chip", "cores", "nothing was written")
    assert not out.exists()


def test_draws_are_written_together_or_not_at_all(work, tmp_path, monkeypatch):
    """A failed write of the second image of --draws leaves no image folder."""
    calls = []
    write = nv.backend.ChipProgram.write

    def second_fails(self, directory):
        calls.append(directory)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, directory)

    monkeypatch.setattr(nv.backend.ChipProgram, "write", second_fails)
    out = tmp_path / "new" / "imgs"
    assert_error(run(["deploy", work["fit_path"], "-o", out, "--draws", "3,7"]), "cannot write the images",
                 "No space left on device")
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, fragments", [
    (["--draw", 99], ["--draw", "outside the posterior", "nothing was written"]),
    (["--draws", "1,99"], ["--draws", "outside the posterior"]),
    (["--draws", "1,x"], ["--draws", "expected an integer"]),
    (["--draws", "2,2"], ["--draws", "listed twice"]),
    (["--draw", 1, "--draws", "2,3"], ["not allowed with"]),
    (["--nodes-per-core", 0], ["--nodes-per-core", "positive"]),
])
def test_deploy_bad_arguments(work, tmp_path, argv, fragments):
    out = tmp_path / "img"
    assert_error(run(["deploy", work["fit_path"], "-o", out] + argv), *fragments)
    assert not out.exists()


def test_deploy_bad_inputs(work, tmp_path):
    out = tmp_path / "img"
    assert_error(run(["deploy", tmp_path / "nope.nc", "-o", out]), "fit file", "does not exist")
    assert_error(run(["deploy", work["traces"], "-o", out]), "traces.nc", "not an nvppl fit")
    chip = tmp_path / "chip.yaml"
    chip.write_text("widht: 4\n")
    assert_error(run(["deploy", work["fit_path"], "--chip", chip, "-o", out]), "chip.yaml", "'widht'")
    chip.write_text("width: [4\n")
    assert_error(run(["deploy", work["fit_path"], "--chip", chip, "-o", out]), "chip.yaml", "invalid YAML")
    assert_error(run(["deploy", work["fit_path"], "--chip", tmp_path / "none.yaml", "-o", out]),
                 "chip file", "does not exist")
    (tmp_path / "file").write_text("")
    assert_error(run(["deploy", work["fit_path"], "-o", tmp_path / "file"]), "not a directory")
    assert not out.exists()


def test_emulate_refusals(work, tmp_path):
    out = tmp_path / "t.nc"
    assert_error(run(["emulate", tmp_path / "nope", "--ticks", 5, "-o", out]), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_error(run(["emulate", tmp_path / "empty", "--ticks", 5, "-o", out]), "no manifest.yaml",
                 "nvppl deploy")
    assert_error(run(["emulate", work["fit_path"], "--ticks", 5, "-o", out]), "not a directory")
    # a spiking network only
    net = nv.backend.Network()
    a = net.add_input("a", 2)
    b = net.add_lif("b", 2, nv.backend.LIF(tau_mem=4.0))
    net.connect(a, b, np.eye(2))
    nv.backend.compile(net).write(tmp_path / "net")
    assert_error(run(["emulate", tmp_path / "net", "--ticks", 5, "-o", out]), "no vesicle model")
    # a vesicle model beside a base network runs once per call
    fit = work["fit"]
    nv.backend.compile(fit.model, fit, network=net).write(tmp_path / "both")
    assert_error(run(["emulate", tmp_path / "both", "--ticks", 5, "--runs", 2, "-o", out]), "--runs 2",
                 "base network")
    # a malformed image: the error names the file and line
    broken = tmp_path / "broken"
    prog = nv.backend.read_image(work["image"])
    prog.write(broken)
    core = broken / f"core_{prog.vesicles.cores[0].x}_{prog.vesicles.cores[0].y}.txt"
    core.write_text(core.read_text().replace(" W ", " Q ", 1))
    assert_error(run(["emulate", broken, "--ticks", 5, "-o", out]), "invalid chip image", core.name, "line 2")
    # a mailbox too small for the vesicles of its node core: found by the run
    (tmp_path / "tiny.yaml").write_text("width: 3\nheight: 3\nmailbox_words: 2\n")
    assert run(["deploy", work["fit_path"], "--chip", tmp_path / "tiny.yaml", "-o", tmp_path / "tiny",
                "--nodes-per-core", 6])[0] == 0
    assert_error(run(["emulate", tmp_path / "tiny", "--ticks", 20, "-o", out]), "mailbox", "nothing was written")
    assert_error(run(["emulate", work["image"], "-o", out]), "--ticks", "required")
    assert not out.exists()
    assert run(["emulate", tmp_path / "both", "--ticks", 5, "-o", out])[0] == 0
