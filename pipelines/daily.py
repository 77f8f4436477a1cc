"""The daily job: fine-tune every device on one day's audio, gate it, promote it or keep production.

`fleet daily` is what cron, a systemd timer or CI runs once a day. It writes the day (a date,
never "N days ago", so that the run names what it trained on) and `train.init_from` into
params.yaml, keeping its comments, and runs `dvc repro`: the same stages, params and store
as any run. Run twice for the same day it changes nothing (DVC sees nothing new). Then one
line per device, from the stages' reports: how its training started, what the gate decided,
what runs there now; then the run's verdict, its exit status, which tells the scheduler whether
to call someone (`judge`). The day and `init_from` stay in params.yaml, as the dvc.lock to
commit ran with them: every run says so, and `FULL` (`fleet daily --reset`) puts back a full
training.
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

from ruamel.yaml.scalarstring import PlainScalarString

from pipelines import decisions, fleet, parents
from pipelines.params import DailyParams, DataParams, TrainParams, edit_params, load_params

# A run's exit status (2 is left to usage errors); when several apply, the first of PRECEDENCE.
DONE, FAILED, DEGRADED, NOTHING = 0, 1, 3, 4
PRECEDENCE = (FAILED, DEGRADED, NOTHING, DONE)
HEADS = {
    DONE: "done",
    FAILED: "ERROR a stage or device failed",
    DEGRADED: "ERROR fleet-wide degradation",
    NOTHING: "WARNING nothing to learn from",
}
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
    lines: list[str]  # one per device, after a line on a failed `dvc repro`
    status: int
    verdict: str  # the run's last word: its status and the counts behind it (`judge`)
    ran: bool  # False: the day was already done, nothing ran


@dataclass(frozen=True)
class Tally:
    """What the fleet's devices came to in a run, counted from the stages' reports."""

    devices: int
    candidates: int  # registered and judged by the gate in this run
    promoted: int
    refused: int
    unchanged: int  # the same candidate as the run before (no new training)
    skipped: dict[str, int]  # per stage: extract (too few clips), train (drifted, no start)
    failed: list[str]  # "DEVICE in STAGE"


def day_of(day: str | None, days_ago: int, today: date) -> str:
    """The date folder to train on: `day` as given, else `days_ago` days before `today`."""
    return day if day is not None else (today - timedelta(days=days_ago)).strftime("%Y%m%d")


def settings(day: str, init_from: str) -> dict[str, dict[str, str]]:
    """The params a daily run writes into params.yaml."""
    return {"data": {"day": day}, "train": {"init_from": init_from}}


# What `fleet daily --reset` writes back: the defaults, a full training from scratch; plain, as
# in a fresh params.yaml (ruamel would keep the quotes of the date it replaces)
FULL = settings(PlainScalarString(DataParams().day), PlainScalarString(TrainParams().init_from))
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
    edit_params(project / "params.yaml", settings(day, init_from))
    rule = load_params(project / "params.yaml").daily
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
        subprocess.run([*dvc, "repro", PIPELINE], cwd=project, env=env, check=False).returncode
        if ran
        else 0
    )
    reports = {stage: _report(project / "reports" / f"{stage}.json") for stage in STAGES}
    lines = summary(reports)
    if repro != 0:
        lines.insert(0, f"dvc repro failed (exit status {repro}); the stages' last reports:")
    status, verdict = judge(tally(reports), repro, rule)
    return Outcome(day, lines, status, verdict, ran)


def reset(project: Path) -> str:
    """Put params.yaml back to a full training; what it now says."""
    edit_params(project / "params.yaml", FULL)
    return (
        f"params.yaml is back to a full training ({shown(FULL)}): the next `dvc repro` trains "
        "every device on every day, gated, promoted or kept; `dvc exp run`, as an experiment"
    )


def left_in_params(day: str, init_from: str) -> str:
    """What a daily run leaves in params.yaml, and the way back to a full training."""
    return (
        f"params.yaml keeps {shown(settings(day, init_from))} (the dvc.lock to commit ran with "
        f"them): a later `dvc repro` or `dvc exp run` runs with them too; `fleet daily --reset` "
        f"puts back a full training ({shown(FULL)})"
    )


def shown(changes: dict[str, dict[str, str]]) -> str:
    return " and ".join(f"{s}.{k}: {v}" for s, values in changes.items() for k, v in values.items())


def tally(reports: dict[str, dict[str, Any]]) -> Tally:
    """Count each device's outcome over the stages' reports."""
    devices = set().union(*(r.get("devices", {}) for r in reports.values()))
    deploy = reports["deploy"].get("devices", {}).values()
    judged = [e["decision"]["action"] for e in deploy if e["status"] == "built" and "decision" in e]
    return Tally(
        devices=len(devices),
        candidates=len(judged),
        promoted=judged.count("promoted"),
        refused=judged.count("refused"),
        unchanged=sum(e["status"] == "unchanged" for e in deploy),
        skipped={stage: len(reports[stage].get("skipped", [])) for stage in STAGES},
        failed=[f"{d} in {stage}" for stage in STAGES for d in reports[stage].get("failed", [])],
    )


def degraded(t: Tally, rule: DailyParams) -> bool:
    """Fleet-wide degradation: at least `degraded_min`, and at least `degraded_fraction` of the
    devices that had a candidate, refused by the gate (something common to them went wrong)."""
    return t.refused >= rule.degraded_min and t.refused / t.candidates >= rule.degraded_fraction


def judge(t: Tally, repro: int, rule: DailyParams) -> tuple[int, str]:
    """The run's exit status and its verdict line; failed > degraded > nothing to learn > done."""
    if repro != 0 or t.failed:
        what = t.failed + ([f"dvc repro (exit status {repro})"] if repro != 0 else [])
        return _said(FAILED, f"{', '.join(what)}; {_counts(t)}")
    if degraded(t, rule):
        return _said(
            DEGRADED,
            f"{t.refused} of {t.candidates} candidates refused by the gate ({_rule(rule)}); "
            "production untouched",
        )
    if t.candidates + t.unchanged == 0:
        return _said(NOTHING, f"{_counts(t)}; production kept")
    below = f"; below fleet-wide degradation ({_rule(rule)})" if t.refused else ""
    return _said(DONE, _counts(t) + below)


def worst(statuses: Sequence[int]) -> int:
    """The status of several runs together: the first of PRECEDENCE among them."""
    return min(statuses, key=PRECEDENCE.index, default=DONE)


def _said(status: int, detail: str) -> tuple[int, str]:
    return status, f"{HEADS[status]}: {detail} (exit status {status})"


def _counts(t: Tally) -> str:
    judged = f" ({t.promoted} promoted, {t.refused} refused by the gate)" if t.candidates else ""
    unchanged = f", {t.unchanged} unchanged" if t.unchanged else ""
    skipped = [f"{n} skipped in {stage}" for stage, n in t.skipped.items() if n] or ["0 skipped"]
    return (
        f"of {t.devices} device{'' if t.devices == 1 else 's'}, {t.candidates} had a candidate"
        f"{judged}{unchanged}, "
        f"{', '.join(skipped)}, {len(t.failed)} failed"
    )


def _rule(rule: DailyParams) -> str:
    return (
        f"at least daily.degraded_min = {rule.degraded_min} and daily.degraded_fraction = "
        f"{rule.degraded_fraction:g} of the candidates"
    )


def summary(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One line per device: how its training started, then the deploy stage's line."""
    lines = dict(decisions.describe(reports["deploy"]))
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
