"""One task trained end to end: split, scale, fit, predict in the target's units, evaluate.

`fit_task` deals the task's rows to train, val and test (split.py), fits the Standardiser on
the training rows, and fits the model type `TaskTraining.model` on the standardised
training rows: an `mlp` through the shared engine (pipelines/engine.py) on `SquaredError`,
with early stopping on the validation rows; `ridge` and `gbr` at once (models.py). The
result's state holds the model's tensors and the scale's (`scale.x_mean`, ...), so that
`predict_task` answers in the target's units from the state alone, and tensors only, so
that `torch.load(weights_only=True)` reads it.

A fine-tuning (`parent`, nanoGPT's `init_from`) keeps its parent's scale: the rows are new,
the units are not. An mlp also keeps its parent's architecture and starts from its
weights. A kill -9 during an mlp's training loses nothing: the same call with the same
`checkpoints_dir` resumes to the weights an uninterrupted run ends with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines import engine
from pipelines.errors import ParamError
from pipelines.split import Split, split_rows
from pipelines.tabular.data import Task
from pipelines.tabular.errors import TaskError
from pipelines.tabular.metrics import Regression, regression_metrics
from pipelines.tabular.models import (
    MLP,
    build_mlp,
    fit_gbr,
    fit_ridge,
    mlp_architecture,
    predict,
)
from pipelines.tabular.params import TaskTraining
from pipelines.tabular.split import Standardiser

SCALE = "scale."  # the prefix of the scale's tensors in a trained task's state


@dataclasses.dataclass(frozen=True)
class TrainedTask:
    """A task's model as trained: what it is, its tensors and the scale's, and its rows."""

    architecture: dict[str, Any]
    state: dict[str, torch.Tensor]  # the model's tensors, and the scale's under SCALE
    split: Split
    history: list[engine.Row] | None  # the engine's rows, one per epoch; None: fitted at once
    epochs_run: int  # 0 for a type fitted at once
    resumed_from: int = 0  # the epoch a killed mlp run resumed after


class SquaredError:
    """The mlp's objective: the mean squared error of the standardised target. Validation
    adds the figures in the target's units, where a reader judges them."""

    def __init__(self, scale: Standardiser) -> None:
        self.scale = scale

    def loss(self, model: nn.Module, batch: engine.Batch) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x).float(), y)

    def validate(self, model: nn.Module, batches: Iterator[engine.Batch]) -> dict[str, float]:
        pairs = [(model(x).double(), y.double()) for x, y in batches]
        z = torch.cat([p for p, _ in pairs]).cpu().numpy()
        t = torch.cat([y for _, y in pairs]).cpu().numpy()
        s = self.scale
        figures = regression_metrics(s.invert_target(t), s.invert_target(z), s.y_mean)
        row = {"val_loss": float(np.mean((z - t) ** 2)), "val_rmse": figures.rmse}
        return row | ({"val_r2": figures.r2} if figures.r2 is not None else {})


def engine_config(s: TaskTraining) -> engine.EngineConfig:
    """The engine's settings for an mlp: early stopping on `val_loss` (min), the engine's
    default monitor, and ReduceLROnPlateau on it, as the seed's trainer had. TaskTraining
    names each engine setting it has as EngineConfig does."""
    shared = {f.name for f in dataclasses.fields(engine.EngineConfig)}
    return engine.EngineConfig(**{k: v for k, v in vars(s).items() if k in shared})


def fit_task(
    task: Task,
    settings: TaskTraining,
    checkpoints_dir: Path,
    parent: TrainedTask | None = None,
) -> TrainedTask:
    """Train `settings.model` on `task`'s training rows (from `parent` when given)."""
    s = settings
    if parent is not None and parent.architecture["type"] != s.model:
        raise ParamError(f"model {s.model}: cannot fine-tune a {parent.architecture['type']}")
    split = split_rows(
        len(task.y), s.val_fraction, s.test_fraction, s.split_seed, scope=f"task {task.name}"
    )
    train = split.train
    if parent is None:
        scale = Standardiser.fit(task.X[train], task.y[train])
    else:
        scale = _scale(parent.state)
    X, y = scale.apply(task.X), scale.apply_target(task.y)
    if s.model == "mlp":
        return _train_mlp(task.name, X, y, split, s, scale, checkpoints_dir, parent)
    # Neither has weights to start from: a fine-tuning refits on the new rows, in the
    # parent's scale. Both fit on the training rows alone, as the mlp does, so that the
    # three compare on equal rows.
    if s.model == "ridge":
        fitted = fit_ridge(X[train], y[train], s.alpha)
    else:
        fitted = fit_gbr(
            X[train],
            y[train],
            n_estimators=s.n_estimators,
            learning_rate=s.gbr_learning_rate,
            max_depth=s.max_depth,
            subsample=s.subsample,
            seed=s.seed,
        )
    return TrainedTask(fitted.architecture, fitted.state | _scale_state(scale), split, None, 0)


def predict_task(trained: TrainedTask, X: np.ndarray) -> np.ndarray:
    """What the trained model predicts for rows X (in the features' units), in the target's."""
    scale = _scale(trained.state)
    z = predict(trained.architecture, _model_state(trained), scale.apply(X))
    return scale.invert_target(z)


def evaluate(trained: TrainedTask, task: Task) -> Regression:
    """The model's figures on the task's test rows, beside the training mean's."""
    test, train = trained.split.test, trained.split.train
    y_pred = predict_task(trained, task.X[test])
    return regression_metrics(task.y[test], y_pred, float(task.y[train].mean()))


def _train_mlp(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    split: Split,
    s: TaskTraining,
    scale: Standardiser,
    checkpoints: Path,
    parent: TrainedTask | None,
) -> TrainedTask:
    if parent is None:
        architecture = mlp_architecture(X.shape[1], s.hidden, s.dropout, s.batch_norm)
    else:
        architecture = parent.architecture
    if architecture["batch_norm"] and len(split.train) % s.batch_size == 1:
        # every row is trained on every epoch, so the last batch may hold a single row
        raise TaskError(
            name,
            f"{len(split.train)} training rows in batches of {s.batch_size} leave a batch of "
            "one row, which batch_norm cannot normalise: choose another batch_size",
        )

    def make_model() -> MLP:
        net = build_mlp(architecture)
        if parent is not None:
            net.load_state_dict(_model_state(parent))
        return net

    val = _rows(X, y, split.val) if len(split.val) else None
    result = engine.fit(
        make_model,
        SquaredError(scale),
        _rows(X, y, split.train),
        val,
        engine_config(s),
        checkpoints,
        label=name,
    )
    return TrainedTask(
        architecture,
        result.state | _scale_state(scale),
        split,
        result.history,
        result.epochs_run,
        result.resumed_from,
    )


def _rows(X: np.ndarray, y: np.ndarray, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(X[index]).float(), torch.from_numpy(y[index]).float()


def _scale_state(scale: Standardiser) -> dict[str, torch.Tensor]:
    return {SCALE + k: torch.from_numpy(np.asarray(v)) for k, v in scale.state().items()}


def _scale(state: dict[str, torch.Tensor]) -> Standardiser:
    return Standardiser.from_state(
        {k.removeprefix(SCALE): v for k, v in state.items() if k.startswith(SCALE)}
    )


def _model_state(trained: TrainedTask) -> dict[str, torch.Tensor]:
    return {k: v for k, v in trained.state.items() if not k.startswith(SCALE)}
