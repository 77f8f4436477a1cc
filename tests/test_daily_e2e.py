"""End to end, the daily loop in a temp git + DVC repo (the daily demo's, on a small fleet):
`fleet daily` trains day 1 from scratch, then keeps the production model of a device whose
day 2 has drifted into a fault while the other is fine-tuned from production (the parent
recorded in lineage) and promoted, and does nothing when run again for the same day; a bad
pin fails its device alone, a gate that refuses every candidate degrades the fleet, a day
without audio has nothing to learn from, and `--reset` puts params.yaml back as it was before
the days. Each outcome has its exit status and its last line. The README's daily loop (the
replay of a day, cron's job): tests/test_readme.py; the verdicts' rules: tests/test_daily.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.daily import DEGRADED, FAILED, NOTHING
from registry.api import Registry
from tests.pipeline_repo import PROJECT, TINY, merge, run
from tests.registry_helpers import snapshot
from tests.trees import tree

pytestmark = pytest.mark.e2e
# The demo's days on a small fleet, with the default detector (twfr-pca: no training loop, so
# its drift guard needs no long training): 4 s windows of 64 mels, absolute levels.
LEARNED = merge(
    TINY,
    {
        "generate": {
            "days": 2,
            "start_date": "20261101",
            "clips_per_day": 4,
            "clip_sec": 8.0,
            "drift_device": "A-1",
            "drift_day": 1,
        },
        "features": {"window_sec": 4.0, "hop_sec": 1.984, "n_mels": 64, "frames": 128},
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


def test_the_demo_days_then_a_bad_pin_and_a_gate_that_refuses_all(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(LEARNED))
    repo = tmp_path / "demo"
    command = [sys.executable, "-m", "pipelines.demo", "--into", str(repo)]
    shown = run(PROJECT, *command, "--params", str(tmp_path / "small.yaml")).stdout
    days = shown.split("\n== ")[1:]
    assert [d.splitlines()[0] for d in days] == [
        "day 1, 20261101: a full training from scratch",
        "day 2, 20261102: fine-tuned from production; A-1's bearing ticks",
    ]
    assert "A-1: trained from scratch -> v1 registered; promoted" in days[0]
    assert "done: of 2 devices, 2 had a candidate (2 promoted, 0 refused by the gate)" in days[0]
    # Day 2: A-1's production model finds the day unlike its normal and is kept.
    assert "A-1: skipped in train: drifted from acoustic_A-1_twfr-pca:v1" in days[1]
    assert "production acoustic_A-1_twfr-pca:v1 kept" in days[1]
    assert "B-2: fine-tuned from v1 -> v2 registered; promoted from v1" in days[1]
    assert (
        "done: of 2 devices, 1 had a candidate (1 promoted, 0 refused by the gate), 1 " in days[1]
    )
    assert production(repo) == {"A-1": 1, "B-2": 2}

    store = Registry(repo / "model_store")
    assert store.get(NAME.format("A-1"))["version"] == 1  # nothing learned the fault
    meta = store.get(NAME.format("B-2") + ":v2")
    assert meta["lineage"]["parent_version"] == 1
    assert meta["params"]["data"]["day"] == "20261102"
    assert meta["params"]["train"]["init_from"] == "production"
    chain = json.loads(
        run(repo, "registry", "lineage", NAME.format("B-2") + "@production", "--json").stdout
    )
    assert [(m["version"], m["lineage"]["parent_version"]) for m in chain] == [(2, 1), (1, None)]
    assert "daily 20261102" in run(repo, "git", "log", "-1", "--format=%s").stdout

    before = snapshot(repo / "model_store")
    again = daily(repo, "--day", "20261102")
    assert "daily 20261102: already done, nothing to run" in again
    assert "params.yaml keeps data.day: 20261102 and train.init_from: production" in again
    assert snapshot(repo / "model_store") == before

    # A pin of a version that does not exist fails its device alone.
    audio = tree(repo / "data" / "demo")  # data.root, as the generate stage wrote it
    out = daily(
        repo, "--day", "20261102", "--init-from", "acoustic_A-1_twfr-pca:v9,production", code=FAILED
    )
    assert "A-1: failed in train: device A-1: cannot start from acoustic_A-1_twfr-pca:v9" in out
    assert "B-2: fine-tuned from v2 -> v3 registered; promoted from v2" in out
    assert "ERROR a stage or device failed: A-1 in train; of 2 devices" in out
    assert production(repo) == {"A-1": 1, "B-2": 3}

    # A gate nothing passes, on day 1 (which neither finds unlike its normal): both
    # candidates are refused, the run says so, production stays.
    run(repo, "registry", "set-policy", "--rollback-factor", "0.01", "--reason", "test: refuse all")
    out = daily(repo, "--day", "20261101", code=DEGRADED)
    assert "A-1: fine-tuned from v1 -> v2 registered; refused" in out
    assert "B-2: fine-tuned from v3 -> v4 registered; refused" in out
    assert "ERROR fleet-wide degradation: 2 of 2 candidates refused by the gate (at least" in out
    report = json.loads((repo / "reports/deploy.json").read_text())
    assert (
        report["all_refused"] is True and "all 2 candidates of this run refused" in report["error"]
    )
    assert production(repo) == {"A-1": 1, "B-2": 3}
    assert tree(repo / "data" / "demo") == audio  # "nothing is written under data.root"

    # A day without audio: nothing to learn from, which cron sees in the exit status.
    out = daily(repo, "--day", "20261103", code=NOTHING)
    assert "A-1: skipped in extract: no clips recorded on 20261103" in out
    assert (
        "WARNING nothing to learn from: of 2 devices, 0 had a candidate, 2 skipped in extract, "
        "0 failed; production kept (exit status 4)"
    ) in out
    assert production(repo) == {"A-1": 1, "B-2": 3}
    # What each run leaves in params.yaml, and its way back: every value as before the days.
    said = out.strip().splitlines()[-1]
    assert said.startswith("params.yaml keeps data.day: 20261103 and train.init_from: production")
    assert "`fleet daily --reset`" in said
    daily(repo, "--reset")
    first = run(repo, "git", "rev-list", "--max-parents=0", "HEAD").stdout.strip()
    as_made = yaml.safe_load(run(repo, "git", "show", f"{first}:params.yaml").stdout)
    assert yaml.safe_load((repo / "params.yaml").read_text()) == as_made

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
