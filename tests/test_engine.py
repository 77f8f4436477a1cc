"""pipelines.engine: deterministic training, early stopping on a metric and a guard, the plateau
scheduler, weight decay, clipping, a supervised objective, resume, verified checkpoints,
DVCLive curves."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pipelines.acoustic.model import ConvAutoencoder, Reconstruction
from pipelines.engine import (
    CHECKPOINT_FORMAT,
    NO_CURVES,
    EngineConfig,
    FitResult,
    fit,
    load_checkpoint,
    load_verified,
    log_curves,
    recorded_sha256,
    save_checkpoint,
    select_device,
)
from pipelines.errors import IntegrityError
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT

TINY = EngineConfig(
    seed=3,
    epochs=6,
    min_epochs=2,
    patience=50,  # no early stop unless a test asks for it
    batch_size=8,
    lr=0.01,
    grad_clip=1.0,
    device="cpu",
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_model() -> ConvAutoencoder:
    return ConvAutoencoder((4, 8), latent_channels=2)


def _data(n: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _fit(p: EngineConfig, checkpoints: Path, val: bool = True, objective: Any = None) -> FitResult:
    val_x = _data(8, seed=1) if val else None
    return fit(make_model, objective or Reconstruction(), _data(), val_x, p, checkpoints)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fit_is_deterministic(tmp_path: Path) -> None:
    first = _fit(TINY, tmp_path / "a")
    second = _fit(TINY, tmp_path / "b")
    _assert_same_state(first.state, second.state)
    assert first.history == second.history
    assert first.best_epoch == second.best_epoch
    assert first.best_value == second.best_value
    other = _fit(dataclasses.replace(TINY, seed=4), tmp_path / "c")
    assert not torch.equal(first.state["encoder.0.weight"], other.state["encoder.0.weight"])


def test_fit_learns_and_returns_the_best_weights(tmp_path: Path) -> None:
    result = _fit(TINY, tmp_path)
    assert result.epochs_run == 6
    assert result.device == "cpu"
    assert result.resumed_from == 0
    losses = [row["val_loss"] for row in result.history]
    assert all(isinstance(v, float) for v in losses)
    assert result.best_value == min(losses)  # type: ignore[type-var]
    assert result.best_epoch == 1 + losses.index(result.best_value)
    assert losses[-1] < losses[0]  # type: ignore[operator]
    assert all(t.device.type == "cpu" for t in result.state.values())
    # The returned state is the one saved as best.pth.
    best = load_verified(tmp_path / "best.pth", recorded_sha256(tmp_path / "best.pth"))
    _assert_same_state(result.state, best["model"])


def test_history_has_one_row_per_epoch_and_no_val_loss_without_val(tmp_path: Path) -> None:
    result = _fit(dataclasses.replace(TINY, epochs=4), tmp_path, val=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert all(row.keys() == {"epoch", "train_loss", "lr"} for row in result.history)
    assert all(isinstance(row["train_loss"], float) for row in result.history)
    # Without validation data the training loss is monitored.
    assert result.best_value == min(row["train_loss"] for row in result.history)


def _never_improving(**changes: Any) -> EngineConfig:
    # The MSE of [0, 1] data is far below 1.0, so after the first epoch nothing counts as
    # an improvement of min_delta; lr tiny keeps the weights nearly still.
    return dataclasses.replace(TINY, lr=1e-9, min_delta=1.0, epochs=12, **changes)


@pytest.mark.parametrize(
    ("patience", "min_epochs", "stop"),
    [(2, 2, 3), (1, 4, 4), (3, 1, 4), (2, 6, 6)],
)
def test_early_stopping(tmp_path: Path, patience: int, min_epochs: int, stop: int) -> None:
    # Rule: stop after the epoch where bad_epochs >= patience and epoch >= min_epochs; epoch 1
    # always improves on infinity, so bad_epochs after epoch e is e - 1.
    assert stop == max(min_epochs, patience + 1)
    result = _fit(_never_improving(patience=patience, min_epochs=min_epochs), tmp_path)
    assert result.epochs_run == stop
    assert len(result.history) == stop
    assert result.best_epoch == 1


def test_an_improving_run_is_not_stopped(tmp_path: Path) -> None:
    p = dataclasses.replace(TINY, patience=1, min_epochs=1)
    result = _fit(p, tmp_path, val=False)  # the training loss falls every epoch here
    losses = [row["train_loss"] for row in result.history]
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert result.epochs_run == 6
    assert result.best_epoch == 6


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = _fit(TINY, tmp_path / "whole")
    part = _fit(dataclasses.replace(TINY, epochs=3), tmp_path / "resumed")
    assert part.epochs_run == 3
    resumed = _fit(TINY, tmp_path / "resumed")
    assert resumed.resumed_from == 3
    assert resumed.epochs_run == 6
    _assert_same_state(resumed.state, whole.state)
    assert resumed.history == whole.history
    assert (resumed.best_epoch, resumed.best_value) == (whole.best_epoch, whole.best_value)
    last_whole = torch.load(tmp_path / "whole" / "last.pth", weights_only=True)
    last_resumed = torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
    _assert_same_state(last_resumed["model"], last_whole["model"])


class _Noisy(Reconstruction):
    """Reconstruction of inputs with noise drawn from torch's random state, as an
    augmenting objective draws."""

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return super().loss(model, batch + 0.1 * torch.randn_like(batch))


def test_a_resume_continues_the_random_draws_of_an_augmenting_objective(
    tmp_path: Path,
) -> None:
    whole = _fit(TINY, tmp_path / "whole", objective=_Noisy())
    _fit(dataclasses.replace(TINY, epochs=3), tmp_path / "resumed", objective=_Noisy())
    torch.rand(100)  # whatever ran in between
    resumed = _fit(TINY, tmp_path / "resumed", objective=_Noisy())
    assert resumed.resumed_from == 3
    _assert_same_state(resumed.state, whole.state)
    assert resumed.history == whole.history


def test_a_finished_run_is_not_trained_again(tmp_path: Path) -> None:
    first = _fit(TINY, tmp_path)
    again = _fit(TINY, tmp_path)
    assert again.resumed_from == 6
    assert again.epochs_run == 6
    assert again.history == first.history
    _assert_same_state(again.state, first.state)


def test_an_early_stopped_run_is_not_trained_again(tmp_path: Path) -> None:
    p = _never_improving(patience=2, min_epochs=2)
    first = _fit(p, tmp_path)
    assert first.epochs_run == 3
    # A crash after fit returned (the stage keeps .partial/{device}) runs fit again.
    again = _fit(p, tmp_path)
    assert again.resumed_from == 3
    assert again.epochs_run == first.epochs_run
    assert again.history == first.history
    _assert_same_state(again.state, first.state)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_checkpoint_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = _fit(TINY, tmp_path / "fresh")
    _fit(dataclasses.replace(TINY, epochs=3), tmp_path / "run")
    _flip_a_byte(tmp_path / "run" / "last.pth")
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        result = _fit(TINY, tmp_path / "run")
    assert result.resumed_from == 0
    assert result.epochs_run == 6
    assert "cannot resume" in caplog.text
    assert "last.pth" in caplog.text
    assert "does not match" in caplog.text
    _assert_same_state(result.state, fresh.state)  # trained from scratch, as if never begun


def test_a_checkpoint_without_its_sidecar_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fit(dataclasses.replace(TINY, epochs=2), tmp_path)
    (tmp_path / "last.pth.json").unlink()
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        assert load_checkpoint(tmp_path / "last.pth", torch.device("cpu")) is None
    assert "cannot resume" in caplog.text


def test_a_checkpoint_of_an_older_engine_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_checkpoint(tmp_path / "last.pth", {"epoch": 3, "best_loss": 0.1})  # no format
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        result = _fit(dataclasses.replace(TINY, epochs=2), tmp_path)
    assert (result.resumed_from, result.epochs_run) == (0, 2)
    assert "written by an older engine" in caplog.text


def test_no_checkpoint_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        assert load_checkpoint(tmp_path / "last.pth", torch.device("cpu")) is None
    assert caplog.text == ""


def test_save_checkpoint_writes_a_sha256_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "model.pth"
    payload = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 4}
    digest = save_checkpoint(path, payload)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = json.loads((tmp_path / "sub" / "model.pth.json").read_text())
    assert sidecar["sha256"] == digest
    assert recorded_sha256(path) == digest
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pth", "model.pth.json"]


def test_a_kill_between_the_two_renames_still_resumes(tmp_path: Path) -> None:
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"epoch": 1})
    first = path.read_bytes()
    save_checkpoint(path, {"epoch": 2})
    # The sidecar already names the new bytes, the old file is still in place.
    path.write_bytes(first)
    loaded = load_checkpoint(path, torch.device("cpu"))
    assert loaded == {"epoch": 1}


def test_load_verified(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    digest = save_checkpoint(path, {"w": torch.ones(3), "epoch": 2})
    loaded = load_verified(path, digest)
    assert loaded["epoch"] == 2
    assert torch.equal(loaded["w"], torch.ones(3))
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as caught:
        load_verified(path, wrong)
    assert str(path) in str(caught.value)
    assert digest[:12] in str(caught.value)
    _flip_a_byte(path)
    with pytest.raises(IntegrityError):
        load_verified(path, digest)


def test_select_device_cpu() -> None:
    assert select_device("cpu", 0) == torch.device("cpu")
    assert select_device("cpu", 10**9) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_select_device_falls_back_to_cpu_without_cuda(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        assert select_device("cuda", 512) == torch.device("cpu")
    assert "CUDA is not available" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        assert select_device("auto", 512) == torch.device("cpu")
    assert caplog.text == ""  # auto on a CPU machine is no surprise


def test_training_says_how_far_it_is_at_most_every_few_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first and the last epoch always, the ones between only PROGRESS_SECONDS apart:
    a device's long training shows progress, a fleet's does not flood the console. The
    engine's clock reads 4 s later at each epoch, whatever the machine's load."""
    ticks = itertools.count(0.0, 4.0)
    monkeypatch.setattr("pipelines.engine.time", SimpleNamespace(monotonic=lambda: next(ticks)))
    with caplog.at_level(logging.INFO, logger="pipelines.engine"):
        fit(make_model, Reconstruction(), _data(), _data(8, seed=1), TINY, tmp_path / "a", "LT-2")
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.engine"]
    # epoch 1 at 0 s, epoch 4 at 12 s (10 s after it), epoch 6 the last
    assert [line.split(",")[0] for line in lines] == [f"LT-2: epoch {e}/6" for e in (1, 4, 6)]
    assert lines[0].startswith("LT-2: epoch 1/6, train_loss ")
    assert ", val_loss " in lines[0] and lines[0].endswith(", lr 0.01")
    caplog.clear()
    monkeypatch.setattr("pipelines.engine.PROGRESS_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="pipelines.engine"):
        fit(make_model, Reconstruction(), _data(), None, TINY, tmp_path / "b", "LT-2")
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.engine"]
    assert [line.split(",")[0] for line in lines] == [f"LT-2: epoch {e}/6" for e in range(1, 7)]
    assert "val_loss" not in lines[0]


class _Scripted(Reconstruction):
    """Reconstruction, validated with one more metric, `score`, that takes the given values
    epoch after epoch (the weights train as usual)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)

    def validate(self, model: nn.Module, batches: Iterator[torch.Tensor]) -> dict[str, float]:
        return super().validate(model, batches) | {"score": next(self.scores)}


RISING = [0.1, 0.5, 0.55, 0.52, 0.56, 0.9, 0.1, 0.1, 0.95, 0.95]  # by > 0.1 until epoch 2


def _on_score(**changes: Any) -> EngineConfig:
    changes = {"monitor": "score", "mode": "max", "patience": 2, "min_epochs": 1} | changes
    return dataclasses.replace(TINY, epochs=len(RISING), **changes)


def test_early_stopping_on_a_rising_metric_respects_min_delta(tmp_path: Path) -> None:
    # 0.55 and 0.52 do not beat 0.5 by more than 0.1: two bad epochs after the second
    result = _fit(_on_score(min_delta=0.1), tmp_path / "a", objective=_Scripted(RISING))
    assert (result.epochs_run, result.best_epoch, result.best_value) == (4, 2, 0.5)
    assert [row["score"] for row in result.history] == RISING[:4]
    # without min_delta 0.55 and 0.56 are improvements, then 0.9; 0.1 twice stops the run
    result = _fit(_on_score(), tmp_path / "b", objective=_Scripted(RISING))
    assert (result.epochs_run, result.best_epoch, result.best_value) == (8, 6, 0.9)


def test_restore_best_returns_the_best_epochs_weights_else_the_last(tmp_path: Path) -> None:
    best = _fit(_on_score(min_delta=0.1), tmp_path / "best", objective=_Scripted(RISING))
    two_epochs = _fit(dataclasses.replace(TINY, epochs=2), tmp_path / "two")
    _assert_same_state(best.state, two_epochs.state)  # the weights after epoch 2
    last = _fit(
        _on_score(min_delta=0.1, restore_best=False), tmp_path / "last", objective=_Scripted(RISING)
    )
    assert (last.epochs_run, last.best_epoch) == (4, 2)
    four_epochs = _fit(dataclasses.replace(TINY, epochs=4), tmp_path / "four")
    _assert_same_state(last.state, four_epochs.state)
    assert not torch.equal(last.state["encoder.0.weight"], best.state["encoder.0.weight"])


def _plateau(**changes: Any) -> EngineConfig:
    # No epoch improves on the first one's loss by min_delta 1.0 (the MSE of [0, 1] data is
    # far below), so after every second epoch without improvement the rate is halved.
    plateau = {"plateau_factor": 0.5, "plateau_patience": 1, "plateau_min_lr": 0.002}
    return dataclasses.replace(TINY, **({"epochs": 9, "min_delta": 1.0} | plateau | changes))


def test_the_plateau_scheduler_lowers_the_rate_down_to_its_floor(tmp_path: Path) -> None:
    result = _fit(_plateau(), tmp_path)
    lrs = [row["lr"] for row in result.history]
    assert lrs == pytest.approx([0.01] * 3 + [0.005] * 2 + [0.0025] * 2 + [0.002] * 2)
    # off by default: the rate stays
    result = _fit(dataclasses.replace(_plateau(), plateau_factor=None), tmp_path / "off")
    assert {row["lr"] for row in result.history} == {0.01}


def test_a_resumed_run_continues_the_schedule(tmp_path: Path) -> None:
    whole = _fit(_plateau(), tmp_path / "whole")
    part = _fit(_plateau(epochs=5), tmp_path / "resumed")
    assert part.history[-1]["lr"] < TINY.lr  # reduced before the interruption
    resumed = _fit(_plateau(), tmp_path / "resumed")
    assert resumed.resumed_from == 5
    assert resumed.history == whole.history
    _assert_same_state(resumed.state, whole.state)


def _weights_norm(state: dict[str, torch.Tensor]) -> float:
    return sum(float(v.square().sum()) for k, v in state.items() if k.endswith("weight"))


def test_weight_decay_shrinks_the_weights(tmp_path: Path) -> None:
    last = dataclasses.replace(TINY, restore_best=False)
    plain = _fit(last, tmp_path / "plain")
    decayed = _fit(dataclasses.replace(last, weight_decay=1.0), tmp_path / "decayed")
    assert _weights_norm(decayed.state) < 0.9 * _weights_norm(plain.state)


def test_gradient_clipping_bounds_the_gradient_norm(tmp_path: Path) -> None:
    norms: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    hook = register_optimizer_step_pre_hook(record)
    try:
        _fit(dataclasses.replace(TINY, epochs=2, grad_clip=None), tmp_path / "free")
        free, norms[:] = max(norms), []
        _fit(dataclasses.replace(TINY, epochs=2, grad_clip=free / 10), tmp_path / "clipped")
    finally:
        hook.remove()
    assert len(norms) == 2 * 3  # 24 rows in batches of 8
    assert max(norms) <= free / 10 * (1 + 1e-5)


class _LinearRegression:
    """A supervised objective on (x, y) rows: mean squared error, validated as MSE and R2."""

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x).squeeze(1), y)

    def validate(
        self, model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        pairs = [(model(x).squeeze(1), y) for x, y in batches]
        predicted, y = (torch.cat(column) for column in zip(*pairs, strict=True))
        residual = float((predicted - y).square().sum())
        return {
            "val_mse": residual / len(y),
            "r2": 1 - residual / float((y - y.mean()).square().sum()),
        }


def _regression(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    noise = 0.05 * torch.randn(n, generator=generator)
    return x, x @ torch.tensor([2.0, -1.0, 0.5]) + 1.0 + noise


def test_a_supervised_objective_trains_on_x_y_pairs(tmp_path: Path) -> None:
    config = EngineConfig(epochs=40, batch_size=16, lr=0.05, monitor="r2", mode="max", device="cpu")
    result = fit(
        lambda: nn.Linear(3, 1),
        _LinearRegression(),
        _regression(64, 0),
        _regression(32, 1),
        config,
        tmp_path,
    )
    r2 = [row["r2"] for row in result.history]
    assert result.history[0].keys() == {"epoch", "train_loss", "val_mse", "r2", "lr"}
    assert result.best_value == max(r2) > 0.99 > r2[0]
    assert result.best_epoch == 1 + r2.index(max(r2))
    assert torch.allclose(result.state["weight"], torch.tensor([[2.0, -1.0, 0.5]]), atol=0.05)


def test_a_monitored_metric_the_objective_does_not_give_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'auc' is none of") as caught:
        _fit(dataclasses.replace(TINY, monitor="auc"), tmp_path)
    assert "val_loss" in str(caught.value)


def test_every_metric_and_the_rate_become_dvclive_curves(tmp_path: Path) -> None:
    histories = {
        "LT-2": [{"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e, "lr": 0.1} for e in (1, 2)],
        "Q1": [{"epoch": 1, "train_loss": 0.5, "val_loss": None, "val_r2": 0.7, "lr": 0.1}],
    }
    log_curves(histories, tmp_path / "live")
    found = {
        str(f.relative_to(tmp_path / "live")): f.read_text().splitlines()
        for f in (tmp_path / "live").rglob("*.tsv")
    }
    metrics = "plots/metrics"
    assert sorted(found) == [
        f"lr/{metrics}/LT-2/lr.tsv",
        f"lr/{metrics}/Q1/lr.tsv",
        f"{metrics}/LT-2/train/loss.tsv",
        f"{metrics}/LT-2/val/loss.tsv",
        f"{metrics}/Q1/train/loss.tsv",
        f"r2/{metrics}/Q1/val/r2.tsv",
    ]
    header, *rows = found[f"{metrics}/LT-2/val/loss.tsv"]
    assert header.split("\t")[-2:] == ["step", "loss"]
    assert [row.split("\t")[-2:] for row in rows] == [["1", "2.0"], ["2", "1.0"]]


def test_a_declared_curve_no_run_logged_is_a_curve_without_points(tmp_path: Path) -> None:
    """A fleet of a type without a training loop logs no curve; the plots dvc.yaml declares
    still load (DVC fails on a declared folder that is not there), each without points."""
    log_curves({"LT-2": [{"epoch": 1, "train_loss": 0.5}]}, tmp_path / "a", ("loss", "lr"))
    assert [p.name for p in (tmp_path / "a").rglob("*.tsv")] == ["loss.tsv", NO_CURVES]
    assert (tmp_path / "a/lr/plots/metrics" / NO_CURVES).read_text() == "step\tlr\n"
    log_curves({"LT-2": []}, tmp_path / "b", ("loss",))
    assert (tmp_path / "b/plots/metrics" / NO_CURVES).read_text() == "step\tloss\n"


@pytest.mark.parametrize(
    ("pipeline", "plotted"),
    [
        ("dvc.yaml", "pipelines.acoustic.training"),
        ("keypoint/dvc.yaml", "pipelines.keypoint.stages"),
    ],
)
def test_every_declared_curve_is_one_the_stage_always_writes(pipeline: str, plotted: str) -> None:
    plots = yaml.safe_load((PROJECT / pipeline).read_text())["plots"]
    curves = {
        path.removeprefix("logs/train/").removesuffix("plots/metrics").strip("/") or "loss"
        for entry in plots
        for path in entry
        if path.startswith("logs/train/")
    }
    assert curves == set(importlib.import_module(plotted).PLOTTED)


SCHEDULED = dataclasses.replace(_plateau(), epochs=24, plateau_min_lr=0.0)


class _Slow(Reconstruction):
    """Slow enough that a test can kill the run between two epochs."""

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return super().loss(model, batch)


def _killable(checkpoints: Path) -> None:
    torch.set_num_threads(1)  # as the test process: the same sums, the same bits
    _fit(SCHEDULED, checkpoints, objective=_Slow())


def test_a_killed_run_resumes_its_schedule_and_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    code = "import sys; from pathlib import Path; from tests.test_engine import _killable; "
    code += "_killable(Path(sys.argv[1]))"
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "killed")],
        cwd=root,
        env=os.environ | {"PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + HANG_S
    while not _rate_reduced(tmp_path / "killed" / "last.pth"):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(tmp_path / "killed" / "last.pth", torch.device("cpu"))["epoch"]
    assert killed_at < SCHEDULED.epochs
    resumed = _fit(SCHEDULED, tmp_path / "killed")
    whole = _fit(SCHEDULED, tmp_path / "whole")
    assert resumed.resumed_from == killed_at
    assert resumed.history == whole.history
    assert min(row["lr"] for row in whole.history) < 0.001  # reduced again after the kill
    _assert_same_state(resumed.state, whole.state)


def _rate_reduced(last: Path) -> bool:
    checkpoint = load_checkpoint(last, torch.device("cpu"))
    return checkpoint is not None and checkpoint["history"][-1]["lr"] < SCHEDULED.lr


# Seed 002's settings: adamw, cosine warm restarts after a linear warm-up, the weights' moving
# average, gradient accumulation, bf16 autocast, channels_last, a guard metric.

EVERYTHING = dataclasses.replace(
    TINY,
    epochs=8,
    optimizer="adamw",
    weight_decay=0.01,
    betas=(0.8, 0.99),
    cosine_t0=2,
    cosine_t_mult=2,
    eta_min=0.001,
    warmup_epochs=2,
    ema_decay=0.9,
    accumulate=2,  # 3 batches an epoch: a step after the second and one for the third
)
STALL_AT = 3 * 4 + 2  # the second batch of epoch 5, after the warm restart at epoch 5


class _StallsAt(Reconstruction):
    """Reconstruction until its `at`-th loss, where it says so in `marker` and hangs: a test
    kills the run there, in the middle of an epoch."""

    def __init__(self, at: int, marker: Path) -> None:
        self.calls, self.at, self.marker = 0, at, marker

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            self.marker.touch()
            time.sleep(HANG_S)
        return super().loss(model, batch)


def _killable_mid_epoch(checkpoints: Path, marker: Path) -> None:
    torch.set_num_threads(1)  # as the test process: the same sums, the same bits
    _fit(EVERYTHING, checkpoints, objective=_StallsAt(STALL_AT, marker))


def _run_until(marker: Path, *args: Path) -> None:
    """Run `_killable_mid_epoch(*args)` in a process of its own, SIGKILLed once it hangs."""
    code = "import sys; from pathlib import Path; from tests.test_engine import "
    code += "_killable_mid_epoch as run; run(*map(Path, sys.argv[1:]))"
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=root,
        env=os.environ | {"PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + HANG_S
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_a_run_killed_mid_epoch_resumes_average_schedule_and_accumulation_exactly(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "stalled"
    _run_until(marker, tmp_path / "killed", marker)
    killed_at = load_checkpoint(tmp_path / "killed" / "last.pth", torch.device("cpu"))
    assert killed_at is not None and killed_at["epoch"] == 4
    assert killed_at["ema"]["n_averaged"] == 4 * 2  # two steps an epoch
    resumed = _fit(EVERYTHING, tmp_path / "killed")
    whole = _fit(EVERYTHING, tmp_path / "whole")
    assert resumed.resumed_from == 4
    assert resumed.history == whole.history
    assert (resumed.best_epoch, resumed.best_value) == (whole.best_epoch, whole.best_value)
    _assert_same_state(resumed.state, whole.state)
    last = [
        load_checkpoint(tmp_path / run / "last.pth", torch.device("cpu"))
        for run in ("killed", "whole")
    ]
    for part in ("model", "ema"):
        _assert_same_state(last[0][part], last[1][part])  # type: ignore[index]
    assert last[0]["optimizer"]["param_groups"] == last[1]["optimizer"]["param_groups"]  # type: ignore[index]
    lrs = [row["lr"] for row in whole.history]
    assert lrs[4] == pytest.approx(EVERYTHING.lr)  # restarted at epoch 5
    assert lrs[3] < lrs[4]


class _BatchNormSpy(Reconstruction):
    """Reconstruction that keeps the first batch norm's running mean after every training
    forward pass: with one step a batch, the values the moving average takes in."""

    def __init__(self) -> None:
        self.means: list[torch.Tensor] = []

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        loss = super().loss(model, batch)
        self.means.append(model.encoder[1].running_mean.clone())
        return loss


def test_the_moving_average_covers_the_batch_norm_statistics(tmp_path: Path) -> None:
    decay = 0.7
    config = dataclasses.replace(TINY, epochs=3, ema_decay=decay, restore_best=False)
    spy = _BatchNormSpy()
    result = _fit(config, tmp_path, objective=spy)
    assert result.state.keys() == make_model().state_dict().keys()  # no "module.", n_averaged
    raw = load_checkpoint(tmp_path / "last.pth", torch.device("cpu"))
    assert raw is not None
    # The average's running mean is not the model's last (use_buffers=False would copy it)...
    averaged = result.state["encoder.1.running_mean"]
    assert torch.equal(raw["model"]["encoder.1.running_mean"], spy.means[-1])
    assert not torch.allclose(averaged, spy.means[-1], atol=1e-4)
    # ...but the EMA of the model's running means after each of the 9 steps.
    expected = spy.means[0]
    for mean in spy.means[1:]:
        expected = decay * expected + (1 - decay) * mean
    assert len(spy.means) == 9
    assert torch.allclose(averaged, expected, atol=1e-6)
    # restore_best=False returns the average's last weights; validation ran on them.
    _assert_same_state(result.state, {k[7:]: v for k, v in raw["ema"].items() if k != "n_averaged"})
    assert not torch.equal(result.state["encoder.0.weight"], raw["model"]["encoder.0.weight"])
    averaged_model = make_model()
    averaged_model.load_state_dict(result.state)
    val_loss = Reconstruction().validate(averaged_model.eval(), iter([_data(8, seed=1)]))
    assert val_loss["val_loss"] == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)
    # The best epoch's weights, in best.pth, are the average's too.
    best = _fit(dataclasses.replace(config, restore_best=True), tmp_path / "best")
    saved = load_verified(
        tmp_path / "best" / "best.pth", recorded_sha256(tmp_path / "best" / "best.pth")
    )
    _assert_same_state(best.state, saved["model"])
    assert best.state.keys() == result.state.keys()


class _Guarded(Reconstruction):
    """Reconstruction, validated with a `score` (max) and a `px` error (min) that take the
    given values epoch after epoch."""

    def __init__(self, scores: list[float], px: list[float]) -> None:
        self.scores, self.px = iter(scores), iter(px)

    def validate(self, model: nn.Module, batches: Iterator[torch.Tensor]) -> dict[str, float]:
        return super().validate(model, batches) | {"score": next(self.scores), "px": next(self.px)}


def _guarded(**changes: Any) -> EngineConfig:
    defaults = {"monitor": "score", "mode": "max", "patience": 2, "min_epochs": 1, "epochs": 8}
    return dataclasses.replace(TINY, **(defaults | changes))


SATURATED = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # a hit rate at 100 % from epoch 2
FALLING = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_a_guard_metric_keeps_a_saturated_run_training_and_picks_the_best_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alone = _fit(_guarded(), tmp_path / "alone", objective=_Guarded(SATURATED, FALLING))
    assert (alone.epochs_run, alone.best_epoch) == (2 + 2, 2)
    with caplog.at_level(logging.INFO, logger="pipelines.engine"):
        guarded = _fit(
            _guarded(guard="px"), tmp_path / "guarded", objective=_Guarded(SATURATED, FALLING)
        )
    assert (guarded.epochs_run, guarded.best_epoch, guarded.best_value) == (8, 8, 1.0)
    resets = [r.getMessage() for r in caplog.records if "patience reset" in r.getMessage()]
    assert len(resets) == 8 - 2  # epochs 1 and 2 improved the score as well
    assert resets[0] == "epoch 3: px improved to 6, patience reset"
    eight = _fit(dataclasses.replace(TINY, epochs=8), tmp_path / "eight")
    _assert_same_state(guarded.state, eight.state)  # the weights after epoch 8


def test_a_guard_improvement_wins_only_a_tie_of_the_monitor(tmp_path: Path) -> None:
    scores = [0.5, 0.9, 0.8, 0.9, 0.92, 0.9, 0.9, 0.9, 0.9, 0.9]
    px = [10.0, 9.0, 8.0, 7.0, 7.0, 6.0, 6.0, 6.0, 6.0, 6.0]
    config = _guarded(epochs=10, min_delta=0.05, guard="px", guard_min_delta=0.5)
    result = _fit(config, tmp_path / "whole", objective=_Guarded(scores, px))
    # 3: 0.8 is worse than 0.9 by more than 0.05, not the best, but px improved: not bad;
    # 4: a tie and px improved: the best; 5: 0.92 no improvement by more than 0.05 and px
    # none: bad; 6: the best again; 7, 8: bad, and patience 2 stops the run.
    assert (result.epochs_run, result.best_epoch, result.best_value) == (8, 6, 0.9)
    six = _fit(dataclasses.replace(TINY, epochs=6), tmp_path / "six")
    _assert_same_state(result.state, six.state)
    # Resumed after epoch 4 (px's best 7: epoch 5's 7 is no improvement) or after epoch 7
    # (one bad epoch: epoch 8's makes two), the run goes on as it did.
    for done in (4, 7):
        folder = tmp_path / f"resumed after {done}"
        _fit(dataclasses.replace(config, epochs=done), folder, objective=_Guarded(scores, px))
        resumed = _fit(config, folder, objective=_Guarded(scores[done:], px[done:]))
        assert resumed.resumed_from == done
        assert (resumed.epochs_run, resumed.best_epoch) == (8, 6)
        assert resumed.history == result.history


def test_a_guard_the_objective_does_not_give_is_named_and_without_val_ignored(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="the guard metric 'mae' is none of"):
        _fit(dataclasses.replace(TINY, guard="mae"), tmp_path / "a")
    result = _fit(dataclasses.replace(TINY, guard="mae"), tmp_path / "b", val=False)
    assert result.epochs_run == TINY.epochs


def _reference_rates(epochs: int, config: EngineConfig) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=config.cosine_t0, T_mult=config.cosine_t_mult, eta_min=config.eta_min
    )
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_warm_restarts_follow_torch_after_a_linear_warm_up(tmp_path: Path) -> None:
    config = dataclasses.replace(
        TINY, epochs=10, cosine_t0=2, cosine_t_mult=2, eta_min=0.001, warmup_epochs=3
    )
    lrs = [row["lr"] for row in _fit(config, tmp_path / "warm", val=False).history]
    assert lrs[:3] == pytest.approx([0.001, 0.004, 0.007])  # from lr x 0.1, linearly
    assert lrs[3:] == pytest.approx(_reference_rates(7, config))
    assert lrs[3] == lrs[5] == pytest.approx(0.01)  # the start and the first restart
    assert lrs[4] == pytest.approx(0.0055)
    cold = dataclasses.replace(config, warmup_epochs=0, epochs=7)
    lrs = [row["lr"] for row in _fit(cold, tmp_path / "cold", val=False).history]
    assert lrs == pytest.approx(_reference_rates(7, cold))


def _record_gradients() -> tuple[list[tuple[torch.Tensor, list[torch.Tensor]]], Any]:
    """(gradient, parameters) as each optimizer step is given them, until the hook's removal."""
    steps: list[tuple[torch.Tensor, list[torch.Tensor]]] = []

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        gradient = torch.cat([p.grad.flatten() for p in params])
        steps.append((gradient, [p.detach().clone() for p in params]))

    return steps, register_optimizer_step_pre_hook(record)


def _gradient_by_hand(params: list[torch.Tensor], rows: tuple[torch.Tensor, ...]) -> torch.Tensor:
    model = nn.Linear(3, 1)
    with torch.no_grad():
        for mine, given in zip(model.parameters(), params, strict=True):
            mine.copy_(given)
    _LinearRegression().loss(model, rows).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_accumulated_batches_step_as_one_large_batch(tmp_path: Path) -> None:
    def run(batch_size: int, accumulate: int, rows: int) -> tuple[FitResult, list[Any]]:
        # Unclipped: clipping would hide gradients of the wrong scale, as Adam nearly does.
        config = dataclasses.replace(
            TINY, epochs=1, batch_size=batch_size, accumulate=accumulate, grad_clip=None
        )
        folder = tmp_path / f"{batch_size}x{accumulate}of{rows}"
        gradients, hook = _record_gradients()
        try:
            data = _regression(rows, 0)
            result = fit(lambda: nn.Linear(3, 1), _LinearRegression(), data, None, config, folder)
        finally:
            hook.remove()
        return result, gradients

    small, small_gradients = run(4, 3, 24)  # 6 batches of 4, a step every 3
    large, large_gradients = run(12, 1, 24)  # the same rows in 2 batches of 12
    assert len(small_gradients) == len(large_gradients) == 2
    for (accumulated, _), (whole, _) in zip(small_gradients, large_gradients, strict=True):
        assert torch.allclose(accumulated, whole, atol=1e-6)
    # ...and each the gradient of its batch's mean loss, no more (zeroed after every step)
    data = _regression(24, 0)
    batches = torch.randperm(24, generator=torch.Generator().manual_seed(TINY.seed)).split(12)
    for (whole, params), idx in zip(large_gradients, batches, strict=True):
        by_hand = _gradient_by_hand(params, tuple(t[idx] for t in data))
        assert torch.allclose(whole, by_hand, atol=1e-6)
    torch.manual_seed(TINY.seed)
    initial = nn.Linear(3, 1).state_dict()
    for key in ("weight", "bias"):
        assert torch.allclose(small.state[key], large.state[key], atol=1e-6), key
        assert not torch.allclose(small.state[key], initial[key], atol=1e-3), key
    # train_loss is the mean loss per row, not divided by accumulate
    assert small.history[0]["train_loss"] == pytest.approx(large.history[0]["train_loss"], rel=1e-5)
    _, remainder = run(4, 3, 20)  # 5 batches: a step after the third and one after the fifth
    assert len(remainder) == 2


class _DtypeSpy(_LinearRegression):
    """The supervised objective, noting the dtype of the model's outputs in training."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        output = model(x)
        self.dtypes.add(output.dtype)
        return nn.functional.mse_loss(output.float().squeeze(1), y)  # the loss in float32


@pytest.mark.parametrize(
    ("bf16", "dtype"), [("on", torch.bfloat16), ("off", torch.float32), ("auto", torch.float32)]
)
def test_bf16_autocasts_on_the_cpu_only_when_on(
    tmp_path: Path, bf16: str, dtype: torch.dtype
) -> None:
    spy = _DtypeSpy()
    config = dataclasses.replace(TINY, epochs=2, bf16=bf16, monitor="r2", mode="max")
    result = fit(
        lambda: nn.Linear(3, 1), spy, _regression(24, 0), _regression(8, 1), config, tmp_path
    )
    assert spy.dtypes == {dtype}
    assert all(
        math.isfinite(row["train_loss"]) and math.isfinite(row["r2"]) for row in result.history
    )
    assert all(t.dtype == torch.float32 for t in result.state.values())  # the weights stay


class _MemoryFormatSpy:
    """A supervised objective on (images, targets), noting whether the images and the second
    convolution's weight are channels_last while it trains."""

    def __init__(self) -> None:
        self.seen: set[tuple[bool, bool, bool]] = set()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        cl = torch.channels_last
        self.seen.add(
            (
                x.is_contiguous(memory_format=cl),
                model[2].weight.is_contiguous(memory_format=cl),
                y.is_contiguous(),
            )
        )
        return nn.functional.mse_loss(model(x).mean((2, 3)), y)

    def validate(
        self, model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        return {"val_loss": sum(float(self.loss(model, batch)) for batch in batches)}


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=generator), torch.rand(n, 2, generator=generator)


def _convnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_trains_model_and_images_in_that_format(
    tmp_path: Path, channels_last: bool
) -> None:
    spy = _MemoryFormatSpy()
    config = dataclasses.replace(TINY, epochs=2, channels_last=channels_last)
    result = fit(_convnet, spy, _images(24, 0), _images(8, 1), config, tmp_path)
    assert spy.seen == {(channels_last, channels_last, True)}  # the 2-D targets as they were
    assert all(
        math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
        for row in result.history
    )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"cosine_t0": 4, "plateau_factor": 0.5}, "cosine_t0 and plateau_factor"),
        ({"accumulate": 0}, "accumulate"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"ema_decay": 0.0}, "ema_decay"),
        ({"guard_mode": "up"}, "guard_mode"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"bf16": "yes"}, "bf16"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"eps": 0.0}, "eps"),
        ({"cosine_t0": 0}, "cosine_t0"),
        ({"cosine_t0": 2, "cosine_t_mult": 0}, "cosine_t_mult"),
        ({"warmup_epochs": 2}, "warmup_epochs"),  # a warm-up leads into a cosine schedule
        ({"cosine_t0": 2, "warmup_epochs": 2, "warmup_start_factor": 0.0}, "warmup_start_factor"),
        ({"guard_min_delta": -1.0}, "guard_min_delta"),
    ],
)
def test_an_invalid_setting_is_named(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        dataclasses.replace(TINY, **changes)


def test_a_tampered_checkpoint_with_a_moving_average_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(EVERYTHING, epochs=4)
    fresh = _fit(config, tmp_path / "fresh")
    _fit(dataclasses.replace(config, epochs=2), tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pth", torch.device("cpu"))
    assert checkpoint is not None and checkpoint["format"] == CHECKPOINT_FORMAT
    _flip_a_byte(tmp_path / "run" / "last.pth")
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        result = _fit(config, tmp_path / "run")
    assert result.resumed_from == 0
    assert "does not match" in caplog.text
    _assert_same_state(result.state, fresh.state)


def test_a_format_3_checkpoint_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fit(dataclasses.replace(TINY, epochs=2), tmp_path)
    checkpoint = load_checkpoint(tmp_path / "last.pth", torch.device("cpu"))
    assert checkpoint is not None
    del checkpoint["rng"]  # format 3 kept no random state
    save_checkpoint(tmp_path / "last.pth", checkpoint | {"format": 3})
    with caplog.at_level(logging.WARNING, logger="pipelines.engine"):
        result = _fit(dataclasses.replace(TINY, epochs=3), tmp_path)
    assert (result.resumed_from, result.epochs_run) == (0, 3)
    assert "written by an older engine" in caplog.text
