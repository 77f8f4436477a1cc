"""pipelines.engine: deterministic training, early stopping, resume, verified checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pipelines.acoustic.model import ConvAutoencoder
from pipelines.engine import (
    FitResult,
    fit,
    load_checkpoint,
    load_verified,
    recorded_sha256,
    save_checkpoint,
    select_device,
)
from pipelines.errors import IntegrityError
from pipelines.params import TrainParams

TINY = TrainParams(
    seed=3,
    epochs=6,
    min_epochs=2,
    patience=50,  # no early stop unless a test asks for it
    batch_size=8,
    lr=0.01,
    device="cpu",
    channels=(4, 8),
    latent_channels=2,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_model() -> ConvAutoencoder:
    return ConvAutoencoder(TINY.channels, TINY.latent_channels)


def _data(n: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _fit(p: TrainParams, checkpoints: Path, val: bool = True) -> FitResult:
    return fit(make_model, _data(), _data(8, seed=1) if val else None, p, checkpoints)


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
    assert first.best_loss == second.best_loss
    other = _fit(dataclasses.replace(TINY, seed=4), tmp_path / "c")
    assert not torch.equal(first.state["encoder.0.weight"], other.state["encoder.0.weight"])


def test_fit_learns_and_returns_the_best_weights(tmp_path: Path) -> None:
    result = _fit(TINY, tmp_path)
    assert result.epochs_run == 6
    assert result.device == "cpu"
    assert result.resumed_from == 0
    losses = [row["val_loss"] for row in result.history]
    assert all(isinstance(v, float) for v in losses)
    assert result.best_loss == min(losses)  # type: ignore[type-var]
    assert result.best_epoch == 1 + losses.index(result.best_loss)
    assert losses[-1] < losses[0]  # type: ignore[operator]
    assert all(t.device.type == "cpu" for t in result.state.values())
    # The returned state is the one saved as best.pth.
    best = load_verified(tmp_path / "best.pth", recorded_sha256(tmp_path / "best.pth"))
    _assert_same_state(result.state, best["model"])


def test_history_has_one_row_per_epoch_and_no_val_loss_without_val(tmp_path: Path) -> None:
    result = fit(make_model, _data(), None, dataclasses.replace(TINY, epochs=4), tmp_path)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert all(row["val_loss"] is None for row in result.history)
    assert all(isinstance(row["train_loss"], float) for row in result.history)
    # Without validation data the training loss is monitored.
    assert result.best_loss == min(row["train_loss"] for row in result.history)


def _never_improving(**changes: Any) -> TrainParams:
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
    assert (resumed.best_epoch, resumed.best_loss) == (whole.best_epoch, whole.best_loss)
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
        fit(make_model, _data(), _data(8, seed=1), TINY, tmp_path / "a", label="LT-2")
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.engine"]
    # epoch 1 at 0 s, epoch 4 at 12 s (10 s after it), epoch 6 the last
    assert [line.split(",")[0] for line in lines] == [f"LT-2: epoch {e}/6" for e in (1, 4, 6)]
    assert lines[0].startswith("LT-2: epoch 1/6, training loss ") and "validation loss" in lines[0]
    caplog.clear()
    monkeypatch.setattr("pipelines.engine.PROGRESS_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="pipelines.engine"):
        fit(make_model, _data(), None, TINY, tmp_path / "b", label="LT-2")
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.engine"]
    assert [line.split(",")[0] for line in lines] == [f"LT-2: epoch {e}/6" for e in range(1, 7)]
    assert "validation" not in lines[0]
