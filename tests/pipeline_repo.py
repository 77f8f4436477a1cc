"""A temp git + DVC repo holding a copy of this project's pipeline, for end-to-end tests."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pipelines import sandbox
from pipelines.keypoint import params as keypoint_params
from pipelines.params import edit_params
from pipelines.tabular import params as tabular_params
from tests.patience import HANG_S

PROJECT = sandbox.PROJECT

# Small enough to run the whole pipeline in seconds, big enough for a validation split.
TINY: dict[str, Any] = {
    "generate": {
        "devices": ["A-1", "B-2"],
        "days": 2,
        "clips_per_day": 2,
        "clip_sec": 6.0,
        "verified_clips": 1,
        "test_normal": 3,
        "test_anomaly": 3,
        "test_clip_sec": 4.0,
    },
    # 0.992 s = 15872 samples = 31 frames of 512: on the frame grid, so the pipeline tests
    # run the fast feature path the default params use (1.0 s is 31.25 frames); the level is
    # the default's (`ref: fixed`, absolute), so every test that extracts runs it
    "features": {"window_sec": 2.0, "hop_sec": 0.992, "n_mels": 32, "frames": 64},
    # the seed's autoencoder (the tests of the pipeline's mechanics are about it)
    "train": {
        "model": "convae",
        "epochs": 3,
        "min_epochs": 1,
        "channels": [4, 8],
        "latent_channels": 2,
    },
    "fleet": {"workers": 1},
}
# The tabular family's tiny demo (tabular/params.yaml): five tasks of 150 rows, ridge.
TINY_TABULAR: dict[str, Any] = {
    "generate": {"subjects": 150, "diabetes": False},
    "train": {"model": "ridge"},
}
# The keypoint family's tiny demo (keypoint/params.yaml): 40 small captchas, a tiny network.
TINY_KEYPOINT: dict[str, Any] = {
    "data": {"height": 64, "width": 128},
    "generate": {"count": 40},
    "train": {
        "channels": [8, 16],
        "modules": [1],
        "stem": 8,
        "head": 8,
        "epochs": 2,
        "min_epochs": 1,
        "cosine_t0": 2,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
    },
}
# The store's gate for a tiny fleet: a 3-epoch model is not judged on AUC.
TINY_POLICY = ("--floor", "auc=0", "--reason", "tiny test fleet")


def env() -> dict[str, str]:
    """Environment for git and dvc: an identity for commits, no analytics, this venv first."""
    return os.environ | {
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def run(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=repo, env=env(), capture_output=True, text=True, timeout=HANG_S, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def fresh_python(code: str) -> str:
    """What `code` prints in a new interpreter, stripped: what a command imports at start-up
    shows there, whatever this test process has imported already."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=HANG_S
    )
    return done.stdout.strip()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both_dicts else value
    return out


def write_params(repo: Path, overrides: dict[str, Any]) -> None:
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False))


def make_repo(path: Path, overrides: dict[str, Any] = TINY) -> Path:
    """A committed git + DVC repo at `path` with the project's pipeline and `overrides`."""
    sandbox.create(path, overrides, env())
    edit_params(path / "tabular" / "params.yaml", TINY_TABULAR, tabular_params.load_params)
    edit_params(path / "keypoint" / "params.yaml", TINY_KEYPOINT, keypoint_params.load_params)
    run(path, "git", "commit", "-qam", "the tabular and keypoint families' tiny demos")
    run(path, "registry", "set-policy", *TINY_POLICY)
    return path


def copy_repo(repo: Path, to: Path) -> Path:
    """A copy of a built repo (links as links), its own to change."""
    return Path(shutil.copytree(repo, to, symlinks=True))


def wait_for_queue(repo: Path, timeout: float = HANG_S) -> str:
    """`dvc queue status` once nothing is queued or running (`dvc queue start` returns at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run(repo, "dvc", "queue", "status").stdout
        if "Queued" not in out and "Running" not in out:
            return out
        time.sleep(2)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{out}")


def readme_commands(section: str, block: int = 0) -> list[list[str]]:
    """The commands of the fenced block number `block` under the README's `section` (the
    start of its heading), comments dropped."""
    text = (PROJECT / "README.md").read_text()
    body = re.search(re.escape(section) + r"[^\n]*\n(.*?)(?:\n## |\Z)", text, re.S)
    blocks = re.findall(r"\n```\n(.*?)```", body[1], re.S) if body else []
    assert len(blocks) > block, f"README has no code block {block} under {section!r}"
    lines = blocks[block].splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def family_stage(
    cwd: Path, family: str, name: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m stages.NAME --family FAMILY ARGS` in `cwd` (a family's pipeline folder),
    against the store in cwd/store; `env` added to its environment."""
    env |= {"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin", "MODEL_STORE": str(cwd / "store")}
    return subprocess.run(
        [sys.executable, "-m", f"stages.{name}", "--family", family, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


def fleet_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `fleet` command of this venv, in `cwd`, against the store in cwd/store."""
    env = {"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin", "MODEL_STORE": str(cwd / "store")}
    command = [str(Path(sys.executable).parent / "fleet"), *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_S, check=False
    )
