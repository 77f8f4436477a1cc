"""How well a task's model predicts its target, beside what predicting the training mean scores.

RMSE, MAE, R² and MAPE come from scikit-learn, in the target's own units (predictions are
scaled back first). MAPE is a fraction (0.1 = 10 %) over the rows whose target is not zero:
a zero target has no percentage error (the seed added 1e-8 to the denominator, which makes
a zero target's error the prediction times 1e8). R² is None where it is undefined: for a
target that does not vary, as one row's does not.

The baseline_* figures are the same four for a model that always predicts the training
targets' mean, so a reader sees the skill: an RMSE that looks small may be no better than
the mean. DIRECTIONS says, in one place, which way each model metric is better; the
baselines are references, not judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

from pipelines.tabular.card import METRICS

DIRECTIONS = METRICS  # declared once, in the family's card


@dataclass(frozen=True)
class _Figures:
    rmse: float
    mae: float
    r2: float | None
    mape: float | None


@dataclass(frozen=True)
class Regression:
    """A model's figures on a set of rows, and the training mean's on the same rows."""

    rmse: float
    mae: float
    r2: float | None
    mape: float | None
    baseline_rmse: float
    baseline_mae: float
    baseline_r2: float | None
    baseline_mape: float | None
    rows: int
    mape_rows: int  # the rows with a non-zero target, which MAPE is over

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, train_mean: float) -> Regression:
    """Score `y_pred` against `y_true` (both in the target's units) and the training mean."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or len(y_true) == 0:
        raise ValueError(
            f"targets of shape {y_true.shape} and predictions of shape {y_pred.shape}: "
            "expected one prediction per target, at least one"
        )
    if not np.isfinite(y_pred).all():
        raise ValueError("predictions contain NaN or infinity: expected finite numbers")
    model = _figures(y_true, y_pred)
    baseline = _figures(y_true, np.full_like(y_true, train_mean))
    return Regression(
        **asdict(model),
        **{f"baseline_{name}": value for name, value in asdict(baseline).items()},
        rows=len(y_true),
        mape_rows=int(np.count_nonzero(y_true)),
    )


def _figures(y_true: np.ndarray, y_pred: np.ndarray) -> _Figures:
    nonzero = y_true != 0
    return _Figures(
        rmse=float(np.sqrt(mean_squared_error(y_true, y_pred))),
        mae=float(mean_absolute_error(y_true, y_pred)),
        r2=float(r2_score(y_true, y_pred)) if np.ptp(y_true) > 0 else None,
        mape=(
            float(mean_absolute_percentage_error(y_true[nonzero], y_pred[nonzero]))
            if nonzero.any()
            else None
        ),
    )
