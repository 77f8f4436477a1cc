"""The extract stage: a device's audio to one array of log-Mel windows (decibels) on disk.

Each file is hashed (for the fingerprint), then decoded once, a block at a time, so that a
long clip costs the memory of its windows, not of its samples. Recorded clips go through
the RMS/IQR quality filter, verified_normal clips are always kept, labelled test clips are
kept apart. The validation split is drawn here, by whole clips where there are several
(neighbouring windows overlap, so a split by window would leak). The windows are kept in
decibels: the min-max scale belongs to a model (fitted when it is trained from scratch, kept
from its parent when it is fine-tuned), not to the data.

Written per device: `train.npy` and `test.npy` (float32, (n, n_mels, frames), decibels)
and `index.json` (clips, their sha256, window-to-clip maps, the validation mask, and every
skipped file with its reason).
"""

from __future__ import annotations

import logging
import os
import sys
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import librosa
import numpy as np

from pipelines import cluster, fleet
from pipelines.acoustic import data, features
from pipelines.errors import ClipError, DeviceError, DeviceSkipped
from pipelines.params import Params, SplitParams, as_dict
from registry.store import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractInput:
    root: Path
    sources: data.DeviceSources
    digests: dict[str, str]  # file path relative to root -> sha256
    params: Params
    day: str | None  # the date folder trained on, None for all of them


@dataclass
class Clip:
    file: str  # relative to the data root
    role: str  # recorded, verified, normal, anomaly
    windows: np.ndarray
    rms: float
    seconds: float
    recorded: data.Recording  # its own sample rate and channels, before resampling


def discover(root: Path, params: Params) -> data.Found:
    """The devices under `root` and their clips of the day `data.day` names."""
    day = data.resolve_day(params.data.day, date.today())
    return data.discover(root, params.data.extensions, day)


def plan(root: Path, params: Params, found: data.Found | None = None) -> list[fleet.Job]:
    """One job per device, fingerprinted by its files' bytes, the params and this code.

    `found` is `discover(root, params)` when the caller has it already. A file that cannot
    be read for its digest is skipped, and reported with the device's other skipped files. A
    `devices:` override of a device that is not in the fleet is named in a warning."""
    code = fleet.code_digest(data, features, sys.modules[__name__])
    found = found or discover(root, params)
    for device in params.unknown_devices(found.devices):
        log.warning(
            "params.yaml: devices: %s is not a device of the fleet (no folder %s under %s); "
            "its overrides are not used",
            device,
            device,
            root,
        )
    day = found.day
    settings = [as_dict(params.data), day, as_dict(params.features), as_dict(params.quality)]
    settings += [as_dict(params.split), code, librosa.__version__]
    files = [path for sources in found.devices.values() for path in sources.all_files]
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # hashlib releases the GIL
        digest_of = dict(zip(files, pool.map(_digest, files), strict=True))
    jobs = []
    for device, sources in found.devices.items():
        unreadable = [d for p in sources.all_files if isinstance(d := digest_of[p], data.Skipped)]
        sources = sources.without(unreadable)
        digests = {_rel(p, root): digest_of[p] for p in sources.all_files}
        skipped = [_skip_entry(s, root) for s in sources.skipped]
        jobs.append(
            fleet.Job(
                device,
                fleet.fingerprint(settings, digests, skipped),
                ExtractInput(root, sources, digests, params, day),
            )
        )
    return jobs


def _digest(path: Path) -> str | data.Skipped:
    """The file's sha256, or why it cannot be read: one such file stops no device."""
    try:
        return sha256_file(path)
    except OSError as exc:
        return data.Skipped(path, data.cannot_read(exc))


def build(job: fleet.Job, work: Path) -> dict[str, Any]:
    """Extract one device into `work`. DeviceSkipped when the day has no clip or fewer usable
    clips than `data.min_clips`; DeviceError when none of its clips can be used."""
    inp: ExtractInput = job.inputs
    src, p = inp.sources, inp.params
    if inp.day is not None and not src.recorded:
        raise DeviceSkipped(job.device, f"no clips recorded on {inp.day}")
    roles = {
        "recorded": src.recorded,
        "verified": src.verified,
        "normal": src.test_normal,
        "anomaly": src.test_anomaly,
    }
    files = [(path, role) for role, paths in roles.items() for path in paths]
    clips, unusable = read_clips(files, inp, job.cores)
    skipped = [_skip_entry(s, inp.root) for s in src.skipped] + unusable
    recorded = [c for c in clips if c.role == "recorded"]
    keep = features.quality_keep(np.array([c.rms for c in recorded]), p.quality)
    filtered = [c.file for c, k in zip(recorded, keep, strict=True) if not k]
    kept = [c for c, k in zip(recorded, keep, strict=True) if k]
    chosen = sample(
        kept, p.data.sample_hours, [p.data.sample_seed, zlib.crc32(job.device.encode())]
    )
    sampled_out = [c.file for c in kept if c not in chosen]
    train = chosen + [c for c in clips if c.role == "verified"]  # verified: always, in full
    if not train:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3]) or "no audio files"
        raise DeviceError(job.device, f"no usable training clip ({reasons})")
    if len(train) < p.data.min_clips:
        on = f" on {inp.day}" if inp.day else ""
        raise DeviceSkipped(
            job.device,
            f"{len(train)} usable clips{on}, fewer than data.min_clips = {p.data.min_clips}",
        )
    test = [c for c in clips if c.role in ("normal", "anomaly")]

    train_windows = np.concatenate([c.windows for c in train])
    clip_of_window = np.repeat(np.arange(len(train)), [len(c.windows) for c in train])
    validation = validation_mask(clip_of_window, p.split)
    np.save(work / "train.npy", train_windows)
    test_windows = [c.windows for c in test]
    shape = (0, p.features.n_mels, p.features.frames)
    np.save(
        work / "test.npy", np.concatenate(test_windows) if test else np.zeros(shape, np.float32)
    )
    index = {
        "device": job.device,
        "day": inp.day,
        "train_clips": [_clip_entry(c, inp) for c in train],
        "train_clip_of_window": clip_of_window.tolist(),
        "validation": validation.tolist(),
        "test_clips": [_clip_entry(c, inp) for c in test],
        "test_clip_of_window": np.repeat(np.arange(len(test)), [len(w) for w in test_windows])
        .astype(int)
        .tolist(),
        "skipped": skipped,
        "quality_filtered": filtered,
        "sampled_out": sampled_out,
    }
    fleet.write_json(work / "index.json", index)
    return {
        "day": inp.day,
        "train_clips": len(train),
        "windows": len(train_windows),
        "validation_windows": int(validation.sum()),
        "test_clips": len(test),
        "skipped": skipped,
        "quality_filtered": filtered,
    }


def read_clips(
    files: list[tuple[Path, str]], inp: ExtractInput, threads: int
) -> tuple[list[Clip], list[dict[str, str]]]:
    """Decode and featurise (path, role) pairs, in order, on `threads` threads (soundfile,
    the FFT and numpy release the GIL); what is unusable comes back as skipped."""
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda file: _try_clip(*file, inp), files))
    clips = [r for r in results if isinstance(r, Clip)]
    skipped = [
        _skip_entry(data.Skipped(e.path, e.reason), inp.root)
        for e in results
        if isinstance(e, ClipError)
    ]
    return clips, skipped


def _try_clip(path: Path, role: str, inp: ExtractInput) -> Clip | ClipError:
    try:
        return _clip(path, role, inp)
    except ClipError as exc:
        return exc


def _clip(path: Path, role: str, inp: ExtractInput) -> Clip:
    p, rate = inp.params, inp.params.data.sample_rate
    found = features.clip_features(data.read_blocks(path, rate), rate, p.features, p.quality)
    if len(found.windows) == 0:
        raise ClipError(
            path, f"too short: {found.seconds:.2f} s, need at least {p.features.window_sec} s"
        )
    recorded = data.recording(path)
    return Clip(_rel(path, inp.root), role, found.windows, found.rms, found.seconds, recorded)


def sample(clips: list[Clip], hours: float, seed: list[int]) -> list[Clip]:
    """A seeded random choice of `clips` adding up to `hours` (the seed's `sample_hours`),
    in their order; all of them when `hours` is 0 or they add up to less."""
    if hours <= 0:
        return clips
    chosen, total = set(), 0.0
    for i in np.random.default_rng(seed).permutation(len(clips)):
        if total >= hours * 3600:
            break
        chosen.add(int(i))
        total += clips[i].seconds
    return [clip for i, clip in enumerate(clips) if i in chosen]


def _clip_entry(clip: Clip, inp: ExtractInput) -> dict[str, Any]:
    return {
        "file": clip.file,
        "role": clip.role,
        "sha256": inp.digests[clip.file],
        "windows": len(clip.windows),
        "seconds": round(clip.seconds, 3),
        "sample_rate": clip.recorded.sample_rate,
        "channels": clip.recorded.channels,
    }


def validation_mask(clip_of_window: np.ndarray, p: SplitParams) -> np.ndarray:
    """True for validation windows: about `val_fraction` of them, by whole clips if possible.

    Below `min_windows` windows there is no validation set (too few to say anything).
    """
    n = len(clip_of_window)
    mask = np.zeros(n, dtype=bool)
    if n < p.min_windows:
        return mask
    rng = np.random.default_rng(p.seed)
    wanted = max(1, int(n * p.val_fraction))
    clips = np.unique(clip_of_window)
    if len(clips) < 2:
        mask[rng.permutation(n)[:wanted]] = True
        return mask
    for clip in rng.permutation(clips)[:-1]:  # at least one clip stays for training
        if mask.sum() >= wanted:
            break
        mask |= clip_of_window == clip
    return mask


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _skip_entry(skipped: data.Skipped, root: Path) -> dict[str, str]:
    """A skipped file as the report and index.json show it."""
    return {"file": _rel(skipped.path, root), "reason": skipped.reason}


def load_device(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(train windows, test windows, index) of one extracted device."""
    index = fleet.read_json(folder / "index.json")
    return np.load(folder / "train.npy"), np.load(folder / "test.npy"), index


class Stage:
    """The extract stage: audio under the data root -> scaled log-Mel windows per device. A
    folder under the root that is not a device (its name is no device code, or a link that
    cannot be followed) is named in a warning and under `skipped_folders` in the report."""

    ARGUMENTS = ("root", "out")
    OPTIONS: Mapping[str, str] = {}

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = paths
        self.not_devices: list[data.Skipped] = []

    def work(self, p: Params) -> dict[str, fleet.Outcome]:
        on = cluster.of(p.fleet, [self.paths["root"]])  # before the plan hashes every clip
        found = discover(self.paths["root"], p)
        for path, reason in found.skipped:
            logging.getLogger("stage").warning("extract: skipped %s: %s", path, reason)
        self.not_devices.extend(found.skipped)
        # One device at a time in this process, its clips on threads over every core: the
        # work releases the GIL, and worker processes would each pay ~1.5 s of imports. On
        # a cluster, on its workers.
        jobs = plan(self.paths["root"], p, found)
        return fleet.run_stage(self.paths["out"], jobs, build, 1, "extract", on)

    def extra(self, _: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
        folders = [{"folder": f.name, "reason": why} for f, why in self.not_devices]
        return {"skipped_folders": folders} if folders else {}
