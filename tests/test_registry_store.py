"""registry.store: file layout, atomic writes, sha256, JSON reading and the store's lock."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from filelock import FileLock

from registry import store as store_mod
from registry.errors import CorruptStoreError, LockTimeoutError, RegistryError
from registry.families import Artifact
from registry.store import (
    Store,
    copy_atomic,
    locate,
    read_json,
    sha256_file,
    write_atomic,
    write_json,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_STORE", raising=False)


# ------------------------------------------------------------------ where things live
def test_locate_prefers_argument_then_env_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert locate(None) == tmp_path / "model_store"
    monkeypatch.setenv("MODEL_STORE", str(tmp_path / "env_store"))
    assert locate(None) == tmp_path / "env_store"
    assert locate(tmp_path / "arg") == tmp_path / "arg"
    assert locate(str(tmp_path / "arg")) == tmp_path / "arg"


def test_empty_env_falls_back_to_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_STORE", "")
    assert locate(None) == tmp_path / store_mod.DEFAULT_STORE


def test_locate_finds_the_project_root_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "project" / ".dvc").mkdir(parents=True)
    deep = tmp_path / "project" / "eval" / "plots"
    deep.mkdir(parents=True)
    assert locate(cwd=deep) == tmp_path / "project" / "model_store"
    assert locate(cwd=tmp_path) == tmp_path / "model_store"  # no project: here


def test_locate_inside_a_dvc_stage_uses_dvc_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DVC points $DVC_ROOT at the original repository in an experiment's temp copy."""
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpabc"
    (copy / ".dvc").mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "project"))
    assert locate(cwd=copy) == tmp_path / "project" / "model_store"
    monkeypatch.setenv("MODEL_STORE", str(tmp_path / "shared"))
    assert locate(cwd=copy) == tmp_path / "shared"


def test_the_cli_the_api_and_the_pipeline_agree_on_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from registry.api import Registry
    from registry.cli import app
    from tests.registry_helpers import FAMILY, MODEL_TYPE, SCOPE, make_artifacts

    (tmp_path / ".dvc").mkdir()
    sub = tmp_path / "reports"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert Registry().store.root == tmp_path / "model_store"  # the deploy stage's Registry()
    Registry().register(make_artifacts(tmp_path / "art"), FAMILY, SCOPE, MODEL_TYPE)
    assert (tmp_path / "model_store" / "events.jsonl").is_file()
    listed = CliRunner().invoke(app, ["list", "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1


def test_store_paths_follow_the_flat_layout(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    name = "acoustic_LT-2_convae"
    assert store.versions_file == tmp_path / "s" / "versions.json"
    assert store.events_file == tmp_path / "s" / "events.jsonl"
    assert store.index_file == tmp_path / "s" / "index.sqlite"
    model = Artifact("model", Path("any/model.pth"))
    assert store.artifact(name, 3, model) == tmp_path / "s" / f"{name}_v3_model.pth"
    scale = Artifact("scale", Path("scale.npy"))
    assert store.artifact(name, 3, scale) == tmp_path / "s" / f"{name}_v3_scale.npy"
    best = Artifact("checkpoint_best", Path("checkpoint_best.pth"), checkpoint=True)
    assert store.artifact(name, 3, best) == (
        tmp_path / "s" / "checkpoints" / f"{name}_v3_checkpoint_best.pth"
    )
    assert store.metadata(name, 12) == tmp_path / "s" / f"{name}_v12_metadata.json"


def test_constructing_a_store_creates_nothing(tmp_path: Path) -> None:
    Store(tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ atomic writes
def test_write_atomic_writes_bytes_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "file.bin"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    write_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_atomic_replaces_in_one_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target is never opened for writing: the new content arrives by os.replace."""
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    calls: list[tuple[str, str]] = []
    real_replace = store_mod.os.replace

    def spy(src: str, dst: str) -> None:
        calls.append((Path(src).name, Path(dst).name))
        assert target.read_bytes() == b"old"  # untouched until the swap
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", spy)
    write_atomic(target, b"new")
    assert len(calls) == 1
    assert calls[0][1] == "f.json"
    assert calls[0][0].startswith(".f.json.") and calls[0][0].endswith(".tmp")
    assert target.read_bytes() == b"new"


def test_write_json_is_sorted_indented_and_newline_terminated(tmp_path: Path) -> None:
    target = tmp_path / "v.json"
    write_json(target, {"b": 2, "a": 1})
    assert target.read_text() == '{\n  "a": 1,\n  "b": 2\n}\n'
    assert json.loads(target.read_text()) == {"a": 1, "b": 2}


def test_copy_atomic_copies_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)))
    dst = tmp_path / "out" / "dst.bin"
    copy_atomic(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.bin"]


# ------------------------------------------------------------------ sha256 and JSON
def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = b"x" * 3000 + b"tail"
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk=7) == hashlib.sha256(data).hexdigest()  # several blocks
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_read_json_reads_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text('{"a": [1, 2]}')
    assert read_json(path, "thing") == {"a": [1, 2]}


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"a": 1', b"\xff\xfe\x00garbage"])
def test_read_json_refuses_corrupt_json_and_names_reindex(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "versions.json"
    path.write_bytes(content)
    with pytest.raises(CorruptStoreError) as caught:
        read_json(path, "versions.json")
    message = str(caught.value)
    assert str(path) in message
    assert "versions.json is not valid JSON" in message
    assert "registry reindex" in message
    assert isinstance(caught.value, RegistryError)


# ------------------------------------------------------------------ the lock
def test_locked_creates_the_store_and_can_be_taken_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "new" / "store", lock_timeout=1)
    with store.locked():
        assert (tmp_path / "new" / "store").is_dir()
        assert (tmp_path / "new" / "store" / ".lock").exists()
    with store.locked():  # released: taken again at once
        pass


def test_locked_times_out_when_held_elsewhere(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    store = Store(root, lock_timeout=0.2)
    with FileLock(root / ".lock"):
        start = time.monotonic()
        with pytest.raises(LockTimeoutError) as caught, store.locked():
            pytest.fail("the body must not run without the lock")
        elapsed = time.monotonic() - start
    assert elapsed >= 0.2  # it waited its timeout, then gave up
    message = str(caught.value)
    assert str(root) in message and "locked by another process" in message
    assert "0.2 s" in message and "nothing was changed" in message
    assert isinstance(caught.value, TimeoutError)
    with store.locked():  # free again once the holder let go
        pass


def test_locked_releases_the_lock_when_the_body_raises(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", lock_timeout=0.2)
    with pytest.raises(RuntimeError), store.locked():
        raise RuntimeError("boom")
    with store.locked():
        pass


def test_an_atomic_write_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not the store's")
    target = tmp_path / "store" / "versions.json"
    target.parent.mkdir()
    (target.parent / f".versions.json.{os.getpid()}.tmp").symlink_to(outside)
    target.symlink_to(outside)
    write_json(target, {"a": 1})
    assert outside.read_text() == "not the store's"
    assert not target.is_symlink() and json.loads(target.read_text()) == {"a": 1}
