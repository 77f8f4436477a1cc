"""The evaluate stage: window scores, a threshold, and detection metrics per device.

The threshold is fitted on the scores of the device's normal training windows (the seed
and the DCASE baselines do the same); a test clip's score is the mean of its windows'.
Written per device: `scores.json` (every test clip with its score and verdict) and, when the
device has both normal and anomalous test clips, `roc.json` and `histogram.json`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import cluster, fleet, scoring
from pipelines.acoustic import detectors, features, figures
from pipelines.acoustic.extraction import load_device
from pipelines.params import Params, as_dict


@dataclass(frozen=True)
class EvaluateInput:
    features: Path
    model: Path
    params: Params


def plan(features_dir: Path, models_dir: Path, params: Params) -> list[fleet.Job]:
    code = fleet.code_digest(scoring, detectors, sys.modules[__name__])
    settings = [as_dict(params.evaluate), code]
    extracted = fleet.complete_devices(features_dir)
    return [
        fleet.Job(
            device,
            fleet.fingerprint(settings, extracted[device], stamp),
            EvaluateInput(features_dir / device, models_dir / device, params.for_device(device)),
        )
        for device, stamp in fleet.complete_devices(models_dir).items()
        if device in extracted
    ]


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    inp: EvaluateInput = job.inputs
    p = inp.params.evaluate
    torch.set_num_threads(inp.params.train.torch_threads)
    train, test, index = load_device(inp.features)
    trained = fleet.read_json(inp.model / "summary.json")
    detector = detectors.load(
        inp.model / "model.pth", trained["model_sha256"], trained["architecture"]
    )
    scale = tuple(np.load(inp.model / "scale.npy", allow_pickle=False))
    train_errors = detector.scores(features.apply_scale(train, scale, out=train))
    threshold = scoring.fit_threshold(train_errors, p)
    validation = np.asarray(index["validation"], dtype=bool)
    result: dict[str, Any] = {
        "windows": trained["windows"],
        "epochs": trained["epochs_run"],
        "val_loss": trained["val_loss"],
        "threshold": threshold,
        "val_error": float(train_errors[validation].mean()) if validation.any() else None,
        "test_clips": len(index["test_clips"]),
    }
    if not index["test_clips"]:
        return result
    clips = index["test_clips"]
    test = features.apply_scale(test, scale, out=test)
    window_scores = detector.scores(test)
    scores = scoring.mean_by_clip(window_scores, index["test_clip_of_window"], len(clips))
    labels = np.array([int(c["role"] == "anomaly") for c in clips])
    fleet.write_json(
        work / "scores.json",
        [
            {
                "file": c["file"],
                "label": int(y),
                "score": float(s),
                "anomalous": bool(s > threshold),
            }
            for c, y, s in zip(clips, labels, scores, strict=True)
        ],
    )
    if 0 < labels.sum() < len(labels):
        result |= scoring.detection_metrics(labels, scores, threshold, p.max_fpr).as_dict()
        fleet.write_json(work / "roc.json", scoring.roc_points(labels, scores))
        fleet.write_json(
            work / "histogram.json", scoring.score_histogram(labels, scores, threshold)
        )
    return result


# Per-device figures, in eval/plots/devices.json: a table a person reads (`fleet table`) and
# compares across experiments (`fleet compare`, `dvc plots diff`). `dvc exp show` gets the
# fleet's figures only (eval/metrics.json), so its columns do not grow with the fleet.


class Stage:
    """The evaluate stage: models + features -> thresholds, detection metrics and plots per
    device: OUT/devices/{device}/, OUT/metrics.json and OUT/plots/{roc,histogram}/."""

    ARGUMENTS = ("features", "models", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths

    def work(self, p: Params) -> dict[str, fleet.Outcome]:
        on = cluster.of(p.fleet, [self.paths["features"], self.paths["models"]])
        jobs = plan(self.paths["features"], self.paths["models"], p)
        devices = self.paths["out"] / "devices"
        outcomes = fleet.run_stage(devices, jobs, build, p.fleet.workers, "evaluate", on)
        figures.write_fleet_outputs(
            devices, self.paths["out"] / "metrics.json", self.paths["out"] / "plots"
        )
        return outcomes
