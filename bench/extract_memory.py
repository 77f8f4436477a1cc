"""Benchmark: peak memory of extracting one long clip, whole-clip decoding vs streamed.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.extract_memory [--minutes 120] [--rate 48000] [--json OUT]

Writes one `--minutes` long stereo 16-bit clip at `--rate` Hz (a tone, its harmonics and
noise, written a minute at a time) as the only clip of device LONG-1 in a temp folder, then
runs the extract stage's device build on it (`fleet.run_stage` with `extraction.plan` and
`extraction.build`, default params: resampled to 16 kHz, 8 s windows every 4 s) twice, each
in a fresh Python process that reports its own peak resident memory (`ru_maxrss`):

    reference   the clip reader as it was before streaming: the file's bytes read whole,
                decoded whole to float32, downmixed and resampled at once, then
                `features.log_mel_windows` over the whole clip (`whole_clip` below, put in
                place of `extraction._clip`)
    ours        the extract stage as it is: the clip decoded, resampled and featurised a
                block at a time (`data.read_blocks`, `features.clip_features`)

Both write the device's `train.npy`; the benchmark checks that the two are equal to within
float32 rounding, so the memory saved costs no feature.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from pipelines import fleet
from pipelines.acoustic import data, extraction, features
from pipelines.errors import ClipError
from pipelines.params import Params

DEVICE = "LONG-1"
VARIANTS = ("reference", "ours")


def write_clip(path: Path, minutes: int, rate: int, seed: int = 0) -> None:
    """A stereo clip written a minute at a time, so this process never holds all of it."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(60 * rate) / rate
    tone = sum(0.1 / k * np.sin(2 * np.pi * 120 * k * t) for k in range(1, 6))
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as out:
        for _ in range(minutes):
            noise = 0.02 * rng.standard_normal((len(t), 2))
            out.write(tone[:, None] * [1.0, 0.8] + noise)


def whole_clip(path: Path, role: str, inp: extraction.ExtractInput) -> extraction.Clip:
    """The clip reader before streaming (its checks left out: they allocate nothing)."""
    p, target = inp.params, inp.params.data.sample_rate
    samples, rate = sf.read(io.BytesIO(path.read_bytes()), dtype="float32", always_2d=True)
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    if rate != target:
        out = soxr.resample(mono, rate, target, quality="soxr_hq")
        n = math.ceil(len(mono) * target / rate)
        mono = np.pad(out, (0, max(0, n - len(out))))[:n]
    y = np.ascontiguousarray(mono, dtype=np.float32)
    windows = features.log_mel_windows(y, target, p.features)
    if len(windows) == 0:
        raise ClipError(path, "too short")
    rms = features.probe_rms(y, target, p.quality)
    seconds, recorded = len(mono) / target, data.recording(path)
    return extraction.Clip(extraction._rel(path, inp.root), role, windows, rms, seconds, recorded)


def extract(variant: str, root: Path, out: Path) -> dict[str, Any]:
    """Run in the child: build the device; return its peak memory and time."""
    if variant == "reference":
        extraction._clip = whole_clip
    started = time.perf_counter()
    outcomes = fleet.run_stage(out, extraction.plan(root, Params()), extraction.build, 1, "extract")
    seconds = time.perf_counter() - started
    if outcomes[DEVICE].status != "built":
        raise RuntimeError(f"{variant}: {outcomes[DEVICE].error}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_mb": round(peak_kib / 1024, 1), "seconds": round(seconds, 2)}


def measure(variant: str, root: Path, out: Path) -> dict[str, Any]:
    """`extract` in a fresh interpreter, so each figure is that variant's own peak."""
    code = (
        "import json, sys; from pathlib import Path; from bench.extract_memory import extract; "
        f"print(json.dumps(extract({variant!r}, Path({str(root)!r}), Path({str(out)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(minutes: int, rate: int) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="bench-extract-memory-") as tmp:
        root = Path(tmp) / "fleet"
        clip = root / DEVICE / "clip.wav"
        write_clip(clip, minutes, rate)
        results = {v: measure(v, root, Path(tmp) / v) for v in VARIANTS}
        reference, ours = (np.load(Path(tmp) / v / DEVICE / "train.npy") for v in VARIANTS)
        diff = float(np.abs(reference - ours).max())
        file_mb = clip.stat().st_size / 2**20
        windows = len(ours)
    return {
        "minutes": minutes,
        "rate": rate,
        "channels": 2,
        "file_mb": round(file_mb, 1),
        "windows": windows,
        "max_abs_diff_db": diff,
        "variants": results,
        "ratio": round(results["reference"]["peak_mb"] / results["ours"]["peak_mb"], 2),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=120, help="length of the clip")
    parser.add_argument("--rate", type=int, default=48000, help="its sample rate, Hz")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.minutes, args.rate)
    print(
        f"one {result['minutes']} min {result['rate']} Hz stereo 16-bit clip "
        f"({result['file_mb']} MB), {result['windows']} windows"
    )
    for name, row in result["variants"].items():
        print(f"{name:10} peak RSS {row['peak_mb']:8.1f} MB  {row['seconds']:7.2f} s")
    print(f"reference / ours: {result['ratio']}x less memory")
    print(f"max |reference - ours| of the windows, dB: {result['max_abs_diff_db']:.2e}")
    print(f"load average (1 min) before / after: {result['load_before']} / {result['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
