"""The train stage: reproducible weights, and resuming after the process is killed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import engine, fleet
from pipelines.acoustic import extraction, training
from pipelines.acoustic.synth import generate_fleet
from pipelines.params import parse_params
from tests.faults import kill_when, start_killable
from tests.patience import HANG_S
from tests.pipeline_repo import TINY, merge, write_params

# Enough epochs (and no early stop) that the run is still going when the test kills it.
LONG = merge(TINY, {"train": {"epochs": 40, "min_epochs": 40, "patience": 40}})
KILL_AFTER_EPOCH = 3


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    params = parse_params(merge(LONG, {"generate": {"devices": ["A-1"]}}))
    generate_fleet(root / "data", params.generate, params.data.sample_rate)
    jobs = extraction.plan(root / "data", params)
    outcomes = fleet.run_stage(root / "features", jobs, extraction.build, 1, "extract")
    assert outcomes["A-1"].status == "built"
    return root / "features"


def start_training(workdir: Path, features: Path) -> subprocess.Popen:
    write_params(workdir, LONG)
    args = ["-m", "stages.train", str(features), "models", "--live", "live"]
    return start_killable(args, workdir)


def checkpoint_epoch(workdir: Path) -> int:
    state = engine.load_checkpoint(
        workdir / "models" / ".partial" / "A-1" / "checkpoints" / "last.pth", torch.device("cpu")
    )
    return 0 if state is None else state["epoch"]


def weights(models: Path) -> dict[str, torch.Tensor]:
    path = models / "A-1" / "model.pth"
    return engine.load_verified(path, engine.recorded_sha256(path))


def test_killed_run_resumes_and_matches_an_uninterrupted_run(
    features: Path, tmp_path: Path
) -> None:
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir(), whole.mkdir()
    process = start_training(killed, features)
    kill_when(process, lambda: checkpoint_epoch(killed) >= KILL_AFTER_EPOCH)
    assert not (killed / "models" / "A-1").exists()  # nothing half-finished is published

    for workdir in (killed, whole):
        resumed = start_training(workdir, features)
        _, err = resumed.communicate(timeout=HANG_S)
        assert resumed.returncode == 0, err

    report = json.loads((killed / "reports" / "train.json").read_text())["devices"]["A-1"]
    assert KILL_AFTER_EPOCH <= report["resumed_from_epoch"] < 40
    assert report["epochs_run"] == 40
    a, b = weights(killed / "models"), weights(whole / "models")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_same_inputs_give_the_same_weights(features: Path, tmp_path: Path) -> None:
    params = parse_params(merge(TINY, {"train": {"epochs": 4}}))
    states = []
    for run in ("one", "two"):
        jobs = training.plan(features, params)
        outcomes = fleet.run_stage(tmp_path / run, jobs, training.build, 1, "train")
        assert outcomes["A-1"].status == "built"
        states.append(weights(tmp_path / run))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_scale_is_fitted_on_the_training_windows_only(features: Path, tmp_path: Path) -> None:
    """A validation window far outside the others does not move the scale."""
    copy = Path(shutil.copytree(features, tmp_path / "features"))
    windows, _, index = extraction.load_device(copy / "A-1")
    validation = np.asarray(index["validation"], dtype=bool)
    assert validation.any() and not validation.all()
    windows[np.flatnonzero(validation)[0]] = -500.0
    np.save(copy / "A-1" / "train.npy", windows)
    params = parse_params(merge(TINY, {"generate": {"devices": ["A-1"]}}))
    jobs = training.plan(copy, params)
    assert fleet.run_stage(tmp_path / "models", jobs, training.build, 1, "train")["A-1"].status == (
        "built"
    )
    scale = np.load(tmp_path / "models" / "A-1" / "scale.npy")
    fitted = windows[~validation]
    assert tuple(scale) == (float(fitted.min()), float(fitted.max())) and scale[0] > -500


def test_a_setting_no_detector_of_the_run_reads_is_named_once() -> None:
    """`-S train.lr=...` on twfr-pca (no training loop) changes nothing: one line says so,
    as does a device's override its own type ignores; what some device reads is not named."""
    params = parse_params(
        {
            "train": {"model": "twfr-pca", "lr": 0.0005, "components": 4, "channels": [8]},
            "devices": {"B-2": {"model": "convae", "neighbors": 3}, "C-3": {"lr": 0.01}},
        }
    )
    lines = training.unread_settings(params, ["A-1", "B-2", "C-3"])
    assert lines == [
        "params.yaml: devices.B-2.neighbors = 3 changes nothing: no detector of this run reads"
        f" it (convae reads train.{', train.'.join(training.detectors.READS['convae'])})",
        "params.yaml: devices.C-3.lr = 0.01 changes nothing: no detector of this run reads it"
        " (twfr-pca reads train.components)",
    ]  # train.lr and train.channels: B-2's convae reads them
    alone = training.unread_settings(params, ["A-1"])
    assert [line.split(" = ")[0] for line in alone] == [
        "params.yaml: train.lr",
        "params.yaml: train.channels",
    ]
    assert training.unread_settings(parse_params({"train": {"components": 4}}), ["A-1"]) == []
