"""Benchmark: every detector type, through the pipeline, on the real dev device and the demo fleet.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.detectors [--real ../shared/realdev] [--json OUT] [--only NAME]

For each (data, detector) row, a fresh project (pipelines/sandbox.py) runs `dvc repro` with
the row's params: the reference row is the DCASE 2020 Task 2 baseline (`dense-ae`, trained
as its recipe is, on whole clips), beside it the seed's `convae` with its own features and
each other type with the features its docstring recommends. Reported per device: AUC and
pAUC (max FPR 0.1, McClish-standardised) on the labelled test clips, and the seconds the
train and evaluate stages took for it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipelines import daily, sandbox
from pipelines.acoustic import figures

# A whole 10 s clip per window (its 313 frames; the real dev clips are 10 s long).
WHOLE_CLIP = {"window_sec": 10.0, "hop_sec": 5.0, "frames": 320, "ref": "fixed"}
# The DCASE 2020 Task 2 baseline's training: 100 epochs at Adam's 0.001, no early stopping,
# batches of 512 vectors (2 whole-clip windows hold 618); its validation split is 0.1.
DCASE_2020 = {"epochs": 100, "patience": 100, "lr": 0.001, "batch_size": 2}
DETECTORS: dict[str, dict[str, Any]] = {
    "dense-ae (DCASE 2020, reference)": {
        "train": {"model": "dense-ae", **DCASE_2020},
        "features": WHOLE_CLIP,
    },
    "dense-ae-mahalanobis": {
        "train": {"model": "dense-ae-mahalanobis", **DCASE_2020},
        "features": WHOLE_CLIP,
    },
    "convae (seed)": {"train": {"model": "convae"}},
    "twfr-pca": {"train": {"model": "twfr-pca"}, "features": WHOLE_CLIP},
    "twfr-gmm": {"train": {"model": "twfr-gmm"}, "features": WHOLE_CLIP},
    "twfr-knn": {"train": {"model": "twfr-knn"}, "features": WHOLE_CLIP},
    "frame-gmm": {"train": {"model": "frame-gmm"}, "features": WHOLE_CLIP},
}


def measure(work: Path, data: dict[str, Any], detector: dict[str, Any]) -> dict[str, Any]:
    changes = {k: dict(v) for k, v in data.items()}
    for section, values in detector.items():
        changes.setdefault(section, {}).update(values)
    repo = sandbox.create(work, changes, os.environ)
    subprocess.run([*daily.DVC, "repro", "-q"], cwd=repo, env=daily.environment(), check=True)
    metrics = figures.read_devices(repo / "eval/plots")
    seconds = {
        stage: json.loads((repo / f"reports/{stage}.json").read_text())["devices"]
        for stage in ("train", "evaluate")
    }
    return {
        device: {
            "auc": m.get("auc"),
            "pauc": m.get("pauc"),
            "train_s": seconds["train"][device]["seconds"],
            "evaluate_s": seconds["evaluate"][device]["seconds"],
        }
        for device, m in metrics.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", type=Path, default=Path("../shared/realdev"))
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--only", default="", help="the rows whose detector names contain this")
    args = parser.parse_args()
    datasets = {
        "real": {"data": {"root": str(args.real.resolve())}},
        "demo": {"data": {"root": "data/demo"}},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-detectors-") as tmp:
        for data_name, data in datasets.items():
            for i, (name, detector) in enumerate(DETECTORS.items()):
                if args.only not in name:
                    continue
                found = measure(Path(tmp) / f"{data_name}-{i}", data, detector)
                rows += [
                    {"data": data_name, "detector": name, "device": d, **m}
                    for d, m in found.items()
                ]
    print(
        f"{'data':5} {'detector':34} {'device':10} {'AUC':>6} {'pAUC':>6} {'train s':>8} "
        f"{'eval s':>7}"
    )
    for r in rows:
        print(
            f"{r['data']:5} {r['detector']:34} {r['device']:10} {r['auc']:6.3f} {r['pauc']:6.3f} "
            f"{r['train_s']:8.2f} {r['evaluate_s']:7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
