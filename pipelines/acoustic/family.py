"""The acoustic family as the registry sees it: its artifact kinds, bundle layout and comparison.

The registry finds this module through the entry point `registry.families: acoustic`
(pyproject.toml) and hands it registered versions whose `read(kind)` returns bytes already
checked against their recorded sha256. A version carries, besides its files, the `inference`
settings the deploy stage recorded (sample rate, features, architecture).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from registry.errors import IncomparableError
from registry.families import Version
from registry.loading import state_dict

# torch comes with the detectors, imported by the functions that load a model: the registry
# reads this module's POLICY and ARTIFACTS for commands that load none (`registry list`).
if TYPE_CHECKING:
    import torch

    from pipelines.acoustic import detectors

# What a version holds: artifact kind -> its file in the folder the deploy stage registers.
ARTIFACTS = {
    "model": "model.pth",
    "scale": "scale.npy",
    "threshold": "threshold.npy",
    "checkpoint_best": "checkpoint_best.pth",
    # the candidate's own evaluation data, so that the gate can compare it with any holder
    "eval_windows": "eval_windows.npy",
}
CHECKPOINTS = ("checkpoint_best",)  # a trained network's best weights: for resuming, not shipped
# The gate while no policy was set: a detector must rank its device's labelled test clips
# well; one without labelled clips has no AUC and is judged against its holder alone.
POLICY = {"floors": {"auc": 0.9}}
INFERENCE = ("sample_rate", "features", "architecture")
OPTIONAL = ("recordings",)  # what the clips it was trained on were (versions since 2026-11)


def bundle(version: Version) -> tuple[dict[str, str], dict[str, Any]]:
    """The seed's inference layout (bundle file -> artifact kind) and the manifest's settings.
    The detector is built from its recorded architecture first: nothing ships that would
    not load."""
    from pipelines.acoustic import bundle as layout

    device = version.meta["scope"]
    detector(version)
    files = {
        layout.WEIGHTS: "model",
        layout.SCALE: "scale",
        layout.threshold_file(device): "threshold",
    }
    inference = _inference(version)
    settings = {key: inference[key] for key in (*INFERENCE, *OPTIONAL) if key in inference}
    return files, {"device": device} | settings


def compare(candidate: Version, holder: Version) -> tuple[float, float]:
    """(candidate score, holder score): each model's mean score on the candidate's
    evaluation windows, each through its own scale, as the seed compared them; for a type
    whose scores are in multiples of its own normal, each divided by its score on the holder's
    evaluation windows. Two types of detector score on different scales: IncomparableError
    (the gate compares metrics)."""
    from pipelines.acoustic import detectors

    kinds = [detectors.kind(architecture(v)) for v in (candidate, holder)]
    if kinds[0] != kinds[1]:
        raise IncomparableError(f"a {kinds[0]} and a {kinds[1]} score on different scales")
    windows = _array(candidate, "eval_windows")
    versions = (candidate, holder)
    fitted = [detector(v) for v in versions]  # each version's weights read and checked once
    scores = [_score(v, windows, f) for v, f in zip(versions, fitted, strict=True)]
    if kinds[0] in detectors.SELF_SCALED:  # each relative to its own score on the holder's
        normal = _array(holder, "eval_windows")  # evaluation windows, normal for both
        own = [_score(v, normal, f) for v, f in zip(versions, fitted, strict=True)]
        return scores[0] / max(own[0], 1e-12), scores[1] / max(own[1], 1e-12)
    return scores[0], scores[1]


def own_error(version: Version, fitted: detectors.Detector | None = None) -> float:
    """The version's mean score on its own evaluation windows: its normal.
    `fitted`: its detector, when the caller has loaded it already."""
    return _score(version, _array(version, "eval_windows"), fitted)


def _score(
    version: Version, windows: np.ndarray, fitted: detectors.Detector | None = None
) -> float:
    from pipelines.acoustic import features

    scaled = features.apply_scale(windows, scale(version))
    return float((fitted or detector(version)).scores(scaled).mean())


def scale(version: Version) -> tuple[float, float]:
    """The (low, high) decibel range the version's detector was fitted to see as 0..1."""
    low, high = _array(version, "scale")
    return float(low), float(high)


def architecture(version: Version) -> dict[str, Any]:
    return _inference(version)["architecture"]


def state(version: Version) -> dict[str, torch.Tensor]:
    """The version's fitted state, its bytes sha256-checked, loaded with `weights_only`."""
    return state_dict(version.read("model"), version.ref)


def detector(version: Version) -> detectors.Detector:
    """The version's detector, its state loaded safely into its recorded architecture."""
    from pipelines.acoustic import detectors

    return detectors.build(architecture(version), state(version))


def _inference(version: Version) -> dict[str, Any]:
    return version.inference(INFERENCE, "register it through the deploy stage")


def _array(version: Version, kind: str) -> np.ndarray:
    return np.load(io.BytesIO(version.read(kind)), allow_pickle=False)
