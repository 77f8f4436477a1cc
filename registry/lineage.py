"""Where a model came from, captured when it is registered.

git commit and dirty flag of the working tree, the DVC experiment (`DVC_EXP_NAME`, set by
`dvc exp run`), plus what the caller knows: params, metrics, a fingerprint of the training
data and the parent version a model was fine-tuned from. Git runs with an argument list,
never through a shell.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def capture(
    cwd: Path | None = None,
    data_fingerprint: str | None = None,
    parent_version: int | None = None,
) -> dict[str, Any]:
    commit = _git(["rev-parse", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {
        "git_commit": commit,
        "git_dirty": None if commit is None else bool(status),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
        "data_fingerprint": data_fingerprint,
        "parent_version": parent_version,
    }


def _git(args: list[str], cwd: Path | None) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
