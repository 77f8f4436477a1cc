"""Fault injection against the store: kill -9 at random moments of every write command, readers
during reindex, eight processes mixing every command, and each damaged-file case. Each ends with
the store checked by `verify` and by comparing the log, the index and the files."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from registry import events, integrity
from registry.api import Registry
from registry.errors import (
    CorruptStoreError,
    GateError,
    HistoryError,
    InvalidNameError,
    LockTimeoutError,
    NotFoundError,
)
from tests import faults
from tests.registry_helpers import (
    FAMILY,
    MODEL_TYPE,
    NAME,
    SCOPE,
    TOY,
    flip_byte,
    make_artifacts,
    snapshot,
)

METRICS = {"auc": 0.95, "error": 0.1}
SOAK_SECONDS = float(os.environ.get("REGISTRY_SOAK_SECONDS", "12"))


def _register_new(registry: Registry, scope: str = SCOPE) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        payload = f"{os.getpid()} {time.time_ns()} {random.random()}".encode()
        folder = make_artifacts(Path(tmp) / "art", payload, optional=True)
        return registry.register(folder, FAMILY, scope, MODEL_TYPE, metrics=METRICS)


def assert_trustworthy(root: Path) -> None:
    """Whatever a kill left is repaired by `registry reindex`; then the store verifies clean,
    no number was handed out twice, and every version the log holds is listed with its files."""
    registry = Registry(root, families=TOY)
    problems = registry.verify()
    assert {p["repair"] for p in problems} <= {"registry reindex", "registry gc"}, problems
    if problems:
        registry.reindex()
    assert registry.verify() == []
    records = events.read(registry.store.events_file)
    registered = [(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED]
    assert len(registered) == len(set(registered)), "a number was handed out twice"
    live = set(integrity.live_versions(records))
    assert {(m["name"], m["version"]) for m in registry.list()} == live


# ------------------------------------------------------------------ kill -9
def _registering(root: str) -> None:
    _register_new(Registry(root))


def _promoting(root: str) -> None:
    registry = Registry(root, families=TOY)
    latest = registry.get(NAME)["version"]
    registry.promote(NAME, random.randint(1, latest))
    registry.rollback(NAME)


def _collecting(root: str) -> None:
    registry = Registry(root)
    _register_new(registry)
    registry.gc(keep=2)


def _reindexing(root: str) -> None:
    Registry(root).reindex()


@pytest.mark.parametrize(
    ("work", "tries"),
    [(_registering, 12), (_promoting, 8), (_collecting, 8), (_reindexing, 8)],
    ids=["register", "promote-rollback", "gc", "reindex"],
)
def test_kill_9_at_any_moment_leaves_a_store_that_is_whole_or_repaired(
    tmp_path: Path, work: Any, tries: int
) -> None:
    registry = Registry(tmp_path / "store", families=TOY)
    for _ in range(4):
        _register_new(registry)
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    rng = random.Random(tries)
    for _ in range(tries):
        faults.kill_during(work, (str(registry.store.root),), rng, 0.25)
        assert_trustworthy(registry.store.root)
    assert registry.get(NAME)["version"] >= 4


OTHER = f"{FAMILY}_{SCOPE}_pca"  # another type of model for the same device


def _switching(root: str) -> None:
    """Production of one device moving between two model types, and back."""
    registry = Registry(root, families=TOY)
    name = random.choice([NAME, OTHER])
    with contextlib.suppress(HistoryError):
        registry.promote(name, random.randint(1, 2), force=True, reason="fault test")
        registry.rollback(name)


def test_kill_9_while_production_moves_between_model_types(tmp_path: Path) -> None:
    """Whatever the moment, the device ends with exactly one production holder."""
    registry = Registry(tmp_path / "store", families=TOY)
    for model_type in ("convae", "convae", "pca", "pca"):
        folder = make_artifacts(tmp_path / "art" / str(random.random()), os.urandom(8))
        registry.register(folder, FAMILY, SCOPE, model_type, metrics=METRICS)
    registry.promote(NAME, 1)
    rng = random.Random(7)
    for _ in range(10):
        faults.kill_during(_switching, (str(registry.store.root),), rng, 0.25)
        assert_trustworthy(registry.store.root)
        assert len(registry.list(alias="production", scope=SCOPE)) == 1


# ------------------------------------------------------------------ concurrency
def _reader(root: str, seconds: float, out: str) -> None:
    registry, failures, reads = Registry(root), [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            assert registry.get(f"{NAME}@production")["version"] == 1
            assert len(registry.list(scope=SCOPE)) == 3
            reads += 1
        except Exception as exc:  # reported to the test
            failures.append(repr(exc))
    Path(out).write_text(json.dumps({"reads": reads, "failures": failures[:5]}))


def test_readers_keep_working_during_reindex(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store", families=TOY)
    for _ in range(3):
        _register_new(registry)
    registry.promote(NAME, 1)
    ctx = faults.context()
    outs = [tmp_path / f"reader-{i}.json" for i in range(3)]
    readers = [
        ctx.Process(target=_reader, args=(str(registry.store.root), 4.0, str(o))) for o in outs
    ]
    for reader in readers:
        reader.start()
    reindexed = 0
    while any(r.is_alive() for r in readers):
        registry.reindex()
        reindexed += 1
    for reader, out in zip(readers, outs, strict=True):
        reader.join()
        found = json.loads(out.read_text())
        assert found["failures"] == [] and found["reads"] > 0
    assert reindexed > 5


_EXPECTED = (GateError, HistoryError, NotFoundError, LockTimeoutError)


def _soak(root: str, deploy: str, seconds: float, out: str) -> None:
    """Every command at random for `seconds`; what is registered is written to `out`."""
    registry, rng = Registry(root, families=TOY), random.Random(os.getpid())
    registered, unexpected = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scope = rng.choice(["LT-2", "FAN-7"])
        name = f"{FAMILY}_{scope}_{MODEL_TYPE}"
        op = rng.choice(["register"] * 4 + ["promote", "rollback", "export", "gc", "reindex"])
        try:
            if op == "register":
                meta = _register_new(registry, scope)
                registered.append([meta["name"], meta["version"]])
            elif op == "promote":
                latest = registry.get(name)["version"]
                registry.promote(name, rng.randint(max(1, latest - 3), latest))
            elif op == "rollback":
                registry.rollback(name)
            elif op == "export":
                registry.export_all(Path(deploy))
            elif op == "gc":
                registry.gc(keep=3)
            else:
                registry.reindex()
            registry.list()
        except _EXPECTED:
            pass
        except Exception:
            unexpected.append(traceback.format_exc())
    Path(out).write_text(json.dumps({"registered": registered, "unexpected": unexpected[:3]}))


def test_eight_processes_mixing_every_command(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "store", families=TOY)
    _register_new(registry)
    ctx = faults.context()
    outs = [tmp_path / f"worker-{i}.json" for i in range(8)]
    args = [
        (str(registry.store.root), str(tmp_path / "deploy"), SOAK_SECONDS, str(o)) for o in outs
    ]
    workers = [ctx.Process(target=_soak, args=a) for a in args]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(SOAK_SECONDS + 120)
        assert worker.exitcode == 0
    reports = [json.loads(out.read_text()) for out in outs]
    assert [r["unexpected"] for r in reports] == [[]] * 8
    assert registry.verify() == []
    records = events.read(registry.store.events_file)
    registered = {(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED}
    archived = {(e["name"], e["version"]) for e in records if e["type"] == events.ARCHIVED}
    handed_out = [tuple(pair) for r in reports for pair in r["registered"]]
    assert len(handed_out) == len(set(handed_out)) > 8, "a number was handed out twice"
    assert set(handed_out) <= registered
    listed = {(m["name"], m["version"]) for m in registry.list()}
    assert listed == registered - archived


# ------------------------------------------------------------------ damaged files
@pytest.fixture
def store(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "store", families=TOY)
    for _ in range(2):
        _register_new(registry)
    registry.promote(NAME, 1)
    return registry


def _weights(registry: Registry, version: int) -> bytes:
    return (registry.store.root / f"{NAME}_v{version}_model.pth").read_bytes()


def test_an_emptied_index_and_no_versions_file_never_hand_out_v1_again(store: Registry) -> None:
    v1 = _weights(store, 1)
    store.store.index_file.write_bytes(b"")
    store.store.versions_file.unlink()
    before = snapshot(store.store.root)
    with pytest.raises(CorruptStoreError, match="registry reindex"):
        _register_new(store)
    assert snapshot(store.store.root) == before and _weights(store, 1) == v1
    problems = store.verify()
    assert any("index" in p["file"] for p in problems)
    assert any("versions.json" in p["file"] for p in problems)
    store.reindex()
    assert _register_new(store)["version"] == 3
    assert _weights(store, 1) == v1 and store.verify() == []


def test_an_emptied_index_is_refused_not_recreated_empty(store: Registry) -> None:
    store.store.index_file.write_bytes(b"")
    for read in (store.list, lambda: store.get(NAME)):
        with pytest.raises(CorruptStoreError, match="registry reindex"):
            read()
    assert store.verify() != []
    store.reindex()
    assert [m["version"] for m in store.list()] == [1, 2]


def test_an_invalid_event_is_named_and_reindex_changes_nothing(store: Registry) -> None:
    lines = store.store.events_file.read_text().splitlines(keepends=True)
    broken = json.loads(lines[1])
    del broken["version"]
    lines.insert(2, json.dumps(broken) + "\n")
    store.store.events_file.write_text("".join(lines))
    before = snapshot(store.store.root)
    with pytest.raises(CorruptStoreError, match="line 3 is not a valid event"):
        store.reindex()
    with pytest.raises(CorruptStoreError, match="does not reflect"):
        _register_new(store)
    assert snapshot(store.store.root) == before
    assert store.get(NAME)["version"] == 2  # reads of the index go on
    (problem,) = store.verify()
    assert "line 3" in problem["problem"] and "by hand" in problem["repair"]


def test_a_garbage_line_in_the_middle_stops_every_write(store: Registry) -> None:
    lines = store.store.events_file.read_text().splitlines(keepends=True)
    lines.insert(1, "garbage\n")
    store.store.events_file.write_text("".join(lines))
    before = snapshot(store.store.root)
    for write in (
        lambda: _register_new(store),
        lambda: store.promote(NAME, 2),
        lambda: store.rollback(NAME),
        lambda: store.gc(keep=1),
        lambda: store.set_policy({"auc": 0.5}),
    ):
        with pytest.raises(CorruptStoreError, match=r"does not reflect.*registry reindex"):
            write()
    assert snapshot(store.store.root) == before
    with pytest.raises(CorruptStoreError, match="line 2 is not valid JSON"):
        store.reindex()  # and the repair names the line
    assert snapshot(store.store.root) == before


def test_an_event_the_index_lacks_is_found_and_replayed(store: Registry) -> None:
    """What a kill between the log's append and the index's commit leaves."""
    record = events.event(events.PROMOTED, NAME, 2, "t", alias="production")
    events.append(store.store.events_file, record | {"from_version": 1, "to_version": 2})
    problems = {p["problem"] for p in store.verify()}
    assert "reflects another state of the log" in problems
    assert f"says {NAME}@production is v1, the log says v2" in problems
    with pytest.raises(CorruptStoreError, match="does not reflect"):
        _register_new(store)
    store.reindex()
    assert store.get(f"{NAME}@production")["version"] == 2 and store.verify() == []


def test_a_flipped_byte_in_metadata_is_caught_by_its_recorded_digest(store: Registry) -> None:
    path = store.store.metadata(NAME, 2)
    text = path.read_text()
    path.write_text(text.replace('"auc": 0.95', '"auc": 0.99'))  # still valid JSON
    (problem,) = store.verify()
    assert problem["file"] == str(path) and "does not match the digest" in problem["problem"]
    assert problem["repair"] == "restore it from a backup of the store"
    before = snapshot(store.store.root)
    with pytest.raises(CorruptStoreError, match="restore it from a backup"):
        store.reindex()
    assert snapshot(store.store.root) == before
    path.write_text(text)
    assert store.verify() == []


def test_stray_files_are_reported_swept_and_never_counted(store: Registry) -> None:
    root = store.store.root
    (root / f".{NAME}_v9_model.pth.123.tmp").write_bytes(b"half")
    (root / f"{NAME}_v3_model.pth").write_bytes(b"an interrupted registration")
    (root / "notes.txt").write_text("the user's")
    assert {Path(p["file"]).name for p in store.verify()} == {
        f".{NAME}_v9_model.pth.123.tmp",
        f"{NAME}_v3_model.pth",
        "versions.json",  # behind the number that file uses
    }
    assert [m["version"] for m in store.list()] == [1, 2]
    store.reindex()
    assert store.verify() == [] and (root / "notes.txt").read_text() == "the user's"
    assert json.loads(store.store.versions_file.read_text())[NAME] == 3  # v3 is never reused
    assert _register_new(store)["version"] == 4


@pytest.mark.parametrize("target", ["events.jsonl", ".lock", "index.sqlite", "versions.json"])
def test_a_store_file_that_is_a_symlink_is_refused(store: Registry, target: str) -> None:
    outside = store.store.root.parent / f"outside-{target}"
    shutil.move(store.store.root / target, outside)
    (store.store.root / target).symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        store.promote(NAME, 2)
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        store.reindex()
    assert outside.read_bytes() == before
    assert any("not a regular file" in p["problem"] for p in store.verify())


def test_a_store_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("not a folder")
    registry = Registry(tmp_path / "store")
    with pytest.raises(CorruptStoreError, match="not a folder"):
        _register_new(registry)
    with pytest.raises(NotFoundError):
        registry.verify()
    assert (tmp_path / "store").read_text() == "not a folder"


def test_a_huge_version_is_a_clear_refusal(store: Registry) -> None:
    with pytest.raises(InvalidNameError, match="expected an integer from 1 to"):
        store.get(f"{NAME}:v{10**30}")
    with pytest.raises(InvalidNameError):
        store.promote(NAME, 10**30)


def test_a_damaged_artifact_is_reported_with_its_repair(store: Registry) -> None:
    flip_byte(store.store.root / f"{NAME}_v2_model.pth")
    (problem,) = store.verify()
    assert (problem["version"], problem["kind"], problem["problem"]) == (
        2,
        "model",
        "sha256 mismatch",
    )
