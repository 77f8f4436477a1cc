"""The daily job: fine-tune every device on one day's audio, gate it, promote it or keep production.

`fleet daily` is what cron, a systemd timer or CI runs once a day. It writes the day (a date,
never "N days ago", so that the run names what it trained on) and `train.init_from` into
params.yaml, keeping its comments, and runs `dvc repro`: the same stages, params and store
as any run. Run twice for the same day it changes nothing (DVC sees nothing new). Then one
line per device, from the stages' reports: how its training started, what the gate decided,
what runs there now. The exit status tells the scheduler whether to call someone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipelines import decisions, fleet, parents
from pipelines.params import edit_params

DONE, FAILED, DEGRADED = 0, 1, 3
STAGES = ("extract", "train", "evaluate", "deploy")
# What a run leaves for git (the rest of its outputs are in DVC's cache and gitignored): what it
# ran with, and the figures, plots and reports that `dvc exp show`, `dvc plots diff` and
# `fleet compare` read from a commit.
RECORD = (
    "dvc.lock",
    "params.yaml",
    "reports",
    "logs/train",
    "eval",
    "deploy/metrics.json",
    "report",
)


@dataclass(frozen=True)
class Outcome:
    day: str
    lines: list[str]
    status: int
    ran: bool  # False: the day was already done, nothing ran


def day_of(day: str | None, days_ago: int, today: date) -> str:
    """The date folder to train on: `day` as given, else `days_ago` days before `today`."""
    return day if day is not None else (today - timedelta(days=days_ago)).strftime("%Y%m%d")


# DVC of this environment: cron runs `.venv/bin/fleet` without the venv on its PATH.
DVC = (sys.executable, "-m", "dvc")
PIPELINE = "dvc.yaml"  # the acoustic family's: what the daily job runs


def environment() -> dict[str, str]:
    """This process's environment with its own `bin` first on PATH: the stages' `python` is
    this environment's, whatever PATH the scheduler gives."""
    return os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    }


def run(project: Path, day: str, init_from: str, dvc: Sequence[str] = DVC) -> Outcome:
    """Set the day, run the pipeline, read what each device came to."""
    edit_params(project / "params.yaml", {"data": {"day": day}, "train": {"init_from": init_from}})
    env = environment()
    # the acoustic pipeline's stages only: another family's (tabular/dvc.yaml), run or not,
    # is not the daily job's to run
    pending = subprocess.run(
        [*dvc, "status", "--quiet", PIPELINE],
        cwd=project,
        env=env,
        capture_output=True,
        check=False,
    )
    ran = pending.returncode != 0
    repro = (
        subprocess.run([*dvc, "repro", PIPELINE], cwd=project, env=env, check=False)
        if ran
        else None
    )
    reports = {stage: _report(project / "reports" / f"{stage}.json") for stage in STAGES}
    lines = summary(reports)
    failed = repro is not None and repro.returncode != 0
    if failed:
        lines.insert(
            0, f"dvc repro failed (exit status {repro.returncode}); the stages' last reports:"
        )
    failed |= any(r.get("failed") for r in reports.values())
    if reports["deploy"].get("fleet_degraded"):
        return Outcome(day, lines, DEGRADED, ran)
    return Outcome(day, lines, FAILED if failed else DONE, ran)


def summary(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One line per device: how its training started, then the deploy stage's line."""
    deploy = reports["deploy"]
    lines = dict(decisions.describe(deploy.get("devices", {}), deploy.get("production", {})))
    return [
        f"{device}: {_start(reports, device)}{lines[device].removeprefix(f'{device}: ')}"
        for device in sorted(lines)
    ]


def _start(reports: dict[str, dict[str, Any]], device: str) -> str:
    for stage in ("extract", "train"):
        entry = reports[stage].get("devices", {}).get(device)
        if entry and entry["status"] in ("failed", "skipped"):
            return f"{entry['status']} in {stage}: {entry['error']} | "
    entry = reports["train"].get("devices", {}).get(device) or {}
    if entry.get("start") is None:
        return ""
    start = parents.Start(**entry["start"])
    novel = len(entry.get("novel_clips") or [])
    left_out = f", {novel} clip(s) unlike its normal left out" if novel else ""
    if start.parent_version is not None:
        return f"fine-tuned from v{start.parent_version}{left_out} -> "
    return "trained from scratch" + (f" ({start.note})" if start.note else "") + " -> "


def _report(path: Path) -> dict[str, Any]:
    try:
        return fleet.read_json(path)
    except (OSError, ValueError):
        return {}
