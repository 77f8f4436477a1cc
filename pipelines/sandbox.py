"""A fresh project of its own: a git + DVC repo holding a copy of this pipeline and its params.

The daily demo runs in one, as do the end-to-end tests and the benchmarks, so that nothing they
do touches this checkout, its params, its store or its git history.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.daily import DVC
from pipelines.params import edit_params

PROJECT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "stages", "registry")
# every family's pipeline: `dvc repro` runs the acoustic one, `dvc repro tabular/dvc.yaml`
# and `dvc repro keypoint/dvc.yaml` the others (`-P`: every pipeline)
FILES = (
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    "tabular/dvc.yaml",
    "tabular/params.yaml",
    "keypoint/dvc.yaml",
    "keypoint/params.yaml",
)
# Who commits in a sandbox when the environment names no one (GIT_AUTHOR_NAME etc. win).
IDENTITY = {"user.name": "soundfleet sandbox", "user.email": "sandbox@soundfleet.invalid"}


def create(dest: Path, changes: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]) -> Path:
    """A committed git + DVC repo at `dest` (made if missing) with this project's pipeline
    and its params.yaml with `changes` ({section: {key: value}}) set."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(PROJECT / package, dest / package, ignore=ignore)
    for name in FILES:
        (dest / name).parent.mkdir(exist_ok=True)
        shutil.copy(PROJECT / name, dest / name)
    edit_params(dest / "params.yaml", changes)
    git = ("git", "-C", str(dest))
    commands = [
        (*git, "init", "-q"),
        *((*git, "config", key, value) for key, value in IDENTITY.items()),
        (*DVC, "init", "-q"),
        (*DVC, "config", "core.analytics", "false"),
        (*git, "add", "-A"),
        (*git, "commit", "-qm", "the pipeline"),
    ]
    for command in commands:
        done = subprocess.run(command, cwd=dest, env=dict(env), capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{dest}: {' '.join(command)} failed: {done.stderr.strip()}")
    return dest
