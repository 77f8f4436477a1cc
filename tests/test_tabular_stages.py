"""The tabular family's stages as DVC runs them (`--family tabular`): demo data, a regressor
per task, its figures, and its registration, gate, promotion and export in one store."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from pipelines import engine
from pipelines.tabular.data import read_task
from registry.api import Registry
from tests.faults import kill_when, start_killable
from tests.patience import HANG_S
from tests.pipeline_repo import family_stage
from tests.pipeline_repo import fleet_in as fleet

DEPLOY_ARGS = ("models", "eval", "data", "deploy")
FAST = {"generate": {"subjects": 150, "diabetes": False}, "train": {"model": "ridge"}}


def stage(cwd: Path, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return family_stage(cwd, "tabular", name, *args, **env)


def write_params(folder: Path, params: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def pipeline(folder: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every stage of tabular/dvc.yaml, as its commands name them, in order."""
    commands = {
        "generate": ("data",),
        "train": ("data", "models"),
        "evaluate": ("data", "models", "eval"),
        "deploy": DEPLOY_ARGS,
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


CEILING = {"rmse": 3.0}  # the demo tasks' ridge models are well within it


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The pipeline run once on the fast demo tasks, the family's gate a ceiling on RMSE:
    the project, and each stage's run, for tests to copy and go on from."""
    folder = tmp_path_factory.mktemp("tabular") / "project"
    folder.mkdir()
    write_params(folder, FAST)
    registry = Registry(folder / "store")
    registry.init()
    registry.set_policy(ceilings=CEILING, reason="demo tasks", family="tabular")
    return folder, pipeline(folder)


@pytest.fixture
def built(ran: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """A copy of the project the pipeline ran in (its deploy links stay links)."""
    return Path(shutil.copytree(ran[0], tmp_path / "project", symlinks=True))


def test_every_task_is_trained_evaluated_gated_promoted_exported_and_scores(
    ran: tuple[Path, dict[str, Any]], built: Path
) -> None:
    """The lifecycle end to end: a ceiling on RMSE passed, each task promoted and exported,
    and its bundle, through `fleet score` on a CSV, gives the evaluated predictions."""
    project, runs = built, ran[1]
    assert sorted(p.stem for p in (project / "data").iterdir()) == ["Q1", "Q2", "Q3", "Q4", "Q5"]
    figures = json.loads((project / "eval" / "metrics.json").read_text())
    assert figures["tasks"] == 5 and figures["r2_mean"] > 0.5  # ridge beats the mean
    registry = Registry(project / "store")
    held = registry.list(alias="production")
    assert sorted(m["name"] for m in held) == [f"tabular_Q{i}_ridge" for i in range(1, 6)]
    assert "Q1: v1 registered; promoted" in runs["deploy"].stderr
    assert all(m["metrics"]["rmse"] <= CEILING["rmse"] for m in held)  # the gate's ceiling
    # the rows the evaluation predicted, as a user's CSV: columns in another order, target kept
    with (project / "eval" / "tasks" / "Q1" / "predictions.csv").open() as rows:
        evaluated = list(csv.DictReader(rows))
    task = read_task(project / "data" / "Q1.npz", "y")
    index = [int(r["row"]) for r in evaluated]
    columns = ["y", *reversed(task.features)]
    table = [[task.y[i], *task.X[i][::-1]] for i in index]
    with (project / "new.csv").open("w", newline="") as out:
        csv.writer(out).writerows([columns, *table])
    scored = fleet(project, "score", "deploy/models/Q1", "new.csv", "--csv")
    assert scored.returncode == 0, scored.stderr
    got = list(csv.DictReader(io.StringIO(scored.stdout)))
    assert [int(r["row"]) for r in got] == list(range(1, len(index) + 1))
    expected = [float(r["predicted"]) for r in evaluated]
    np.testing.assert_allclose([float(r["prediction"]) for r in got], expected, rtol=1e-12)
    np.testing.assert_allclose([float(r["actual"]) for r in got], task.y[index])
    drawn = fleet(project, "score", "deploy/models/Q1", "new.csv", "--draw", "drawn")
    assert drawn.returncode == 2 and not (project / "drawn").exists()
    assert "--draw: a tabular bundle's answers are not drawn on its input" in drawn.stderr


def test_score_names_a_bad_file_in_one_line_and_scores_the_others(built: Path) -> None:
    project = built
    task = read_task(project / "data" / "Q2.npz", "y")
    header = ",".join(task.features)
    (project / "ok.csv").write_text(header + "\n" + ",".join(["0.5"] * len(task.features)))
    short = len(task.features) - 1
    (project / "short.csv").write_text(header.rsplit(",", 1)[0] + "\n" + ",".join(["1"] * short))
    np.savez(project / "rows.npz", X=task.X[:3], features=np.array(task.features))  # no y
    scored = fleet(
        project, "score", "deploy/models/Q2", "ok.csv", "short.csv", "rows.npz", "--json"
    )
    assert scored.returncode == 1, scored.stderr
    records = json.loads(scored.stdout)
    assert [(Path(r["file"]).name, r["row"]) for r in records] == [
        ("ok.csv", 1),
        ("short.csv", None),
        ("rows.npz", 1),
        ("rows.npz", 2),
        ("rows.npz", 3),
    ]
    missing = task.features[-1]
    assert records[1]["error"].startswith(f"columns are not the model's: missing {missing!r}")
    assert records[2]["actual"] is None and records[2]["prediction"] is not None
    assert "Traceback" not in scored.stderr
    tampered = Path(shutil.copytree(project / "deploy" / "models" / "Q2", project / "copy"))
    (tampered / "model.pth").write_bytes(b"not the exported weights")
    refused = fleet(project, "score", "copy", "ok.csv")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "cannot load the bundle" in refused.stderr and "model.pth" in refused.stderr
    assert "does not match its recorded sha256" in refused.stderr


def test_a_ceiling_on_rmse_refuses_and_keeps_production(built: Path) -> None:
    project = built
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


def test_an_experiment_registers_but_moves_no_alias(built: Path) -> None:
    project = built
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


def test_init_from_production_fine_tunes_each_task_on_new_rows_with_its_parent_recorded(
    built: Path,
) -> None:
    project = built
    first = torch.load(project / "models" / "Q1" / "model.pth", weights_only=True)
    # the next day's rows (another draw of subjects), trained from each task's production
    fast = {"model": "ridge", "init_from": "production"}
    write_params(project, FAST | {"generate": FAST["generate"] | {"seed": 1}, "train": fast})
    for name, args in (("generate", ("data",)), ("train", ("data", "models"))):
        assert stage(project, name, *args).returncode == 0
    summary = json.loads((project / "models" / "Q1" / "summary.json").read_text())
    assert summary["start"]["how"] == "production"
    assert summary["start"]["parent"] == "tabular_Q1_ridge:v1"
    tuned = torch.load(project / "models" / "Q1" / "model.pth", weights_only=True)
    assert all(torch.equal(tuned[k], first[k]) for k in first if k.startswith("scale."))
    assert tuned.keys() == first.keys() and not all(torch.equal(tuned[k], first[k]) for k in first)
    for name, args in (("evaluate", ("data", "models", "eval")), ("deploy", DEPLOY_ARGS)):
        assert stage(project, name, *args).returncode == 0
    registry = Registry(project / "store")
    assert registry.get("tabular_Q1_ridge:v2")["lineage"]["parent_version"] == 1
    assert [m["version"] for m in registry.lineage("tabular_Q1_ridge:v2")] == [2, 1]


def test_a_pinned_parent_that_is_not_there_fails_its_task_alone(built: Path) -> None:
    project = built
    pins = "tabular_Q1_ridge:v7,tabular_Q2_ridge:v1"  # no rule: the tasks not pinned are left
    write_params(project, FAST | {"train": {"model": "ridge", "init_from": pins}})
    run = stage(project, "train", "data", "models")
    assert run.returncode == 0, run.stderr
    report = json.loads((project / "reports" / "tabular" / "train.json").read_text())
    assert report["failed"] == ["Q1"] and report["built"] == ["Q2"]
    assert "cannot start from tabular_Q1_ridge:v7" in report["devices"]["Q1"]["error"]
    assert sorted(report["skipped"]) == ["Q3", "Q4", "Q5"]
    assert "Traceback" not in run.stderr


def test_a_killed_train_stage_resumes_to_the_weights_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """kill -9 in the middle of an mlp's epochs: the stage run again resumes from the task's
    checkpoint (models/.partial/Q1) and ends with the weights of a run never killed."""
    # no early stop, so that the run is still going when it is killed
    mlp = {"model": "mlp", "epochs": 100, "patience": 100, "hidden": [16]}
    runs = {}
    for name in ("killed", "whole"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        write_params(runs[name], FAST | {"train": mlp})
        assert stage(runs[name], "generate", "data").returncode == 0
        for other in ("Q2", "Q3", "Q4", "Q5"):
            (runs[name] / "data" / f"{other}.npz").unlink()
    command = ["-m", "stages.train", "--family", "tabular", "data", "models"]
    checkpoint = runs["killed"] / "models" / ".partial" / "Q1" / "checkpoints" / "last.pth"

    def epoch() -> int:
        state = engine.load_checkpoint(checkpoint, torch.device("cpu"))
        return 0 if state is None else state["epoch"]

    whole = start_killable(command, runs["whole"])  # meanwhile: each spends most time importing
    kill_when(start_killable(command, runs["killed"]), lambda: epoch() >= 3)
    assert not (runs["killed"] / "models" / "Q1").exists()  # nothing half-finished published
    assert stage(runs["killed"], "train", "data", "models").returncode == 0
    _, err = whole.communicate(timeout=HANG_S)  # read as it runs: a full pipe would block it
    assert whole.returncode == 0, err
    summary = json.loads((runs["killed"] / "models" / "Q1" / "summary.json").read_text())
    assert 3 <= summary["resumed_from"] < summary["epochs_run"] == 100
    a, b = (torch.load(f / "models" / "Q1" / "model.pth", weights_only=True) for f in runs.values())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
