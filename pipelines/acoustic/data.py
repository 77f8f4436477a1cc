"""Where a device's audio lives, and reading one clip of it.

Layouts under `{root}/{device}/` (DESIGN.md):
  *.wav                          flat
  {YYYYMMDD}/*.wav               dated (legacy: clips straight in the date folder)
  {YYYYMMDD}/normal/*.wav        dated
  verified_normal/*.wav          checked by a person: always used in full, never filtered
  test/normal/*.wav, test/anomaly/*.wav   labelled test clips
Other folders (e.g. `current/`, where a recorder may still be writing) are not read.

Nothing under the root stops the fleet: a folder that is not a device code, a link that
cannot be followed (dangling, or a loop), an entry named like a clip that is not a regular
file, and a second path to a folder or file already listed are skipped with their reason.
Links are followed for reading wherever they point (recordings often live on another disk);
nothing is ever written under the root. Only these fixed depths are read, so a link back up
the tree cannot make the walk endless.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import soxr

from pipelines.errors import ClipError, DataError
from pipelines.params import DAY_PATTERN
from registry.errors import InvalidNameError
from registry.naming import check_device_code, is_device_code

_DATE = re.compile(r"\d{8}")
# Source frames decoded at a time: 22 s of 48 kHz audio, 8 MB as float32 stereo; a one-minute
# 16 kHz clip is one block. Memory per clip is bounded by this, not by the clip's length.
BLOCK = 1 << 20


class Skipped(NamedTuple):
    """Something under the data root that is not read, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class DeviceSources:
    """Every audio file of one device, grouped by the role it plays."""

    device: str
    recorded: tuple[Path, ...]  # flat and dated clips: quality-filtered
    verified: tuple[Path, ...]  # verified_normal: used in full
    test_normal: tuple[Path, ...]
    test_anomaly: tuple[Path, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def all_files(self) -> tuple[Path, ...]:
        return self.recorded + self.verified + self.test_normal + self.test_anomaly

    def without(self, unreadable: list[Skipped]) -> DeviceSources:
        """These sources less the `unreadable` files, which join the skipped ones."""
        drop = {s.path for s in unreadable}

        def keep(paths: tuple[Path, ...]) -> tuple[Path, ...]:
            return tuple(p for p in paths if p not in drop)

        return replace(
            self,
            recorded=keep(self.recorded),
            verified=keep(self.verified),
            test_normal=keep(self.test_normal),
            test_anomaly=keep(self.test_anomaly),
            skipped=self.skipped + tuple(unreadable),
        )


@dataclass(frozen=True)
class Found:
    """The devices under a data root, and the entries of the root that are not devices."""

    devices: dict[str, DeviceSources]
    skipped: tuple[Skipped, ...] = ()
    day: str | None = None  # the date folder read, None for all of them


def device_folders(root: Path) -> frozenset[str]:
    """The devices `root` (data.root) holds now: its folders named as devices."""
    if not root.is_dir():
        return frozenset()
    return frozenset(p.name for p in root.iterdir() if p.is_dir() and is_device_code(p.name))


def resolve_day(day: str, today: date) -> str | None:
    """The date folder `data.day` names (None for all of them): "N days ago" counts back
    from `today`, so that a daily run names the day it trained on."""
    match = re.fullmatch(DAY_PATTERN, day)
    if match is None:
        raise DataError(f"data.day {day!r}: expected all, a date YYYYMMDD or 'N days ago'")
    if match["ago"] is not None:
        return (today - timedelta(days=int(match["ago"]))).strftime("%Y%m%d")
    return None if day == "all" else day


def discover(root: Path, extensions: tuple[str, ...], day: str | None = None) -> Found:
    """Map each device folder under `root` to its files (of one date folder, `day`, or of all
    of them); skip and report what is not a device."""
    if not root.is_dir():
        raise DataError(
            f"data.root {str(root)!r} does not exist or is not a folder: expected a folder "
            "with one sub-folder of audio per device"
        )
    devices, skipped = {}, []
    for entry in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if reason := _broken_link(entry):
            skipped.append(Skipped(entry, reason))
        elif entry.is_dir():
            try:
                device = check_device_code(entry.name, where="device folder")
            except InvalidNameError as exc:
                skipped.append(Skipped(entry, str(exc)))
            else:
                devices[device] = _Walk(entry, extensions).sources(day)
    return Found(devices, tuple(skipped), day)


class _Walk:
    """One device folder's files, each listed once, under the first path that reaches it."""

    def __init__(self, folder: Path, extensions: tuple[str, ...]) -> None:
        self.folder = folder
        self.suffixes = {ext.lower() for ext in extensions}
        self.seen: dict[tuple[int, int], Path] = {}  # (st_dev, st_ino) -> first path to it
        self.skipped: list[Skipped] = []

    def sources(self, day: str | None) -> DeviceSources:
        """Recorded clips: flat and every date folder's, or only the folder of `day`."""
        recorded = self.audio(self.folder) if day is None else []

        def read(folder: Path) -> bool:
            return bool(_DATE.fullmatch(folder.name)) if day is None else folder.name == day

        for dated in self.entries(self.folder, read):
            recorded += self.audio(dated) + self.audio(dated / "normal")
        return DeviceSources(
            device=self.folder.name,
            recorded=tuple(sorted(recorded)),
            verified=tuple(self.audio(self.folder / "verified_normal")),
            test_normal=tuple(self.audio(self.folder / "test" / "normal")),
            test_anomaly=tuple(self.audio(self.folder / "test" / "anomaly")),
            skipped=tuple(self.skipped),
        )

    def audio(self, folder: Path) -> list[Path]:
        """The clips of one folder, sorted; none if it is missing or was already read."""
        if reason := _broken_link(folder):
            self.skip(folder, reason)
        if not folder.is_dir() or not self.first(folder, "folder"):
            return []
        clips = []
        for path in self.entries(folder, lambda p: p.suffix.lower() in self.suffixes):
            if not path.is_file():
                self.skip(path, "not a regular file")
            elif self.first(path, "file"):
                clips.append(path)
        return clips

    def entries(self, folder: Path, wanted: Callable[[Path], bool]) -> list[Path]:
        """The sorted entries of `folder` that `wanted` names, but links that cannot be
        followed: those are skipped."""
        found = []
        for path in sorted(p for p in folder.iterdir() if wanted(p)):
            if reason := _broken_link(path):
                self.skip(path, reason)
            else:
                found.append(path)
        return found

    def first(self, path: Path, kind: str) -> bool:
        """True the first time a file or folder is reached; another path to it is skipped."""
        info = path.stat()
        first = self.seen.setdefault((info.st_dev, info.st_ino), path)
        if first != path:
            self.skip(path, f"same {kind} as {first.relative_to(self.folder.parent)}")
        return first == path

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))


def _broken_link(path: Path) -> str:
    """Why `path`, a link, cannot be followed (dangling, a loop); '' when it can or is no link."""
    if not path.is_symlink():
        return ""
    try:
        path.stat()
    except OSError as exc:
        return f"link to {os.readlink(path)} cannot be followed ({exc.strerror})"
    return ""


def cannot_read(exc: OSError) -> str:
    """The reason given for a file the system would not read."""
    return f"cannot read ({exc.strerror or exc})"


def read_blocks(path: Path, sample_rate: int, block: int | None = None) -> Iterator[np.ndarray]:
    """A clip as mono float32 blocks at `sample_rate`, decoded `block` (default `BLOCK`)
    source frames at a time, so that memory does not grow with the clip's length. Their
    concatenation equals `decode` of the file's bytes. ClipError says why the clip cannot be
    used; some reasons (no samples, silence) are only known at its end."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClipError(path, cannot_read(exc)) from exc
    yield from _blocks(str(path), size, path, sample_rate, block or BLOCK)


@dataclass(frozen=True)
class Recording:
    """How a clip was recorded, before it is resampled and downmixed."""

    sample_rate: int
    channels: int


def recording(path: Path) -> Recording:
    """The clip's own sample rate and channel count, from its header; ClipError if unreadable."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise ClipError(path, f"cannot decode audio ({exc})") from exc
    return Recording(int(info.samplerate), int(info.channels))


def formats(clips: list[dict[str, Any]]) -> dict[str, list[float]]:
    """What a set of clips (index entries with sample_rate, channels, seconds) was recorded
    as: each sample rate and channel count seen, and the range of durations."""
    seconds = [c["seconds"] for c in clips if "seconds" in c]
    return {
        "sample_rates": sorted({c["sample_rate"] for c in clips if "sample_rate" in c}),
        "channels": sorted({c["channels"] for c in clips if "channels" in c}),
        "seconds": [min(seconds), max(seconds)] if seconds else [],
    }


def decode(data: bytes, path: Path, sample_rate: int) -> np.ndarray:
    """Decode one clip's bytes to mono float32 at `sample_rate`; ClipError says why not."""
    return np.concatenate(list(_blocks(io.BytesIO(data), len(data), path, sample_rate, BLOCK)))


def _blocks(
    source: str | io.BytesIO, size: int, path: Path, sample_rate: int, block: int
) -> Iterator[np.ndarray]:
    if size == 0:
        raise ClipError(path, "empty file")
    try:
        sound = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        # libsndfile's own words, without the repr of the buffer it was handed
        detail = getattr(exc, "error_string", "") or str(exc)
        raise ClipError(path, f"cannot decode audio ({detail})") from exc
    with sound:
        rate = sound.samplerate
        # What `librosa.resample` does by default (soxr HQ, then a crop or zero padding to
        # ceil(n * target / rate) samples), streamed: soxr's stream gives the very samples of
        # one call over the whole clip. Not librosa itself: its resampling module compiles
        # numba kernels on import (about 20 s in a fresh environment, 2 s after).
        stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1)
        read = written = 0
        peak = 0.0
        while len(frames := sound.read(block, dtype="float32", always_2d=True)):
            if not np.isfinite(_peak(frames)):  # max and min carry NaN and inf through
                raise ClipError(path, "contains NaN or infinite samples")
            read += len(frames)
            mono = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1)
            out = mono if stream is None else stream.resample_chunk(mono)
            written += len(out)
            peak = max(peak, _peak(out)) if len(out) else peak
            yield out
    if read == 0:
        raise ClipError(path, "no audio samples")
    if stream is not None:  # the resampler's tail, to librosa's length
        wanted = max(0, math.ceil(read * sample_rate / rate) - written)
        tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)[:wanted]
        tail = np.pad(tail, (0, max(0, wanted - len(tail))))
        peak = max(peak, _peak(tail)) if len(tail) else peak
        yield tail
    if peak < 1e-6:
        raise ClipError(path, "silent (peak below 1e-6)")


def _peak(samples: np.ndarray) -> float:
    """Largest absolute sample, without an array of absolute values."""
    return max(float(samples.max()), -float(samples.min()))
