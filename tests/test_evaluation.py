"""The evaluate stage's library: thresholds, clip scores, per-device and fleet metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines import fleet
from pipelines.acoustic import evaluation, figures
from pipelines.params import parse_params
from tests import tiny_fleet
from tests.pipeline_repo import TINY, merge


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tiny_fleet.TinyFleet:
    return tiny_fleet.build(tmp_path_factory.mktemp("evaluation"))


def test_each_device_gets_scores_metrics_and_plots(tiny: tiny_fleet.TinyFleet) -> None:
    summary = fleet.read_json(tiny.evaluation / "A-1" / "summary.json")
    for key in ("auc", "pauc", "precision", "recall", "f1", "threshold", "val_loss", "epochs"):
        assert key in summary
    scores = fleet.read_json(tiny.evaluation / "A-1" / "scores.json")
    assert len(scores) == summary["clips"] == 6 and summary["anomalies"] == 3
    for row in scores:
        assert row["anomalous"] == (row["score"] > summary["threshold"])
    roc = fleet.read_json(tiny.evaluation / "A-1" / "roc.json")
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}


def test_fleet_outputs_gather_every_device(tiny: tiny_fleet.TinyFleet, tmp_path: Path) -> None:
    metrics = figures.write_fleet_outputs(
        tiny.evaluation, tmp_path / "metrics.json", tmp_path / "plots"
    )
    written = json.loads((tmp_path / "metrics.json").read_text())  # `dvc exp show`: the fleet
    assert written["auc_min"] == min(m["auc"] for m in metrics.values())
    assert written["auc_mean"] == pytest.approx(sum(m["auc"] for m in metrics.values()) / 2)
    assert (written["devices"], written["devices_with_auc"]) == (2, 2)
    assert set(written) == {"devices", "devices_with_auc"} | {
        f"{k}_{s}" for k in ("auc", "pauc") for s in ("mean", "min")
    } | {"f1_mean"}
    devices = figures.read_devices(tmp_path / "plots")
    assert list(devices) == ["A-1", "B-2"]
    assert set(devices["A-1"]) == {"device", *figures.METRICS}
    for name in figures.PLOTS:
        assert sorted(p.name for p in (tmp_path / "plots" / name).iterdir()) == [
            "A-1.json",
            "B-2.json",
        ]


def test_threshold_method_changes_the_threshold_only(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    median = parse_params(
        merge(TINY, {"evaluate": {"threshold": "percentile", "percentile": 50.0}})
    )
    jobs = evaluation.plan(tiny.features, tiny.models, median)
    outcomes = fleet.run_stage(tmp_path / "eval", jobs, evaluation.build, 1, "evaluate")
    before = fleet.read_json(tiny.evaluation / "A-1" / "summary.json")
    after = outcomes["A-1"].summary
    assert after["auc"] == pytest.approx(before["auc"])  # ranking does not depend on it
    assert after["threshold"] < before["threshold"]  # the median is below mean + 3 std


def test_a_device_without_test_clips_still_gets_a_threshold(
    tiny: tiny_fleet.TinyFleet, tmp_path: Path
) -> None:
    features = Path(shutil.copytree(tiny.features, tmp_path / "features"))
    index = json.loads((features / "A-1" / "index.json").read_text())
    index |= {"test_clips": [], "test_clip_of_window": []}
    (features / "A-1" / "index.json").write_text(json.dumps(index))
    np.save(features / "A-1" / "test.npy", np.zeros((0, 32, 64), np.float32))
    jobs = evaluation.plan(features, tiny.models, tiny.params)
    outcomes = fleet.run_stage(tmp_path / "eval", jobs, evaluation.build, 1, "evaluate")
    summary = outcomes["A-1"].summary
    assert summary["test_clips"] == 0 and summary["threshold"] > 0 and "auc" not in summary
