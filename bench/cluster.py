"""Benchmark: the train and evaluate stages' devices on a Dask cluster vs local processes.

Run by hand from the repository root (not in CI, not in tests):

    .venv/bin/python -m bench.cluster [--devices 200] [--workers 2] [--tasks 1000] [--json OUT]

A synthetic fleet of `--devices` devices (the demo's generator, short clips) is extracted
once, untimed. Then the same train and evaluate work (`fleet.run_stage`, the default detector)
is timed twice at equal cores: reference, `fleet.executor: local` with `--workers` processes;
ours, `fleet.executor: dask` on a scheduler and `--workers` single-threaded workers started
with their own CLIs (`dask scheduler`, `dask worker`) on this machine. Each run starts from
empty outputs and must build every device; the two runs' outputs must be equal byte for byte.
The ratio is ours over the reference. Also timed: the scheduler's cost per task, as
`--tasks` empty tasks submitted and gathered.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import cluster, fleet
from pipelines.acoustic import evaluation, extraction, training
from pipelines.acoustic.synth import generate_fleet
from pipelines.params import FleetParams, Params, parse_params

DASK = Path(sys.executable).parent / "dask"
SMALL = {  # enough audio per device for a validation split and both kinds of test clip
    "days": 1,
    "clips_per_day": 3,
    "clip_sec": 10.0,
    "verified_clips": 0,
    "test_normal": 3,
    "test_anomaly": 3,
    "test_clip_sec": 10.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    devices = [f"D-{i:03d}" for i in range(args.devices)]
    p = parse_params({"generate": SMALL | {"devices": devices}, "fleet": {"workers": args.workers}})
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        generate_fleet(root / "data", p.generate, p.data.sample_rate)
        fleet.run_stage(
            root / "features", extraction.plan(root / "data", p), extraction.build, 1, "extract"
        )
        took = time.perf_counter() - started
        print(f"fleet of {len(devices)} devices generated and extracted in {took:.1f} s")
        local = _timed(root / "local", root / "features", p, None)
        with _cluster(root / "dask-cluster", args.workers) as address:
            on = cluster.of(FleetParams(executor="dask", scheduler=address), [root / "features"])
            remote = _timed(root / "dask", root / "features", p, on)
            per_task = _task_cost(address, args.tasks)
        equal = all(
            _tree(root / "local" / s) == _tree(root / "dask" / s) for s in ("models", "eval")
        )
    result = {
        "devices": len(devices),
        "workers": args.workers,
        "local_s": local,
        "dask_s": remote,
        "ratio_dask_over_local": {s: remote[s] / local[s] for s in local},
        "dask_ms_per_empty_task": per_task * 1000,
        "outputs_equal": equal,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _timed(out: Path, features: Path, p: Params, on: cluster.Cluster | None) -> dict[str, float]:
    """Seconds of train, evaluate and both, every device built."""
    stages: list[tuple[str, Callable[[], list[fleet.Job]], fleet.BuildFn]] = [
        ("train", lambda: training.plan(features, p), training.build),
        ("evaluate", lambda: evaluation.plan(features, out / "models", p), evaluation.build),
    ]
    seconds = {}
    for name, jobs, build in stages:
        folder = out / ("models" if name == "train" else "eval")
        started = time.perf_counter()
        done = fleet.run_stage(folder, jobs(), build, p.fleet.workers, name, on)
        seconds[name] = time.perf_counter() - started
        assert {o.status for o in done.values()} == {"built"}, f"{name}: not every device built"
    return seconds | {"both": sum(seconds.values())}


class _cluster:
    """A scheduler and `workers` single-threaded workers, each its own process (their CLIs)."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder, self.workers, self.started = folder, workers, []

    def __enter__(self) -> str:
        self.folder.mkdir(parents=True)
        file = self.folder / "scheduler.json"
        self._start(
            "scheduler", "--scheduler-file", str(file), "--host", "127.0.0.1", "--port", "0"
        )
        while not file.is_file():
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for i in range(self.workers):
            self._start("worker", address, "--nthreads", "1", "--name", f"w{i}")
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(self.workers)
        return address

    def _start(self, *args: str) -> None:
        log = (self.folder / f"{args[0]}-{len(self.started)}.log").open("wb")
        self.started.append(
            subprocess.Popen(
                [str(DASK), *args, "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT
            )
        )

    def __exit__(self, *exc: Any) -> None:
        for process in reversed(self.started):
            process.terminate()
            process.wait()


def _task_cost(address: str, tasks: int) -> float:
    """Seconds per empty task, submitted and gathered (the median of 3 rounds)."""
    from distributed import Client

    with Client(address) as client:
        rounds = []
        for _ in range(3):
            started = time.perf_counter()
            client.gather(client.map(_nothing, range(tasks), pure=False))
            rounds.append((time.perf_counter() - started) / tasks)
    return statistics.median(rounds)


def _nothing(i: int) -> int:
    return i


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(folder)): f.read_bytes()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and fleet.PARTIAL not in f.parts
    }


if __name__ == "__main__":
    main()
