"""Where a device's audio lives, and reading one clip of it.

Layouts under `{root}/{device}/` (DESIGN.md):
  *.wav                          flat
  {YYYYMMDD}/*.wav               dated (legacy: clips straight in the date folder)
  {YYYYMMDD}/normal/*.wav        dated
  verified_normal/*.wav          checked by a person: always used in full, never filtered
  test/normal/*.wav, test/anomaly/*.wav   labelled test clips
Other folders (e.g. `current/`, where a recorder may still be writing) are not read.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipelines.errors import ClipError, DataError
from registry.errors import InvalidNameError
from registry.naming import check_device_code

_DATE = re.compile(r"\d{8}")


@dataclass(frozen=True)
class DeviceSources:
    """Every audio file of one device, grouped by the role it plays."""

    device: str
    recorded: tuple[Path, ...]  # flat and dated clips: quality-filtered
    verified: tuple[Path, ...]  # verified_normal: used in full
    test_normal: tuple[Path, ...]
    test_anomaly: tuple[Path, ...]

    @property
    def all_files(self) -> tuple[Path, ...]:
        return self.recorded + self.verified + self.test_normal + self.test_anomaly


def discover(root: Path, extensions: tuple[str, ...]) -> dict[str, DeviceSources]:
    """Map each device folder under `root` to its files; refuse an invalid folder name."""
    if not root.is_dir():
        raise DataError(
            f"data.root {str(root)!r} does not exist or is not a folder: expected a folder "
            "with one sub-folder of audio per device"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        try:
            check_device_code(folder.name, where="device folder")
        except InvalidNameError as exc:
            raise DataError(f"{folder}: {exc}") from exc
    return {folder.name: _device_sources(folder, extensions) for folder in folders}


def _device_sources(folder: Path, extensions: tuple[str, ...]) -> DeviceSources:
    suffixes = {ext.lower() for ext in extensions}

    def audio(directory: Path) -> list[Path]:
        if not directory.is_dir():
            return []
        return [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in suffixes]

    recorded = audio(folder)
    for dated in (p for p in folder.iterdir() if p.is_dir() and _DATE.fullmatch(p.name)):
        recorded += audio(dated) + audio(dated / "normal")
    return DeviceSources(
        device=folder.name,
        recorded=tuple(sorted(recorded)),
        verified=tuple(sorted(audio(folder / "verified_normal"))),
        test_normal=tuple(sorted(audio(folder / "test" / "normal"))),
        test_anomaly=tuple(sorted(audio(folder / "test" / "anomaly"))),
    )


def decode(data: bytes, path: Path, sample_rate: int) -> np.ndarray:
    """Decode one clip's bytes to mono float32 at `sample_rate`; ClipError says why not."""
    if not data:
        raise ClipError(path, "empty file")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        # libsndfile's own words, without the repr of the buffer it was handed
        detail = getattr(exc, "error_string", "") or str(exc)
        raise ClipError(path, f"cannot decode audio ({detail})") from exc
    if samples.size == 0:
        raise ClipError(path, "no audio samples")
    if not np.isfinite(_peak(samples)):  # max and min carry NaN and inf through
        raise ClipError(path, "contains NaN or infinite samples")
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    if _peak(mono) < 1e-6:
        raise ClipError(path, "silent (peak below 1e-6)")
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(y: np.ndarray, rate: int, target: int) -> np.ndarray:
    """What `librosa.resample` does by default: soxr's HQ mode, then zero padding or a crop
    to ceil(n * target / rate) samples. Called directly because librosa's resampling module
    compiles numba kernels on import (about 20 s in a fresh environment, 2 s after)."""
    out = soxr.resample(y, rate, target, quality="soxr_hq")
    n = math.ceil(len(y) * target / rate)
    return np.pad(out, (0, max(0, n - len(out))))[:n]


def _peak(samples: np.ndarray) -> float:
    """Largest absolute sample, without an array of absolute values."""
    return max(float(samples.max()), -float(samples.min()))
