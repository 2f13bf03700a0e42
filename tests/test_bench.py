"""Each benchmark still runs and prints its ratio to the baseline (the smallest run; no timing asserted).

The benchmarks are not tests: they print figures. This only keeps them from rotting when the code they
drive moves (README, "Performance": each must run from the venv after `make test`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

SMALLEST = {
    "agent_burst.py": ["--files", "20"],
    "agent_cost.py": ["--files", "20", "--rounds", "2"],  # two: the second round takes the agent first
    "broker_fanout_native.py": ["--subscribers", "2", "--messages", "50"],
    "fanout.py": ["--subscribers", "2", "--messages", "50"],
    "https_wrk.py": ["--connections", "2", "--seconds", "1", "--rounds", "1"],
}


def test_every_benchmark_is_listed():
    assert sorted(p.name for p in (ROOT / "bench").glob("*.py")) == sorted(SMALLEST)


@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_the_benchmark_runs_and_prints_its_ratio(script):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *SMALLEST[script]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ratio" in run.stdout, run.stdout[-3000:]
