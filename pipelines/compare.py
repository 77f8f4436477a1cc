"""Per-device figures of two runs side by side: `fleet compare A B`.

`dvc exp show` carries the fleet's figures only, so that its columns do not grow with the
fleet; each run's per-device figures are in eval/plots/devices.json, a file DVC commits with
every experiment. A run is named as `dvc exp show` names it (an experiment), by any git
revision (a branch, a tag, a commit), or `workspace` for the files as they are.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pipelines.errors import DataError

DEVICES = Path("eval/plots/devices.json")
FIGURES = ("auc", "pauc")
WORKSPACE = "workspace"


def per_device(run: str, repo: Path = Path(".")) -> dict[str, dict[str, Any]]:
    """Device -> its figures in `run` (an experiment, a git revision or `workspace`)."""
    if run == WORKSPACE:
        text = _read(repo / DEVICES, run)
    else:
        text = _git(repo, "show", f"{_commit(repo, run)}:{DEVICES.as_posix()}", run=run)
    try:
        return {row["device"]: row for row in json.loads(text)}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run}: {DEVICES} is not a list of devices' figures ({exc})") from exc


def compare(
    first: dict[str, dict[str, Any]], second: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per device of either run: each figure in both, and the change."""
    rows = []
    for device in sorted(set(first) | set(second)):
        row: dict[str, Any] = {"device": device}
        for key in FIGURES:
            a, b = (first.get(device, {}).get(key), second.get(device, {}).get(key))
            row |= {f"{key}_a": a, f"{key}_b": b, f"{key}_change": _change(a, b)}
        rows.append(row)
    return rows


def _change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _commit(repo: Path, run: str) -> str:
    """The commit of an experiment (its ref under refs/exps) or of a git revision."""
    if run.startswith("-"):
        raise DataError(f"{run!r}: expected an experiment name or a git revision")
    refs = _git(repo, "for-each-ref", "--format=%(refname)", "refs/exps", run=run).split()
    named = [ref for ref in refs if ref.rsplit("/", 1)[-1] == run]
    revision = named[-1] if named else run
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", run=run).strip()


def _git(repo: Path, *args: str, run: str) -> str:
    found = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise DataError(
            f"{run}: no such experiment or git revision, or it has no {DEVICES} "
            "(`dvc exp show` lists the experiments)"
        )
    return found.stdout


def _read(path: Path, run: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise DataError(f"{run}: cannot read {path} ({exc.strerror}); run `dvc repro`") from exc
