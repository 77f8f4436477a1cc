"""pipelines.tabular.synth and .diabetes: the family's demo data sets, in its own layout, readable
by read_task; the synthetic study is reproducible to the byte and learnable on held-out rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.split import split_rows
from pipelines.tabular import synth
from pipelines.tabular.data import find_tasks, read_task
from pipelines.tabular.diabetes import write_diabetes
from pipelines.tabular.metrics import regression_metrics
from pipelines.tabular.models import fit_gbr, fit_ridge, predict
from pipelines.tabular.split import Standardiser

GBR = {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0, "seed": 0}


def test_the_study_is_written_in_the_familys_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    paths = synth.generate(tmp_path)
    assert list(paths) == ["Q1", "Q2", "Q3", "Q4", "Q5"] == list(synth.TASKS)
    tasks, skipped = find_tasks(tmp_path)
    assert tasks == paths
    assert [s.path.name for s in skipped] == ["notes.txt"]  # left alone
    assert (tmp_path / "notes.txt").read_text() == "mine"
    for task, path in paths.items():
        table = read_task(path, "y", synth.FEATURES)
        assert table.X.shape == (synth.DEFAULT_SUBJECTS, 10)
        assert table.features == synth.FEATURES
        assert (table.X > 0).all()
        fractions = table.X[:, [synth.FEATURES.index("recurrence_rate"), -1]]
        assert (fractions < 1).all(), task


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first = synth.generate(tmp_path / "a", subjects=50, seed=3)
    again = synth.generate(tmp_path / "b", subjects=50, seed=3)
    other = synth.generate(tmp_path / "c", subjects=50, seed=4)
    for task in synth.TASKS:
        assert first[task].read_bytes() == again[task].read_bytes()
        assert first[task].read_bytes() != other[task].read_bytes()


def _held_out_r2(task: str, kind: str) -> float:
    X, y = synth.task_table(task)
    split = split_rows(len(y), 0.2, 0.2, seed=0, scope=f"task {task}")
    scale = Standardiser.fit(X[split.train], y[split.train])
    X_train, y_train = scale.apply(X[split.train]), scale.apply_target(y[split.train])
    model = (
        fit_ridge(X_train, y_train, 1.0) if kind == "ridge" else fit_gbr(X_train, y_train, **GBR)
    )
    pred = scale.invert_target(predict(model.architecture, model.state, scale.apply(X[split.test])))
    return regression_metrics(y[split.test], pred, scale.y_mean).r2


@pytest.mark.parametrize(
    ("task", "kind"),
    [("Q1", "ridge"), ("Q2", "ridge"), ("Q3", "gbr"), ("Q4", "gbr"), ("Q5", "gbr")],
)
def test_every_task_is_learnable_on_held_out_rows(task: str, kind: str) -> None:
    assert _held_out_r2(task, kind) >= 0.8


def test_a_non_linear_task_is_beyond_a_linear_model() -> None:
    assert _held_out_r2("Q5", "ridge") < 0.7


def test_the_diabetes_study_in_the_familys_layout(tmp_path: Path) -> None:
    path = write_diabetes(tmp_path / "data")
    assert path == tmp_path / "data" / "diabetes.npz"
    table = read_task(path, "y")
    assert table.X.shape == (442, 10) and table.y.shape == (442,)
    assert table.features == ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
    assert table.X[:, 0].min() >= 19 and table.X[:, 0].max() <= 79  # ages, in years: unscaled
    np.testing.assert_array_equal(np.unique(table.X[:, 1]), [1.0, 2.0])
