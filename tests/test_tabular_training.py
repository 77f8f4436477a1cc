"""pipelines.tabular.training: a task trained end to end, its scale learnt from the training
rows and stored with the model, every row used, fine-tuning from a parent, and a killed mlp
run resuming to the weights of an uninterrupted one."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import engine
from pipelines.errors import ParamError
from pipelines.split import split_rows
from pipelines.tabular import synth, training
from pipelines.tabular.data import Task
from pipelines.tabular.models import MODEL_TYPES
from pipelines.tabular.split import Standardiser
from pipelines.tabular.training import (
    SCALE,
    TaskTraining,
    TrainedTask,
    evaluate,
    fit_task,
    predict_task,
)
from tests.faults import kill_when, start_killable
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT

FAST = TaskTraining(epochs=40)  # enough for Q1's linear signal, quick to train
KILL_AFTER_EPOCH = 2
RESUMED_EPOCHS = 30
# Trains Q1 for RESUMED_EPOCHS with no early stop into the checkpoints folder argv[1] and
# saves the trained state and the epoch it resumed after to argv[2]. With "slow", it pauses
# after each checkpoint, so that the test sees epoch 2 written long before the last.
_RUN = f"""
import sys, time
from pathlib import Path
import torch
from pipelines import engine
from pipelines.tabular import synth
from pipelines.tabular.data import Task
from pipelines.tabular.training import TaskTraining, fit_task

if sys.argv[3] == "slow":
    save = engine.save_checkpoint
    def save_slowly(path, payload):
        digest = save(path, payload)
        time.sleep(0.3)
        return digest
    engine.save_checkpoint = save_slowly
X, y = synth.task_table("Q1", 120)
settings = TaskTraining(epochs={RESUMED_EPOCHS}, patience={RESUMED_EPOCHS})
trained = fit_task(Task("Q1", X, y, synth.FEATURES, Path("Q1.npz")), settings, Path(sys.argv[1]))
torch.save({{"state": trained.state, "resumed_from": trained.resumed_from}}, sys.argv[2])
"""


def _task(name: str = "Q1", subjects: int = 200, seed: int = 0) -> Task:
    X, y = synth.task_table(name, subjects, seed)
    return Task(name, X, y, synth.FEATURES, Path(f"{name}.npz"))


def _model(trained: TrainedTask) -> dict[str, torch.Tensor]:
    return {k: v for k, v in trained.state.items() if not k.startswith(SCALE)}


def _saved_and_loaded(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_scale_is_the_training_rows_and_predictions_are_in_the_targets_units(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(50.0, 10.0, (150, 3))
    y = 1000.0 + 5.0 * X[:, 0] - 2.0 * X[:, 1] + rng.normal(0.0, 1.0, 150)
    settings = TaskTraining(model="ridge", alpha=0.01)
    split = split_rows(150, settings.val_fraction, settings.test_fraction, 0, scope="task T1")
    y[split.val[0]] = 1e6  # a held-out row far from the rest would move a leaked scale
    X[split.test[0]] = 1e4
    trained = fit_task(Task("T1", X, y, ("a", "b", "c"), Path("T1.npz")), settings, tmp_path)

    train = trained.split.train
    assert float(trained.state["scale.y_mean"]) == pytest.approx(y[train].mean())
    assert float(trained.state["scale.y_std"]) == pytest.approx(y[train].std())
    assert np.allclose(trained.state["scale.x_mean"].numpy(), X[train].mean(axis=0))
    rows = train[:20]
    assert np.abs(predict_task(trained, X[rows]) - y[rows]).max() < 5.0  # noise sd 1, y ~ 1250


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_each_type_trains_predicts_and_predicts_the_same_from_a_saved_state(
    kind: str, tmp_path: Path
) -> None:
    task = _task()
    trained = fit_task(task, dataclasses.replace(FAST, model=kind), tmp_path)
    figures = evaluate(trained, task)
    assert figures.rows == len(trained.split.test)
    assert figures.r2 > 0.7 > figures.baseline_r2
    assert (trained.history is None) == (kind != "mlp")

    loaded = TrainedTask(
        json.loads(json.dumps(trained.architecture)),
        _saved_and_loaded(trained.state),
        trained.split,
        None,
        trained.epochs_run,
    )
    X = task.X[trained.split.test]
    assert np.array_equal(predict_task(loaded, X), predict_task(trained, X))


def test_every_row_is_in_one_part_and_every_training_row_is_seen_each_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.Tensor] = []
    loss = training.SquaredError.loss

    def spy(
        self: training.SquaredError, model: torch.nn.Module, batch: engine.Batch
    ) -> torch.Tensor:
        seen.append(batch[1].clone())
        return loss(self, model, batch)

    monkeypatch.setattr(training.SquaredError, "loss", spy)
    task = _task(subjects=103)
    settings = TaskTraining(epochs=3, patience=3, batch_size=16)
    trained = fit_task(task, settings, tmp_path)

    split = trained.split
    parts = np.concatenate([split.train, split.val, split.test])
    assert np.array_equal(np.sort(parts), np.arange(103))
    assert len(split.train) % settings.batch_size  # a last, partial batch every epoch
    assert trained.epochs_run == 3
    scale = Standardiser.fit(task.X[split.train], task.y[split.train])
    targets = scale.apply_target(task.y[split.train]).astype(np.float32)
    assert np.array_equal(np.sort(torch.cat(seen).numpy()), np.sort(np.tile(targets, 3)))


def test_a_fine_tuned_mlp_starts_from_its_parent_and_keeps_its_scale(tmp_path: Path) -> None:
    parent = fit_task(_task(), FAST, tmp_path / "parent")
    new_rows = _task(subjects=150, seed=1)

    untrained = fit_task(new_rows, dataclasses.replace(FAST, epochs=0), tmp_path / "0", parent)
    assert untrained.architecture == parent.architecture
    assert untrained.state.keys() == parent.state.keys()
    assert all(torch.equal(untrained.state[k], parent.state[k]) for k in parent.state)
    own = Standardiser.fit(new_rows.X[untrained.split.train], new_rows.y[untrained.split.train])
    assert float(parent.state["scale.y_mean"]) != pytest.approx(own.y_mean)

    one_epoch = dataclasses.replace(FAST, epochs=1)
    tuned = fit_task(new_rows, one_epoch, tmp_path / "tuned", parent)
    scratch = fit_task(new_rows, one_epoch, tmp_path / "scratch")
    assert tuned.history[0]["train_loss"] < 0.5 * scratch.history[0]["train_loss"]

    with pytest.raises(ParamError, match="cannot fine-tune a mlp"):
        fit_task(new_rows, dataclasses.replace(FAST, model="ridge"), tmp_path / "r", parent)


def test_the_synthetic_q1_mlp_reaches_r2_08_with_the_default_settings(tmp_path: Path) -> None:
    task = _task(subjects=synth.DEFAULT_SUBJECTS)
    assert evaluate(fit_task(task, TaskTraining(), tmp_path), task).r2 >= 0.8


def _start(checkpoints: Path, out: Path, pace: str) -> subprocess.Popen:
    return start_killable(["-c", _RUN, str(checkpoints), str(out), pace], PROJECT)


def _checkpoint_epoch(checkpoints: Path) -> int:
    state = engine.load_checkpoint(checkpoints / "last.pth", torch.device("cpu"))
    return 0 if state is None else state["epoch"]


def test_a_killed_mlp_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    process = _start(killed, tmp_path / "never.pth", "slow")
    kill_when(process, lambda: _checkpoint_epoch(killed) >= KILL_AFTER_EPOCH)

    started = {
        name: _start(path, tmp_path / f"{name}.pth", "fast")
        for name, path in (("resumed", killed), ("whole", whole))
    }  # at once: each spends most of its time importing
    runs = {}
    for name, done in started.items():
        _, err = done.communicate(timeout=HANG_S)
        assert done.returncode == 0, err
        runs[name] = torch.load(tmp_path / f"{name}.pth", weights_only=True)
    assert KILL_AFTER_EPOCH <= runs["resumed"]["resumed_from"] < RESUMED_EPOCHS
    assert runs["whole"]["resumed_from"] == 0
    a, b = runs["resumed"]["state"], runs["whole"]["state"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
