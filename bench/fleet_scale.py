"""Benchmark: what DVC costs at fleet scale, ours (one stage over the fleet) vs `foreach`.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.fleet_scale [--devices 100] [--reference-devices N]
                                          [--skip-reference] [--keep] [--json OUT]

Ours: a temp git + DVC repo holding a copy of the project's pipeline (dvc.yaml, params.yaml,
pipelines/, stages/, registry/, unchanged but for tiny params) whose `data.root` points at a
synthetic fleet in `data/fleet` (untracked by git, a DVC dependency as a user's own data
would be). Timed: the first `dvc repro`, a no-op one (median of 3), one after adding a device,
one after changing one clip of a device. A `python` shim first on PATH logs when each stage
command DVC runs starts and ends, so DVC's own share of a run is its wall time minus theirs.

Reference: the same fleet under a generated dvc.yaml with a `foreach` over the devices, one
extract and one train stage per device, each running `python device_stub.py SRC OUT`, which
hashes the device's input files and writes one stamp file: the cheapest per-device command
a real stage could be, so the figures are DVC's cost of that design plus a Python start-up.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from pipelines.acoustic import model, synth
from pipelines.params import GenerateParams, parse_params

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: its python and dvc
COPIED = ("dvc.yaml", "params.yaml", "pipelines", "stages", "registry")
DEVICE_STAGES = ("extract", "train", "evaluate", "deploy")
RATE = 16000
DATA = "data/fleet"
TINY_FLEET = {
    "days": 1,
    "clips_per_day": 1,
    "clip_sec": 8.0,
    "verified_clips": 0,
    "test_normal": 1,
    "test_anomaly": 1,
    "test_clip_sec": 8.0,
}
# Enough to run every stage for real, little enough that DVC's share is what shows: the
# seed's 8 s windows and autoencoder (the rows in bench/README.md before the default changed).
TINY_PARAMS = {
    "data": {"root": DATA},
    "generate": TINY_FLEET,
    "features": {"window_sec": 8.0, "hop_sec": 4.0, "n_mels": 32, "frames": 64},
    "train": {
        "model": "convae",
        "epochs": 1,
        "min_epochs": 1,
        "channels": [4, 8],
        "latent_channels": 2,
    },
}
# A 1-epoch model on 2 test clips cannot meet the real gate; promotion and export must still
# run, so the store's gate lets everything through.
OPEN_GATE = (
    "--family",
    "acoustic",
    "--drop-floor",
    "auc",
    "--rollback-factor",
    "1000",
    "--reason",
    "benchmark",
)
SHIM = """#!/bin/sh
# Logs each command DVC runs: start and end (epoch seconds), then its arguments.
start=$(date +%s.%N)
"{python}" "$@"
rc=$?
echo "$start $(date +%s.%N) $*" >> "{log}"
exit $rc
"""
DEVICE_STUB = """import hashlib, sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
digest = hashlib.sha256()
for path in sorted(p for p in src.rglob("*") if p.is_file()):
    digest.update(path.read_bytes())
out.mkdir(parents=True, exist_ok=True)
(out / "stamp").write_text(digest.hexdigest())
"""


@dataclass
class Repro:
    """One `dvc repro`: its wall time, and the wall time of each command it ran."""

    seconds: float
    ok: bool
    error: str = ""
    commands: dict[str, float] = field(default_factory=dict)

    @property
    def command_seconds(self) -> float:
        return sum(self.commands.values())


class Workspace:
    """A temp git + DVC repo, run with the venv's python and dvc and a clean environment."""

    def __init__(self, repo: Path) -> None:
        self.repo, self.log = repo, repo.with_name(f"{repo.name}-commands.log")
        shim_dir = repo.with_name(f"{repo.name}-bin")  # outside the repo: not DVC's business
        shim_dir.mkdir()
        shim = shim_dir / "python"
        shim.write_text(SHIM.format(python=BIN / "python", log=self.log))
        shim.chmod(0o755)
        # No PYTHONPATH: the stages import the repo's copy. No MODEL_STORE: the deploy stage's
        # registry must be the temp repo's own, never a real one.
        drop = {"PYTHONPATH", "MODEL_STORE"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env |= {
            "PATH": os.pathsep.join([str(shim_dir), str(BIN), os.environ.get("PATH", "")]),
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        }

    def sh(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], cwd=self.repo, env=self.env, capture_output=True, text=True
        )

    def init(self) -> None:
        for step in (("git", "init", "-q"), (BIN / "dvc", "init", "-q")):
            self.check(self.sh(*step))
        with open(self.repo / ".gitignore", "a") as handle:
            handle.write(f"/{DATA}\n")  # the data is a DVC dependency, not git's business
        self.check(self.sh("git", "add", "-A"))
        self.check(self.sh("git", "commit", "-qm", "benchmark repo"))
        self.check(self.sh(BIN / "registry", "set-policy", *OPEN_GATE))

    @staticmethod
    def check(proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode:
            raise RuntimeError(f"{proc.args} failed:\n{proc.stdout}{proc.stderr}")

    def repro(self) -> Repro:
        self.log.write_text("")
        started = time.perf_counter()
        proc = self.sh(BIN / "dvc", "repro")
        seconds = time.perf_counter() - started
        error = "" if proc.returncode == 0 else (proc.stdout + proc.stderr)[-3000:]
        return Repro(seconds, proc.returncode == 0, error, self._commands())

    def _commands(self) -> dict[str, float]:
        """Seconds per command from the shim's log, keyed by stage module or script args."""
        commands = {}
        for line in self.log.read_text().splitlines():
            start, end, *args = line.split()
            key = args[1].removeprefix("stages.") if args[0] == "-m" else " ".join(args[1:])
            commands[key] = float(end) - float(start)
        return commands

    def report(self, stage: str) -> dict[str, Any]:
        return json.loads((self.repo / "reports" / f"{stage}.json").read_text())


def device_names(n: int) -> list[str]:
    return [f"D-{i:03d}" for i in range(n)]


def generate(root: Path, devices: list[str]) -> None:
    synth.generate_fleet(root, GenerateParams(devices=tuple(devices), **TINY_FLEET), RATE)


def copy_fleet(src: Path, dst: Path, devices: list[str]) -> None:
    for device in devices:
        shutil.copytree(src / device, dst / device)


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s leaves put in, nested mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merged(base[key], value) if nested else value
    return out


def tiny_params(path: Path) -> None:
    """Shrink the copied params.yaml to TINY_PARAMS, checked as the stages will check it."""
    raw = merged(yaml.safe_load(path.read_text()), TINY_PARAMS)
    p = parse_params(raw, source=str(path))
    problem = model.check_input_shape(p.features.n_mels, p.features.frames, p.train.channels)
    if problem:
        raise ValueError(problem)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def ours_repo(base: Path, fleet: Path, devices: list[str]) -> Workspace:
    repo = base / "ours"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    for name in COPIED:
        src = PROJECT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=ignore)
        else:
            shutil.copy2(src, repo / name)
    tiny_params(repo / "params.yaml")
    copy_fleet(fleet, repo / DATA, devices)
    ws = Workspace(repo)
    ws.init()
    return ws


def foreach_repo(base: Path, fleet: Path, devices: list[str]) -> Workspace:
    repo = base / "foreach"
    repo.mkdir()
    (repo / "device_stub.py").write_text(DEVICE_STUB)
    stub = "python device_stub.py"
    stages = {
        "extract": {
            "foreach": devices,
            "do": {
                "cmd": f"{stub} {DATA}/${{item}} features/${{item}}",
                "deps": [f"{DATA}/${{item}}", "device_stub.py"],
                "outs": ["features/${item}"],
            },
        },
        "train": {
            "foreach": devices,
            "do": {
                "cmd": f"{stub} features/${{item}} models/${{item}}",
                "deps": ["features/${item}", "device_stub.py"],
                "outs": ["models/${item}"],
            },
        },
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    copy_fleet(fleet, repo / DATA, devices)
    ws = Workspace(repo)
    ws.init()
    return ws


def noop(ws: Workspace, runs: int) -> dict[str, Any]:
    results = [ws.repro() for _ in range(runs)]
    bad = next((r for r in results if not r.ok or r.commands), None)
    return {
        "runs": [round(r.seconds, 3) for r in results],
        "median": round(statistics.median(r.seconds for r in results), 3),
        "ok": bad is None,
        "error": "" if bad is None else bad.error or f"ran commands: {list(bad.commands)}",
    }


def summarize(r: Repro) -> dict[str, Any]:
    return {
        "seconds": round(r.seconds, 3),
        "ok": r.ok,
        "error": r.error,
        "command_seconds": round(r.command_seconds, 3),
        "dvc_seconds": round(r.seconds - r.command_seconds, 3),
        "commands": {k: round(v, 3) for k, v in r.commands.items()},
    }


def rebuilt(ws: Workspace, r: Repro, expected: str) -> dict[str, Any]:
    """Which devices each stage that ran built; ok when each built `expected` only."""
    result = summarize(r)
    stages = {}
    for stage in DEVICE_STAGES:
        if stage in r.commands:
            rep = ws.report(stage)
            stages[stage] = {"built": rep["built"], "unchanged": len(rep["unchanged"])}
            stages[stage]["failed"] = rep["failed"]
    result["stages"] = stages
    result["device_work"] = device_work(ws, r) if r.ok else {}
    result["only_that_device"] = r.ok and all(
        stages.get(s, {}).get("built") == [expected] for s in DEVICE_STAGES
    )
    return result


def device_work(ws: Workspace, r: Repro) -> dict[str, float]:
    """Seconds of per-device work each stage reports, summed over the devices it built."""
    work = {}
    for stage in (s for s in DEVICE_STAGES if s in r.commands):
        devices = ws.report(stage)["devices"].values()
        work[stage] = round(sum(d["seconds"] for d in devices if d["status"] == "built"), 3)
    return work


def change_clip(root: Path, device: str) -> Path:
    """Overwrite one recorded clip of `device` with other (deterministic) audio."""
    clip = sorted((root / device).glob("[0-9]*/*.wav"))[0]
    profile = synth.device_profile(device, seed=1, index=5)
    audio = synth.render_normal(profile, TINY_FLEET["clip_sec"], RATE, np.random.default_rng(1))
    sf.write(clip, audio, RATE, subtype="PCM_16")
    return clip


def bench_ours(base: Path, fleet: Path, devices: list[str], runs: int) -> dict[str, Any]:
    ws = ours_repo(base, fleet, devices)
    first = ws.repro()
    result: dict[str, Any] = {"devices": len(devices), "first": summarize(first)}
    if not first.ok:
        return result
    result["first"]["device_work"] = device_work(ws, first)
    result["noop"] = noop(ws, runs)

    new = f"D-{len(devices):03d}"
    generate(base / "extra", [new])
    shutil.move(base / "extra" / new, ws.repo / DATA / new)
    result["add"] = {"device": new, **rebuilt(ws, ws.repro(), new)}

    changed = devices[len(devices) // 2]
    clip = change_clip(ws.repo / DATA, changed)
    result["change"] = {
        "device": changed,
        "clip": clip.relative_to(ws.repo).as_posix(),
        **rebuilt(ws, ws.repro(), changed),
    }
    result["noop_after"] = noop(ws, runs)
    return result


def bench_foreach(base: Path, fleet: Path, devices: list[str], runs: int) -> dict[str, Any]:
    ws = foreach_repo(base, fleet, devices)
    first = ws.repro()
    result: dict[str, Any] = {"devices": len(devices), "first": summarize(first)}
    if first.ok:
        result["first"]["commands_run"] = len(result["first"].pop("commands"))  # one per stage
        result["noop"] = noop(ws, runs)
    return result


def print_summary(res: dict[str, Any]) -> None:
    ours, ref = res["ours"], res.get("reference")
    print(f"\nDVC at fleet scale: {ours['devices']} devices, {os.cpu_count()} cores")
    if ours["first"]["ok"]:
        print_ours(ours)
    else:
        print(f"first dvc repro FAILED after {ours['first']['seconds']:.1f} s:")
        print(ours["first"]["error"])
    if ref:
        print_reference(ours, ref)
    if ours["first"]["ok"]:
        first = ours["first"]
        print("\ntargets")
        print(f"  no-op dvc repro < 3 s: {ours['noop']['median'] < 3.0}")
        print(f"  adding one device rebuilds only it: {ours['add']['only_that_device']}")
        print(f"  changing one device rebuilds only it: {ours['change']['only_that_device']}")
        print(f"  DVC's share of the first full run: {first['dvc_seconds'] / first['seconds']:.0%}")
    print(f"load average (1 min) before / after: {res['load_before']} / {res['load_after']}")


def print_ours(ours: dict[str, Any]) -> None:
    first = ours["first"]
    work = first["device_work"]
    share = first["dvc_seconds"] / first["seconds"]
    print(f"first dvc repro              {first['seconds']:8.1f} s")
    print(f"  stage commands (wall)      {first['command_seconds']:8.1f} s  {first['commands']}")
    print(f"  per-device work, summed    {sum(work.values()):8.1f} s  {work}")
    print(f"  DVC itself (wall - cmds)   {first['dvc_seconds']:8.1f} s  ({share:.0%} of the run)")
    runs = ours["noop"]["runs"]
    print(f"no-op dvc repro, median of {len(runs)} {ours['noop']['median']:8.2f} s  {runs}")
    for key, what in (("add", "add one device"), ("change", "change one clip of")):
        step = ours[key]
        print(
            f"{what} {step['device']:8} {step['seconds']:7.1f} s  "
            f"(DVC {step['dvc_seconds']:.1f} s, stage commands {step['command_seconds']:.1f} s, "
            f"its device work {sum(step['device_work'].values()):.1f} s)"
        )
        print(f"    only that device rebuilt: {step['only_that_device']}")
        for stage, s in step["stages"].items():
            print(f"    {stage:9} built {s['built']}, unchanged {s['unchanged']}")
        if step["error"]:
            print(step["error"])
    print(f"no-op dvc repro afterwards   {ours['noop_after']['median']:8.2f} s")


def print_reference(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    first = ref["first"]
    print(f"\nreference: foreach over {ref['devices']} devices (2 stages per device)")
    if not first["ok"]:
        print(f"first dvc repro FAILED after {first['seconds']:.1f} s:\n{first['error']}")
        return
    if not ours["first"]["ok"]:
        print(f"first dvc repro {first['seconds']:.1f} s (DVC itself {first['dvc_seconds']:.1f} s)")
        print(f"no-op dvc repro, median of 3: {ref['noop']['median']:.2f} s")
        return
    rows = (
        ("first dvc repro, s", ours["first"]["seconds"], first["seconds"]),
        ("  of which DVC itself, s", ours["first"]["dvc_seconds"], first["dvc_seconds"]),
        ("no-op dvc repro, median, s", ours["noop"]["median"], ref["noop"]["median"]),
    )
    print(f"{'':28} {'ours':>8} {'foreach':>8} {'foreach/ours':>13}")
    for name, a, b in rows:
        print(f"{name:28} {a:8.2f} {b:8.2f} {b / a:12.1f}x")
    per_stage = first["dvc_seconds"] / first["commands_run"]
    print(f"foreach: {first['commands_run']} stage runs, DVC {per_stage:.2f} s per stage run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument(
        "--reference-devices", type=int, help="devices in the foreach reference (default: same)"
    )
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--noop-runs", type=int, default=3, help="no-op reproductions timed")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    # The machine may be shared: the load says how far to trust the figures.
    load_before = round(os.getloadavg()[0], 2)
    try:
        devices = device_names(args.devices)
        generate(base / "fleet", devices)
        result = {"ours": bench_ours(base, base / "fleet", devices, args.noop_runs)}
        if not args.skip_reference:
            ref_devices = devices[: args.reference_devices]  # None: all of them
            result["reference"] = bench_foreach(base, base / "fleet", ref_devices, args.noop_runs)
        result |= {"load_before": load_before, "load_after": round(os.getloadavg()[0], 2)}
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
