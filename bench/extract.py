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

With `--whole-stage` it times instead, each in a fresh process, on `--devices` x `--clips`
one-minute clips (default 4 x 30, flat layout) in a temp git + DVC repo holding a copy of the
pipeline (`dvc.yaml`, `params.yaml` with `data.root: data/fleet`, `pipelines/`, `stages/`,
`registry/`, taken from `--code`, default this checkout):

    extract stage  `dvc repro -f -s extract`: DVC, the interpreter and its imports, hashing,
                   decoding, writing, as a user runs it
    seed-style     the original system's extraction (seed 000): for each device the RMS
                   probe (the first 10 s of each clip, librosa.load), then two passes of
                   librosa.load + one librosa melspectrogram per window, the first for the
                   min and max, the second to scale (one array per device written, where
                   the seed wrote one file per window)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import librosa
import numpy as np
import soundfile as sf
import yaml
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


def make_clips(root: Path, minutes: int, per_device: int = CLIPS_PER_DEVICE) -> list[Path]:
    """One-minute clips of the demo fleet's machine sound, deterministic, 16-bit PCM."""
    paths = []
    for i in range(minutes):
        index = i // per_device
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
    inp = extraction.ExtractInput(root, sources, {}, Params(), None)
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


def seed_style(root: Path, out: Path) -> None:
    """The original system's extraction of every device under `root` (see the docstring)."""
    p, q = FeatureParams(), Params().quality
    out.mkdir(parents=True, exist_ok=True)
    for device in sorted(d for d in root.iterdir() if d.is_dir()):
        files = sorted(device.glob("*.wav"))
        rms = [
            features.probe_rms(librosa.load(f, sr=RATE, duration=q.probe_sec)[0], RATE, q)
            for f in files
        ]
        files = [
            f for f, k in zip(files, features.quality_keep(np.array(rms), q), strict=True) if k
        ]
        low, high = np.inf, -np.inf
        for f in files:  # pass 1: the scale
            windows = features.reference_log_mel_windows(librosa.load(f, sr=RATE)[0], RATE, p)
            low, high = min(low, float(windows.min())), max(high, float(windows.max()))
        scaled = [  # pass 2: the windows again, scaled
            features.apply_scale(
                features.reference_log_mel_windows(librosa.load(f, sr=RATE)[0], RATE, p),
                (low, high),
            )
            for f in files
        ]
        np.save(out / f"{device.name}.npy", np.concatenate(scaled))


def stage_repo(base: Path, code: Path, devices: int, clips: int) -> Path:
    """A copy of `code`'s pipeline with `devices` x `clips` one-minute clips."""
    repo = base / "repo"
    repo.mkdir(parents=True)
    for name in ("dvc.yaml", "pipelines", "stages", "registry"):
        copy = shutil.copytree if (code / name).is_dir() else shutil.copy2
        copy(code / name, repo / name)
    params = yaml.safe_load((code / "params.yaml").read_text())
    params["data"]["root"] = "data/fleet"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_clips(repo / "data" / "fleet", devices * clips, per_device=clips)
    return repo


def whole_stage(code: Path, devices: int, clips: int, repeat: int) -> dict[str, Any]:
    """Best and median seconds of `dvc repro -f -s extract` and of the seed-style reference."""
    # Not at the top: worker processes spawned by the in-process rows import this module,
    # and fleet_scale imports torch.
    from bench.fleet_scale import BIN, Workspace

    load_before = round(os.getloadavg()[0], 2)
    times: dict[str, list[float]] = {"extract stage": [], "seed-style": [], "stage command": []}
    with tempfile.TemporaryDirectory(prefix="bench-extract-stage-") as tmp:
        ws = Workspace(stage_repo(Path(tmp), code, devices, clips))
        ws.init()  # git and DVC
        seed = [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from bench.extract import seed_style; "
            "seed_style(*map(Path, sys.argv[1:]))",
            str(ws.repo / "data" / "fleet"),
            str(Path(tmp) / "seed"),
        ]
        for _ in range(repeat):
            shutil.rmtree(ws.repo / "features", ignore_errors=True)  # else: all unchanged
            ws.log.write_text("")
            seconds, proc = timed(lambda: ws.sh(BIN / "dvc", "repro", "-f", "-s", "extract"))
            Workspace.check(proc)
            times["extract stage"].append(seconds)
            times["stage command"].append(ws._commands()["extract"])
            seconds, proc = timed(lambda: subprocess.run(seed, capture_output=True, text=True))
            Workspace.check(proc)
            times["seed-style"].append(seconds)
    return {
        "code": str(code),
        "devices": devices,
        "clips_per_device": clips,
        "repeat": repeat,
        "seconds": {k: round(min(v), 2) for k, v in times.items()},
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "ratio": round(min(times["seed-style"]) / min(times["extract stage"]), 2),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
    }


def print_whole_stage(r: dict[str, Any]) -> None:
    print(
        f"{r['devices']} devices x {r['clips_per_device']} one-minute clips, code from "
        f"{r['code']}; best of {r['repeat']} rounds, each in a fresh process"
    )
    for name, seconds in r["seconds"].items():
        print(f"{name:40} {seconds:7.2f} s  (median {r['median_seconds'][name]:.2f})")
    print(f"seed-style / extract stage: {r['ratio']:.2f}x (target >= 5x)")
    print(f"load average (1 min) before / after: {r['load_before']} / {r['load_after']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=24, help="one-minute clips to time")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--whole-stage", action="store_true", help="time `dvc repro` instead")
    parser.add_argument("--devices", type=int, default=4, help="--whole-stage: devices")
    parser.add_argument("--clips", type=int, default=30, help="--whole-stage: clips each")
    parser.add_argument(
        "--code", type=Path, default=Path.cwd(), help="--whole-stage: the checkout to copy"
    )
    args = parser.parse_args()
    if args.whole_stage:
        result = whole_stage(args.code.resolve(), args.devices, args.clips, args.repeat)
        print_whole_stage(result)
    else:
        result = run(args.minutes, args.repeat)
        print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
