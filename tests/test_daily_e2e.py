"""End to end, the daily loop in a temp git + DVC repo (the daily demo's, on a small fleet):
`fleet daily` trains day 1 from scratch, fine-tunes day 2 from production (the parent recorded
in lineage), keeps the production model of a device whose day 3 has drifted into a fault while
the others are promoted, does nothing when run again for the same day, and a day is replayed
as an experiment against a pinned parent without moving production."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from registry.api import Registry
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT, TINY, env, make_repo, merge, run
from tests.registry_helpers import snapshot
from tests.trees import tree

pytestmark = pytest.mark.e2e
DAYS = {"generate": {"days": 3, "start_date": "20261101"}}
# The demo's three days on a small fleet, with the default detector (twfr-pca: no training
# loop, so its drift guard needs no long training): 4 s windows of 64 mels, absolute levels.
LEARNED = merge(
    merge(TINY, DAYS),
    {
        "generate": {"clips_per_day": 4, "clip_sec": 8.0, "drift_device": "A-1", "drift_day": 2},
        "features": {
            "window_sec": 4.0,
            "hop_sec": 1.984,
            "n_mels": 64,
            "frames": 128,
            "ref": "fixed",
        },
        "train": {"model": "twfr-pca"},
    },
)


NAME = "acoustic_{}_twfr-pca"


def production(repo: Path) -> dict[str, int]:
    return {
        m["scope"]: m["version"] for m in Registry(repo / "model_store").list(alias="production")
    }


def daily(repo: Path, *args: str, code: int = 0) -> str:
    result = run(repo, "fleet", "daily", *args, check=False)
    assert result.returncode == code, result.stdout + result.stderr
    return result.stdout


def test_the_demo_days_parents_drift_rerun_and_replay(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(LEARNED))
    repo = tmp_path / "demo"
    command = [sys.executable, "-m", "pipelines.demo", "--into", str(repo)]
    shown = run(PROJECT, *command, "--params", str(tmp_path / "small.yaml")).stdout
    days = shown.split("\n== ")[1:]
    assert [d.splitlines()[0] for d in days] == [
        "day 1, 20261101: a full training from scratch",
        "day 2, 20261102: fine-tuned from production",
        "day 3, 20261103: fine-tuned from production; A-1's bearing ticks",
    ]
    assert "A-1: trained from scratch -> v1 registered; promoted" in days[0]
    assert "A-1: fine-tuned from v1 -> v2 registered; promoted from v1" in days[1]
    # Day 3: A-1's production model finds the day unlike its normal and is kept.
    assert "A-1: skipped in train: drifted from acoustic_A-1_twfr-pca:v2" in days[2]
    assert "production acoustic_A-1_twfr-pca:v2 kept" in days[2]
    assert "B-2: fine-tuned from v2 -> v3 registered; promoted from v2" in days[2]
    assert production(repo) == {"A-1": 2, "B-2": 3}

    store = Registry(repo / "model_store")
    assert store.get(NAME.format("A-1"))["version"] == 2  # nothing learned the fault
    meta = store.get(NAME.format("A-1") + ":v2")
    assert meta["lineage"]["parent_version"] == 1
    assert meta["params"]["data"]["day"] == "20261102"
    assert meta["params"]["train"]["init_from"] == "production"
    chain = json.loads(
        run(repo, "registry", "lineage", NAME.format("B-2") + "@production", "--json").stdout
    )
    assert [(m["version"], m["lineage"]["parent_version"]) for m in chain] == [
        (3, 2),
        (2, 1),
        (1, None),
    ]
    assert "daily 20261103" in run(repo, "git", "log", "-1", "--format=%s").stdout

    before = snapshot(repo / "model_store")
    again = daily(repo, "--day", "20261103")
    assert "daily 20261103: already done, nothing to run" in again
    assert snapshot(repo / "model_store") == before

    # Replay day 2 against the parent it started from, as an experiment: nothing moves.
    pins = ",".join(NAME.format(d) + ":v1" for d in ("A-1", "B-2"))
    # (another number of components: a fitted type gives the same bytes, v2, for the same inputs)
    replay = (
        "-S",
        "data.day=20261102",
        "-S",
        f'train.init_from="{pins}"',
        "-S",
        "train.components=6",
    )
    run(repo, "dvc", "exp", "run", *replay)
    replayed = store.get(NAME.format("A-1"))
    assert replayed["version"] == 3 and replayed["lineage"]["parent_version"] == 1
    assert replayed["params"]["data"]["day"] == "20261102"
    assert replayed["lineage"]["dvc_experiment"]
    assert production(repo) == {"A-1": 2, "B-2": 3}

    # Made again over its own folder; anything else is refused, untouched.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused = run(
        PROJECT, sys.executable, "-m", "pipelines.demo", "--into", str(other), check=False
    )
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == f"error: {other}: exists and was not made by the demo; choose another --into"
    )
    assert (other / "notes.txt").read_text() == "mine"


def test_a_bad_pin_fails_its_device_and_a_gate_refusing_all_degrades_the_fleet(
    tmp_path: Path,
) -> None:
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
        timeout=HANG_S,
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "A-1: trained from scratch -> v1 registered" in first.stdout
    audio = tree(repo / "data" / "demo")  # data.root, as the generate stage wrote it
    out = daily(
        repo, "--day", "20261102", "--init-from", "acoustic_A-1_convae:v9,production", code=1
    )
    assert "A-1: failed in train: device A-1: cannot start from acoustic_A-1_convae:v9" in out
    assert "B-2: fine-tuned from v1 -> v2 registered; promoted" in out
    assert production(repo) == {"A-1": 1, "B-2": 2}
    assert tree(repo / "data" / "demo") == audio  # "nothing is written under data.root"

    # A gate nothing passes: every candidate is refused, the run says so, production stays.
    run(repo, "registry", "set-policy", "--rollback-factor", "0.01", "--reason", "test: refuse all")
    out = daily(repo, "--day", "20261103", code=3)
    assert "A-1: fine-tuned from v1 -> v2 registered; refused" in out
    assert "B-2: fine-tuned from v2 -> v3 registered; refused" in out
    assert "ERROR fleet-wide degradation: every candidate was refused by the gate" in out
    report = json.loads((repo / "reports/deploy.json").read_text())
    assert report["fleet_degraded"] is True and "fleet-wide degradation" in report["error"]
    assert production(repo) == {"A-1": 1, "B-2": 2}
    assert tree(repo / "data" / "demo") == audio  # "nothing is written under data.root"
