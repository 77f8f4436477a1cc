"""The stage entry points as a user runs them: bad input, reports, exit codes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipelines import families
from pipelines.acoustic.synth import generate_fleet
from pipelines.params import parse_params
from tests.patience import HANG_S
from tests.pipeline_repo import PROJECT, TINY, make_repo, merge, run, write_params


def stage(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{name}", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """A tiny fleet of two devices and params.yaml in tmp_path; returns tmp_path."""
    write_params(tmp_path, TINY)
    params = parse_params(TINY)
    generate_fleet(tmp_path / "data" / "demo", params.generate, params.data.sample_rate)
    return tmp_path


def add_bad_clips(folder: Path, rate: int = 16000) -> dict[str, str]:
    """One clip of each kind the extract stage must skip; returns file name -> reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    sf.write(folder / "silent.wav", np.zeros(3 * rate, np.float32), rate)
    sf.write(folder / "short.wav", np.full(rate // 2, 0.1, np.float32), rate)
    nan = np.full(3 * rate, 0.1, np.float32)
    nan[100] = np.nan
    sf.write(folder / "nan.wav", nan, rate, subtype="FLOAT")
    return {
        "empty.wav": "empty file",
        "corrupt.wav": "cannot decode",
        "silent.wav": "silent",
        "short.wav": "too short",
        "nan.wav": "NaN",
    }


def test_bad_clips_are_skipped_named_and_counted(fleet_dir: Path) -> None:
    expected = add_bad_clips(fleet_dir / "data" / "demo" / "A-1" / "20261101")
    result = stage(fleet_dir, "extract", "data/demo", "features")
    assert result.returncode == 0, result.stderr
    report = json.loads((fleet_dir / "reports" / "extract.json").read_text())
    skipped = {Path(s["file"]).name: s["reason"] for s in report["devices"]["A-1"]["skipped"]}
    assert set(skipped) == set(expected)
    for name, reason in expected.items():
        assert reason in skipped[name]
        assert name in result.stderr  # a warning naming the file
    assert report["devices"]["B-2"]["skipped"] == []
    assert report["built"] == ["A-1", "B-2"]


def test_device_without_usable_clip_fails_alone(fleet_dir: Path) -> None:
    bad = fleet_dir / "data" / "demo" / "Z-9"
    add_bad_clips(bad)
    result = stage(fleet_dir, "extract", "data/demo", "features")
    assert result.returncode == 0, result.stderr
    assert "device Z-9" in result.stderr and "no usable training clip" in result.stderr
    report = json.loads((fleet_dir / "reports" / "extract.json").read_text())
    assert report["failed"] == ["Z-9"] and report["built"] == ["A-1", "B-2"]
    assert not (fleet_dir / "features" / "Z-9").exists()


def test_stage_fails_when_every_device_fails(tmp_path: Path) -> None:
    write_params(tmp_path, TINY)
    add_bad_clips(tmp_path / "data" / "Q-1")
    result = stage(tmp_path, "extract", "data", "features")
    assert result.returncode == 1
    assert "Q-1" in result.stderr


@pytest.mark.parametrize("name", ["bad_name", "has space", "-dash"])
def test_invalid_device_folder_is_skipped_and_named(fleet_dir: Path, name: str) -> None:
    (fleet_dir / "data" / "demo" / name).mkdir()
    result = stage(fleet_dir, "extract", "data/demo", "features")
    assert result.returncode == 0, result.stderr
    reason = f"device folder {name!r} is not a valid device code"
    assert f"skipped data/demo/{name}: {reason}" in result.stderr
    report = json.loads((fleet_dir / "reports" / "extract.json").read_text())
    assert report["built"] == ["A-1", "B-2"]
    [skipped] = report["skipped_folders"]
    assert skipped["folder"] == name and skipped["reason"].startswith(reason)


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc/self/mem")
def test_unreadable_and_odd_files_are_skipped_and_reported(fleet_dir: Path) -> None:
    device = fleet_dir / "data" / "demo" / "A-1"
    (device / "eio.wav").symlink_to("/proc/self/mem")  # every read fails, even for root
    (device / "gone.wav").symlink_to("nowhere.wav")
    (device / "folder.wav").mkdir()
    os.mkfifo(device / "pipe.wav")  # opened, it would wait for a writer forever
    result = stage(fleet_dir, "extract", "data/demo", "features")
    assert result.returncode == 0, result.stderr
    report = json.loads((fleet_dir / "reports" / "extract.json").read_text())
    assert report["built"] == ["A-1", "B-2"]
    skipped = {s["file"]: s["reason"] for s in report["devices"]["A-1"]["skipped"]}
    assert skipped == {
        "A-1/eio.wav": "cannot read (Input/output error)",
        "A-1/gone.wav": "link to nowhere.wav cannot be followed (No such file or directory)",
        "A-1/folder.wav": "not a regular file",
        "A-1/pipe.wav": "not a regular file",
    }
    for file, reason in skipped.items():
        assert f"A-1: skipped {file}: {reason}" in result.stderr


@pytest.mark.e2e
def test_dvc_repro_runs_over_odd_input_that_dvcignore_names(tmp_path: Path) -> None:
    """DVC hashes every file under a dependency folder, following links, and refuses a link
    it cannot follow (or blocks on a named pipe) before any stage runs: what it must not
    read is named in `.dvcignore`; the extract stage still skips and reports it."""
    overrides = merge(TINY, {"data": {"root": "data/fleet"}})  # not the generate stage's
    repo = make_repo(tmp_path / "repo", overrides)
    params = parse_params(overrides)
    generate_fleet(repo / "data" / "fleet", params.generate, params.data.sample_rate)
    device = repo / "data" / "fleet" / "A-1"
    (device / "loop.wav").symlink_to("loop.wav")
    (device / "20261109").symlink_to(".")  # DVC does not walk into a linked folder
    (device.parent / "bad_name").mkdir()
    with (repo / ".dvcignore").open("a") as ignore:
        ignore.write("data/fleet/A-1/loop.wav\n")
    result = run(repo, "dvc", "repro", "-s", "extract")
    assert "skipped data/fleet/bad_name" in result.stderr
    report = json.loads((repo / "reports" / "extract.json").read_text())
    assert report["built"] == ["A-1", "B-2"]
    assert [s["folder"] for s in report["skipped_folders"]] == ["bad_name"]
    skipped = {s["file"]: s["reason"] for s in report["devices"]["A-1"]["skipped"]}
    assert skipped == {
        "A-1/20261109": "same folder as A-1",
        "A-1/loop.wav": "link to loop.wav cannot be followed (Too many levels of symbolic links)",
    }
    assert report["devices"]["A-1"]["windows"] == report["devices"]["B-2"]["windows"]


def test_missing_data_root_is_named(tmp_path: Path) -> None:
    write_params(tmp_path, TINY)
    result = stage(tmp_path, "extract", "nowhere", "features")
    assert result.returncode == 2
    assert "data.root 'nowhere' does not exist" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"epochs": 0}}, "train.epochs: expected a value >= 1"),
        ({"features": {"ref": "mean"}}, "features.ref: expected one of ['max', 'fixed']"),
        ({"split": {"val_fraction": 1.5}}, "split.val_fraction: expected a value < 1"),
        ({"quality": {"enabled": "yes"}}, "quality.enabled: expected true or false"),
        ({"train": {"learning_rate": 0.1}}, "unknown key train.learning_rate"),
    ],
)
def test_bad_param_stops_before_any_work(fleet_dir: Path, override: dict, message: str) -> None:
    write_params(fleet_dir, merge(TINY, override))
    result = stage(fleet_dir, "extract", "data/demo", "features")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (fleet_dir / "features").exists()


def test_model_shape_rule_is_checked_before_training(fleet_dir: Path) -> None:
    assert stage(fleet_dir, "extract", "data/demo", "features").returncode == 0
    write_params(fleet_dir, merge(TINY, {"train": {"channels": [4, 8, 8, 8, 8, 8, 8]}}))
    result = stage(fleet_dir, "train", "features", "models")
    assert result.returncode == 2
    assert "divisible by 2**len(train.channels)" in result.stderr
    assert not (fleet_dir / "models").exists()


def project_imports(path: Path) -> set[Path]:
    """The project's source files that `path` imports, at any depth, in functions too."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            parts = [name.split(".") for name in names]  # a module's packages are run too
            for base in {PROJECT.joinpath(*p[:n]) for p in parts for n in range(1, len(p) + 1)}:
                for found in (base.with_suffix(".py"), base / "__init__.py"):
                    if found.is_file() and found not in seen:
                        seen.add(found)
                        todo.append(found)
    return seen


def family_modules(cmd: list[str]) -> set[Path]:
    """The modules a stage command runs through its family's card: the card, its params
    reader and the module of the stage's own work (pipelines/families.py)."""
    name = cmd[2].split(".")[1]
    chosen = cmd[cmd.index("--family") + 1] if "--family" in cmd else families.DEFAULT
    card = families.installed()[chosen]()
    if name != "generate" and name not in card.STAGES:  # a stage the families do not give
        return set()
    refs = [card.PARAMS, card.GENERATE if name == "generate" else card.STAGES[name]]
    modules = [card.__name__, *(ref.split(":")[0] for ref in refs)]
    return {PROJECT.joinpath(*m.split(".")).with_suffix(".py") for m in modules}


PIPELINES = (
    PROJECT / "dvc.yaml",
    PROJECT / "tabular" / "dvc.yaml",
    PROJECT / "keypoint" / "dvc.yaml",
)


def test_every_module_a_stage_imports_is_under_its_deps() -> None:
    """DVC runs a stage again when its deps change: a module it imports outside them could
    change its results and DVC would call the stage up to date."""
    for pipeline in PIPELINES:
        for name, declared in yaml.safe_load(pipeline.read_text())["stages"].items():
            deps = [(pipeline.parent / dep).resolve() for dep in declared["deps"]]
            check_stage_deps(f"{pipeline.parent.name}:{name}", declared["cmd"].split(), deps)


def test_no_stage_depends_on_another_familys_files() -> None:
    """A change to one family's data, params or code runs no stage of another: no pipeline
    names another family's folder or package, but the acoustic package's (empty of work)
    __init__.py."""
    folders = {"acoustic": PROJECT, "tabular": PROJECT / "tabular"}
    folders["keypoint"] = PROJECT / "keypoint"
    others = {
        folder / "dvc.yaml": [
            path
            for other, theirs in folders.items()
            if theirs != folder
            for path in (theirs / "dvc.yaml", theirs / "params.yaml", PROJECT / "pipelines" / other)
        ]
        for folder in folders.values()
    }
    allowed = PROJECT / "pipelines" / "acoustic" / "__init__.py"
    for pipeline, theirs in others.items():
        for name, declared in yaml.safe_load(pipeline.read_text())["stages"].items():
            deps = [(pipeline.parent / dep).resolve() for dep in declared["deps"]]
            crossing = [
                d for d in deps if d != allowed and any(d.is_relative_to(t) for t in theirs)
            ]
            assert not crossing, f"{pipeline.parent.name}:{name} depends on {crossing}"
            assert PROJECT / "pipelines" not in deps  # the whole package holds every family


def check_stage_deps(name: str, cmd: list[str], deps: list[Path]) -> None:
    entry = PROJECT / "stages" / f"{cmd[2].split('.')[1]}.py"
    roots = {entry} | family_modules(cmd)
    imported = set().union(*(project_imports(root) for root in roots)) | roots
    code = {p for p in imported if p.stat().st_size}  # an empty __init__.py runs nothing
    outside = [p for p in code if not any(p.is_relative_to(d) for d in deps)]
    assert not outside, f"stage {name} imports {outside} outside its deps {deps}"
    assert len(imported) > 5  # the walk found the stage's code
