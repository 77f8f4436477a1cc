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
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from registry import errors, events, integrity
from registry.api import Registry
from registry.errors import (
    CorruptStoreError,
    HistoryError,
    InvalidNameError,
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
    new_registry,
    snapshot,
)

METRICS = {"auc": 0.95, "error": 0.1}


def _register_new(registry: Registry, scope: str = SCOPE) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        payload = f"{os.getpid()} {time.time_ns()} {random.random()}".encode()
        folder = make_artifacts(Path(tmp) / "art", payload, optional=True)
        return registry.register(folder, FAMILY, scope, MODEL_TYPE, metrics=METRICS)


def assert_trustworthy(root: Path) -> None:
    """Whatever a kill left is repaired by the repairs `registry verify` names (`registry
    reindex`, then `registry gc`); then the store verifies clean, no number was handed out
    twice, and every version the log holds is listed with its files."""
    registry = Registry(root, families=TOY)
    repairs = {p["repair"] for p in registry.verify()}
    assert repairs <= {"registry reindex", "registry gc"}, repairs
    if "registry reindex" in repairs:
        registry.reindex()
    if {p["repair"] for p in registry.verify()} == {"registry gc"}:
        registry.gc()
    assert registry.verify() == []
    records = events.read(registry.store.events_file)
    registered = [(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED]
    assert len(registered) == len(set(registered)), "a number was handed out twice"
    live = set(integrity.live_versions(records))
    assert {(m["name"], m["version"]) for m in registry.list()} == live


def _wait_for(condition: Any, seconds: float = 600) -> None:
    """Until `condition()`; the deadline is only there so that a broken test ends."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.01)


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
    registry = new_registry(tmp_path / "store", families=TOY)
    for _ in range(4):
        _register_new(registry)
    registry.promote(NAME, 1)
    registry.promote(NAME, 2)
    rng, args = random.Random(tries), (str(registry.store.root),)
    within = 1.5 * faults.span(work, args)
    for _ in range(tries):
        faults.kill_during(work, args, rng, within)
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
    registry = new_registry(tmp_path / "store", families=TOY)
    for model_type in ("convae", "convae", "pca", "pca"):
        folder = make_artifacts(tmp_path / "art" / str(random.random()), os.urandom(8))
        registry.register(folder, FAMILY, SCOPE, model_type, metrics=METRICS)
    registry.promote(NAME, 1)
    rng, args = random.Random(7), (str(registry.store.root),)
    within = 1.5 * faults.span(_switching, args)
    for _ in range(10):
        faults.kill_during(_switching, args, rng, within)
        assert_trustworthy(registry.store.root)
        assert len(registry.list(alias="production", scope=SCOPE)) == 1


# ------------------------------------------------------------------ concurrency
def _reader(root: str, stop: str, out: str) -> None:
    """Read until `stop` exists; the first read says the reader is ready (`out` + .ready)."""
    registry, failures, reads = Registry(root), [], 0
    while not Path(stop).exists():
        try:
            assert registry.get(f"{NAME}@production")["version"] == 1
            assert len(registry.list(scope=SCOPE)) == 3
            reads += 1
        except Exception as exc:  # reported to the test
            failures.append(repr(exc))
        Path(f"{out}.ready").touch()
    Path(out).write_text(json.dumps({"reads": reads, "failures": failures[:5]}))


def test_readers_keep_working_during_reindex(tmp_path: Path) -> None:
    """Ten reindexes while three processes read: every read answers, none fails."""
    registry = new_registry(tmp_path / "store", families=TOY)
    for _ in range(3):
        _register_new(registry)
    registry.promote(NAME, 1)
    ctx, stop = faults.context(), tmp_path / "stop"
    outs = [tmp_path / f"reader-{i}.json" for i in range(3)]
    args = [(str(registry.store.root), str(stop), str(o)) for o in outs]
    readers = [ctx.Process(target=_reader, args=a) for a in args]
    for reader in readers:
        reader.start()
    try:
        _wait_for(lambda: all(Path(f"{o}.ready").exists() for o in outs))
        for _ in range(10):
            registry.reindex()
    finally:
        stop.touch()
    for reader, out in zip(readers, outs, strict=True):
        reader.join(600)
        found = json.loads(out.read_text())
        assert found["failures"] == [] and found["reads"] > 0


# What a command may answer in the mix without anything being wrong: a promotion of a
# version gc took, a rollback with no earlier holder, a lookup before a device's first model.
_EXPECTED = (HistoryError, NotFoundError)
SOAK_OPS = 36  # per worker
_KINDS = ["register"] * 4 + ["promote", "rollback", "export", "gc", "reindex"]


def _soak(root: str, deploy: str, seed: int, out: str) -> None:
    """SOAK_OPS commands drawn at random, whatever time they take under load; each one's
    outcome counted, what is registered written to `out`."""
    registry, rng = Registry(root, lock_timeout=300, families=TOY), random.Random(seed)
    registered, unexpected, counts = [], [], {}
    for _ in range(SOAK_OPS):
        scope = rng.choice(["LT-2", "FAN-7"])
        name = f"{FAMILY}_{scope}_{MODEL_TYPE}"
        op = rng.choice(_KINDS)
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
            outcome = "done"
        except _EXPECTED as exc:
            outcome = type(exc).__name__
        except Exception:
            outcome = "unexpected"
            unexpected.append(traceback.format_exc())
        counts[f"{op} {outcome}"] = counts.get(f"{op} {outcome}", 0) + 1
    report = {"registered": registered, "unexpected": unexpected[:3], "counts": counts}
    Path(out).write_text(json.dumps(report))


def test_eight_processes_mixing_every_command(tmp_path: Path) -> None:
    """Eight processes, each a fixed number of commands (not a time: the count holds at any
    load): every registration succeeds with a number of its own, every kind of command
    succeeds, the only refusals are the expected ones, and the store verifies clean."""
    registry = new_registry(tmp_path / "store", families=TOY)
    _register_new(registry)
    ctx = faults.context()
    outs = [tmp_path / f"worker-{i}.json" for i in range(8)]
    args = [
        (str(registry.store.root), str(tmp_path / "deploy"), i, str(o)) for i, o in enumerate(outs)
    ]
    workers = [ctx.Process(target=_soak, args=a) for a in args]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(1800)
        assert worker.exitcode == 0
    reports = [json.loads(out.read_text()) for out in outs]
    assert [r["unexpected"] for r in reports] == [[]] * 8
    counts: dict[str, int] = {}
    for report in reports:
        for key, n in report["counts"].items():
            counts[key] = counts.get(key, 0) + n
    assert sum(counts.values()) == 8 * SOAK_OPS
    assert {key.split()[0] for key in counts if key.endswith(" done")} == set(_KINDS), counts
    assert {key.split()[1] for key in counts} <= {"done", *(e.__name__ for e in _EXPECTED)}
    assert not any(key.startswith("register ") and key != "register done" for key in counts)
    assert registry.verify() == []
    records = events.read(registry.store.events_file)
    registered = {(e["name"], e["version"]) for e in records if e["type"] == events.REGISTERED}
    archived = {(e["name"], e["version"]) for e in records if e["type"] == events.ARCHIVED}
    handed_out = [tuple(pair) for r in reports for pair in r["registered"]]
    assert len(handed_out) == counts["register done"], "a registration went unreported"
    assert len(handed_out) == len(set(handed_out)), "a number was handed out twice"
    assert set(handed_out) <= registered
    assert len(registered) == len(handed_out) + 1  # and the first one, before the workers
    listed = {(m["name"], m["version"]) for m in registry.list()}
    assert listed == registered - archived


# ------------------------------------------------------------------ damaged files
@pytest.fixture
def store(tmp_path: Path) -> Registry:
    registry = new_registry(tmp_path / "store", families=TOY)
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
    store.reindex()  # versions.json; it deletes nothing
    assert {Path(p["file"]).name: p["repair"] for p in store.verify()} == {
        f".{NAME}_v9_model.pth.123.tmp": "registry gc",
        f"{NAME}_v3_model.pth": "registry gc",
    }
    assert sorted(store.gc()) == sorted([f".{NAME}_v9_model.pth.123.tmp", f"{NAME}_v3_model.pth"])
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


# ------------------------------------------------------------------ a log that lost events
@pytest.fixture
def six(tmp_path: Path) -> Registry:
    """v1..v6 of one model, production v1 -> v2 -> v3, as the red team's demo store had."""
    registry = new_registry(tmp_path / "store", families=TOY)
    for version in range(1, 7):
        _register_new(registry)
        if version <= 3:
            registry.promote(NAME, version)
    return registry


def _models(registry: Registry) -> dict[str, bytes]:
    """Every version's files: what must never be deleted (the log, index and versions.json
    are the store's own books, which a recovery rewrites)."""
    books = {"events.jsonl", "index.sqlite", "versions.json", ".lock"}
    return {k: v for k, v in snapshot(registry.store.root).items() if k not in books}


def _keep_lines(registry: Registry, keep: int) -> list[str]:
    """Cut events.jsonl to its first `keep` lines; the lines cut."""
    lines = registry.store.events_file.read_text().splitlines(keepends=True)
    registry.store.events_file.write_text("".join(lines[:keep]))
    return lines[keep:]


def _refused_everywhere(registry: Registry, *named: str) -> None:
    """Reindex, gc and every write refuse, naming `named`, and change no byte."""
    before = snapshot(registry.store.root)
    with pytest.raises(CorruptStoreError) as refused:
        registry.reindex()
    message = str(refused.value)
    for fragment in (*named, "lost events", "registry backup", "--recover", "nothing was changed"):
        assert fragment in message
    for write in (
        lambda: registry.gc(),
        lambda: registry.gc(keep=1),
        lambda: _register_new(registry),
        lambda: registry.promote(NAME, 6),
        lambda: registry.rollback(NAME),
    ):
        with pytest.raises(CorruptStoreError, match=r"events were lost; restore events.jsonl"):
            write()
    assert snapshot(registry.store.root) == before


def _recovered(registry: Registry, models: dict[str, bytes], production: int | None) -> None:
    """After `--recover`: no file of a version was deleted or changed, production is as the
    index knew it, every version is back, and verify finds nothing."""
    record = registry.recover("log cut short in the red-team drill")
    assert record is not None and record["reason"] == "log cut short in the red-team drill"
    assert _models(registry) == models
    assert registry.verify() == []
    assert [m["version"] for m in registry.list(name=NAME)] == [1, 2, 3, 4, 5, 6]
    held = registry.list(alias="production")
    assert [m["version"] for m in held] == ([] if production is None else [production])
    assert _register_new(registry)["version"] == 7  # no number handed out twice
    assert registry.recover("again") is None  # nothing is lost any more


def test_a_log_cut_short_is_refused_then_recovered(six: Registry) -> None:
    """`head -n 4 events.jsonl`: the log keeps v1, v2 and production at v2; the index saw
    v1..v6 and production at v3. Reindex used to delete v3..v6 and move production back."""
    models = _models(six)
    cut = _keep_lines(six, 4)
    assert {json.loads(line)["version"] for line in cut} == {3, 4, 5, 6}
    problems = six.verify()
    assert {p["repair"] for p in problems} == {integrity.RECOVER}
    texts = {p["problem"] for p in problems}
    assert {f"{NAME}:v{v} is in the index, not in the log" for v in (3, 4, 5, 6)} <= texts
    assert f"says {NAME}@production is v3, the log says v2" in texts
    assert any("ends at byte" in t and "events were lost" in t for t in texts)
    lost = [f"{NAME}:v{v} (the index)" for v in (3, 4, 5, 6)]
    _refused_everywhere(six, *lost, f"{NAME}@production is v3 in the index, v2 in the log")
    assert six.get(f"{NAME}@production")["version"] == 3  # reads of the index go on
    _recovered(six, models, production=3)
    rebuilt = [(e["type"], e["version"]) for e in six.history(NAME) if e.get("recovered")]
    assert rebuilt == [*(("registered", v) for v in (3, 4, 5, 6)), ("promoted", 3)]


def test_a_lost_last_line_keeps_production_where_it_was(six: Registry) -> None:
    """The last line was production's move to v3: rebuilding from the log alone would have
    moved production back to v2 without a word."""
    lines = six.store.events_file.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "registered"
    promotion = next(i for i, line in enumerate(lines) if '"to_version": 3' in line)
    six.store.events_file.write_text("".join(lines[:promotion] + lines[promotion + 1 :]))
    models = _models(six)
    _refused_everywhere(six, f"{NAME}@production is v3 in the index, v2 in the log")
    assert {p["problem"] for p in six.verify()} >= {
        f"says {NAME}@production is v3, the log says v2"
    }
    _recovered(six, models, production=3)
    (moved,) = [e for e in six.history(NAME) if e.get("recovered")]
    assert (moved["type"], moved["from_version"], moved["to_version"]) == ("promoted", 2, 3)


def test_a_deleted_log_is_refused_then_recovered(six: Registry) -> None:
    """With events.jsonl deleted, reindex used to empty the store (47 -> 2 files)."""
    models = _models(six)
    six.store.events_file.unlink()
    problems = six.verify()
    assert any(p["problem"].startswith(f"{six.store.events_file} is missing") for p in problems)
    assert {p["repair"] for p in problems} == {integrity.RECOVER}
    _refused_everywhere(six, *(f"{NAME}:v{v} (the index)" for v in range(1, 7)))
    _recovered(six, models, production=3)


def test_a_deleted_log_and_index_keep_every_version(six: Registry) -> None:
    """No index to say where the log ended: the metadata files still show every version.
    Production cannot be known without the log or the index, and recovery says so."""
    models = _models(six)
    six.store.events_file.unlink()
    six.store.index_file.unlink()
    problems = six.verify()
    assert {p["problem"] for p in problems} >= {
        f"{NAME}:v{v} is in its metadata file, not in the log" for v in range(1, 7)
    }
    assert {p["repair"] for p in problems} == {integrity.RECOVER}  # never "registry gc"
    with pytest.raises(CorruptStoreError, match=f"{NAME}:v6 \\(its metadata file\\)"):
        six.reindex()
    assert _models(six) == models
    _recovered(six, models, production=None)


def test_recover_refuses_a_lost_version_whose_files_are_damaged(six: Registry) -> None:
    _keep_lines(six, 8)
    flip_byte(six.store.root / f"{NAME}_v6_model.pth")
    before = snapshot(six.store.root)
    with pytest.raises(CorruptStoreError, match=f"cannot recover {NAME}:v6: .*sha256 mismatch"):
        six.recover("drill")
    with pytest.raises(errors.UsageError, match="--reason"):
        six.recover(" ")
    assert snapshot(six.store.root) == before


def _recovering(root: str) -> None:
    with contextlib.suppress(CorruptStoreError):  # a kill's leftover: the next try mends it
        Registry(root, families=TOY).recover("kill drill")


def test_kill_9_during_recover_leaves_a_store_that_recover_completes(six: Registry) -> None:
    models, rng, args = _models(six), random.Random(3), (str(six.store.root),)
    _keep_lines(six, 6)
    within = 1.5 * faults.span(_recovering, args)
    for _ in range(10):
        _keep_lines(six, 6)
        faults.kill_during(_recovering, args, rng, within)
        six.recover("after the kill")
        assert {p["repair"] for p in six.verify()} <= {"registry gc"}  # a temp file, if any
        six.gc()
        assert _models(six) == models and six.verify() == []
        assert [m["version"] for m in six.list(name=NAME)] == [1, 2, 3, 4, 5, 6]
        assert six.get(f"{NAME}@production")["version"] == 3


# ------------------------------------------------------------------ more damage, and backups
@pytest.mark.parametrize("kind", ["registered", "promoted"])
def test_a_duplicated_event_is_named_and_stops_writes(store: Registry, kind: str) -> None:
    lines = store.store.events_file.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if f'"type": "{kind}"' in line)
    lines.insert(first + 1, lines[first])
    store.store.events_file.write_text("".join(lines))
    before = snapshot(store.store.root)
    (problem,) = store.verify()
    assert (
        f"line {first + 2} is not a valid event: it repeats line {first + 1}" in problem["problem"]
    )
    assert problem["repair"] == integrity.BY_HAND
    with pytest.raises(CorruptStoreError, match=f"line {first + 2} .* repeats line {first + 1}"):
        store.reindex()
    with pytest.raises(CorruptStoreError, match="does not reflect"):
        store.promote(NAME, 2)
    assert snapshot(store.store.root) == before


def test_a_version_registered_twice_is_named(store: Registry) -> None:
    """The same version's registration again, not a byte-for-byte copy of its line."""
    record = events.event(events.REGISTERED, NAME, 2, "someone", "by hand")
    events.append(store.store.events_file, record)
    (problem,) = store.verify()
    assert f"{NAME}:v2 was registered at line 2 already" in problem["problem"]
    with pytest.raises(CorruptStoreError, match=f"{NAME}:v2 was registered at line 2 already"):
        store.reindex()


def test_a_corrupt_metadata_file_names_the_real_repair(store: Registry) -> None:
    path = store.store.metadata(NAME, 2)
    path.write_text(path.read_text()[:-20])
    with pytest.raises(CorruptStoreError) as refused:
        store.reindex()
    assert "restore it from a backup of the store" in str(refused.value)
    assert "run `registry reindex`" not in str(refused.value)  # it is what refused
    (problem,) = store.verify()
    assert problem["repair"] == integrity.RESTORE and "not valid JSON" in problem["problem"]


def _holding_the_lock(root: str, go: str) -> None:
    """What reindex does while it builds a new index: under the store's lock, a temp file."""
    store = Registry(root).store
    with store.locked():
        temp = store.root / f".index.sqlite.{os.getpid()}.tmp"
        temp.write_bytes(b"half an index")
        (store.root.parent / "holding").touch()
        _wait_for(lambda: Path(go).exists())
        temp.unlink()


def test_verify_waits_for_a_writer_and_never_reports_its_temp_file(store: Registry) -> None:
    """Verify used to report a reindex's live temp file as a stray (-> `registry gc`, which
    would have deleted it under the writer): it reads the store under the lock."""
    go, found = store.store.root.parent / "go", []
    holder = faults.context().Process(
        target=_holding_the_lock, args=(str(store.store.root), str(go))
    )
    holder.start()
    _wait_for(lambda: (store.store.root.parent / "holding").exists())
    reader = threading.Thread(target=lambda: found.append(store.verify()))
    reader.start()
    reader.join(0.5)  # a verify that took no lock has answered by now, or soon will
    go.touch()
    reader.join(600)
    holder.join(600)
    assert holder.exitcode == 0 and found == [[]]


def _writing(root: str, stop: str) -> None:
    registry = Registry(root, lock_timeout=300, families=TOY)
    while not Path(stop).exists():
        meta = _register_new(registry)
        registry.promote(NAME, meta["version"])


def test_backups_taken_under_concurrent_writers_verify(store: Registry, tmp_path: Path) -> None:
    """Each backup is the store between two writes: it verifies, its versions are numbered
    without a gap, and its production is one of its own versions."""
    stop, ctx = tmp_path / "stop", faults.context()
    args = (str(store.store.root), str(stop))
    writers = [ctx.Process(target=_writing, args=args) for _ in range(3)]
    for writer in writers:
        writer.start()
    try:
        _wait_for(lambda: store.get(NAME)["version"] >= 4)  # the writers are writing
        copies = [store.backup(tmp_path / "backups" / str(i)) for i in range(8)]
    finally:
        stop.touch()
        for writer in writers:
            writer.join(120)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    assert [c["problems"] for c in copies] == [[]] * 8
    seen = []
    for copy in copies:
        backup = Registry(copy["to"], families=TOY)
        versions = [m["version"] for m in backup.list(name=NAME)]
        assert versions == list(range(1, len(versions) + 1))
        assert backup.get(f"{NAME}@production")["version"] <= versions[-1]
        seen.append(len(versions))
    assert seen == sorted(seen) and seen[0] >= 4  # taken while the writers wrote
    assert store.verify() == []
