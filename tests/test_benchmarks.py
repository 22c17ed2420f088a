"""Every benchmark runs in its --quick form and ends with one JSON line of figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("bench_*.py")))
def test_benchmark_quick(script, tmp_path):
    """Run in a scratch folder: the figures a benchmark writes by default land there."""
    out = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                         timeout=600, check=True, cwd=tmp_path).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert isinstance(figures, dict) and figures
