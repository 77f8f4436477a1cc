"""pipelines.acoustic.detectors: every type scores windows through the same contract; a type
fitted at once (twfr-pca, twfr-gmm, twfr-knn, frame-gmm) scores in multiples of its normal, the
same when refitted on the same windows, survives a verified weights-only round trip, and a
fine-tuning refits on its parent's references and the day's windows; the dense autoencoders,
trained by the training loop, score a fault above unseen normal windows and load from a
verified checkpoint as they were saved."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import engine
from pipelines.acoustic import detectors, model, training
from pipelines.params import TrainParams

FRAMES = 24
FITTED = ("twfr-pca", "twfr-gmm", "twfr-knn", "frame-gmm")
P = TrainParams(components=4, mixtures=2, neighbors=2)


def normal_windows(rng: np.random.Generator, clips: int, per_clip: int = 3) -> np.ndarray:
    """Windows of a hum: a fixed band profile with small noise, padding after FRAMES."""
    profile = np.linspace(0.2, 0.8, 16)[:, None]
    x = profile + 0.02 * rng.standard_normal((clips * per_clip, 16, FRAMES + 8))
    x[:, :, FRAMES:] = 0.0  # padding, which the pooling must not see
    return x.astype(np.float32)


def clips_of(clips: int) -> np.ndarray:
    return np.repeat(np.arange(clips), 3)


def fitted(
    kind: str, rng: np.random.Generator, clips: int = 12
) -> tuple[dict, dict[str, torch.Tensor], np.ndarray]:
    """A new detector of `kind` fitted on `clips` clips of hum: its architecture, state and
    the windows it was fitted on."""
    x = normal_windows(rng, clips)
    architecture = detectors.new_architecture(kind, FRAMES, P)
    return architecture, detectors.fit(architecture, x, clips_of(clips), P), x


@pytest.mark.parametrize("kind", FITTED)
def test_a_fitted_type_scores_its_normal_near_one_and_faults_far_above(kind: str) -> None:
    rng = np.random.default_rng(0)
    architecture, state, _ = fitted(kind, rng)
    det = detectors.build(architecture, state)
    unseen = normal_windows(rng, 6)
    tick, shift = unseen.copy(), unseen.copy()
    tick[:, 5, :FRAMES:6] += 0.6  # an impulsive tick in one band
    shift[:, 3:6, :FRAMES] += 0.1  # a stationary hum a little louder in three bands
    normal_scores = det.scores(unseen)
    assert normal_scores.shape == (18,) and 0.3 < normal_scores.mean() < 3
    assert normal_scores.min() >= 0
    assert det.scores(tick).min() > 3 * normal_scores.max()
    assert det.scores(shift).min() > 2 * normal_scores.max()


@pytest.mark.parametrize("kind", FITTED)
def test_padding_columns_do_not_change_a_score(kind: str) -> None:
    rng = np.random.default_rng(1)
    architecture, state, _ = fitted(kind, rng)
    det = detectors.build(architecture, state)
    x = normal_windows(rng, 2)
    padded = x.copy()
    padded[:, :, FRAMES:] = 9.0
    np.testing.assert_array_equal(det.scores(x), det.scores(padded))


@pytest.mark.parametrize("kind", FITTED)
def test_a_refit_on_the_same_windows_scores_the_same_and_loads_verified(
    kind: str, tmp_path: Path
) -> None:
    architecture, state, x = fitted(kind, np.random.default_rng(2))
    _, again, _ = fitted(kind, np.random.default_rng(2))
    scores = detectors.build(architecture, state).scores(x)
    np.testing.assert_array_equal(detectors.build(architecture, again).scores(x), scores)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    sha = engine.save_checkpoint(tmp_path / "model.pth", state)
    np.testing.assert_array_equal(
        detectors.load(tmp_path / "model.pth", sha, architecture).scores(x), scores
    )


def rows_per_window(kind: str) -> int:
    return min(detectors.FRAMES_KEPT, FRAMES) if kind == "frame-gmm" else 1


@pytest.mark.parametrize("kind", FITTED)
def test_a_fine_tuning_keeps_the_parents_references_and_adds_the_days(kind: str) -> None:
    rng = np.random.default_rng(3)
    architecture, parent, _ = fitted(kind, rng, clips=6)
    day = normal_windows(rng, 4)
    child = detectors.fit(architecture, day, clips_of(4), P, parent)
    members = {k.removesuffix(".refs") for k in parent if k.endswith(".refs")}
    for m in members:
        old = parent[f"{m}.refs"]
        assert len(child[f"{m}.refs"]) == len(old) + len(day) * rows_per_window(kind)
        np.testing.assert_array_equal(child[f"{m}.refs"][: len(old)], old)
    assert len(np.unique(child["ref_clips"].numpy())) == 10  # the day's clips are new ones
    # in multiples of the child's own normal, as its parent's scores are of its own
    unseen = normal_windows(rng, 6)
    assert 0.3 < detectors.build(architecture, child).scores(unseen).mean() < 3


@pytest.mark.parametrize("kind", FITTED)
def test_references_are_capped_at_the_most_recent(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detectors, "MAX_REFERENCES", 20)
    cap = 20 * detectors.METHODS[kind].share
    rng = np.random.default_rng(4)
    architecture, parent, _ = fitted(kind, rng, clips=6)
    day = normal_windows(rng, 30)
    child = detectors.fit(architecture, day, clips_of(30), P, parent)
    alone = detectors.fit(architecture, day, clips_of(30), P)
    for m in {k.removesuffix(".refs") for k in child if k.endswith(".refs")}:
        assert len(child[f"{m}.refs"]) == cap
        np.testing.assert_array_equal(child[f"{m}.refs"], alone[f"{m}.refs"])


def test_twfr_pooling_runs_from_each_bands_maximum_to_its_mean() -> None:
    windows = np.array([[[3.0, 1.0, 2.0, 9.0]]])  # one band; its last column is padding
    assert detectors.twfr(windows, 3, 0.0)[0, 0] == 3.0
    assert detectors.twfr(windows, 3, 1.0)[0, 0] == pytest.approx(2.0)
    # sorted 3, 2, 1 weighted by 1, 0.5, 0.25
    assert detectors.twfr(windows, 3, 0.5)[0, 0] == pytest.approx(4.25 / 1.75)


def test_a_twfr_knn_scores_a_window_it_keeps_as_if_left_out() -> None:
    """Not 0: the threshold is fitted on the training windows' scores."""
    architecture, state, x = fitted("twfr-knn", np.random.default_rng(5))
    scores = detectors.build(architecture, state).scores(x)
    assert scores.min() > 0.2 and 0.5 < scores.mean() < 2


def test_a_convae_scores_its_reconstruction_errors() -> None:
    net = model.ConvAutoencoder((4, 8), 2).eval()
    x = np.random.default_rng(5).random((5, 16, 16), dtype=np.float32)
    # a version registered before detector types has no `type`: it is a convae
    det = detectors.build({"channels": [4, 8], "latent_channels": 2}, net.state_dict())
    assert isinstance(det, detectors.Autoencoder)
    expected = model.reconstruction_errors(net, torch.from_numpy(x).unsqueeze(1)).numpy()
    np.testing.assert_array_equal(det.scores(x), expected)


DENSE = {"n_mels": 16, "frames": FRAMES, "stack": 3, "units": [16, 4]}


@functools.cache
def trained_dense(kind: str) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """A dense autoencoder of type `kind` trained on 20 clips of hum (once per test process):
    its state and normal windows it has not seen."""
    rng = np.random.default_rng(6)
    x, held, unseen = (normal_windows(rng, n) for n in (20, 4, 6))
    architecture = {"type": kind} | DENSE
    p = TrainParams(epochs=40, min_epochs=40, batch_size=8, lr=0.01, device="cpu", seed=1)
    with tempfile.TemporaryDirectory() as checkpoints:
        result = engine.fit(
            lambda: model.from_architecture(architecture),
            model.Reconstruction(),
            torch.from_numpy(x).unsqueeze(1),
            torch.from_numpy(held).unsqueeze(1),
            training.engine_config(p, finetuning=False),
            Path(checkpoints),
        )
    state = result.state
    if kind == "dense-ae-mahalanobis":
        net = model.from_architecture(architecture)
        net.load_state_dict(state)
        state = state | detectors.fit_mahalanobis(net, x, held)
    return state, unseen


@pytest.mark.parametrize("kind", ["dense-ae", "dense-ae-mahalanobis"])
def test_a_dense_autoencoder_scores_a_fault_above_unseen_normal(kind: str) -> None:
    state, unseen = trained_dense(kind)
    det = detectors.build({"type": kind} | DENSE, state)
    fault = unseen.copy()
    fault[:, 5, :FRAMES:6] += 0.6  # an impulsive tick in one band
    normal_scores, fault_scores = det.scores(unseen), det.scores(fault)
    assert normal_scores.shape == (18,)
    assert fault_scores.min() > 2 * normal_scores.max()
    if kind == "dense-ae-mahalanobis":  # in multiples of its held-out normal
        assert 0.3 < normal_scores.mean() < 3


@pytest.mark.parametrize("kind", ["dense-ae", "dense-ae-mahalanobis"])
def test_a_dense_autoencoder_loads_from_a_verified_checkpoint_and_scores_the_same(
    kind: str, tmp_path: Path
) -> None:
    state, unseen = trained_dense(kind)
    sha = engine.save_checkpoint(tmp_path / "model.pth", state)
    loaded = detectors.load(tmp_path / "model.pth", sha, {"type": kind} | DENSE)
    saved = detectors.build({"type": kind} | DENSE, state)
    np.testing.assert_array_equal(loaded.scores(unseen), saved.scores(unseen))


def test_the_mahalanobis_state_is_tensors_and_its_network_the_rest() -> None:
    state, _ = trained_dense("dense-ae-mahalanobis")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    scoring = {k for k in state if k.startswith(detectors.MAHALANOBIS)}
    assert scoring == {f"mahalanobis.{k}" for k in ("mean", "precision", "normal")}
    assert state["mahalanobis.precision"].shape == (16, 16)  # per Mel band
    detectors.network({"type": "dense-ae"} | DENSE, state)  # strict: the weights, nothing else


def test_every_train_key_is_declared_as_read_by_some_type() -> None:
    """detectors.READS is the one map of what each type reads: a new `train` key or type
    must be declared there, or the train stage would call it unread."""
    declared = set(detectors.EVERY_TYPE).union(*detectors.READS.values())
    assert declared == set(dataclasses.asdict(TrainParams()))
    assert set(detectors.READS) == set(typing.get_args(typing.get_type_hints(TrainParams)["model"]))
