"""Two families in one project and one store, as DVC runs them: the acoustic pipeline
(dvc.yaml) and the tabular one (tabular/dvc.yaml), each with its own params. An experiment
on one family's param runs none of the other's stages, and moves no production."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from registry.api import Registry
from tests.pipeline_repo import copy_repo, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tiny_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny acoustic fleet and the other families' tiny demos, each pipeline run once."""
    return copy_repo(tiny_built, tmp_path_factory.mktemp("families") / "repo")


def production(repo: Path) -> dict[str, int]:
    return {
        m["name"]: m["version"] for m in Registry(repo / "model_store").list(alias="production")
    }


def test_every_family_lives_in_one_store(repo: Path) -> None:
    families = {name.split("_")[0] for name in production(repo)}
    assert families == {"acoustic", "tabular", "keypoint"}


def test_a_tabular_experiment_reruns_no_acoustic_stage_and_moves_no_production(
    repo: Path,
) -> None:
    before = production(repo)
    # every pipeline of the project is considered (-P): only the changed family's stages run
    done = run(
        repo, "dvc", "exp", "run", "-P", "-n", "tab-a", "-S", "tabular/params.yaml:train.alpha=30"
    )
    ran = re.findall(r"Running stage '([^']+)'", done.stdout + done.stderr)
    assert "tabular/dvc.yaml:train" in ran, done.stdout
    assert all(stage.startswith("tabular/dvc.yaml:") for stage in ran), ran
    assert production(repo) == before
    registry = Registry(repo / "model_store")
    tried = registry.list(name="tabular_Q1_ridge")
    assert [m["version"] for m in tried] == [1, 2]
    assert tried[1]["lineage"]["dvc_experiment"] == "tab-a"
    # the experiment's figures per task beside the last run's (tabular/eval/tasks.json)
    compared = run(repo, "fleet", "compare", "HEAD", "tab-a", "--family", "tabular", "--json")
    rows = {row["task"]: row for row in json.loads(compared.stdout)}
    assert sorted(rows) == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    assert rows["Q1"]["rmse_b"] == pytest.approx(tried[1]["metrics"]["rmse"])
    assert rows["Q1"]["rmse_a"] == pytest.approx(tried[0]["metrics"]["rmse"])
    assert all(r["r2_change"] == pytest.approx(r["r2_b"] - r["r2_a"]) for r in rows.values())
    unknown = run(repo, "fleet", "compare", "HEAD", "tab-a", "--family", "vision", check=False)
    assert unknown.returncode == 2 and "family 'vision' is not installed" in unknown.stderr
