"""pipelines.acoustic.detectors: every type scores windows through the same contract; a
twfr-pca scores in multiples of its normal, survives a weights-only round trip, and a
fine-tuning refits on its parent's references and the day's windows."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pipelines.acoustic import detectors, model

FRAMES = 24


def normal_windows(rng: np.random.Generator, clips: int, per_clip: int = 3) -> np.ndarray:
    """Windows of a hum: a fixed band profile with small noise, padding after FRAMES."""
    profile = np.linspace(0.2, 0.8, 16)[:, None]
    x = profile + 0.02 * rng.standard_normal((clips * per_clip, 16, FRAMES + 8))
    x[:, :, FRAMES:] = 0.0  # padding, which the pooling must not see
    return x.astype(np.float32)


ARCHITECTURE = {"type": "twfr-pca", "frames": FRAMES}


def fitted(rng: np.random.Generator, clips: int = 12) -> tuple[dict, np.ndarray]:
    x = normal_windows(rng, clips)
    state = detectors.fit_twfr_pca(x, np.repeat(np.arange(clips), 3), FRAMES, components=4)
    return state, x


def twfr(seed: int) -> tuple[detectors.Detector, np.random.Generator]:
    rng = np.random.default_rng(seed)
    state, _ = fitted(rng)
    return detectors.build(ARCHITECTURE, state), rng


def test_a_twfr_pca_scores_its_normal_near_one_and_a_fault_far_above() -> None:
    det, rng = twfr(0)
    unseen = normal_windows(rng, 6)
    fault = unseen.copy()
    fault[:, 5, :FRAMES:6] += 0.6  # an impulsive tick in one band
    normal_scores, fault_scores = det.scores(unseen), det.scores(fault)
    assert normal_scores.shape == (18,) and 0.3 < normal_scores.mean() < 3
    assert fault_scores.min() > 5 * normal_scores.max()


def test_padding_columns_do_not_change_a_score() -> None:
    det, rng = twfr(1)
    x = normal_windows(rng, 2)
    padded = x.copy()
    padded[:, :, FRAMES:] = 9.0
    np.testing.assert_array_equal(det.scores(x), det.scores(padded))


def test_a_twfr_pca_state_loads_weights_only_and_scores_the_same() -> None:
    rng = np.random.default_rng(2)
    state, x = fitted(rng)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    np.testing.assert_array_equal(
        detectors.build(ARCHITECTURE, state).scores(x),
        detectors.build(ARCHITECTURE, loaded).scores(x),
    )


def test_a_fine_tuning_keeps_the_parents_references_and_adds_the_days() -> None:
    rng = np.random.default_rng(3)
    parent, _ = fitted(rng, clips=6)
    day = normal_windows(rng, 4)
    child = detectors.fit_twfr_pca(day, np.repeat(np.arange(4), 3), FRAMES, 4, parent)
    assert len(child["max.refs"]) == len(parent["max.refs"]) + len(day)
    np.testing.assert_array_equal(child["max.refs"][: len(parent["max.refs"])], parent["max.refs"])
    assert len(np.unique(child["ref_clips"].numpy())) == 10  # the day's clips are new ones


def test_references_are_capped_at_the_most_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detectors, "MAX_REFERENCES", 20)
    rng = np.random.default_rng(4)
    parent, _ = fitted(rng, clips=6)
    day = normal_windows(rng, 4)
    child = detectors.fit_twfr_pca(day, np.repeat(np.arange(4), 3), FRAMES, 4, parent)
    assert len(child["mean.refs"]) == 20
    np.testing.assert_allclose(
        child["mean.refs"][-12:].numpy(), day[:, :, :FRAMES].mean(axis=2, dtype=np.float64)
    )


def test_a_convae_scores_its_reconstruction_errors() -> None:
    net = model.ConvAutoencoder((4, 8), 2).eval()
    x = np.random.default_rng(5).random((5, 16, 16), dtype=np.float32)
    # a version registered before detector types has no `type`: it is a convae
    det = detectors.build({"channels": [4, 8], "latent_channels": 2}, net.state_dict())
    assert isinstance(det, detectors.ConvAE)
    expected = model.reconstruction_errors(net, torch.from_numpy(x).unsqueeze(1)).numpy()
    np.testing.assert_array_equal(det.scores(x), expected)
