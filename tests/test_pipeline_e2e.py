"""End to end: a real `dvc repro` of the project's pipeline in a temp repo (its experiments:
tests/test_lifecycle_e2e.py; a new device or a changed clip rebuilds that device alone:
bench/fleet_scale.py, run by tests/test_bench.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.acoustic.bundle import load_bundle, score_file
from registry.api import Registry
from tests.pipeline_repo import copy_repo, run

pytestmark = pytest.mark.e2e


@pytest.fixture
def repo(tiny_built: Path, tmp_path: Path) -> Path:
    """A copy of the built repo for each test, so that no test depends on another's changes."""
    return copy_repo(tiny_built, tmp_path / "repo")


def report(repo: Path, stage: str) -> dict:
    return json.loads((repo / "reports" / f"{stage}.json").read_text())


def test_repro_builds_every_stage_for_every_device(repo: Path) -> None:
    figures = json.loads((repo / "eval" / "metrics.json").read_text())
    assert figures["devices"] == 2 and 0.0 <= figures["auc_min"] <= figures["auc_mean"] <= 1.0
    rows = json.loads((repo / "eval" / "plots" / "devices.json").read_text())
    metrics = {row["device"]: row for row in rows}
    assert set(metrics) == {"A-1", "B-2"}
    for device in ("A-1", "B-2"):
        assert 0.0 <= metrics[device]["auc"] <= 1.0
        assert metrics[device]["epochs"] >= 1
        bundle = repo / "deploy" / "models" / device
        assert (bundle / "ae_model.pth").is_file()
        assert np.load(bundle / "global_scale.npy").shape == (2,)
        assert np.load(bundle / "thresholds" / f"threshold_{device}.npy").shape == ()
    deployed = report(repo, "deploy")["devices"]["A-1"]
    assert deployed["replayed_clips"] == 6 and deployed["version"] == 1
    deployed = sorted(p.name for p in (repo / "deploy" / "models").iterdir())
    assert deployed == [".bundles", "A-1", "B-2"]
    plots = repo / "logs" / "train" / "plots" / "metrics" / "A-1"
    assert (plots / "train" / "loss.tsv").is_file()
    assert (plots / "val" / "loss.tsv").is_file()
    assert sorted(p.name for p in (repo / "eval" / "plots" / "roc").iterdir()) == [
        "A-1.json",
        "B-2.json",
    ]


def test_second_repro_reproduces_nothing(repo: Path) -> None:
    result = run(repo, "dvc", "repro")
    assert "Running stage" not in result.stdout
    assert "up to date" in result.stdout


def test_deployed_bundle_scores_clips(repo: Path) -> None:
    bundle = load_bundle(repo / "deploy" / "models" / "B-2")
    scores = json.loads((repo / "eval" / "devices" / "B-2" / "scores.json").read_text())
    verdict = score_file(bundle, repo / "data" / "demo" / scores[0]["file"])
    assert verdict.score == pytest.approx(scores[0]["score"], rel=1e-4)
    assert verdict.anomalous == scores[0]["anomalous"]


def test_plots_render(repo: Path) -> None:
    result = run(repo, "dvc", "plots", "show", "-o", "dvc_plots")
    assert "WARNING" not in result.stderr
    assert (repo / "dvc_plots" / "index.html").is_file()


def test_registry_holds_one_production_version_per_device(repo: Path) -> None:
    held = Registry(repo / "model_store").list(alias="production")
    production = [m for m in held if m["family"] == "acoustic"]  # the tabular tasks' are there too
    deployed = sorted(p.name for p in (repo / "deploy" / "models").iterdir() if p.name[0] != ".")
    assert sorted(m["scope"] for m in production) == deployed  # one each, exactly those
    for meta in production:
        manifest = json.loads(
            (repo / "deploy" / "models" / meta["scope"] / "bundle.json").read_text()
        )
        assert manifest["model"] == f"{meta['name']}:v{meta['version']}"
        assert meta["lineage"]["git_commit"] and meta["metrics"]["auc"] >= 0
    events = (repo / "model_store" / "events.jsonl").read_bytes()
    shutil.rmtree(repo / "deploy" / "candidates")  # so that every device is built again
    run(repo, "dvc", "repro", "-f", "--single-item", "deploy")
    assert report(repo, "deploy")["built"] == ["A-1", "B-2"]
    # the same models registered again: the same versions, nothing new in the log
    assert (repo / "model_store" / "events.jsonl").read_bytes() == events
