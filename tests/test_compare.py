"""pipelines.compare: two runs' per-scope figures side by side, the worst change first by
the direction of the family's first metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.compare import WORKSPACE, compare, per_scope
from pipelines.errors import DataError

A = {"Q1": {"rmse": 1.0, "r2": 0.9}, "Q2": {"rmse": 2.0, "r2": 0.5}, "Q3": {"rmse": 1.0}}
B = {"Q1": {"rmse": 1.5, "r2": 0.8}, "Q2": {"rmse": 1.0, "r2": 0.7}, "Q4": {"rmse": 3.0}}


def test_an_error_that_rises_most_comes_first() -> None:
    rows = compare(A, B, {"rmse": "lower", "r2": "higher"}, "task")
    assert [r["task"] for r in rows] == ["Q1", "Q2", "Q3", "Q4"]  # +0.5, -1.0, then unmatched
    assert rows[0] == {
        "task": "Q1",
        "rmse_a": 1.0,
        "rmse_b": 1.5,
        "rmse_change": 0.5,
        "r2_a": 0.9,
        "r2_b": 0.8,
        "r2_change": pytest.approx(-0.1),
    }
    assert rows[2]["rmse_b"] is None and rows[2]["rmse_change"] is None


def test_a_score_that_falls_most_comes_first() -> None:
    rows = compare(A, B, {"r2": "higher"}, "task")
    assert [r["task"] for r in rows][:2] == ["Q1", "Q2"]  # -0.1 before +0.2


def test_the_workspace_is_read_from_the_figures_file(tmp_path: Path) -> None:
    figures = tmp_path / "eval" / "tasks.json"
    figures.parent.mkdir()
    figures.write_text(json.dumps([{"task": "Q1", "r2": 0.9}]))
    assert per_scope(WORKSPACE, Path("eval/tasks.json"), "task", tmp_path) == {
        "Q1": {"task": "Q1", "r2": 0.9}
    }
    with pytest.raises(DataError, match=r"is not a list of devices' figures"):
        per_scope(WORKSPACE, Path("eval/tasks.json"), "device", tmp_path)
    with pytest.raises(DataError, match=r"cannot read .*; run `dvc repro`"):
        per_scope(WORKSPACE, Path("eval/none.json"), "task", tmp_path)
