"""The evaluate stage's fleet-wide record: every device's figures in `eval/plots/devices.json`
(and its ROC and histogram beside them, for `dvc plots`) and the fleet's in
`eval/metrics.json`. Written once per run after the devices; read by `fleet table` and the
benchmarks, which need none of the evaluation's models to read it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import fleet

METRICS = ("auc", "pauc", "precision", "recall", "f1", "threshold", "val_loss", "epochs", "windows")
METRICS += ("test_clips", "anomalies")  # how many the figures stand on
PLOTS = ("roc", "histogram")
DEVICES = "devices.json"


def write_fleet_outputs(devices_dir: Path, metrics_path: Path, plots_dir: Path) -> dict[str, Any]:
    """Every evaluated device's metrics into plots_dir/devices.json and its plot files; the
    fleet's figures into `metrics_path`."""
    metrics: dict[str, Any] = {}
    shutil.rmtree(plots_dir, ignore_errors=True)
    for name in PLOTS:
        (plots_dir / name).mkdir(parents=True)
    for device in fleet.complete_devices(devices_dir):
        summary = fleet.read_json(devices_dir / device / "summary.json")
        metrics[device] = {key: summary[key] for key in METRICS if key in summary}
        for name in PLOTS:
            source = devices_dir / device / f"{name}.json"
            if source.is_file():
                shutil.copyfile(source, plots_dir / name / f"{device}.json")
    fleet.write_json(plots_dir / DEVICES, [{"device": d} | m for d, m in metrics.items()])
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    fleet.write_json(metrics_path, fleet_figures(metrics))
    return metrics


def fleet_figures(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fleet's mean and worst AUC and pAUC, mean F1, over the devices that have them."""
    found: dict[str, Any] = {"devices": len(metrics)}
    for key in ("auc", "pauc", "f1"):
        values = [m[key] for m in metrics.values() if m.get(key) is not None]
        found[f"{key}_mean"] = float(np.mean(values)) if values else None
        if key != "f1":
            found[f"{key}_min"] = float(np.min(values)) if values else None
    found["devices_with_auc"] = sum(1 for m in metrics.values() if m.get("auc") is not None)
    return found


def read_devices(plots_dir: Path) -> dict[str, dict[str, Any]]:
    """Device -> metrics, as `write_fleet_outputs` left them in plots_dir/devices.json."""
    return {row["device"]: row for row in fleet.read_json(plots_dir / DEVICES)}
