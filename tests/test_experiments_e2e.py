"""End to end, the experiment table in a temp git + DVC repo: `dvc exp show` carries the
fleet's figures only (its columns do not grow with the fleet), and `fleet compare` puts two
runs' per-device figures side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline_repo import TINY, make_repo, run

pytestmark = pytest.mark.e2e


def test_exp_show_has_fleet_figures_and_fleet_compare_has_the_devices(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", TINY)
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")
    run(repo, "dvc", "exp", "run", "-n", "high-lr", "-S", "train.lr=0.01")

    shown = json.loads(run(repo, "dvc", "exp", "show", "--json").stdout)
    metrics = {
        path: sorted(found["data"])
        for exp in shown
        for path, found in (exp["data"] or {}).get("metrics", {}).items()
    }
    assert metrics["eval/metrics.json"] == sorted(
        ["devices", "devices_with_auc", "auc_mean", "auc_min", "pauc_mean", "pauc_min", "f1_mean"]
    )
    assert metrics["deploy/metrics.json"] == sorted(
        ["gate_passed", "gate_refused", "promoted", "below_floor", "failed"]
    )
    header = run(repo, "dvc", "exp", "show", "--md").stdout.splitlines()[0]
    assert "A-1" not in header and "B-2" not in header  # no column per device

    rows = json.loads(run(repo, "fleet", "compare", "HEAD", "high-lr", "--json").stdout)
    assert sorted(r["device"] for r in rows) == ["A-1", "B-2"]
    assert all(r["auc_change"] == pytest.approx(r["auc_b"] - r["auc_a"]) for r in rows)
    table = run(repo, "fleet", "compare", "HEAD", "workspace").stdout.splitlines()
    assert table[0].split()[:3] == ["device", "AUC", "HEAD"] and len(table) == 4
    missing = run(repo, "fleet", "compare", "HEAD", "no-such-exp", check=False)
    assert missing.returncode == 1 and "no-such-exp: no such experiment" in missing.stderr
