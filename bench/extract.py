"""Benchmark: log-Mel extraction against the straightforward per-window librosa reference.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.extract [--minutes 24] [--repeat 3] [--json OUT]

Writes `--minutes` one-minute 16 kHz mono clips of the demo machines' sound (6 per device,
flat layout `{root}/{device}/*.wav`) into a temp folder and times, on the same files:

    reference      librosa.load + features.reference_log_mel_windows, one process
    ours, N        extraction.read_clips, the extract stage's clip reader (data.decode +
                   features.log_mel_windows + the RMS probe), on N threads in one process
    extract stage  fleet.run_stage over the folder as the extract stage runs it: hashing,
                   decoding, quality filter, scaling, writing arrays; devices one after
                   another in this process, each device's clips on threads over every core
    2 workers      the same in 2 spawned worker processes (what the stage avoids: each
                   worker pays its imports before its first device)

Each row is the best of `--repeat` rounds (the median beside it); the ratio is the reference's
best time over the row's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_info

from pipelines import fleet
from pipelines.acoustic import data, extraction, features, synth
from pipelines.params import FeatureParams, Params

RATE = 16000
CLIP_SEC = 60.0
CLIPS_PER_DEVICE = 6
SEED = 7
REFERENCE = "reference (librosa per window)"
THREADS = os.cpu_count() or 1
OURS = f"ours, {THREADS} threads"
STAGE = "ours, extract stage"
T = TypeVar("T")


def make_clips(root: Path, minutes: int) -> list[Path]:
    """One-minute clips of the demo fleet's machine sound, deterministic, 16-bit PCM."""
    paths = []
    for i in range(minutes):
        index = i // CLIPS_PER_DEVICE
        device = f"BENCH-{index}"
        profile = synth.device_profile(device, SEED, index)
        audio = synth.render_normal(profile, CLIP_SEC, RATE, np.random.default_rng([SEED, i]))
        path = root / device / f"clip_{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def reference(paths: list[Path], p: FeatureParams) -> list[np.ndarray]:
    out = []
    for path in paths:
        y, rate = librosa.load(path, sr=RATE, mono=True)
        out.append(features.reference_log_mel_windows(y, rate, p))
    return out


def ours(root: Path, paths: list[Path], threads: int) -> list[np.ndarray]:
    """The extract stage's clip reader: decode, check and featurise on `threads` threads."""
    sources = data.DeviceSources("BENCH", tuple(paths), (), (), ())
    inp = extraction.ExtractInput(root, sources, {}, Params())
    clips, skipped = extraction.read_clips([(path, "recorded") for path in paths], inp, threads)
    if skipped:
        raise RuntimeError(f"the clip reader skipped {skipped}")
    return [clip.windows for clip in clips]


def stage(root: Path, out: Path, workers: int) -> float:
    """Run the extract stage over `root`; return the seconds its device builds took, summed."""
    params = Params()
    outcomes = fleet.run_stage(
        out, extraction.plan(root, params), extraction.build, workers, "extract"
    )
    failed = [d for d, o in outcomes.items() if o.status != "built"]
    if failed:
        raise RuntimeError(f"extract stage did not build {failed}")
    return sum(o.seconds for o in outcomes.values())


def timed(run: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def warm_up(root: Path, path: Path, p: FeatureParams) -> None:
    """First calls pay for lazy imports and filter-bank caches: keep them out."""
    reference([path], p)
    ours(root, [path], 1)


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if [x.shape for x in a] != [x.shape for x in b]:
        raise RuntimeError("reference and ours give windows of different shapes")
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def measure(root: Path, paths: list[Path], repeat: int) -> dict[str, Any]:
    """Seconds of every round per variant; every round times every variant, so a load spike
    on a shared machine costs one round of all of them rather than every round of one."""
    p = FeatureParams()
    times: dict[str, list[float]] = {REFERENCE: []}
    builds: dict[str, list[float]] = {}
    out = root.parent / "features"
    for _ in range(repeat):
        seconds, ref = timed(lambda: reference(paths, p))
        times[REFERENCE].append(seconds)
        for threads in (THREADS, 1):
            name = OURS if threads == THREADS else "ours, 1 thread"
            seconds, mine = timed(lambda t=threads: ours(root, paths, t))
            times.setdefault(name, []).append(seconds)
        for workers in (1, 2):
            name = STAGE if workers == 1 else "ours, stage in 2 worker processes"
            seconds, built = timed(lambda w=workers: stage(root, out, w))
            shutil.rmtree(out)
            times.setdefault(name, []).append(seconds)
            builds.setdefault(name, []).append(built)
    return {"times": times, "builds": builds, "diff": max_abs_diff(ref, mine), "windows": mine}


def run(minutes: int, repeat: int) -> dict[str, Any]:
    # The machine may be shared: the load says how far to trust the figures.
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        root = Path(tmp) / "fleet"
        paths = make_clips(root, minutes)
        audio_min = sum(sf.info(path).duration for path in paths) / 60
        warm_up(root, paths[0], FeatureParams())
        m = measure(root, paths, repeat)
    ref_s = min(m["times"][REFERENCE])
    return {
        "audio_minutes": round(audio_min, 2),
        "files": len(paths),
        "repeat": repeat,
        "max_abs_diff_db": m["diff"],
        "windows": int(sum(len(w) for w in m["windows"])),
        # OpenBLAS threads per process (OPENBLAS_NUM_THREADS): the mel matmul runs on them.
        "blas_threads": max((i["num_threads"] for i in threadpool_info()), default=1),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        "rows": [
            {
                "name": name,
                "seconds": round(min(runs), 3),
                "median_seconds": round(statistics.median(runs), 3),
                "audio_min_per_s": round(audio_min / min(runs), 2),
                "speedup_vs_reference": round(ref_s / min(runs), 2),
                "device_build_seconds": round(min(m["builds"][name]), 3)
                if name in m["builds"]
                else None,
            }
            for name, runs in m["times"].items()
        ],
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['files']} files, {result['audio_minutes']} min of audio, "
        f"{result['windows']} windows; best of {result['repeat']} rounds"
    )
    print(f"max |reference - ours| = {result['max_abs_diff_db']:.2e} dB")
    print(
        f"{'':32} {'seconds':>8} {'median':>7} {'audio min':>9} {'min/s':>7} {'ratio':>6} "
        f"{'builds s':>9}"
    )
    for row in result["rows"]:
        builds = row["device_build_seconds"]
        print(
            f"{row['name']:32} {row['seconds']:8.2f} {row['median_seconds']:7.2f} "
            f"{result['audio_minutes']:9.1f} "
            f"{row['audio_min_per_s']:7.2f} {row['speedup_vs_reference']:5.1f}x "
            f"{'' if builds is None else f'{builds:9.2f}'}"
        )
    print("seconds: best round; ratio: reference seconds / row seconds (best rounds);")
    print("builds s: the stage's per-device build seconds, summed (best round)")
    for name in (OURS, STAGE):
        ratio = next(r for r in result["rows"] if r["name"] == name)["speedup_vs_reference"]
        met = "met" if ratio >= 5 and result["audio_minutes"] >= 20 else "NOT met"
        print(f"target >= 5x on >= 20 min of audio, {name}: {ratio:.1f}x, {met}")
    print(
        f"BLAS threads per process: {result['blas_threads']}; load average (1 min) before / "
        f"after: {result['load_before']} / {result['load_after']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=24, help="one-minute clips to time")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.minutes, args.repeat)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
