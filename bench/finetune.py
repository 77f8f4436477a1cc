"""Benchmark: a day's fine-tuning from production vs the full training it replaces.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.finetune [--days 3] [--keep] [--json OUT]

In a fresh project (pipelines/sandbox.py) with the default params but for the detector, the
seed's autoencoder (`train.model: convae`: a type with a training loop, which is what a
fine-tuning shortens), on the demo fleet, `--days` days of it: the reference is the full
training, `dvc repro` with
`data.day: all` and `train.init_from: scratch`, every device trained on every day; ours is
then `fleet daily --day LAST`, each device fine-tuned from that model on the last day's clips.
Reported per device: the train stage's seconds for it (from `reports/train.json`), epochs
run, and AUC on the labelled test clips, with the ratio of the times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines import daily, sandbox
from pipelines.acoustic import figures


def run(repo: Path, *command: str) -> None:
    subprocess.run(command, cwd=repo, env=daily.environment(), check=True)


def measure(repo: Path) -> dict[str, dict[str, Any]]:
    train = json.loads((repo / "reports/train.json").read_text())["devices"]
    metrics = figures.read_devices(repo / "eval/plots")
    return {
        device: {
            "seconds": entry["seconds"],
            "epochs": entry.get("epochs_run"),
            "auc": metrics[device]["auc"],
        }
        for device, entry in train.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp repo")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    changes = {"generate": {"days": args.days}, "train": {"model": "convae"}}
    repo = sandbox.create(work / "repo", changes, os.environ)
    run(repo, *daily.DVC, "repro")
    full = measure(repo)
    start = datetime.strptime("20261101", "%Y%m%d")
    last = (start + timedelta(days=args.days - 1)).strftime("%Y%m%d")
    run(repo, str(Path(sys.executable).parent / "fleet"), "daily", "--day", last)
    tuned = measure(repo)
    rows = {
        d: {
            "full": full[d],
            "finetune": tuned[d],
            "ratio": tuned[d]["seconds"] / full[d]["seconds"],
        }
        for d in sorted(full)
    }
    print(
        f"{'device':8} {'full s':>7} {'epochs':>6} {'AUC':>6}   {'tune s':>7} {'epochs':>6} "
        f"{'AUC':>6}   {'ratio':>5}"
    )
    for d, r in rows.items():
        f, t = r["full"], r["finetune"]
        print(
            f"{d:8} {f['seconds']:7.1f} {f['epochs']:6} {f['auc']:6.3f}   {t['seconds']:7.1f} "
            f"{t['epochs']:6} {t['auc']:6.3f}   {r['ratio']:5.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if not args.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
