"""registry.index: the SQLite lookup index (WAL, busy timeout, lookups, rebuild, corruption)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.errors import CorruptStoreError
from registry.index import BUSY_TIMEOUT_MS, Index
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
    idx = Index(tmp_path / "index.sqlite", create=True)
    try:
        yield idx
    finally:
        idx.close()


def test_new_index_has_tables_wal_and_indexes(tmp_path: Path, index: Index) -> None:
    tables = {row[0] for row in index.conn.execute("select name from sqlite_master")}
    assert {"versions", "aliases"} <= tables
    assert index.conn.execute("pragma journal_mode").fetchone()[0] == "wal"
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


def test_rebuild_replaces_everything(index: Index) -> None:
    index.add(_meta(A, 1))
    index.set_alias(A, "production", 1)
    index.rebuild([_meta(B, 4), _meta(B, 5)], {(B, "production"): 5})
    assert index.get(A, 1) is None
    assert index.aliases_of(A) == {}
    assert [m["version"] for m in index.search()] == [4, 5]
    assert index.alias(B, "production") == 5


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    first = Index(path, create=True)
    first.add(_meta(A, 1))
    first.set_alias(A, "production", 1)
    first.close()
    second = Index(path)
    try:
        assert second.get(A, 1) == _meta(A, 1)
        assert second.alias(A, "production") == 1
    finally:
        second.close()


def test_close_leaves_no_wal_or_shm(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    idx = Index(path, create=True)
    idx.add(_meta(A, 1))
    idx.set_alias(A, "production", 1)
    idx.close()
    assert sorted(snapshot(tmp_path)) == ["index.sqlite"]


def test_readers_see_a_writers_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    writer = Index(path, create=True)
    reader = Index(path)
    try:
        writer.add(_meta(A, 1))
        assert reader.get(A, 1) == _meta(A, 1)
    finally:
        writer.close()
        reader.close()


def test_garbage_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"this is not a database, just garbage bytes " * 100)
    before = snapshot(tmp_path)
    with pytest.raises(CorruptStoreError) as caught:
        Index(path)
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


def test_a_plain_sqlite_database_without_the_tables_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("create table other (x int)")
    conn.close()
    idx = Index(path, create=True)
    try:
        idx.add(_meta(A, 1))
        assert idx.get(A, 1) == _meta(A, 1)
    finally:
        idx.close()


def test_a_database_without_the_tables_is_refused_unless_creating(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"")  # a crash right after the file was created
    with pytest.raises(CorruptStoreError, match="run `registry reindex`"):
        Index(path)
