"""Shared helpers of the registry tests: artifact folders and byte snapshots of a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAMILY, SCOPE, MODEL_TYPE = "acoustic", "LT-2", "convae"
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
