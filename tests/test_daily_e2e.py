"""End to end, the daily loop in a temp git + DVC repo: `fleet daily` trains day 1 from scratch,
fine-tunes day 2 from production (the parent recorded in lineage), does nothing when run again
for the same day, and a day is replayed as an experiment against a pinned parent without
moving production."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from registry.api import Registry
from tests.pipeline_repo import TINY, env, make_repo, merge, run
from tests.registry_helpers import snapshot

pytestmark = pytest.mark.e2e
DAYS = {"generate": {"days": 3, "start_date": "20261101"}}
NAME = "acoustic_{}_convae"


def production(repo: Path) -> dict[str, int]:
    return {
        m["scope"]: m["version"] for m in Registry(repo / "model_store").list(alias="production")
    }


def daily(repo: Path, *args: str, code: int = 0) -> str:
    result = run(repo, "fleet", "daily", *args, check=False)
    assert result.returncode == code, result.stdout + result.stderr
    return result.stdout


def test_three_days_parents_rerun_and_replay(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", merge(TINY, DAYS))
    first = daily(repo, "--day", "20261101", "--init-from", "scratch")
    assert "daily 20261101: ran" in first
    assert "A-1: trained from scratch -> v1 registered; promoted" in first
    assert "git add params.yaml dvc.lock" in first
    assert production(repo) == {"A-1": 1, "B-2": 1}
    params = (repo / "params.yaml").read_text()
    assert "day: '20261101'" in params or 'day: "20261101"' in params or "day: 20261101" in params
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "day 1")

    second = daily(repo, "--day", "20261102")
    assert "A-1: fine-tuned from v1 -> v2 registered; promoted from v1" in second
    assert production(repo) == {"A-1": 2, "B-2": 2}
    store = Registry(repo / "model_store")
    meta = store.get(NAME.format("A-1") + ":v2")
    assert meta["lineage"]["parent_version"] == 1
    assert meta["params"]["data"]["day"] == "20261102"
    assert meta["params"]["train"]["init_from"] == "production"
    trained = json.loads((repo / "models/A-1/summary.json").read_text())
    assert trained["start"]["parent"] == NAME.format("A-1") + ":v1"
    chain = json.loads(
        run(repo, "registry", "lineage", NAME.format("A-1") + "@production", "--json").stdout
    )
    assert [(m["version"], m["lineage"]["parent_version"]) for m in chain] == [(2, 1), (1, None)]
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "day 2")

    before = snapshot(repo / "model_store")
    again = daily(repo, "--day", "20261102")
    assert "daily 20261102: already done, nothing to run" in again
    assert snapshot(repo / "model_store") == before

    # Replay day 2 against the parent it started from, as an experiment: nothing moves.
    pins = ",".join(NAME.format(d) + ":v1" for d in ("A-1", "B-2"))
    run(repo, "dvc", "exp", "run", "-S", f'train.init_from="{pins}"', "-S", "train.seed=1")
    replayed = store.get(NAME.format("A-1"))
    assert replayed["version"] == 3 and replayed["lineage"]["parent_version"] == 1
    assert replayed["lineage"]["dvc_experiment"]
    assert production(repo) == {"A-1": 2, "B-2": 2}


def test_a_pinned_parent_that_does_not_exist_fails_that_device(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", merge(TINY, DAYS))
    # as cron runs it: the environment's `fleet`, with no venv on the PATH
    fleet = str(Path(sys.executable).parent / "fleet")
    bare = env() | {"PATH": "/usr/bin:/bin"}
    first = subprocess.run(
        [fleet, "daily", "--day", "20261101", "--init-from", "scratch"],
        cwd=repo,
        env=bare,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "A-1: trained from scratch -> v1 registered" in first.stdout
    out = daily(
        repo, "--day", "20261102", "--init-from", NAME.format("A-1") + ":v9,production", code=1
    )
    assert "A-1: failed in train: device A-1: cannot start from acoustic_A-1_convae:v9" in out
    assert "B-2: fine-tuned from v1 -> v2 registered; promoted" in out
    assert production(repo) == {"A-1": 1, "B-2": 2}
