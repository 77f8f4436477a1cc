"""registry.export through Registry.export: it writes only what it owns, swaps a bundle in one
step, is safe with concurrent exports and survives kill -9 at any moment."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from registry import export
from registry.api import Registry
from registry.errors import ExportError, NotFoundError
from tests import faults
from tests.registry_helpers import (
    FAMILY,
    INFERENCE,
    MODEL_TYPE,
    NAME,
    SCOPE,
    TOY,
    make_acoustic_artifacts,
    make_artifacts,
    new_registry,
)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Two versions of one model, each a little different, v1 in production."""
    registry = new_registry(tmp_path / "store", actor="tester", families=TOY)
    for version in (1, 2):
        folder = make_artifacts(tmp_path / "art" / str(version), f"weights {version}".encode())
        registry.register(folder, FAMILY, SCOPE, MODEL_TYPE, metrics={"auc": 1.0, "error": 0.1})
    registry.promote(NAME, 1)
    return registry


def tree(folder: Path) -> dict[str, Any]:
    """Every entry under `folder`: files as bytes, links as their text."""
    found: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = path.read_bytes()
    return found


def assert_shipped(registry: Registry, to: Path, versions: set[int]) -> int:
    """The bundle in place is whole, one of `versions`, and holds that version's bytes."""
    folder = (to / SCOPE).resolve()
    manifest = json.loads((folder / "bundle.json").read_text())
    for name, sha in manifest["sha256"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    version = int(manifest["model"].rsplit(":v", 1)[1])
    assert version in versions
    meta = registry.get(f"{NAME}:v{version}")
    assert (folder / "model.bin").read_bytes() == registry.read(meta, "model")
    return version


# ------------------------------------------------------------------ what it writes
def test_a_bundle_is_a_link_to_a_whole_folder(registry: Registry, tmp_path: Path) -> None:
    to = tmp_path / "deploy"
    link = registry.export(f"{NAME}@production", to)
    assert link == to / SCOPE and link.is_symlink()
    assert os.readlink(link).startswith(".bundles/LT-2/")
    assert (to / ".bundles" / export.MARKER).is_file()
    manifest = json.loads((link / "bundle.json").read_text())
    assert manifest["model"] == f"{NAME}:v1" and manifest["device"] == SCOPE
    assert set(manifest["sha256"]) == {"model.bin", "threshold.npy"}
    assert assert_shipped(registry, to, {1}) == 1


def test_exporting_what_is_already_there_changes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    to = tmp_path / "deploy"
    registry.export(f"{NAME}@production", to)
    before = tree(to)
    registry.export(f"{NAME}:v1", to)
    assert registry.export_all(to)[SCOPE]["status"] == "unchanged"
    assert tree(to) == before


def test_earlier_bundles_are_kept_up_to_the_limit(registry: Registry, tmp_path: Path) -> None:
    to = tmp_path / "deploy"
    for version in (1, 2, 1, 2, 1):
        registry.export(f"{NAME}:v{version}", to, keep_backups=2)
    bundles = sorted((to / ".bundles" / SCOPE).iterdir())
    models = [json.loads((b / "bundle.json").read_text())["model"] for b in bundles]
    assert models == [f"{NAME}:v1", f"{NAME}:v2", f"{NAME}:v1"]  # 2 earlier + the current
    assert (to / SCOPE).resolve() == bundles[-1]


def test_a_retired_scope_is_taken_out_of_service(registry: Registry, tmp_path: Path) -> None:
    to = tmp_path / "deploy"
    assert registry.export_all(to) == {SCOPE: {"model": f"{NAME}:v1", "status": "exported"}}
    registry.retire(NAME, reason="machine scrapped")
    assert registry.export_all(to) == {SCOPE: {"model": f"{NAME}:v1", "status": "removed"}}
    assert not (to / SCOPE).exists() and not (to / SCOPE).is_symlink()
    assert len(list((to / ".bundles" / SCOPE).iterdir())) == 1  # kept as a backup


# ------------------------------------------------------------------ what it never touches
def test_a_folder_it_did_not_write_is_refused_and_left_alone(
    registry: Registry, tmp_path: Path
) -> None:
    to = tmp_path / "deploy"
    (to / SCOPE).mkdir(parents=True)
    (to / SCOPE / "notes.txt").write_text("the user's")
    (to / f".staging-{SCOPE}").mkdir()
    (to / f".staging-{SCOPE}" / "keep.txt").write_text("also the user's")
    (to / "OTHER-9").mkdir()
    before = tree(to)
    with pytest.raises(ExportError, match=f"{to / SCOPE}: not a bundle the exporter wrote"):
        registry.export(f"{NAME}@production", to)
    assert registry.export_all(to)[SCOPE]["status"] == "failed"
    after = tree(to)
    assert {k: v for k, v in after.items() if not k.startswith(".bundles")} == before


def test_a_bundles_folder_without_the_marker_is_refused(registry: Registry, tmp_path: Path) -> None:
    to = tmp_path / "deploy"
    (to / ".bundles").mkdir(parents=True)
    (to / ".bundles" / "mine.txt").write_text("x")
    with pytest.raises(ExportError, match="not the exporter's folder"):
        registry.export(f"{NAME}@production", to)
    assert tree(to) == {".bundles/mine.txt": b"x"}


def test_a_symlinked_bundles_folder_is_refused(registry: Registry, tmp_path: Path) -> None:
    to, elsewhere = tmp_path / "deploy", tmp_path / "elsewhere"
    registry.export(f"{NAME}@production", elsewhere)
    to.mkdir()
    (to / ".bundles").symlink_to(elsewhere / ".bundles")
    before = tree(elsewhere)
    with pytest.raises(ExportError, match="not the exporter's folder"):
        registry.export(f"{NAME}@production", to)
    assert tree(elsewhere) == before


def test_a_target_that_is_a_file_is_refused(registry: Registry, tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    target.write_text("a file")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        registry.export(f"{NAME}@production", target)
    assert target.read_text() == "a file"


def test_a_tampered_artifact_is_not_shipped(registry: Registry, tmp_path: Path) -> None:
    to = tmp_path / "deploy"
    registry.export(f"{NAME}:v1", to)
    before = tree(to)
    meta = registry.get(f"{NAME}:v2")
    (registry.store.root / meta["artifacts"]["model"]["file"]).write_bytes(b"tampered")
    with pytest.raises(Exception, match="sha256"):
        registry.export(f"{NAME}:v2", to)
    assert tree(to) == before


def test_weights_that_would_not_load_safely_are_not_shipped(tmp_path: Path) -> None:
    """A pickle that runs code, registered with its own (correct) sha256, never ships."""

    class Evil:
        def __reduce__(self) -> tuple:
            return (open, (str(tmp_path / "pwned"), "w"))

    registry = new_registry(tmp_path / "store")
    folder = make_acoustic_artifacts(tmp_path / "art", 0)
    (folder / "model.pth").write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    registry.register(folder, "acoustic", SCOPE, MODEL_TYPE, extra=INFERENCE)
    with pytest.raises(ExportError, match="not a plain-tensor weights file"):
        registry.export(f"acoustic_{SCOPE}_{MODEL_TYPE}:v1", tmp_path / "deploy")
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "deploy" / SCOPE).exists()


def test_the_acoustic_layout_is_the_seeds(tmp_path: Path) -> None:
    registry = new_registry(tmp_path / "store")
    folder = make_acoustic_artifacts(tmp_path / "art", 0)
    registry.register(folder, "acoustic", SCOPE, MODEL_TYPE, extra=INFERENCE)
    link = registry.export(f"acoustic_{SCOPE}_{MODEL_TYPE}:v1", tmp_path / "deploy")
    files = {p.relative_to(link.resolve()).as_posix() for p in link.resolve().rglob("*.*")}
    assert files == {
        "ae_model.pth",
        "global_scale.npy",
        f"thresholds/threshold_{SCOPE}.npy",
        "bundle.json",
    }
    manifest = json.loads((link / "bundle.json").read_text())
    assert manifest["architecture"] == INFERENCE["inference"]["architecture"]
    assert (link / "ae_model.pth").read_bytes() == (folder / "model.pth").read_bytes()


# ------------------------------------------------------------------ concurrency and kills
def test_a_reader_always_finds_a_whole_bundle_while_exports_swap(
    registry: Registry, tmp_path: Path
) -> None:
    to = tmp_path / "deploy"
    registry.export(f"{NAME}:v1", to)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(assert_shipped(registry, to, {1, 2}))
            except BaseException as exc:  # reported to the test below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    for version in (2, 1) * 15:  # every bundle kept: a slow reader is never cut off here
        registry.export(f"{NAME}:v{version}", to, keep_backups=30)
    stop.set()
    reader.join()
    assert errors == []
    assert set(seen) == {1, 2}


def _export_many(root: str, to: str, version: int, times: int) -> None:
    registry = Registry(root, families=TOY)
    for _ in range(times):
        registry.export(f"{NAME}:v{version}", Path(to), keep_backups=1)


def test_concurrent_exports_never_mislabel_a_bundle(registry: Registry, tmp_path: Path) -> None:
    to = tmp_path / "deploy"
    ctx = faults.context()
    workers = [
        ctx.Process(target=_export_many, args=(str(registry.store.root), str(to), v, 12))
        for v in (1, 2, 1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert_shipped(registry, to, {1, 2})
    for bundle in (to / ".bundles" / SCOPE).iterdir():
        manifest = json.loads((bundle / "bundle.json").read_text())
        expected = registry.read(registry.get(manifest["model"]), "model")
        assert (bundle / "model.bin").read_bytes() == expected


def _export_alternately(root: str, to: str) -> None:
    registry = Registry(root, families=TOY)
    for version in (1, 2):
        registry.export(f"{NAME}:v{version}", Path(to), keep_backups=1)


def test_kill_9_at_any_moment_of_an_export_leaves_a_whole_bundle(
    registry: Registry, tmp_path: Path
) -> None:
    to = tmp_path / "deploy"
    registry.export(f"{NAME}:v1", to)
    rng, args, shipped = random.Random(7), (str(registry.store.root), str(to)), []
    within = 2 * faults.span(_export_alternately, args)  # two swaps a cycle: both sides
    for _ in range(30):
        faults.kill_during(_export_alternately, args, rng, within)
        shipped.append(assert_shipped(registry, to, {1, 2}))
    assert set(shipped) == {1, 2}  # the kills landed on both sides of the swap
    for version in (1, 2):  # an export clears what the kills left half-done
        registry.export(f"{NAME}:v{version}", to, keep_backups=1)
    leftovers = [p.name for p in (to / ".bundles" / SCOPE).iterdir()]
    assert len(leftovers) == 2 and not any(name.endswith(".partial") for name in leftovers)


def test_an_unknown_version_is_refused_before_the_folder_is_touched(
    registry: Registry, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        registry.export(f"{NAME}:v9", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()
