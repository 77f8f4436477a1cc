"""The benchmarks still run (on their smallest inputs): they are run by hand, so nothing else
notices when a change to the code they call breaks them. No figure is checked here; the
figures are in bench/README.md."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT, env

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("bench", "args", "says"),
    [
        ("extract", ["--minutes", "2", "--repeat", "1"], "max |reference - ours|"),
        ("extract_memory", ["--minutes", "1"], "reference / ours:"),
        (
            "registry_lookup",
            ["--models", "3", "--versions-per-model", "2", "--runs", "1", "--calls", "2"],
            "ratio",
        ),
        (
            "fleet_scale",
            ["--devices", "2", "--skip-reference", "--noop-runs", "1"],
            "only that device rebuilt: True",
        ),
        (
            "tabular",
            ["--subjects", "60", "--tasks", "diabetes", "Q1", "--epochs", "5"],
            "mlp - ridge R2:",
        ),
        ("keypoint", ["accuracy", "--count", "40", "--epochs", "1"], "seed_002_targets_met"),
        ("cluster", ["--devices", "3", "--tasks", "20"], '"outputs_equal": true'),
    ],
)
def test_a_benchmark_runs_on_a_small_input(bench: str, args: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", *args],
        cwd=PROJECT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=HANG_S,  # at load 12 on 2 cores fleet_scale took 284 s
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert says in done.stdout
    assert "only that device rebuilt: False" not in done.stdout  # fleet_scale's add and change
