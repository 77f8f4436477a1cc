"""pipelines.tabular.metrics: the four figures against hand-computed values, MAPE over non-zero
targets only, undefined figures as None, and the training mean's figures beside them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.tabular.metrics import DIRECTIONS, regression_metrics


def test_the_figures_and_the_baselines_by_hand() -> None:
    y = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.0, 3.0, 4.0, 3.0])  # errors 0, 1, 0, -2
    m = regression_metrics(y, pred, train_mean=2.0)
    assert m.rmse == pytest.approx(math.sqrt(5 / 4))
    assert m.mae == pytest.approx(3 / 4)
    assert m.r2 == pytest.approx(1 - 5 / 10)  # the targets' squares about their mean 3: 10
    assert m.mape == pytest.approx((0 + 1 / 2 + 0 + 2 / 5) / 4)
    # always predicting 2.0: errors -1, 0, 2, 3
    assert m.baseline_rmse == pytest.approx(math.sqrt(14 / 4))
    assert m.baseline_mae == pytest.approx(6 / 4)
    assert m.baseline_r2 == pytest.approx(1 - 14 / 10)
    assert m.baseline_mape == pytest.approx((1 + 0 + 2 / 4 + 3 / 5) / 4)
    assert (m.rows, m.mape_rows) == (4, 4)


def test_mape_is_over_non_zero_targets_only() -> None:
    m = regression_metrics(np.array([0.0, 2.0, 4.0]), np.array([1.0, 1.0, 5.0]), 1.0)
    assert m.mape == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m.mape_rows == 2
    none = regression_metrics(np.zeros(3), np.array([1.0, 0.0, -1.0]), 0.0)
    assert none.mape is None and none.baseline_mape is None and none.mape_rows == 0


def test_r2_of_a_target_that_does_not_vary_is_none() -> None:
    assert regression_metrics(np.full(3, 2.0), np.array([2.0, 2.0, 3.0]), 2.0).r2 is None
    one = regression_metrics(np.array([2.0]), np.array([2.5]), 2.0)
    assert one.r2 is None and one.rmse == pytest.approx(0.5)


def test_as_dict_holds_every_figure_and_directions_the_judged_ones() -> None:
    figures = regression_metrics(np.array([1.0, 2.0]), np.array([1.5, 2.5]), 1.5).as_dict()
    judged = {"rmse", "mae", "r2", "mape"}
    assert set(figures) == judged | {f"baseline_{k}" for k in judged} | {"rows", "mape_rows"}
    assert set(DIRECTIONS) == judged
    assert DIRECTIONS == {"rmse": "lower", "mae": "lower", "r2": "higher", "mape": "lower"}


@pytest.mark.parametrize(
    ("y", "pred", "match"),
    [
        ([1.0, 2.0], [1.0], "one prediction per target"),
        ([], [], "at least one"),
        ([1.0, 2.0], [1.0, np.nan], "NaN or infinity"),
    ],
)
def test_predictions_that_cannot_be_scored(y: list, pred: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        regression_metrics(np.array(y), np.array(pred), 0.0)
