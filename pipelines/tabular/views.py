"""What `fleet table` and `fleet status` show of the tabular family (its card's TABLE and
STATUS), read from its pipeline's outputs in `folder` (tabular/): only JSON, its params and
its data folder's listing, none of its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import DataError
from pipelines.status import Sources
from pipelines.tables import (
    Column,
    FamilyTable,
    MissingOutputs,
    read_record,
    required,
    scope_sources,
    scope_table,
)
from pipelines.tabular import card
from pipelines.tabular.data import find_tasks
from pipelines.tabular.params import load_params

COLUMNS = (
    Column("task", "task"),
    Column("model", "model"),
    Column("rows", "rows"),
    Column("epochs", "epochs"),
    Column("rmse", "RMSE", "{:#.4g}"),
    Column("mae", "MAE", "{:#.4g}"),
    Column("r2", "R²", "{:.3f}"),
    Column("mape", "MAPE", "{:.1%}"),
    Column("baseline_rmse", "mean's RMSE", "{:#.4g}"),
    Column("baseline_r2", "mean's R²", "{:.3f}"),
)


def table(folder: Path, evaluation: Path | None = None) -> FamilyTable:
    """Per task: its model, rows and epochs run, and its figures on its test rows beside the
    training mean's (`evaluation`, else eval/ in `folder`); the figures over the tasks under it."""
    evaluation = evaluation or folder / "eval"
    return scope_table(COLUMNS, folder, evaluation, "tasks", _row, _summary)


def status(folder: Path) -> Sources:
    """The tasks of data.root, the last evaluation's figures, deploy/models and reports/."""
    p = load_params(required(folder / "params.yaml"))
    try:
        tasks, _ = find_tasks(folder / p.data.root)
    except DataError:
        tasks = {}  # no data yet: the registry and the deploy folder still speak
    return scope_sources(card, folder, tasks, "tasks")


def _row(model: Path, evaluated: Path) -> dict[str, Any]:
    """The task's figures on its test rows, with what the train stage says of its model (none
    when the models folder has gone, as the evaluation stays)."""
    figures = read_record(evaluated / "summary.json")
    try:
        trained = read_record(model / "summary.json")
    except MissingOutputs:
        trained = {}
    return (
        {"task": evaluated.name}
        | figures
        | {
            "test_rows": figures.get("rows"),
            "model": (trained.get("architecture") or {}).get("type"),
            "rows": trained.get("rows"),
            "epochs": trained.get("epochs_run"),
        }
    )


def _summary(over: dict[str, Any]) -> str | None:
    """The figures over the tasks (the evaluate stage's eval/metrics.json) in a line."""
    if over.get("r2_mean") is None:
        return None
    line = f"{over['tasks']} tasks, mean R² {over['r2_mean']:.3f}, min R² {over['r2_min']:.3f}"
    if over.get("rmse_vs_mean_max") is not None:
        line += f", worst RMSE {over['rmse_vs_mean_max']:.0%} of the training mean's"
    return line
