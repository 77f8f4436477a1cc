"""pipelines.engine: deterministic training, early stopping on a metric, the plateau
scheduler, weight decay, clipping, a supervised objective, resume, verified checkpoints,
DVCLive curves."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
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
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pipelines.acoustic.model import ConvAutoencoder, Reconstruction
from pipelines.engine import (
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
