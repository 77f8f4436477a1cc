"""registry.index: the SQLite lookup index (built whole, transactions, the log it reflects,
read-only readers, lookups, corruption)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.errors import CorruptStoreError
from registry.index import BUSY_TIMEOUT_MS, Index, build
from tests.registry_helpers import snapshot


def _meta(name: str, version: int, sha: str | None = None, **extra: Any) -> dict[str, Any]:
    family, scope, model_type = name.split("_")
    return {
        "name": name,
        "version": version,
        "family": family,
        "scope": scope,
        "model_type": model_type,
        "created": f"2024-01-{version:02d}T00:00:00+00:00",
        "content_sha256": sha or f"sha-{name}-{version}",
        "artifacts": {"model": {"file": f"{name}_v{version}_model.pth", "sha256": "x"}},
        "metrics": {"auc": 0.9},
        **extra,
    }


A, B = "acoustic_LT-2_convae", "acoustic_FAN-7_convae"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    """A new, empty index, open for writing, each test's changes in a transaction."""
    build(tmp_path / "index.sqlite", [], {}, (0, ""))
    idx = Index(tmp_path / "index.sqlite", write=True)
    try:
        with idx.transaction():
            yield idx
    finally:
        idx.close()


def test_a_new_index_has_its_tables_a_rollback_journal_and_indexes(index: Index) -> None:
    tables = {row[0] for row in index.conn.execute("select name from sqlite_master")}
    assert {"versions", "aliases", "log"} <= tables
    assert index.conn.execute("pragma journal_mode").fetchone()[0] == "delete"
    assert index.conn.execute("pragma busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
    indexed = {
        tuple(col[2] for col in index.conn.execute(f"pragma index_info('{row[0]}')"))
        for row in index.conn.execute("select name from sqlite_master where type = 'index'")
    }
    assert ("scope",) in indexed
    assert ("alias",) in indexed
    assert ("name", "content_sha256") in indexed
    pk = [r[1] for r in sorted(index.conn.execute("pragma table_info('versions')")) if r[5]]
    assert pk == ["name", "version"]


def test_add_get_latest_and_find_content(index: Index) -> None:
    assert index.get(A, 1) is None
    assert index.latest(A) is None
    for version in (1, 2, 10):
        index.add(_meta(A, version))
    assert index.get(A, 2) == _meta(A, 2)
    assert index.latest(A) == 10  # numeric, not text, order
    assert index.latest(B) is None
    assert index.find_content(A, "sha-acoustic_LT-2_convae-2") == _meta(A, 2)
    assert index.find_content(B, "sha-acoustic_LT-2_convae-2") is None


def test_add_replaces_the_same_version(index: Index) -> None:
    index.add(_meta(A, 1))
    index.add(_meta(A, 1, metrics={"auc": 0.5}))
    assert index.get(A, 1)["metrics"] == {"auc": 0.5}
    assert len(index.search()) == 1


def test_remove(index: Index) -> None:
    index.add(_meta(A, 1))
    index.add(_meta(A, 2))
    index.remove(A, 1)
    assert index.get(A, 1) is None
    assert [m["version"] for m in index.search(name=A)] == [2]


def test_aliases_set_move_and_clear(index: Index) -> None:
    index.add(_meta(A, 1))
    index.add(_meta(A, 2))
    index.set_alias(A, "production", 1)
    index.set_alias(A, "staging", 2)
    assert index.alias(A, "production") == 1
    index.set_alias(A, "production", 2)
    assert index.alias(A, "production") == 2
    assert index.aliases_of(A) == {"production": 2, "staging": 2}
    index.set_alias(A, "staging", None)
    assert index.alias(A, "staging") is None
    assert index.aliases_of(A) == {"production": 2}
    assert index.aliases_of(B) == {}


def test_search_filters_by_name_scope_and_alias(index: Index) -> None:
    for name in (A, B):
        for version in (1, 2, 3):
            index.add(_meta(name, version))
    index.set_alias(A, "production", 2)
    index.set_alias(B, "production", 3)
    index.set_alias(A, "staging", 2)

    def pairs(found: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [(m["name"], m["version"]) for m in found]

    assert pairs(index.search()) == [(B, 1), (B, 2), (B, 3), (A, 1), (A, 2), (A, 3)]
    assert pairs(index.search(name=A)) == [(A, 1), (A, 2), (A, 3)]
    assert pairs(index.search(scope="FAN-7")) == [(B, 1), (B, 2), (B, 3)]
    assert pairs(index.search(alias="production")) == [(B, 3), (A, 2)]
    assert pairs(index.search(name=A, alias="staging")) == [(A, 2)]
    assert pairs(index.search(scope="LT-2", alias="production")) == [(A, 2)]
    assert index.search(name="acoustic_X-1_convae") == []


def test_build_replaces_everything_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    build(path, [_meta(A, 1)], {(A, "production"): 1}, (10, "aaa"))
    reader = Index(path)  # open across the rebuild: keeps reading what it opened
    build(path, [_meta(B, 4), _meta(B, 5)], {(B, "production"): 5}, (20, "bbb"))
    try:
        assert reader.get(A, 1) == _meta(A, 1)
    finally:
        reader.close()
    index = Index(path)
    try:
        assert index.get(A, 1) is None and index.aliases_of(A) == {}
        assert [m["version"] for m in index.search()] == [4, 5]
        assert index.alias(B, "production") == 5
        assert index.log() == (20, "bbb")
    finally:
        index.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.sqlite"]


def test_a_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    build(path, [], {}, (0, ""))
    index = Index(path, write=True)
    try:
        with pytest.raises(RuntimeError), index.transaction():
            index.add(_meta(A, 1))
            index.set_log(99, "new")
            raise RuntimeError("killed before the commit")
        assert index.get(A, 1) is None and index.log() == (0, "")
        with index.transaction():
            index.add(_meta(A, 1))
            index.set_log(99, "new")
        assert index.get(A, 1) == _meta(A, 1) and index.log() == (99, "new")
    finally:
        index.close()


def test_readers_see_only_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    build(path, [], {}, (0, ""))
    writer, reader = Index(path, write=True), Index(path)
    try:
        with writer.transaction():
            writer.add(_meta(A, 1))
            assert reader.get(A, 1) is None
        assert reader.get(A, 1) == _meta(A, 1)
    finally:
        writer.close()
        reader.close()


def test_a_reader_cannot_write_or_create(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with pytest.raises(CorruptStoreError, match="the index is missing"):
        Index(path)
    assert not path.exists()
    build(path, [], {}, (0, ""))
    reader = Index(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.conn.execute("insert into log (key, value) values ('x', 'y')")
    finally:
        reader.close()


def test_garbage_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"this is not a database, just garbage bytes " * 100)
    before = snapshot(tmp_path)
    for write in (False, True):
        with pytest.raises(CorruptStoreError) as caught:
            Index(path, write=write)
        assert str(path) in str(caught.value)
        assert "registry reindex" in str(caught.value)
    assert snapshot(tmp_path) == before


def test_query_on_a_broken_database_is_a_corrupt_store_error(index: Index) -> None:
    index.add(_meta(A, 1))
    index.conn.execute("drop table versions")
    with pytest.raises(CorruptStoreError, match="run `registry reindex`"):
        index.get(A, 1)
    with pytest.raises(CorruptStoreError):
        index.search()


@pytest.mark.parametrize(
    "schema",
    [
        "",  # a 0-byte file: a crash right after it was created
        "create table other (x int)",
        "create table versions (name text, version int); create table aliases (name text);"
        "create table log (key text, value text)",
    ],
)
def test_an_index_without_this_registrys_tables_is_refused(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"")
    if schema:
        with sqlite3.connect(path) as conn:
            conn.executescript(schema)
        conn.close()
    before = snapshot(tmp_path)
    with pytest.raises(CorruptStoreError, match="run `registry reindex`"):
        Index(path, write=True)
    assert snapshot(tmp_path) == before


def test_a_symlinked_index_is_refused(tmp_path: Path) -> None:
    build(tmp_path / "elsewhere.sqlite", [], {}, (0, ""))
    (tmp_path / "index.sqlite").symlink_to(tmp_path / "elsewhere.sqlite")
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        Index(tmp_path / "index.sqlite")
