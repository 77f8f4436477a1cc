"""Shared helpers of the registry tests: artifact folders, byte snapshots of a store, a toy
family, and real acoustic artifacts for the commands that load models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pipelines.acoustic import model
from registry.api import Registry
from registry.errors import IncomparableError
from registry.families import Version

# A family that no entry point installs (tests hand it to the registry as TOY; the CLI stores
# its files as they are named): storing a model never needs its family.
FAMILY, SCOPE, MODEL_TYPE = "toy", "LT-2", "convae"
NAME = f"{FAMILY}_{SCOPE}_{MODEL_TYPE}"


def make_artifacts(
    folder: Path,
    model: bytes = b"weights-1",
    *,
    scale: tuple[float, float] = (0.0, 1.0),
    threshold: float = 0.5,
    optional: bool = False,
) -> Path:
    """A folder to register: model.pth (the given bytes), scale.npy, threshold.npy and, with
    `optional`, loss_curve.png and checkpoint_best.pth."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pth").write_bytes(model)
    np.save(folder / "scale.npy", np.array(scale, dtype=np.float32))
    np.save(folder / "threshold.npy", np.array(threshold, dtype=np.float32))
    if optional:
        (folder / "loss_curve.png").write_bytes(b"\x89PNG fake curve " + model)
        (folder / "checkpoint_best.pth").write_bytes(b"best " + model)
    return folder


class ToyFamily:
    """A second family beside `acoustic`, for the registry's own tests: a model's error on
    any data is the `error` metric it was registered with; its bundle is its files as named."""

    ARTIFACTS: ClassVar[dict[str, str]] = {
        "model": "model.pth",
        "scale": "scale.npy",
        "threshold": "threshold.npy",
        "loss_curve": "loss_curve.png",
        "checkpoint_best": "checkpoint_best.pth",
    }
    CHECKPOINTS = ("checkpoint_best",)
    POLICY: ClassVar[dict[str, Any]] = {"floors": {"auc": 0.9}}  # the acoustic family's

    def bundle(self, version: Version) -> tuple[dict[str, str], dict[str, Any]]:
        version.read("model")
        return {"model.bin": "model", "threshold.npy": "threshold"}, {
            "device": version.meta["scope"]
        }

    def compare(self, candidate: Version, holder: Version) -> tuple[float, float]:
        candidate.read("model"), holder.read("model")
        types = {v.meta["model_type"] for v in (candidate, holder)}
        if len(types) > 1:
            raise IncomparableError(" and ".join(sorted(types)) + " errors differ in kind")
        return candidate.meta["metrics"]["error"], holder.meta["metrics"]["error"]


TOY = {FAMILY: ToyFamily()}


def new_registry(root: Path, **options: Any) -> Registry:
    """The registry of a store made empty at `root` (a store named on purpose must exist
    before it is written to: `registry init`)."""
    registry = Registry(root, **options)
    registry.init()
    return registry


# The acoustic family's smallest real model: 16 mel bands x 16 frames, two encoder blocks.
ARCHITECTURE = {"channels": [2, 4], "latent_channels": 1}
INFERENCE = {
    "inference": {
        "sample_rate": 16000,
        "features": {"n_mels": 16, "frames": 16},
        "architecture": ARCHITECTURE,
    }
}


def make_acoustic_artifacts(folder: Path, seed: int = 0, bias: float = 0.0) -> Path:
    """A real acoustic model folder: weights of a seeded tiny autoencoder (`bias` added to
    its last layer: at 10, a model whose output is all ones and whose error is ~4x a fresh
    one's), its scale, its threshold and its evaluation windows. Register it with
    `extra=INFERENCE`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = model.from_architecture(ARCHITECTURE)
    with torch.no_grad():
        list(net.decoder.parameters())[-1].add_(bias)
    torch.save(net.state_dict(), folder / "model.pth")
    np.save(folder / "scale.npy", np.array([-80.0, 0.0], dtype=np.float32))
    np.save(folder / "threshold.npy", np.array(0.05, dtype=np.float64))
    windows = np.random.default_rng(seed).uniform(-80, 0, (4, 16, 16)).astype(np.float32)
    np.save(folder / "eval_windows.npy", windows)
    return folder


def write_inference(path: Path) -> Path:
    """INFERENCE as a file for `registry register --extra`."""
    path.write_text(json.dumps(INFERENCE))
    return path


def snapshot(store_root: Path) -> dict[str, bytes]:
    """Every file under the store, relative path -> bytes (hidden files and the lock included)."""
    root = Path(store_root)
    if not root.exists():
        return {}
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def flip_byte(path: Path, offset: int = 0) -> None:
    """Invert one byte of `path` in place."""
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))
