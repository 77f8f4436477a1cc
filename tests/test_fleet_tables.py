"""`fleet table` and `fleet status` of every family in one project: the acoustic family's
tiny fleet at the root, the tabular family's pipeline run in tabular/, one store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from pipelines.acoustic import figures, views
from pipelines.cli import app
from registry.api import Registry
from tests import tiny_fleet
from tests.pipeline_repo import PROJECT, TINY, fresh_python, merge, write_params
from tests.test_readme import table
from tests.test_tabular_stages import FAST, pipeline
from tests.test_tabular_stages import write_params as write_tabular_params

runner = CliRunner()
TASKS = ["Q1", "Q2", "Q3", "Q4", "Q5"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both families' outputs as their pipelines leave them; the store in tabular/store."""
    root = tmp_path_factory.mktemp("families")
    tiny = tiny_fleet.build(root)
    figures.write_fleet_outputs(
        tiny.evaluation, root / "eval" / "metrics.json", root / "eval" / "plots"
    )
    write_params(root, merge(TINY, {"data": {"root": "data"}}))
    tabular = root / "tabular"
    tabular.mkdir()
    shutil.copy(PROJECT / "tabular" / "dvc.yaml", tabular / "dvc.yaml")
    write_tabular_params(tabular, FAST)
    Registry(tabular / "store").init()
    pipeline(tabular)
    return root


def fleet(project: Path, *args: str) -> Result:
    """`fleet ARGS --project PROJECT`, its store the one the tabular stages registered into."""
    env = {"MODEL_STORE": str(project / "tabular" / "store")}
    return runner.invoke(app, [*args, "--project", str(project)], env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def sections(out: str) -> dict[str, list[dict[str, str]]]:
    """Family -> the rows of the table under its heading line."""
    blocks = out.split("== ")[1:]
    return {name: table(text) for name, _, text in (b.partition(" ==\n") for b in blocks)}


def evaluated(project: Path, task: str) -> dict[str, Any]:
    return json.loads((project / "tabular" / "eval" / "tasks" / task / "summary.json").read_text())


def test_the_table_shows_each_family_in_its_own_columns(project: Path) -> None:
    out = ok(fleet(project, "table"))
    assert out.index("== acoustic ==") < out.index("== tabular ==")
    shown = sections(out)
    assert [row["device"] for row in shown["acoustic"]] == ["A-1", "B-2"]
    assert list(shown["tabular"][0]) == [
        *("task", "model", "rows", "epochs", "RMSE", "MAE", "R²", "MAPE"),
        *("mean's RMSE", "mean's R²"),
    ]
    for task, row in zip(TASKS, shown["tabular"], strict=True):
        figures_of = evaluated(project, task)
        assert (row["task"], row["model"], row["rows"], row["epochs"]) == (
            task,
            "ridge",
            "150",
            "0",
        )
        assert (row["RMSE"], row["R²"]) == (f"{figures_of['rmse']:#.4g}", f"{figures_of['r2']:.3f}")
        assert row["mean's R²"] == f"{figures_of['baseline_r2']:.3f}"
    assert "2 devices, mean AUC" in out and "5 tasks, mean R² " in out


def test_json_is_each_familys_own_record(project: Path) -> None:
    every = json.loads(ok(fleet(project, "table", "--json")))
    assert list(every) == ["acoustic", "tabular"]
    assert set(every["acoustic"]["devices"]) == {"A-1", "B-2"}
    tabular = json.loads(ok(fleet(project, "table", "--family", "tabular", "--json")))
    assert tabular == every["tabular"] and tabular["fleet"]["tasks"] == 5
    q1 = tabular["tasks"]["Q1"]
    test = evaluated(project, "Q1")  # every figure unrounded; rows: the task's, not the test's
    trained = {"model": "ridge", "rows": 150, "epochs": 0}
    assert q1 == test | {"task": "Q1", "test_rows": test["rows"]} | trained


def test_status_shows_each_family_with_its_headline_metric(project: Path) -> None:
    shown = sections(ok(fleet(project, "status")))
    assert list(shown["acoustic"][0])[-2:] == ["AUC", "flags"]
    assert list(shown["tabular"][0])[-2:] == ["RMSE", "flags"]
    every = json.loads(ok(fleet(project, "status", "--json")))
    assert [row["device"] for row in every["acoustic"]] == ["A-1", "B-2"]
    # the tiny fleet's candidates were never registered: the flag says so
    assert all(row["flags"] == ["no production version"] for row in every["acoustic"])
    tabular = json.loads(ok(fleet(project, "status", "--family", "tabular", "--json")))
    assert tabular == every["tabular"]
    assert [row["task"] for row in tabular] == TASKS
    for row in tabular:
        assert (row["production"], row["bundle"], row["flags"]) == ("ridge:v1", "ridge:v1", [])
        assert row["rmse"] == evaluated(project, row["task"])["rmse"]


def test_a_family_that_has_not_run_is_skipped_with_a_note(project: Path, tmp_path: Path) -> None:
    shutil.copytree(project / "tabular", tmp_path / "tabular")
    result = fleet(tmp_path, "table")
    assert list(sections(ok(result))) == ["tabular"]
    notes = result.stderr.splitlines()
    assert [n.split(" skipped: ")[0] for n in notes] == ["note: acoustic", "note: keypoint"]
    assert notes[0].startswith(f"note: acoustic skipped: {tmp_path / 'eval' / 'metrics.json'}")
    assert notes[1].endswith(
        f"no {tmp_path / 'keypoint' / 'dvc.yaml'}: its pipeline is not in this project"
    )


def test_a_family_asked_for_that_has_not_run_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "tabular").mkdir()
    shutil.copy(PROJECT / "tabular" / "dvc.yaml", tmp_path / "tabular" / "dvc.yaml")
    for command in ("table", "status"):
        result = fleet(tmp_path, command, "--family", "tabular")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: tabular: {tmp_path / 'tabular'}")
        assert line.endswith("run `dvc repro tabular/dvc.yaml`")
    nothing = fleet(tmp_path, "table")
    assert nothing.exit_code == 1
    assert (
        nothing.stderr.splitlines()[-1] == f"error: {tmp_path}: no family's pipeline has run here"
    )


@pytest.mark.parametrize("command", ["table", "status"])
def test_an_unknown_family_is_a_usage_error(command: str, tmp_path: Path) -> None:
    result = fleet(tmp_path, command, "--family", "vision")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --family: family 'vision' is not installed (installed: acoustic, keypoint, tabular)"
    ]


def test_the_tables_read_no_models_library(project: Path) -> None:
    """Both families' tables and status read records: neither pays for torch or sklearn."""
    code = (
        "import sys; from typer.testing import CliRunner; from pipelines.cli import app; "
        f"codes = [CliRunner().invoke(app, [c, '--project', {str(project)!r}]).exit_code "
        "for c in ('table', 'status')]; "
        "print(codes, sorted({'torch', 'sklearn'} & set(sys.modules)))"
    )
    assert fresh_python(code) == "[0, 0] []"


def test_the_acoustic_table_flags_only_a_test_set_too_small_to_mean_much(tmp_path: Path) -> None:
    """A device's AUC 0.625 beside F1 0.952 on 4 normal clips: the table says how few."""
    plots = tmp_path / "eval" / "plots"
    plots.mkdir(parents=True)
    devices = [
        {
            "device": "A-1",
            "auc": 0.9,
            "f1": 0.8,
            "test_clips": 44,
            "anomalies": 24,
            "val_loss": 0.5,
        },
        {"device": "B-2", "auc": 0.625, "f1": 0.952, "test_clips": 24, "anomalies": 20},
    ]
    (plots / figures.DEVICES).write_text(json.dumps(devices))
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(figures.fleet_figures({})))
    shown = views.table(tmp_path)
    assert [row[-1] for row in shown.rows] == ["20+24", "4+20 !"]
    assert shown.summary == (
        "! B-2: 4 normal and 20 anomalous test clips (under 10 of a kind): its AUC and F1 say "
        "little; no validation windows"
    )
