"""Every example runs with tiny arguments."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY = {
    "quickstart.py": ["--nodes", "5", "--steps", "20", "--runs", "1", "--samples", "50", "--warmup", "50",
                      "--chains", "1", "--no-progress"],
    "covariates_and_content.py": ["--steps", "15", "--runs", "1", "--samples", "50", "--warmup", "50",
                                  "--no-progress"],
    "calibration.py": ["--sims", "4", "--steps", "10", "--samples", "9", "--warmup", "20"],
    "partial_observations.py": ["--steps", "10", "--runs", "1", "--samples", "50", "--warmup", "50",
                                "--particles", "64"],
    "density_inference.py": ["--steps", "10", "--svi-steps", "50", "--draws", "30", "--particles", "64"],
    "emulator_three_factor.py": ["--ticks", "40", "--neurons", "4", "--image", "image"],
    "overlay_digits.py": ["--steps", "30", "--batch", "16", "--samples", "30", "--warmup", "30", "--plot", "d.png"],
    "overlay_limits.py": ["--reps", "40", "--densities", "4,16", "--plot", "l.png"],
    "vesicle_modulated_learning.py": ["--ticks", "40", "--nodes", "5", "--neurons-per-node", "2", "--image", "image",
                                      "--plot", "comb.png"],
    "snn_distal_reward.py": ["--neurons", "100", "--seconds", "2", "--plot", "dr.png"],
}


def test_every_example_has_tiny_arguments():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [name] + TINY[name])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    if name == "quickstart.py":
        assert (tmp_path / "quickstart-out" / "ppc.png").exists()
    if name == "calibration.py":
        assert (tmp_path / "sbc.png").exists()
    if name == "overlay_digits.py":
        assert (tmp_path / "d.png").exists()
    if name == "overlay_limits.py":
        assert (tmp_path / "l.png").exists()
