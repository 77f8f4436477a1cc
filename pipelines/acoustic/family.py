"""The acoustic family as the registry sees it: its bundle layout and its comparison.

The registry finds this module through the entry point `registry.families: acoustic`
(pyproject.toml) and hands it registered versions whose `read(kind)` returns bytes already
checked against their recorded sha256. A version carries, besides its files, the `inference`
settings the deploy stage recorded (sample rate, features, architecture).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from pipelines.acoustic import bundle as layout
from pipelines.acoustic import features, model
from registry.families import Version
from registry.loading import state_dict

INFERENCE = ("sample_rate", "features", "architecture")


def bundle(version: Version) -> tuple[dict[str, str], dict[str, Any]]:
    """The seed's inference layout (bundle file -> artifact kind) and the manifest's settings.
    The weights are loaded into the recorded architecture first: nothing ships that would
    not load."""
    device = version.meta["scope"]
    network(version)
    files = {
        layout.WEIGHTS: "model",
        layout.SCALE: "scale",
        layout.threshold_file(device): "threshold",
    }
    return files, {"device": device} | {key: _inference(version)[key] for key in INFERENCE}


def compare(candidate: Version, holder: Version) -> tuple[float, float]:
    """(candidate error, holder error): each model's mean reconstruction error on the
    candidate's evaluation windows, each through its own scale, as the seed compared them."""
    windows = _array(candidate, "eval_windows")
    return _error(candidate, windows), _error(holder, windows)


def own_error(version: Version, net: model.ConvAutoencoder | None = None) -> float:
    """The version's mean reconstruction error on its own evaluation windows: its normal.
    `net`: its network, when the caller has loaded it already."""
    return _error(version, _array(version, "eval_windows"), net)


def _error(
    version: Version, windows: np.ndarray, net: model.ConvAutoencoder | None = None
) -> float:
    scaled = torch.from_numpy(features.apply_scale(windows, scale(version))).unsqueeze(1)
    return float(model.reconstruction_errors(net or network(version), scaled).mean())


def scale(version: Version) -> tuple[float, float]:
    """The (low, high) decibel range the version's weights were trained to see as 0..1."""
    low, high = _array(version, "scale")
    return float(low), float(high)


def architecture(version: Version) -> dict[str, Any]:
    return _inference(version)["architecture"]


def network(version: Version) -> model.ConvAutoencoder:
    """The version's autoencoder, its weights loaded safely into its recorded architecture."""
    where = f"{version.meta['name']}:v{version.meta['version']}"
    net = model.from_architecture(architecture(version))
    net.load_state_dict(state_dict(version.read("model"), where))
    return net.eval()


def _inference(version: Version) -> dict[str, Any]:
    inference = version.meta.get("inference")
    if not isinstance(inference, dict) or not set(INFERENCE) <= set(inference):
        raise ValueError(
            f"{version.meta['name']}:v{version.meta['version']} has no inference settings "
            "recorded (register it through the deploy stage)"
        )
    return inference


def _array(version: Version, kind: str) -> np.ndarray:
    return np.load(io.BytesIO(version.read(kind)), allow_pickle=False)
