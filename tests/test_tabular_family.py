"""pipelines.tabular.family: a trained task's bundle and its comparison with another, from the
bytes the registry hands over; weights loaded safely; through a real store and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.tabular import family, synth
from pipelines.tabular.data import Task
from pipelines.tabular.training import TaskTraining, TrainedTask, fit_task, predict_task
from registry.api import Registry
from registry.errors import IncomparableError, IntegrityError
from registry.families import Version

FEATURES = list(synth.FEATURES)
TARGET = "score"
TRAININGS = {  # each quick: ridge and gbr fit at once, the mlp for a few epochs
    "ridge": TaskTraining(model="ridge"),
    "gbr": TaskTraining(model="gbr", n_estimators=10),
    "mlp": TaskTraining(model="mlp", epochs=5, hidden=(8,)),
}
POOR = TaskTraining(model="ridge", alpha=1e5)  # shrunk to near the training mean


def _task(seed: int = 0) -> Task:
    X, y = synth.task_table("Q1", 150, seed)
    return Task("Q1", X, y, synth.FEATURES, Path("Q1.npz"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedTask]:
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    fitted = {kind: fit_task(_task(), s, checkpoints / kind) for kind, s in TRAININGS.items()}
    # other rows, so another scale: each version must predict through its own
    return fitted | {"poor": fit_task(_task(seed=1), POOR, checkpoints / "poor")}


def _inference(t: TrainedTask, features: list[str] = FEATURES) -> dict:
    return {"architecture": t.architecture, "features": features, "target": TARGET}


def _folder(folder: Path, t: TrainedTask, task: Task, weights: object = None) -> Path:
    """A folder to register: the state (or other `weights`) and the task's validation rows."""
    folder.mkdir(parents=True)
    torch.save(t.state if weights is None else weights, folder / "model.pth")
    np.save(folder / "eval_x.npy", task.X[t.split.val])
    np.save(folder / "eval_y.npy", task.y[t.split.val])
    return folder


def _version(folder: Path, meta: dict, version: int = 1) -> Version:
    meta = {"name": "tabular_Q1_ridge", "version": version, "scope": "Q1"} | meta
    return Version(meta, lambda kind: (folder / family.ARTIFACTS[kind]).read_bytes())


def _rmse(t: TrainedTask, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predict_task(t, X) - y) ** 2)))


@pytest.mark.parametrize("kind", list(TRAININGS))
def test_bundle_ships_the_weights_with_the_task_and_what_it_reads(
    trained: dict[str, TrainedTask], tmp_path: Path, kind: str
) -> None:
    t = trained[kind]
    folder = _folder(tmp_path / kind, t, _task())
    files, settings = family.bundle(_version(folder, {"inference": _inference(t)}))
    assert files == {"model.pth": "model"}
    assert settings == {
        "task": "Q1",
        "architecture": t.architecture,
        "features": FEATURES,
        "target": TARGET,
    }


def test_bundle_refuses_a_version_without_inference_settings(
    trained: dict[str, TrainedTask], tmp_path: Path
) -> None:
    t = trained["ridge"]
    folder = _folder(tmp_path / "v", t, _task())
    partial = {"architecture": t.architecture, "target": TARGET}  # no features
    for meta in ({}, {"inference": partial}):
        with pytest.raises(ValueError, match=r"tabular_Q1_ridge:v1 has no inference settings"):
            family.bundle(_version(folder, meta))


def test_bundle_refuses_weights_for_other_features(
    trained: dict[str, TrainedTask], tmp_path: Path
) -> None:
    t = trained["ridge"]
    folder = _folder(tmp_path / "v", t, _task())
    with pytest.raises(ValueError, match=r"tabular_Q1_ridge:v1: its weights .* 9 features"):
        family.bundle(_version(folder, {"inference": _inference(t, FEATURES[:-1])}))


class _Evil:
    """Unpickling this object opens (and so creates) the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def test_bundle_refuses_a_pickle_payload_and_never_runs_it(
    trained: dict[str, TrainedTask], tmp_path: Path
) -> None:
    t = trained["ridge"]
    marker = tmp_path / "pwned"
    folder = _folder(tmp_path / "v", t, _task(), weights=t.state | {"w": _Evil(marker)})
    with pytest.raises(IntegrityError, match=r"tabular_Q1_ridge:v1: not a plain-tensor"):
        family.bundle(_version(folder, {"inference": _inference(t)}))
    assert not marker.exists()
    torch.load(folder / "model.pth", weights_only=False)  # control: the payload is live
    assert marker.exists()


@pytest.mark.parametrize("holder_kind", ["poor", "gbr", "mlp"])
def test_compare_gives_each_models_rmse_on_the_candidates_rows(
    trained: dict[str, TrainedTask], tmp_path: Path, holder_kind: str
) -> None:
    task, candidate, holder = _task(), trained["ridge"], trained[holder_kind]
    ours = _version(_folder(tmp_path / "c", candidate, task), {"inference": _inference(candidate)})
    theirs = _folder(tmp_path / "h", holder, _task(seed=1))  # its own rows are not used
    theirs_v = _version(theirs, {"inference": _inference(holder)}, version=2)
    X, y = task.X[candidate.split.val], task.y[candidate.split.val]
    new, old = family.compare(ours, theirs_v)
    assert new == pytest.approx(_rmse(candidate, X, y), rel=1e-12)
    assert old == pytest.approx(_rmse(holder, X, y), rel=1e-12)
    if holder_kind == "poor":  # the better model has the lower figure, either way round
        assert new < old
        back = family.compare(theirs_v, ours)
        assert back[0] > back[1]


def test_different_feature_lists_or_targets_are_incomparable(
    trained: dict[str, TrainedTask], tmp_path: Path
) -> None:
    t = trained["ridge"]
    folder = _folder(tmp_path / "v", t, _task())
    ours = _version(folder, {"inference": _inference(t)})
    for other in (FEATURES[::-1], [*FEATURES[:-1], "pupil_area_mm2"]):
        theirs = _version(folder, {"inference": _inference(t, other)}, version=2)
        with pytest.raises(IncomparableError) as caught:
            family.compare(ours, theirs)
        text = str(caught.value)
        assert "tabular_Q1_ridge:v1" in text and "tabular_Q1_ridge:v2" in text
        assert str(FEATURES) in text and str(other) in text
    other_target = _version(folder, {"inference": _inference(t) | {"target": "q2"}}, version=3)
    with pytest.raises(IncomparableError, match=r"target score, tabular_Q1_ridge:v3 has target q2"):
        family.compare(ours, other_target)


def test_a_registered_version_exports_and_the_gate_compares_it(
    trained: dict[str, TrainedTask], tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "store", families={"tabular": family})
    registry.init()
    task, good, poor = _task(), trained["ridge"], trained["poor"]
    metas = [
        registry.register(
            _folder(tmp_path / name, t, task),
            "tabular",
            "Q1",
            "ridge",
            metrics={"rmse": _rmse(t, task.X[t.split.test], task.y[t.split.test])},
            params={},
            extra={"inference": _inference(t)},
        )
        for name, t in (("good", good), ("poor", poor))
    ]
    assert [m["version"] for m in metas] == [1, 2]
    link = registry.export("tabular_Q1_ridge:v1", tmp_path / "deploy")
    manifest = json.loads((link / "bundle.json").read_text())
    assert manifest["features"] == FEATURES and manifest["task"] == "Q1"
    assert manifest["model"] == "tabular_Q1_ridge:v1" and set(manifest["sha256"]) == {"model.pth"}
    assert (link / "model.pth").read_bytes() == (tmp_path / "good" / "model.pth").read_bytes()
    registry.promote("tabular_Q1_ridge", 1)
    X, y = task.X[poor.split.val], task.y[poor.split.val]
    result = registry.check("tabular_Q1_ridge", 2)  # the gate measures both on v2's rows
    assert result.figures["holder"] == "tabular_Q1_ridge:v1"
    assert result.figures["candidate_error"] == pytest.approx(_rmse(poor, X, y), rel=1e-12)
    assert result.figures["holder_error"] == pytest.approx(_rmse(good, X, y), rel=1e-12)
    assert not result.passed  # ~4x the holder's error, past the store's rollback factor
    assert [f["code"] for f in result.as_dict()["findings"]] == ["degraded"]
