"""Run one stage over a fleet: per-device fingerprints, skip what is unchanged, parallel map.

DVC sees each stage as one unit over the whole fleet (a `foreach` over hundreds of devices
costs DVC itself seconds per no-op run). Inside the stage, each device's output folder
`{out}/{device}/` carries the fingerprint of the inputs it was built from; a device whose
fingerprint is unchanged is skipped, so adding or changing one device rebuilds only that one.

A device is built in `{out}/.partial/{device}/`, which survives a crash or a kill (a training
run resumes from the checkpoints it left there), and is swapped into place only when complete.
The devices are built by a pool of local processes (`fleet.workers`), or by the workers of a
Dask cluster (`fleet.executor: dask`, pipelines/cluster.py); either way the stage's own process
plans, prunes and reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from pipelines.errors import DeviceSkipped, PipelineError

if TYPE_CHECKING:
    from pipelines.cluster import Cluster

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # a stage's and its workers' lines

STAMP = ".fingerprint"
PARTIAL = ".partial"
ATTEMPT = ".attempt"  # in a partial folder: how many times its build was started


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-ready parts (params, file digests, upstream fingerprints)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def code_digest(*modules: Any) -> str:
    """Digest of the source files of `modules`: a code change rebuilds what it affects."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def read_stamp(folder: Path) -> str | None:
    try:
        return (folder / STAMP).read_text().strip()
    except OSError:
        return None


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temp file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place; the old one is moved aside first, then removed."""
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)


@dataclass(frozen=True)
class Job:
    """One device's work in a stage: what to build it from, and the digest of that."""

    device: str
    fingerprint: str
    inputs: Any = None
    cores: int = 1  # threads it may use: its share of the machine it runs on (the executor's)


@dataclass
class Outcome:
    device: str
    status: str  # "built", "unchanged", "skipped" or "failed"
    seconds: float = 0.0
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1  # more: a build before this one was killed (or its worker died)
    trace: str = ""  # a failure that is a bug: its traceback, where it ran (in the report)


BuildFn = Callable[[Job, Path], dict[str, Any]]
# What the stage's own process does with a device its worker built, before it is swapped into
# place: (job, its built folder, its build's summary) -> the summary to keep.
CommitFn = Callable[[Job, Path, dict[str, Any]], dict[str, Any]]


def run_stage(
    out: Path,
    jobs: Iterable[Job],
    build: BuildFn,
    workers: int,
    desc: str,
    cluster: Cluster | None = None,
    commit: CommitFn | None = None,
) -> dict[str, Outcome]:
    """Build every job whose fingerprint changed, in parallel; one failure stops no other.

    `build(job, work_dir)` writes the device's files into `work_dir` and returns a small
    JSON-ready summary. Devices no longer in `jobs` are removed from `out`, and so is the
    old output of a device that failed: `out` only holds what matches the current inputs.
    On `workers` local processes, or on `cluster`'s workers when there is one. With
    `commit`, each device built is committed by this process (the one writer of the model
    store) before it is swapped into place; one it cannot commit fails.
    """
    out.mkdir(parents=True, exist_ok=True)
    jobs = list(jobs)
    _prune(out, {job.device for job in jobs})
    outcomes = {
        job.device: Outcome(job.device, "unchanged", summary=_read_summary(out / job.device))
        for job in jobs
        if read_stamp(out / job.device) == job.fingerprint
    }
    todo = [job for job in jobs if job.device not in outcomes]
    for job, built in _map(todo, build, out, workers, desc, cluster, commit is None):
        result = _committed(job, built, commit, out) if commit else built
        outcomes[job.device] = result
        if result.status in ("failed", "skipped"):  # what is there came from other inputs
            shutil.rmtree(out / job.device, ignore_errors=True)
    return {job.device: outcomes[job.device] for job in jobs}


def _committed(job: Job, built: Outcome, commit: CommitFn, out: Path) -> Outcome:
    if built.status != "built":
        return built
    work = out / PARTIAL / job.device
    try:
        summary = commit(job, work, built.summary)
    except Exception as exc:  # as in build_one: one device's trouble stops no other
        return dataclasses.replace(failure(job, built.seconds, exc), attempts=built.attempts)
    write_json(work / "summary.json", summary)
    replace_dir(work, out / job.device)
    return dataclasses.replace(built, summary=summary)


def _map(
    todo: list[Job],
    build: BuildFn,
    out: Path,
    workers: int,
    desc: str,
    cluster: Cluster | None,
    swap: bool,
) -> Iterable[tuple[Job, Outcome]]:
    bar = tqdm(total=len(todo), desc=desc, unit="device", disable=not todo)
    if cluster is not None:
        from pipelines import cluster as dask  # only a run on a cluster imports distributed

        yield from dask.build_all(cluster, todo, build, out, swap, bar)
        bar.close()
        return
    workers = min(resolve_workers(workers), len(todo))
    todo = [dataclasses.replace(job, cores=share_of_cores(workers)) for job in todo]
    if workers <= 1:
        for job in todo:
            bar.set_postfix_str(job.device)
            yield job, build_one(job, build, out, swap)
            bar.update()
    else:
        # spawn, not fork: a forked child inherits the parent's thread pools (torch, BLAS).
        with ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=worker_logging
        ) as pool:
            futures = {pool.submit(build_one, job, build, out, swap): job for job in todo}
            for future in as_completed(futures):
                bar.set_postfix_str(futures[future].device)
                yield futures[future], future.result()
                bar.update()
    bar.close()


def resolve_workers(workers: int) -> int:
    return workers or os.cpu_count() or 1


def share_of_cores(workers: int) -> int:
    """Threads one job may use: this machine's cores, shared among its `workers`."""
    return max(1, (os.cpu_count() or 1) // workers)


def worker_logging() -> None:
    """A worker's log lines (a device's training progress) on stderr, as the stage's own."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def build_one(job: Job, build: BuildFn, out: Path, swap: bool = True) -> Outcome:
    """`job` built in its partial folder, swapped into place when whole (unless not `swap`:
    the stage's process commits it first)."""
    started = time.perf_counter()
    work = out / PARTIAL / job.device
    if read_stamp(work) != job.fingerprint:  # leftovers of other inputs are no use
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / STAMP).write_text(job.fingerprint + "\n")
    attempts = _started(work)
    try:
        summary = build(job, work)
    except DeviceSkipped as exc:
        return Outcome(job.device, "skipped", time.perf_counter() - started, exc.reason)
    except Exception as exc:  # one device's bug must not stop the fleet
        return failure(job, time.perf_counter() - started, exc)
    (work / ATTEMPT).unlink()
    if swap:  # else the stage's process commits it, and writes its summary then
        write_json(work / "summary.json", summary)
        replace_dir(work, out / job.device)
    seconds = time.perf_counter() - started
    return Outcome(job.device, "built", seconds, summary=summary, attempts=attempts)


def failure(job: Job, seconds: float, exc: Exception) -> Outcome:
    """A device failed by `exc`: the pipeline's own errors say it in their line; any other
    is a bug, its traceback kept for the report."""
    if isinstance(exc, PipelineError):
        return Outcome(job.device, "failed", seconds, str(exc))
    detail = "".join(traceback.format_exception_only(exc)).strip()
    return Outcome(
        job.device, "failed", seconds, detail, trace="".join(traceback.format_exception(exc))
    )


def _started(work: Path) -> int:
    """Count one more start of the build in `work`: a count left there is a build that was
    killed before it finished (a resumed training, a task rerun on another worker)."""
    marker = work / ATTEMPT
    try:
        attempts = int(marker.read_text()) + 1
    except (OSError, ValueError):
        attempts = 1
    marker.write_text(f"{attempts}\n")
    return attempts


def complete_devices(out: Path) -> dict[str, str]:
    """Device -> fingerprint of every device a stage has finished building in `out`."""
    found = {}
    for folder in sorted(out.iterdir()) if out.is_dir() else []:
        stamp = read_stamp(folder)
        if folder.is_dir() and not folder.name.startswith(".") and stamp:
            found[folder.name] = stamp
    return found


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _read_summary(folder: Path) -> dict[str, Any]:
    try:
        return read_json(folder / "summary.json")
    except (OSError, ValueError):
        return {}


def _prune(out: Path, keep: set[str]) -> None:
    """Remove this stage's outputs for devices that are gone (derived data only)."""
    for folder in out.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in keep:
            shutil.rmtree(folder)
    partial = out / PARTIAL
    if partial.is_dir():
        for folder in partial.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder)


def stage_report(outcomes: Mapping[str, Outcome]) -> dict[str, Any]:
    """What a stage did, per device, as written to reports/{stage}.json."""
    return {
        "devices": {
            device: {
                "status": o.status,
                "seconds": round(o.seconds, 3),
                **({"error": o.error} if o.error else {}),
                **({"traceback": o.trace} if o.trace else {}),
                **({"attempts": o.attempts} if o.attempts > 1 else {}),
                **o.summary,
            }
            for device, o in outcomes.items()
        },
        "built": sorted(d for d, o in outcomes.items() if o.status == "built"),
        "unchanged": sorted(d for d, o in outcomes.items() if o.status == "unchanged"),
        "skipped": sorted(d for d, o in outcomes.items() if o.status == "skipped"),
        "failed": sorted(d for d, o in outcomes.items() if o.status == "failed"),
        "retried": sorted(d for d, o in outcomes.items() if o.attempts > 1),
    }
