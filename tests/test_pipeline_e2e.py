"""End to end: real `dvc repro` and `dvc exp run` of the project's pipeline in a temp repo."""

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


def test_exp_run_shows_the_fleets_figures_and_fleet_compare_the_devices(repo: Path) -> None:
    """`dvc exp show` carries the fleet's figures only (its columns do not grow with the
    fleet); `fleet compare` puts two runs' per-device figures side by side."""
    ran = run(repo, "dvc", "exp", "run", "-n", "low-lr", "-S", "train.lr=0.0005").stdout
    assert "Running stage 'extract'" not in ran  # a train param reruns train and what follows
    assert "Running stage 'train'" in ran
    assert report(repo, "train")["built"] == ["A-1", "B-2"]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in run(repo, "dvc", "exp", "show", "--md").stdout.splitlines()
        if line.startswith("|") and not line.startswith("|--")
    ]
    header, experiment = rows[0], next(row for row in rows if "0.0005" in row)
    assert "A-1" not in header and "B-2" not in header  # no column per device
    for column in ("auc_mean", "auc_min", "pauc_min", "gate_passed"):
        value = experiment[header.index(column)]
        assert value not in ("!", "-", ""), f"{column} missing in the experiment's row"
        float(value)
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

    rows = json.loads(run(repo, "fleet", "compare", "HEAD", "low-lr", "--json").stdout)
    assert sorted(r["device"] for r in rows) == ["A-1", "B-2"]
    assert all(r["auc_change"] == pytest.approx(r["auc_b"] - r["auc_a"]) for r in rows)
    table = run(repo, "fleet", "compare", "HEAD", "workspace").stdout.splitlines()
    assert table[0].split()[:3] == ["device", "AUC", "HEAD"] and len(table) == 4
    missing = run(repo, "fleet", "compare", "HEAD", "no-such-exp", check=False)
    assert missing.returncode == 1 and "no-such-exp: no such experiment" in missing.stderr


def test_new_device_is_the_only_one_rebuilt(repo: Path) -> None:
    # the copy's store is at another path, which is part of each candidate's fingerprint
    run(repo, "dvc", "repro", "--force", "--single-item", "deploy")
    demo = repo / "data" / "demo"
    shutil.copytree(demo / "A-1", demo / "C-3")
    run(repo, "dvc", "repro", "--single-item", "extract", "train", "evaluate", "deploy")
    for stage in ("extract", "train", "evaluate", "deploy"):
        assert report(repo, stage)["built"] == ["C-3"], stage
        assert report(repo, stage)["unchanged"] == ["A-1", "B-2"], stage


def test_registry_holds_one_production_version_per_device(repo: Path) -> None:
    production = Registry(repo / "model_store").list(alias="production")
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
