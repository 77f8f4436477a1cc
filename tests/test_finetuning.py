"""The train stage's `devices:` overrides and its fine-tunings, in-process on a tiny fleet whose
day 1 is trained and registered: an override of `epochs` or `components` changes that device
only; a fine-tuning starts from its parent version (a network from its weights, a fitted type
from its references, each with its parent's scale), and leaves out the day's clips unlike its
parent's normal when they are a minority of the day, learning the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines import engine, fleet
from pipelines.acoustic import deployment, extraction, family, features, model, training
from pipelines.params import Params, parse_params
from registry.api import Registry
from tests import tiny_fleet
from tests.pipeline_repo import TINY, merge

# A-1 and C-3 are convae (TINY's train), B-2 and D-4 twfr-pca; A-1 and B-2 have overrides.
OVERRIDES = {"A-1": {"epochs": 2}, "B-2": {"model": "twfr-pca", "components": 3}}
FLEET = merge(
    TINY,
    {"generate": {"devices": ["A-1", "B-2", "C-3", "D-4"]}, "data": {"day": "20261101"}},
) | {"devices": OVERRIDES | {"D-4": {"model": "twfr-pca"}}}
PARENTS = {"A-1": "acoustic_A-1_convae:v1", "B-2": "acoustic_B-2_twfr-pca:v1"}
# Day 2, fine-tuned from the pinned day-1 versions (C-3 and D-4 are not trained); a learning
# rate so small that a network fine-tuned for one epoch still has its starting weights.
DAY_2 = {
    "data": {"day": "20261102"},
    "train": {"init_from": ",".join(PARENTS.values()), "finetune_lr": 1e-9, "finetune_epochs": 1},
}
NOVEL = "20261102/novel.wav"  # in A-1's and B-2's day 2: one clip of three


@dataclass(frozen=True)
class Days:
    first: tiny_fleet.TinyFleet  # day 1: trained from scratch, registered as v1
    store: Path
    features: Path  # day 2's
    models: Path  # day 2's fine-tunings
    params: Params  # day 2's


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Days:
    return build_days(tmp_path_factory.mktemp("finetuning"))


def build_days(root: Path) -> Days:
    """Day 1 trained and registered as v1 in root/model_store, day 2 fine-tuned from it."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODEL_STORE", str(root / "model_store"))
        Registry(root / "model_store").init()  # a store named on purpose exists before a run
        env.delenv("DVC_EXP_NAME", raising=False)  # a plain run
        first = tiny_fleet.build(root / "day-1", FLEET)
        jobs = deployment.plan(
            first.models, first.evaluation, first.features, first.data, first.params
        )
        tiny_fleet.run(root / "day-1" / "registered", jobs, deployment.build, deployment.commit)
        for device in PARENTS:
            add_novel_clip(first.data / device)
        p = parse_params(merge(FLEET, DAY_2))
        tiny_fleet.run(root / "features", extraction.plan(first.data, p), extraction.build)
        tiny_fleet.run(root / "models", training.plan(root / "features", p), training.build)
    return Days(first, root / "model_store", root / "features", root / "models", p)


def add_novel_clip(device: Path) -> None:
    """A clip of the day 30 dB louder than the others: unlike anything its parent learned."""
    y, rate = sf.read(next((device / "20261102").rglob("*.wav")), dtype="float32")
    sf.write(device / NOVEL, 31.6 * y, rate, subtype="FLOAT")


def summary(models: Path, device: str) -> dict[str, Any]:
    return fleet.read_json(models / device / "summary.json")


def state(models: Path, device: str) -> dict[str, torch.Tensor]:
    path = models / device / "model.pth"
    return engine.load_verified(path, engine.recorded_sha256(path))


# ------------------------------------------------------------------ per-device overrides


def test_an_override_of_epochs_changes_that_devices_training_only(days: Days) -> None:
    epochs = {d: summary(days.first.models, d)["epochs_run"] for d in ("A-1", "C-3")}
    assert epochs == {"A-1": 2, "C-3": TINY["train"]["epochs"]}


def test_an_override_of_components_changes_that_devices_pca_only(days: Days) -> None:
    kept = {d: state(days.first.models, d)["max.basis"].shape for d in ("B-2", "D-4")}
    n_mels = TINY["features"]["n_mels"]
    assert kept == {"B-2": (3, n_mels), "D-4": (Params().train.components, n_mels)}


# ------------------------------------------------------------------ fine-tuning


@pytest.mark.parametrize("device", PARENTS)
def test_a_fine_tuning_keeps_its_parents_scale_not_the_days(days: Days, device: str) -> None:
    parent = Registry(days.store).version(PARENTS[device])
    assert summary(days.models, device)["start"]["parent"] == PARENTS[device]
    scale = tuple(np.load(days.models / device / "scale.npy"))
    assert scale == family.scale(parent)
    windows, _, index = extraction.load_device(days.features / device)
    own = features.fit_scale(windows, ~np.asarray(index["validation"], dtype=bool))
    assert own != scale  # the day's own scale would differ: this test could fail


def test_a_fine_tuning_runs_finetune_epochs_not_the_devices_epochs(days: Days) -> None:
    """A-1's override says 2 epochs and the fleet's 3; a fine-tuning runs `finetune_epochs`."""
    assert DAY_2["train"]["finetune_epochs"] not in (
        OVERRIDES["A-1"]["epochs"],
        TINY["train"]["epochs"],
    )
    assert summary(days.models, "A-1")["epochs_run"] == DAY_2["train"]["finetune_epochs"]


def test_a_network_is_fine_tuned_from_its_parents_weights(days: Days) -> None:
    """Its learned weights (not BatchNorm's running statistics, which follow the day's
    windows whatever the learning rate) are where its parent's were."""
    parent = Registry(days.store).version(PARENTS["A-1"])
    before, after = family.state(parent), state(days.models, "A-1")
    assert after.keys() == before.keys()
    torch.manual_seed(days.params.train.seed)  # the new network a training from scratch starts
    fresh = model.from_architecture(family.architecture(parent))
    weights = [name for name, _ in fresh.named_parameters()]
    assert max(float((after[k] - before[k]).abs().max()) for k in weights) < 1e-6
    start = fresh.state_dict()
    assert max(float((start[k] - before[k]).abs().max()) for k in weights) > 1e-4


def test_a_fitted_type_is_refitted_on_its_parents_references_and_the_days(days: Days) -> None:
    parent = family.state(Registry(days.store).version(PARENTS["B-2"]))
    child = state(days.models, "B-2")
    _, _, index = extraction.load_device(days.features / "B-2")
    learned = fitted_windows(index)
    for member in ("max", "mean"):
        old = parent[f"{member}.refs"]
        assert len(child[f"{member}.refs"]) == len(old) + learned
        torch.testing.assert_close(child[f"{member}.refs"][: len(old)], old, rtol=0, atol=0)


def fitted_windows(index: dict[str, Any]) -> int:
    """The day's windows a fine-tuning fits on: its training part, the novel clip left out."""
    clip_of = np.asarray(index["train_clip_of_window"])
    validation = np.asarray(index["validation"], dtype=bool)
    novel = [i for i, c in enumerate(index["train_clips"]) if c["file"].endswith(NOVEL)]
    return int((~validation & ~np.isin(clip_of, novel)).sum())


@pytest.mark.parametrize("device", PARENTS)
def test_a_minority_of_novel_clips_is_left_out_and_the_rest_learned(
    days: Days, device: str
) -> None:
    trained = summary(days.models, device)
    assert trained["novel_clips"] == [f"{device}/{NOVEL}"]
    _, _, index = extraction.load_device(days.features / device)
    files = [c["file"] for c in index["train_clips"]]
    assert len(files) == 4 and files.count(f"{device}/{NOVEL}") == 1  # 3 recorded, 1 verified
    clip_of = np.asarray(index["train_clip_of_window"])
    assert trained["windows"] == int((clip_of != files.index(f"{device}/{NOVEL}")).sum())
