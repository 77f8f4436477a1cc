"""pipelines.fleet: fingerprints, skipping unchanged devices, failures, partial work, workers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipelines.errors import DeviceError, DeviceSkipped
from pipelines.fleet import (
    PARTIAL,
    STAMP,
    Job,
    Outcome,
    complete_devices,
    fingerprint,
    read_stamp,
    replace_dir,
    run_stage,
    stage_report,
    write_json,
)

DEVICES = ("A-1", "B-2", "C-3")


def build_device(job: Job, work: Path) -> dict[str, Any]:
    """A tiny stage (module level, so spawned workers can unpickle it).

    Counts its calls in `{calls}/{device}`, notes whether an earlier attempt left work behind,
    writes one output file and fails on request after leaving partial work.
    """
    inputs = job.inputs
    calls = Path(inputs["calls"]) / job.device
    with calls.open("a") as handle:
        handle.write("x")
    leftover = (work / "progress.txt").exists()
    (work / "progress.txt").write_text("started")
    if inputs.get("fail") == "device":
        raise DeviceError(job.device, "no usable clips")
    if inputs.get("fail") == "bug":
        raise RuntimeError(f"boom in {job.device}")
    (work / "out.txt").write_text(f"{job.device}:{inputs['value']}")
    return {"value": inputs["value"], "leftover": leftover}


def _jobs(
    calls: Path,
    devices: tuple[str, ...] = DEVICES,
    version: dict[str, int] | None = None,
    fail: dict[str, str] | None = None,
) -> list[Job]:
    version, fail = version or {}, fail or {}
    return [
        Job(
            device,
            fingerprint(device, version.get(device, 0)),
            {"calls": str(calls), "value": version.get(device, 0), "fail": fail.get(device)},
        )
        for device in devices
    ]


def _calls(calls: Path) -> dict[str, int]:
    return {p.name: len(p.read_text()) for p in sorted(calls.iterdir())}


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    folder = tmp_path / "calls"
    folder.mkdir()
    return folder


def test_fingerprint_is_stable_and_ignores_key_order() -> None:
    a = fingerprint({"lr": 0.1, "epochs": 3}, "sha-of-file", [1, 2])
    assert a == fingerprint({"epochs": 3, "lr": 0.1}, "sha-of-file", [1, 2])
    assert a == fingerprint({"epochs": 3, "lr": 0.1}, "sha-of-file", (1, 2))
    assert len(a) == 64
    assert int(a, 16) >= 0
    nested = fingerprint({"x": {"b": 1, "a": 2}})
    assert nested == fingerprint({"x": {"a": 2, "b": 1}})


@pytest.mark.parametrize(
    "other",
    [
        ({"lr": 0.2, "epochs": 3}, "sha-of-file", [1, 2]),
        ({"lr": 0.1, "epochs": 3}, "sha-of-other", [1, 2]),
        ({"lr": 0.1, "epochs": 3}, "sha-of-file", [2, 1]),
        ({"lr": 0.1, "epochs": 3}, "sha-of-file"),
        ({"lr": 0.1, "epochs": "3"}, "sha-of-file", [1, 2]),
    ],
)
def test_fingerprint_differs_for_other_inputs(other: tuple[Any, ...]) -> None:
    assert fingerprint({"lr": 0.1, "epochs": 3}, "sha-of-file", [1, 2]) != fingerprint(*other)


def test_first_run_builds_every_device(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    jobs = _jobs(calls)
    outcomes = run_stage(out, jobs, build_device, workers=1, desc="test")
    assert list(outcomes) == list(DEVICES)
    for job in jobs:
        o = outcomes[job.device]
        assert (o.device, o.status, o.error) == (job.device, "built", "")
        assert o.summary == {"value": 0, "leftover": False}
        assert o.seconds >= 0
        folder = out / job.device
        assert (folder / "out.txt").read_text() == f"{job.device}:0"
        assert read_stamp(folder) == job.fingerprint
        assert json.loads((folder / "summary.json").read_text()) == o.summary
        assert not (out / PARTIAL / job.device).exists()
    assert _calls(calls) == dict.fromkeys(DEVICES, 1)
    assert complete_devices(out) == {job.device: job.fingerprint for job in jobs}


def test_unchanged_devices_are_not_built_again(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    run_stage(out, _jobs(calls), build_device, workers=1, desc="test")
    again = run_stage(out, _jobs(calls), build_device, workers=1, desc="test")
    assert {d: o.status for d, o in again.items()} == dict.fromkeys(DEVICES, "unchanged")
    # The summary of the earlier build is read back for the report.
    assert again["B-2"].summary == {"value": 0, "leftover": False}
    assert _calls(calls) == dict.fromkeys(DEVICES, 1)


def test_a_changed_fingerprint_rebuilds_only_that_device(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    run_stage(out, _jobs(calls), build_device, workers=1, desc="test")
    changed = run_stage(out, _jobs(calls, version={"B-2": 1}), build_device, 1, "test")
    assert {d: o.status for d, o in changed.items()} == {
        "A-1": "unchanged",
        "B-2": "built",
        "C-3": "unchanged",
    }
    assert _calls(calls) == {"A-1": 1, "B-2": 2, "C-3": 1}
    assert (out / "B-2" / "out.txt").read_text() == "B-2:1"
    assert not (out / ".B-2.old").exists()


def test_a_device_no_longer_in_jobs_is_removed(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    run_stage(out, _jobs(calls), build_device, workers=1, desc="test")
    run_stage(out, _jobs(calls, fail={"C-3": "device"}, version={"C-3": 1}), build_device, 1, "t")
    assert (out / PARTIAL / "C-3").is_dir()
    outcomes = run_stage(out, _jobs(calls, devices=("A-1", "B-2")), build_device, 1, "test")
    assert list(outcomes) == ["A-1", "B-2"]
    assert sorted(p.name for p in out.iterdir()) == [PARTIAL, "A-1", "B-2"]
    assert not (out / PARTIAL / "C-3").exists()


@pytest.mark.parametrize(
    ("fail", "error"),
    [("device", "device B-2: no usable clips"), ("bug", "RuntimeError: boom in B-2")],
)
def test_a_failing_device_fails_alone(tmp_path: Path, calls: Path, fail: str, error: str) -> None:
    out = tmp_path / "out"
    outcomes = run_stage(out, _jobs(calls, fail={"B-2": fail}), build_device, 1, "test")
    assert {d: o.status for d, o in outcomes.items()} == {
        "A-1": "built",
        "B-2": "failed",
        "C-3": "built",
    }
    assert outcomes["B-2"].error == error
    assert outcomes["B-2"].summary == {}
    assert not (out / "B-2").exists()
    assert (out / "A-1" / "out.txt").is_file()
    assert (out / "C-3" / "out.txt").is_file()
    # The work folder is kept for the next attempt.
    assert (out / PARTIAL / "B-2" / "progress.txt").is_file()
    assert "B-2" not in complete_devices(out)


def test_partial_work_is_reused_for_the_same_fingerprint(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    run_stage(out, _jobs(calls, fail={"A-1": "bug"}), build_device, 1, "test")
    retry = run_stage(out, _jobs(calls), build_device, 1, "test")
    assert retry["A-1"].status == "built"
    assert retry["A-1"].summary["leftover"] is True
    assert {retry[d].status for d in ("B-2", "C-3")} == {"unchanged"}
    assert not (out / PARTIAL / "A-1").exists()


def test_partial_work_is_cleared_for_another_fingerprint(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    run_stage(out, _jobs(calls, fail={"A-1": "bug"}), build_device, 1, "test")
    assert read_stamp(out / PARTIAL / "A-1") == fingerprint("A-1", 0)
    retry = run_stage(out, _jobs(calls, version={"A-1": 1}), build_device, 1, "test")
    assert retry["A-1"].status == "built"
    assert retry["A-1"].summary == {"value": 1, "leftover": False}
    assert read_stamp(out / "A-1") == fingerprint("A-1", 1)


def test_a_failed_rebuild_after_a_failure_keeps_failing_alone(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        outcomes = run_stage(out, _jobs(calls, fail={"C-3": "device"}), build_device, 1, "test")
        assert outcomes["C-3"].status == "failed"
    assert _calls(calls) == {"A-1": 1, "B-2": 1, "C-3": 2}


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_two_workers_give_the_same_results_as_one(tmp_path: Path) -> None:
    results = {}
    for workers in (1, 2):
        calls = tmp_path / f"calls{workers}"
        calls.mkdir()
        out = tmp_path / f"out{workers}"
        jobs = _jobs(calls, devices=(*DEVICES, "D-4"), fail={"C-3": "device"})
        outcomes = run_stage(out, jobs, build_device, workers=workers, desc="test")
        assert list(outcomes) == [*DEVICES, "D-4"]
        results[workers] = (
            {d: (o.status, o.error, o.summary) for d, o in outcomes.items()},
            _tree(out),
            _calls(calls),
        )
    assert results[1] == results[2]
    assert results[1][0]["C-3"][0] == "failed"


def report_cores(job: Job, work: Path) -> dict[str, Any]:
    return {"cores": job.cores}


@pytest.mark.parametrize("workers", [1, 2])
def test_job_cores_share_the_machine_among_workers(tmp_path: Path, workers: int) -> None:
    jobs = [Job(device, "f", None) for device in DEVICES]
    outcomes = run_stage(tmp_path / "out", jobs, report_cores, workers=workers, desc="test")
    expected = max(1, (os.cpu_count() or 1) // workers)
    assert {o.summary["cores"] for o in outcomes.values()} == {expected}


def test_stage_report_shape() -> None:
    outcomes = {
        "A-1": Outcome("A-1", "built", 1.23456, summary={"windows": 10}),
        "B-2": Outcome("B-2", "unchanged", summary={"windows": 7}),
        "C-3": Outcome("C-3", "failed", 0.5, error="device C-3: no usable clips"),
        "D-4": Outcome("D-4", "built", 2.0, attempts=2),
        "E-5": Outcome("E-5", "skipped", 0.1, error="no clips recorded on 20261102"),
        "F-6": Outcome("F-6", "failed", 0.2, error="KeyError: 'x'", trace="Traceback ..."),
    }
    assert stage_report(outcomes) == {
        "devices": {
            "A-1": {"status": "built", "seconds": 1.235, "windows": 10},
            "B-2": {"status": "unchanged", "seconds": 0.0, "windows": 7},
            "C-3": {"status": "failed", "seconds": 0.5, "error": "device C-3: no usable clips"},
            "D-4": {"status": "built", "seconds": 2.0, "attempts": 2},
            "E-5": {"status": "skipped", "seconds": 0.1, "error": "no clips recorded on 20261102"},
            "F-6": {
                "status": "failed",
                "seconds": 0.2,
                "error": "KeyError: 'x'",
                "traceback": "Traceback ...",
            },
        },
        "built": ["A-1", "D-4"],
        "unchanged": ["B-2"],
        "skipped": ["E-5"],
        "failed": ["C-3", "F-6"],
        "retried": ["D-4"],
    }


def skip_c3(job: Job, work: Path) -> dict[str, Any]:
    if job.device == "C-3":
        raise DeviceSkipped(job.device, "no clips recorded on 20261102")
    return {"ok": True}


def test_a_skipped_device_is_neither_built_nor_failed_and_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "C-3").mkdir(parents=True)  # what an earlier run built from other inputs
    jobs = [Job(device, "f", None) for device in DEVICES]
    outcomes = run_stage(out, jobs, skip_c3, workers=1, desc="test")
    assert outcomes["C-3"].status == "skipped" and outcomes["C-3"].error.startswith("no clips")
    assert not (out / "C-3").exists()
    assert {d for d, o in outcomes.items() if o.status == "built"} == set(DEVICES) - {"C-3"}
    json.dumps(stage_report(outcomes))  # JSON-ready


def test_replace_dir_replaces_an_existing_folder(tmp_path: Path) -> None:
    src, dst = tmp_path / "new", tmp_path / "dst"
    src.mkdir()
    (src / "a.txt").write_text("new")
    dst.mkdir()
    (dst / "a.txt").write_text("old")
    (dst / "stale.txt").write_text("gone")
    (tmp_path / ".dst.old").mkdir()  # left by an earlier crash
    replace_dir(src, dst)
    assert _tree(dst) == {"a.txt": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst"]


def test_replace_dir_into_a_new_place(tmp_path: Path) -> None:
    src, dst = tmp_path / "new", tmp_path / "dst"
    src.mkdir()
    (src / STAMP).write_text("abc\n")
    replace_dir(src, dst)
    assert read_stamp(dst) == "abc"
    assert not src.exists()


def test_write_json_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    write_json(path, {"b": [1, 2], "a": None})
    assert json.loads(path.read_text()) == {"a": None, "b": [1, 2]}
    assert path.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_read_stamp_of_a_missing_folder(tmp_path: Path) -> None:
    assert read_stamp(tmp_path / "nope") is None


def test_a_device_that_fails_to_rebuild_loses_its_stale_output(tmp_path: Path, calls: Path) -> None:
    out = tmp_path / "out"
    run_stage(out, _jobs(calls), build_device, 1, "test")
    outcomes = run_stage(
        out, _jobs(calls, version={"A-1": 1}, fail={"A-1": "device"}), build_device, 1, "test"
    )
    assert outcomes["A-1"].status == "failed"
    assert not (out / "A-1").exists()  # built from inputs that are gone
    assert "A-1" not in complete_devices(out)
