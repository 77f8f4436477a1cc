"""Per-scope figures of two runs side by side: `fleet compare A B [--family F]`.

`dvc exp show` carries a family's figures over its scopes only, so that its columns do not
grow with the fleet or the tasks; each run's per-scope figures are in the file the family's
card names (`FIGURES`: the acoustic family's eval/plots/devices.json, the tabular one's
tabular/eval/tasks.json), which DVC commits with every experiment. A run is named as
`dvc exp show` names it (an experiment), by any git revision (a branch, a tag, a commit), or
`workspace` for the files as they are.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.errors import DataError

WORKSPACE = "workspace"


def per_scope(run: str, figures: Path, scope: str, repo: Path = Path(".")) -> dict[str, Any]:
    """Scope -> its figures in `run` (an experiment, a git revision or `workspace`), from
    `figures` (a list of rows, each naming its scope under the key `scope`)."""
    if run == WORKSPACE:
        text = _read(repo / figures, run)
    else:
        text = _git(
            repo, run, figures, "show", f"{_commit(repo, run, figures)}:{figures.as_posix()}"
        )
    try:
        return {row[scope]: row for row in json.loads(text)}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run}: {figures} is not a list of {scope}s' figures ({exc})") from exc


def compare(
    first: Mapping[str, Mapping[str, Any]],
    second: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, str],
    scope: str,
) -> list[dict[str, Any]]:
    """One row per scope of either run: each metric in both, and the change; the worst
    change of the first metric first, by its direction ("higher" or "lower" is better)."""
    rows = []
    for name in sorted(set(first) | set(second)):
        row: dict[str, Any] = {scope: name}
        for key in metrics:
            a, b = (first.get(name, {}).get(key), second.get(name, {}).get(key))
            row |= {f"{key}_a": a, f"{key}_b": b, f"{key}_change": _change(a, b)}
        rows.append(row)
    headline, direction = next(iter(metrics.items()))
    worse = -1 if direction == "lower" else 1  # a rise of an error is the worst change

    def key(row: dict[str, Any]) -> tuple[bool, float]:
        change = row[f"{headline}_change"]
        return change is None, worse * (change or 0.0)

    return sorted(rows, key=key)


def _change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _commit(repo: Path, run: str, figures: Path) -> str:
    """The commit of an experiment (its ref under refs/exps) or of a git revision."""
    if run.startswith("-"):
        raise DataError(f"{run!r}: expected an experiment name or a git revision")
    refs = _git(repo, run, figures, "for-each-ref", "--format=%(refname)", "refs/exps")
    named = [ref for ref in refs.split() if ref.rsplit("/", 1)[-1] == run]
    revision = named[-1] if named else run
    found = _git(repo, run, figures, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    return found.strip()


def _git(repo: Path, run: str, figures: Path, *args: str) -> str:
    found = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise DataError(
            f"{run}: no such experiment or git revision, or it has no {figures} "
            "(`dvc exp show` lists the experiments)"
        )
    return found.stdout


def _read(path: Path, run: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise DataError(f"{run}: cannot read {path} ({exc.strerror}); run `dvc repro`") from exc
