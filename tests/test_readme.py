"""The README's lifecycle and registry examples, run as written, top to bottom, in a temp repo
with the demo fleet's device names."""

from __future__ import annotations

import glob
import shlex
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines.daily import RECORD
from pipelines.params import edit_params, load_params
from registry.api import Registry
from tests.pipeline_repo import (
    PROJECT,
    TINY,
    make_repo,
    merge,
    readme_commands,
    run,
    wait_for_queue,
)

pytestmark = pytest.mark.e2e
SECTIONS = ("## The lifecycle", "## The model registry", "## Detectors", "## Scoring with")
# The README's names are the default detector's (acoustic_LT-2_twfr-pca): its fleets use it.
DEFAULT = {"train": {"model": load_params(PROJECT / "params.yaml").train.model}}


def test_the_readme_examples_work_as_written(tmp_path: Path) -> None:
    fleet = {"generate": {"devices": ["LT-2", "FAN-7", "PMP-3"]}} | DEFAULT
    repo = make_repo(tmp_path / "repo", merge(TINY, fleet))
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")
    ran = []
    for section in SECTIONS:
        for words in readme_commands(section):
            words = as_typed(repo, words)
            run(repo, *words)
            if words[:3] == ["dvc", "queue", "start"]:
                assert wait_for_queue(repo).count("Success") == 2
            ran.append(words[:2])
    store = Registry(repo / "model_store")
    assert store.get("acoustic_PMP-3_convae")["params"]["train"]["model"] == "convae"
    assert {m["model_type"] for m in store.list(scope="LT-2")} == {"twfr-pca", "twfr-knn", "convae"}
    assert ["registry", "promote-experiment"] in ran and ["fleet", "status"] in ran
    assert ["fleet", "score"] in ran and ["fleet", "table"] in ran
    assert len(ran) >= 20


def as_typed(repo: Path, words: list[str]) -> list[str]:
    """A README command as a shell in the project runs it: its globs expanded, `.venv/bin/`
    on the PATH (the tests run in that environment), EXP one of the experiments registered."""
    if "EXP" in words:
        names = {m["lineage"]["dvc_experiment"] for m in Registry(repo / "model_store").list()}
        words = [next(iter(names - {None})) if w == "EXP" else w for w in words]
    typed = [words[0].removeprefix(".venv/bin/")]
    for word in words[1:]:
        matches = sorted(glob.glob(word, root_dir=repo)) if "*" in word else [word]
        assert matches, f"{word}: matches no file"
        typed += matches
    return typed


def test_the_daily_loop_examples_work_as_written(tmp_path: Path) -> None:
    fleet = {"generate": {"devices": ["LT-2", "FAN-7", "PMP-3"], "start_date": "20261101"}}
    fleet |= DEFAULT
    repo = make_repo(tmp_path / "repo", merge(TINY, fleet))
    commands = readme_commands("## The daily loop")
    for words in commands:
        run(repo, *words)
    assert [w[:2] for w in commands].count(["fleet", "daily"]) == 3
    store = Registry(repo / "model_store")
    # The replay reproduces day 2's fine-tuning byte for byte: v2 again, nothing new.
    latest = store.get("acoustic_LT-2_twfr-pca")
    assert (latest["version"], latest["lineage"]["parent_version"]) == (2, 1)
    checked = [e for e in store.history("acoustic_LT-2_twfr-pca") if e["type"] == "checked"]
    assert checked and checked[-1]["experiment"] and checked[-1]["to_version"] == 2

    cron = readme_commands("## The daily loop", block=1)[0]  # the job cron runs, as written
    job = as_typed(repo, cron[cron.index("&&") + 1 : cron.index(">>")])
    assert job[:3] == ["fleet", "daily", "--days-ago"]
    done = run(repo, *job, check=False)
    yesterday = (date.today() - timedelta(days=1)).strftime("%Y%m%d")
    assert done.returncode == 0 and f"daily {yesterday}: ran" in done.stdout
    said = done.stdout.split("commit the day: ")[1].splitlines()[0]
    for command in said.split(" && "):  # what it says to commit is the whole of the run's record
        run(repo, *shlex.split(command))
    assert run(repo, "git", "status", "--porcelain").stdout == ""
    for device in ("LT-2", "FAN-7", "PMP-3"):  # no audio for yesterday here: nothing moves
        assert f"{device}: skipped in extract: no clips recorded on {yesterday}" in done.stdout
        assert f"production acoustic_{device}_twfr-pca:v2 kept" in done.stdout


def test_your_own_fleet_commands_work_as_written(tmp_path: Path) -> None:
    """The second block of "Your own fleet" (the first is the folder layout), on a fleet
    generated where a user's folder would be."""
    repo = make_repo(tmp_path / "repo", TINY)
    run(repo, "dvc", "repro", "generate")
    fleet = tmp_path / "my-fleet"
    shutil.copytree(repo / "data" / "demo", fleet)
    edit_params(repo / "params.yaml", {"data": {"root": str(fleet)}})  # as the README says
    commands = readme_commands("## Your own fleet", block=1)
    for words in commands:
        run(repo, *words)
    assert commands[0] == ["dvc", "repro"]
    assert len(Registry(repo / "model_store").list(alias="production")) == 2
    assert "fleet trained" in run(repo, "git", "log", "--oneline").stdout
    assert run(repo, "git", "status", "--porcelain").stdout == ""  # the run's record, all of it
    assert commands[1][2:] == list(RECORD)  # as `fleet daily` says it
