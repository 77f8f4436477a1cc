"""Benchmark: every detector type, through the pipeline, on the real dev device and the demo fleet.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.detectors [--real ../shared/realdev] [--json OUT]

For each (data, detector) row, a fresh project (pipelines/sandbox.py) runs `dvc repro` with
the row's params: the reference row is the seed's `convae` with its own features, beside it
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
from pipelines.acoustic import evaluation

# A whole 10 s clip per window (its 313 frames; the real dev clips are 10 s long).
WHOLE_CLIP = {"window_sec": 10.0, "hop_sec": 5.0, "frames": 320, "ref": "fixed"}
DETECTORS: dict[str, dict[str, Any]] = {
    "convae (seed, reference)": {"train": {"model": "convae"}},
    "twfr-pca": {"train": {"model": "twfr-pca"}, "features": WHOLE_CLIP},
}


def measure(work: Path, data: dict[str, Any], detector: dict[str, Any]) -> dict[str, Any]:
    changes = {k: dict(v) for k, v in data.items()}
    for section, values in detector.items():
        changes.setdefault(section, {}).update(values)
    repo = sandbox.create(work, changes, os.environ)
    subprocess.run([*daily.DVC, "repro", "-q"], cwd=repo, env=daily.environment(), check=True)
    metrics = evaluation.read_devices(repo / "eval/plots")
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
    args = parser.parse_args()
    datasets = {
        "real": {"data": {"root": str(args.real.resolve())}},
        "demo": {"data": {"root": "data/demo"}},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-detectors-") as tmp:
        for data_name, data in datasets.items():
            for i, (name, detector) in enumerate(DETECTORS.items()):
                found = measure(Path(tmp) / f"{data_name}-{i}", data, detector)
                rows += [
                    {"data": data_name, "detector": name, "device": d, **m}
                    for d, m in found.items()
                ]
    print(
        f"{'data':5} {'detector':26} {'device':10} {'AUC':>6} {'pAUC':>6} {'train s':>8} "
        f"{'eval s':>7}"
    )
    for r in rows:
        print(
            f"{r['data']:5} {r['detector']:26} {r['device']:10} {r['auc']:6.3f} {r['pauc']:6.3f} "
            f"{r['train_s']:8.2f} {r['evaluate_s']:7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
