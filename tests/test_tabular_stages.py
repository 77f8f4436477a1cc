"""The tabular family's stages as DVC runs them (`--family tabular`): demo data, a regressor
per task, its figures, and its registration, gate, promotion and export in one store."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines.tabular import training
from pipelines.tabular.data import read_task
from pipelines.tabular.split import Split
from registry.api import Registry
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT

FAST = {"generate": {"subjects": 150, "diabetes": False}, "train": {"model": "ridge"}}


def stage(cwd: Path, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env |= {"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin", "MODEL_STORE": str(cwd / "store")}
    return subprocess.run(
        [sys.executable, "-m", f"stages.{name}", "--family", "tabular", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


def write_params(folder: Path, params: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def pipeline(folder: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every stage of tabular/dvc.yaml, as its commands name them, in order."""
    commands = {
        "generate": ("data",),
        "train": ("data", "models"),
        "evaluate": ("data", "models", "eval"),
        "deploy": ("models", "eval", "data", "deploy"),
    }
    done = {}
    for name, args in commands.items():
        done[name] = stage(folder, name, *args)
        assert done[name].returncode == 0, done[name].stderr
    return done


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_params(tmp_path, FAST)
    Registry(tmp_path / "store").init()
    return tmp_path


def test_every_task_is_trained_evaluated_registered_promoted_and_exported(project: Path) -> None:
    runs = pipeline(project)
    assert sorted(p.stem for p in (project / "data").iterdir()) == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    figures = json.loads((project / "eval" / "metrics.json").read_text())
    assert figures["tasks"] == 5 and figures["r2_mean"] > 0.5  # ridge beats the mean
    held = Registry(project / "store").list(alias="production")
    assert sorted(m["name"] for m in held) == [f"tabular_Q{i}_ridge" for i in range(1, 6)]
    assert "Q1: v1 registered; promoted" in runs["deploy"].stderr
    # the bundle in deploy/models reproduces the evaluated predictions from its files alone
    manifest = json.loads((project / "deploy" / "models" / "Q1" / "bundle.json").read_text())
    state = torch.load(project / "deploy" / "models" / "Q1" / "model.pth", weights_only=True)
    empty = np.array([], dtype=np.int64)
    shipped = training.TrainedTask(
        manifest["architecture"], state, Split(empty, empty, empty), None, 0
    )
    with (project / "eval" / "tasks" / "Q1" / "predictions.csv").open() as rows:
        evaluated = list(csv.DictReader(rows))
    task = read_task(project / "data" / "Q1.npz", "y", manifest["features"])
    index = np.array([int(r["row"]) for r in evaluated])
    predicted = training.predict_task(shipped, task.X[index])
    np.testing.assert_allclose(predicted, [float(r["predicted"]) for r in evaluated], rtol=1e-12)


def test_a_ceiling_on_rmse_refuses_and_keeps_production(project: Path) -> None:
    pipeline(project)
    registry = Registry(project / "store")
    registry.set_policy(
        ceilings={"rmse": 1e-6}, reason="a ceiling no model meets", family="tabular"
    )
    write_params(project, FAST | {"train": {"model": "ridge", "alpha": 50.0}})
    for name, args in (("train", ("data", "models")), ("evaluate", ("data", "models", "eval"))):
        assert stage(project, name, *args).returncode == 0
    refused = stage(project, "deploy", "models", "eval", "data", "deploy")
    assert "refused by the gate: rmse" in refused.stderr
    assert "production tabular_Q1_ridge:v1 kept" in refused.stderr
    counts = json.loads((project / "deploy" / "metrics.json").read_text())
    assert counts["gate_refused"] == 5 and counts["promoted"] == 0
    assert {m["version"] for m in registry.list(alias="production")} == {1}


def test_an_experiment_registers_but_moves_no_alias(project: Path) -> None:
    pipeline(project)
    write_params(project, FAST | {"train": {"model": "ridge", "alpha": 3.0}})
    for name, args in (("train", ("data", "models")), ("evaluate", ("data", "models", "eval"))):
        assert stage(project, name, *args).returncode == 0
    checked = stage(project, "deploy", "models", "eval", "data", "deploy", DVC_EXP_NAME="try-a")
    assert checked.returncode == 0, checked.stderr
    registry = Registry(project / "store")
    assert {m["version"] for m in registry.list(alias="production")} == {1}
    assert len(registry.list(name="tabular_Q1_ridge")) == 2


def test_a_bad_task_fails_alone_with_one_line(project: Path) -> None:
    stage(project, "generate", "data")
    (project / "data" / "Q9.csv").write_text("a,b,y\n1,2,3\n4,x,6\n")
    (project / "data" / "notes.txt").write_text("not a task")
    before = {p.name: p.read_bytes() for p in (project / "data").iterdir()}
    run = stage(project, "train", "data", "models")
    assert run.returncode == 0, run.stderr
    report = json.loads((project / "reports" / "tabular" / "train.json").read_text())
    assert report["failed"] == ["Q9"] and len(report["built"]) == 5
    error = report["devices"]["Q9"]["error"]
    assert error == "data/Q9.csv: line 3 (data row 2), column 'b': 'x' is not a number"
    assert "notes.txt" in run.stderr
    assert "Traceback" not in run.stderr
    assert {p.name: p.read_bytes() for p in (project / "data").iterdir()} == before


def test_bad_params_stop_the_stage_naming_the_key(project: Path) -> None:
    write_params(project, {"train": {"model": "lasso"}})
    run = stage(project, "train", "data", "models")
    assert run.returncode == 2
    assert "train.model: expected one of ['mlp', 'ridge', 'gbr']" in run.stderr
    unknown = stage(project, "extract", "data", "features")
    assert unknown.returncode == 2 and "family tabular has no extract stage" in unknown.stderr
