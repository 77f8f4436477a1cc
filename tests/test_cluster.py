"""pipelines.cluster on a real Dask cluster: a scheduler and two workers started with their own
CLIs (`dask scheduler`, `dask worker`) on localhost, as the README's "On a cluster" says."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines import cluster, fleet
from pipelines.acoustic import evaluation, extraction, training
from pipelines.acoustic.synth import generate_fleet
from pipelines.errors import ClusterError
from pipelines.params import FleetParams, parse_params
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT, TINY
from tests.test_finetuning import Days, build_days

DASK = Path(sys.executable).parent / "dask"  # the venv's: its workers import this project
PARAMS = parse_params(TINY | {"generate": {**TINY["generate"], "devices": ["A-1", "B-2", "C-3"]}})


def wait_for(found: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not found():
        assert time.monotonic() < deadline, f"no {what} after {HANG_S} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a scheduler with two single-threaded workers, each its own process."""
    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    # port 0: a free one (8786 may be another test worker's scheduler)
    scheduler = _start(
        folder, "scheduler", "--scheduler-file", str(file), "--host", "127.0.0.1", "--port", "0"
    )
    started = [scheduler]
    wait_for(lambda: file.is_file() or scheduler.poll() is not None, "scheduler file")
    assert scheduler.poll() is None, (folder / "scheduler-0.log").read_text()
    address = json.loads(file.read_text())["address"]
    for name in ("w1", "w2"):
        started.append(_start(folder, "worker", address, "--nthreads", "1", "--name", name))
    from distributed import Client

    with Client(address, timeout=HANG_S) as client:
        client.wait_for_workers(2, timeout=HANG_S)
    yield address
    for process in reversed(started):
        process.terminate()
        process.wait(timeout=HANG_S)


def _start(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    log = (folder / f"{args[0]}-{len(list(folder.iterdir()))}.log").open("wb")
    return subprocess.Popen(
        [str(DASK), *args, "--no-dashboard"],
        cwd=folder,
        env=os.environ | {"PYTHONPATH": str(PROJECT)},  # this module's builds, by reference
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and fleet.PARTIAL not in p.parts
    }


def three_stages(root: Path, data: Path, on: cluster.Cluster | None) -> dict[str, fleet.Outcome]:
    """extract, train and evaluate of a tiny fleet into `root`, on `on` or locally."""
    features, models, evaluated = root / "features", root / "models", root / "eval"
    outcomes = {}
    for out, jobs, build in (
        (features, lambda: extraction.plan(data, PARAMS), extraction.build),
        (models, lambda: training.plan(features, PARAMS), training.build),
        (evaluated, lambda: evaluation.plan(features, models, PARAMS), evaluation.build),
    ):
        done = fleet.run_stage(out, jobs(), build, 1, out.name, on)
        assert {o.status for o in done.values()} == {"built"}, done
        outcomes |= {f"{out.name}/{d}": o for d, o in done.items()}
    return outcomes


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fleet") / "data"
    generate_fleet(folder, PARAMS.generate, PARAMS.data.sample_rate)
    return folder


def test_a_cluster_builds_what_local_processes_build_byte_for_byte(
    scheduler: str, data: Path, tmp_path: Path
) -> None:
    on = cluster.of(FleetParams(executor="dask", scheduler=scheduler), [data])
    three_stages(tmp_path / "local", data, None)
    outcomes = three_stages(tmp_path / "dask", data, on)
    assert all(o.attempts == 1 for o in outcomes.values())
    for stage in ("features", "models", "eval"):
        local, remote = tree(tmp_path / "local" / stage), tree(tmp_path / "dask" / stage)
        assert sorted(local) == sorted(remote) and len(local) > 6
        assert [k for k in local if local[k] != remote[k]] == []


def test_an_unreachable_scheduler_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ClusterError) as caught:
        cluster.of(FleetParams(executor="dask", scheduler="tcp://127.0.0.1:9"), [tmp_path])
    assert "no scheduler answers at tcp://127.0.0.1:9" in str(caught.value)
    assert "\n" not in str(caught.value) and list(tmp_path.iterdir()) == []


def test_the_environment_names_the_scheduler_over_params(scheduler: str, tmp_path: Path) -> None:
    given = FleetParams(executor="dask", scheduler="tcp://127.0.0.1:9")
    found = cluster.of(given, [tmp_path], {cluster.ADDRESS_VARIABLE: scheduler})
    assert found is not None and found.address == scheduler
    with pytest.raises(ClusterError, match="no scheduler is named"):
        cluster.of(FleetParams(executor="dask"), [tmp_path], {})
    assert cluster.of(FleetParams(), [tmp_path]) is None  # local: no cluster


def test_a_worker_that_cannot_see_the_data_stops_the_stage_before_it_starts(
    scheduler: str, tmp_path: Path
) -> None:
    gone = tmp_path / "not-mounted"
    with pytest.raises(ClusterError) as caught:
        cluster.of(FleetParams(executor="dask", scheduler=scheduler), [gone])
    assert f"cannot see {gone}: every machine must mount" in str(caught.value)


def held_build(job: fleet.Job, work: Path) -> dict[str, int]:
    """A build that says which process runs it, then waits for the test to let it finish."""
    (work / "pid").write_text(str(os.getpid()))
    wait_for((work.parents[2] / "release").is_file, "release")
    (work / "result").write_text(job.device)
    return {"pid": os.getpid()}


def test_a_worker_killed_mid_build_has_its_devices_built_again_elsewhere(
    scheduler: str, tmp_path: Path
) -> None:
    """kill -9 of the worker building B-2: its task runs again on the other worker, B-2 is
    reported retried, and no device's output is partial."""
    out = tmp_path / "stage" / "out"
    on = cluster.Cluster(scheduler, 1, (tmp_path,))
    jobs = [fleet.Job(d, "f") for d in ("A-1", "B-2")]
    done: dict[str, fleet.Outcome] = {}
    runner = threading.Thread(
        target=lambda: done.update(fleet.run_stage(out, jobs, held_build, 1, "test", on))
    )
    runner.start()
    started = out / fleet.PARTIAL / "B-2" / "pid"
    try:
        wait_for(lambda: started.is_file() or not runner.is_alive(), "B-2 started")
        os.kill(int(started.read_text()), signal.SIGKILL)
    finally:
        (tmp_path / "stage" / "release").write_text("")
        runner.join(HANG_S)
    assert (done["B-2"].status, done["B-2"].attempts) == ("built", 2)
    assert done["A-1"].attempts == 1
    assert fleet.stage_report(done)["retried"] == ["B-2"]
    for device in ("A-1", "B-2"):
        assert (out / device / "result").read_text() == device
    assert list((out / fleet.PARTIAL).iterdir()) == []


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Days:
    return build_days(tmp_path_factory.mktemp("finetuning"))


def test_a_fine_tuning_on_a_cluster_gets_its_parent_from_the_stage_not_the_store(
    scheduler: str, days: Days, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers never open the model store (it stays on the stage's machine): the stage's
    process reads each parent and ships it; the fine-tunings equal local ones byte for byte."""
    monkeypatch.setenv("MODEL_STORE", str(days.store))
    shipped: list[fleet.Job] = []

    def recorded(job: fleet.Job) -> fleet.Job:
        shipped.append(training.with_parent(job))
        return shipped[-1]

    on = cluster.of(FleetParams(executor="dask", scheduler=scheduler), [days.features])
    on = dataclasses.replace(on, prepare=recorded)
    jobs = training.plan(days.features, days.params)
    done = fleet.run_stage(tmp_path / "models", jobs, training.build, 1, "train", on)
    assert {d: o.status for d, o in done.items()} == {
        "A-1": "built",
        "B-2": "built",
        "C-3": "skipped",  # not pinned: no training of it on day 2
        "D-4": "skipped",
    }
    assert {j.device for j in shipped if j.inputs.parent} == {"A-1", "B-2"}
    assert all(j.inputs.store is None for j in shipped if j.inputs.parent)
    local, remote = tree(days.models), tree(tmp_path / "models")
    assert sorted(local) == sorted(remote)
    assert [k for k in local if local[k] != remote[k]] == []
